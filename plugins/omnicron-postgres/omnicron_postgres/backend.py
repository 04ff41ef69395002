"""``postgresql://``: jobs shared by several scheduler nodes; each scheduled fire runs once.

How (docs/deployment.md has the operator's view):

- **Claim and advance in one transaction**: ``SELECT … FOR UPDATE SKIP LOCKED`` takes a batch
  of due jobs, the Scheduler's ``mark`` computes each next fire time, one ``INSERT`` records
  every fire in ``omnicron_fires`` and one ``UPDATE`` writes the jobs back. A node that dies
  before ``COMMIT`` leaves nothing behind; the next node takes the jobs at once.
- **Fire identity is a unique key**: ``UNIQUE (job_id, scheduled_for)``. A fire that already has
  its row is not started again (its job is only moved on). Manual triggers have no fire row.
- **Leases only for runs in flight**: a fire row carries ``lease_owner``, ``lease_until`` and
  ``attempt`` (the fencing token). A thread of this node with its own connection renews them
  every third of the lease (actions on the event loop cannot starve it) and heartbeats; a
  finish is written only while the row is still ``running`` with our owner and attempt, so a
  node that lost its lease has its late finish refused. Runs the Scheduler starts from a
  finish (a retry's next attempt, a buffered fire's turn) take their fire row and lease in
  that finish's transaction.
- **No replay after ``mark`` / ``patch``**: a transaction cut after it called the caller's
  callback is not run again on a fresh connection (the callback's effects would double); a
  claim whose COMMIT's answer was lost is looked up by fire key and returned if it committed.
- **Reaper on every node** (same thread): a run whose lease expired, or whose node is known
  dead (its heartbeat is old, or its session's advisory lock is gone and the heartbeat is a
  few seconds old), is taken back: ``interrupted`` (the job moves on), or ``retrying`` with
  ``retry_interrupted`` (the same fire runs again with ``attempt + 1``).
- **Database time only**: SQL uses ``now()``; :meth:`now` is this machine's clock corrected by
  the offset to the server's ``clock_timestamp()``, measured every heartbeat.
- **LISTEN/NOTIFY for changes only**: a save, update or enable that makes a job due sends one
  ``pg_notify`` inside its transaction; each node listens on its own connection and wakes its
  Scheduler; after a reconnect it wakes too (a full re-read of what is due), and the
  Scheduler's bounded poll (``external_check``, 1 s) is the safety net. Fires send none.
- Sessions set ``lock_timeout``, ``idle_in_transaction_session_timeout`` and TCP keepalives,
  so a partitioned node cannot hold rows for long.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from omnicron_core.plugin import (
    ExecutionResult,
    Job,
    JobPatch,
    JobStatus,
    RunOutcome,
    RunRecord,
    RunWrites,
    StoreBackend,
    StoreError,
    decode_job,
    encode_job,
    fire_run_id,
    get_logger,
)

from . import _history
from ._schema import ADVISORY_CLASS, MIGRATIONS, migrate_sql_lock_key
from ._settings import PgSettings, default_node_id, parse_settings

__all__ = ["PostgresBackend"]

_log = get_logger("omnicron.postgres")
_T = TypeVar("_T")
_INT4 = 2147483647
#: Writes of jobs due within this time wake the other nodes (NOTIFY); the rest wait for the
#: nodes' regular re-read, which is at most ``SchedulerConfig.external_check`` (1 s) away.
_NOTIFY_HORIZON = timedelta(seconds=3)
#: How long a node waits before looking again at due jobs another node is claiming.
_BUSY_BACKOFF = timedelta(milliseconds=3)


def _error(message: str, *, transient: bool) -> StoreError:
    return StoreError(message, transient=transient)


def _encode(job: Job) -> str:
    """The job's JSON, as the core writes it (``decode_job`` reads it back)."""
    return encode_job(job).decode()


def _released(job: Job) -> Job:
    """A claimed job whose fire already has its row: move it on without running it."""
    if job.status == JobStatus.RUNNING:
        if job.next_run_at is not None and job.is_recurring():
            job.status = JobStatus.ENABLED
        else:
            job.status = JobStatus.DISABLED
            job.next_run_at = None
    return job


def _runs_fire(job: Job, at: datetime) -> bool:
    """Whether the claim's ``mark`` started (or queued) the fire ``at``: the job holds it
    (``running``, or an in-flight or buffered entry); else its policy recorded it skipped or
    missed."""
    if job.status == JobStatus.RUNNING:
        return True
    return any(e.at == at for e in job.in_flight or ()) or any(
        e.at == at for e in job.buffered or ()
    )


class _Held:
    """The runs this node holds leases for, by (job id, fire time): (fire row id, attempt,
    owner). Keyed by fire, not job: a job whose overlap policy allows it may have several
    runs in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, datetime], tuple[int, int, str]] = {}
        self.lost: set[int] = set()

    def add(self, key: tuple[str, datetime], fire: int, attempt: int, owner: str) -> None:
        with self._lock:
            self._runs[key] = (fire, attempt, owner)

    def pop(self, key: tuple[str, datetime]) -> tuple[int, int, str] | None:
        with self._lock:
            return self._runs.pop(key, None)

    def get(self, key: tuple[str, datetime]) -> tuple[int, int, str] | None:
        with self._lock:
            return self._runs.get(key)

    def of_job(self, job_id: str) -> list[tuple[datetime, tuple[int, int, str]]]:
        with self._lock:
            return [(k[1], v) for k, v in self._runs.items() if k[0] == job_id]

    def snapshot(self) -> list[tuple[int, int]]:
        with self._lock:
            return [(fire, attempt) for fire, attempt, _ in self._runs.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)


class PostgresBackend(StoreBackend):
    shared = True
    external_writers = True  # `omnicron jobs ...` and other nodes write too

    def __init__(self, settings: PgSettings) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self._fixed_node_id = bool(settings.node_id)
        self._schema = sql.Identifier(settings.schema)
        self._channel = f"omnicron_{settings.schema}"
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self._held = _Held()
        self._empty_claim_at: datetime | None = None
        self._pending_saves: builtins.list[tuple[Job, asyncio.Future[None]]] = []
        self._saver: asyncio.Task[None] | None = None
        self._token = uuid.uuid4().hex[:16]  # tells our own notifications from others'
        self._offset = timedelta(0)  # server clock - this machine's clock
        self._wake: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._node_started = False
        self._maint: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_contact = time.monotonic()
        self._cut_off = False
        self._lease_owner = ""  # who the claims lease runs to (the last claim's owner)
        self._stats: dict[str, float] = {
            "claims_total": 0,
            "claimed_fires_total": 0,
            "claim_seconds_total": 0.0,
            "claim_latency_seconds": 0.0,
            "leases_held": 0,
            "lease_losses_total": 0,
            "finishes_refused_total": 0,
            "reaped_runs_total": 0,
            "notifies_received_total": 0,
            "notify_lag_seconds": 0.0,
            "reconnects_total": 0,
        }

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any]) -> PostgresBackend:
        return cls(parse_settings(url, options))

    # -- connections ----------------------------------------------------------------------

    def _connect_kwargs(self, role: str) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "application_name": f"omnicron {role} {self.node_id or default_node_id()}"[:63],
            "connect_timeout": max(1, round(s.connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            # a partitioned or stopped node cannot hold rows for long; TimeZone for decoding
            "options": (
                "-c lock_timeout=5s -c idle_in_transaction_session_timeout=30s "
                "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 "
                f"-c tcp_keepalives_count=3 -c TimeZone=UTC -c search_path={s.schema}"
            ),
        }
        if s.password is not None:
            kwargs["password"] = s.password
        return kwargs

    def _fail(self, what: str, exc: BaseException) -> StoreError:
        transient = isinstance(exc, psycopg.OperationalError | psycopg.errors.LockNotAvailable)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _error(
            f"postgres store {self.settings.display}: {what} failed: {detail}",
            transient=transient,
        )

    @property
    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        if self._pool is None:
            raise StoreError("postgres store is not open (or was closed)")
        return self._pool

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._loop = asyncio.get_running_loop()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
            self.settings.conninfo,
            kwargs={**self._connect_kwargs("pool"), "autocommit": True},
            min_size=1,
            max_size=self.settings.pool_size,
            open=False,
            name="omnicron",
            reconnect_timeout=3600,
        )
        try:
            await pool.open(wait=True, timeout=self.settings.connect_timeout)
        except Exception as exc:
            await pool.close()
            raise _error(
                f"cannot connect to postgres store {self.settings.display}: "
                f"{type(exc).__name__}: {exc}",
                transient=True,
            ) from None
        self._pool = pool
        try:
            await self._migrate()
            await self._measure_offset()
        except BaseException:
            await self.close()
            raise

    async def _migrate(self) -> None:
        schema = self._schema
        lock = migrate_sql_lock_key(self.settings.schema)

        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.omnicron_schema (version integer NOT NULL)"
                ).format(schema)
            )
            cur = await conn.execute(
                sql.SQL("SELECT version FROM {}.omnicron_schema").format(schema)
            )
            row = await cur.fetchone()
            version = 0 if row is None else int(row[0])
            if row is None:
                await conn.execute(
                    sql.SQL("INSERT INTO {}.omnicron_schema VALUES (0)").format(schema)
                )
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"postgres store {self.settings.display} has schema version {version}, "
                    f"newer than this omnicron-postgres understands ({len(MIGRATIONS)}); "
                    "upgrade it"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        await conn.execute(statement)
                await conn.execute(
                    sql.SQL("UPDATE {}.omnicron_schema SET version = %s").format(schema),
                    (number + 1,),
                )
                _log.info("postgres.migrated", schema=self.settings.schema, version=number + 1)

        await self._tx("migrate", work)

    async def _measure_offset(self) -> None:
        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> datetime:
            cur = await conn.execute("SELECT clock_timestamp()")
            row = await cur.fetchone()
            assert row is not None
            server: datetime = row[0]
            return server

        t0 = datetime.now(UTC)
        server = await self._tx("clock", work)
        t1 = datetime.now(UTC)
        self._offset = server - (t0 + (t1 - t0) / 2)

    async def _tx(
        self,
        what: str,
        work: Callable[[psycopg.AsyncConnection[TupleRow]], Awaitable[_T]],
        *,
        atomic: bool = True,
        replayable: Callable[[], bool] | None = None,
    ) -> _T:
        """Run ``work`` in one transaction (``atomic=False``: ``work`` runs one statement,
        which is its own transaction); a lost connection (restart, terminated session) is
        retried on a fresh one, as the transaction rolled back, unless ``replayable`` says
        ``work`` can no longer run again (it called the caller's ``mark`` / ``patch``, whose
        effects on the caller would then happen twice): then the error is raised."""
        attempts = self.settings.pool_size + 2
        for attempt in range(attempts):
            try:
                async with self.pool.connection() as conn:
                    if not atomic:
                        return await work(conn)
                    async with conn.transaction():
                        return await work(conn)
            except StoreError:
                raise
            except psycopg.OperationalError as exc:
                self._stats["reconnects_total"] += 1
                if attempt == attempts - 1 or (replayable is not None and not replayable()):
                    raise self._fail(what, exc) from None
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            except psycopg.Error as exc:
                raise self._fail(what, exc) from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        listener = self._listener
        self.watch(None)
        if listener is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if self._saver is not None and not self._saver.done():
            await self._saver
        await self._stop_node()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _direct(self) -> psycopg.AsyncConnection[TupleRow]:
        """A connection of its own (no pool, no migration), for read-only probes."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.settings.conninfo, autocommit=True, **self._connect_kwargs("check")
            )
        except psycopg.Error as exc:
            raise self._fail("connect", exc) from None

    async def exists(self) -> bool:
        """Whether omnicron's tables are in the schema; creates nothing."""
        conn = await self._direct()
        async with conn:
            cur = await conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{self.settings.schema}.omnicron_schema",)
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def check(self) -> builtins.list[str]:
        """Problems in the stored data, read-only: the schema version, jobs whose JSON does
        not decode or disagrees with the status / next fire columns, runs `running` without a
        lease, jobs `running` with no run in flight."""
        problems: builtins.list[str] = []
        conn = await self._direct()
        async with conn:
            try:
                cur = await conn.execute(
                    sql.SQL("SELECT version FROM {}.omnicron_schema").format(self._schema)
                )
                row = await cur.fetchone()
            except psycopg.errors.UndefinedTable:
                return [f"no omnicron schema in {self.settings.schema!r} (never opened?)"]
            version = 0 if row is None else int(row[0])
            if version != len(MIGRATIONS):
                problems.append(
                    f"schema version {version}; this omnicron-postgres expects {len(MIGRATIONS)}"
                )
            cur = await conn.execute(
                "SELECT id, status, next_run_at, data FROM omnicron_jobs ORDER BY id"
            )
            async for job_id, status, next_run_at, data in cur:
                try:
                    job = decode_job(data)
                except (ValueError, TypeError) as exc:
                    problems.append(f"job {job_id!r}: stored JSON does not decode: {exc}")
                    continue
                if job.id != job_id:
                    problems.append(f"job {job_id!r}: its JSON says id {job.id!r}")
                if str(job.status) != status or job.next_run_at != next_run_at:
                    problems.append(
                        f"job {job_id!r}: columns (status={status}, next_run_at={next_run_at}) "
                        "disagree with its JSON"
                    )
            cur = await conn.execute(
                "SELECT count(*) FROM omnicron_fires WHERE state = 'running' "
                "AND (lease_owner IS NULL OR lease_until IS NULL)"
            )
            row = await cur.fetchone()
            if row and row[0]:
                problems.append(f"{row[0]} run(s) in flight without a lease")
        return problems

    # -- node: heartbeat, leases, reaper (a thread with its own connection) -----------------

    async def _ensure_node(self, owner: str) -> None:
        if self._node_started:
            return
        if not self.node_id:
            self.node_id = owner or default_node_id()
        await self._tx("register node", self._register_node)
        self._stop.clear()
        self._last_contact = time.monotonic()
        self._maint = threading.Thread(
            target=self._maintain, name=f"omnicron-pg-node {self.node_id}", daemon=True
        )
        self._node_started = True
        self._maint.start()

    async def _register_node(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        info = json.dumps({"pid": default_node_id(), "lease": self.settings.lease})
        await conn.execute(
            "INSERT INTO omnicron_nodes (node_id, info) VALUES (%s, %s) "
            "ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now(), started_at = now(), "
            "info = EXCLUDED.info",
            (self.node_id, info),
        )

    async def _stop_node(self) -> None:
        if not self._node_started:
            return
        self._stop.set()
        if self._maint is not None:
            await asyncio.to_thread(self._maint.join, 10)
            self._maint = None
        self._node_started = False
        if self._pool is not None and not len(self._held):
            # a clean stop: this node is known gone at once
            node_id = self.node_id

            async def leave(conn: psycopg.AsyncConnection[TupleRow]) -> None:
                await conn.execute("DELETE FROM omnicron_nodes WHERE node_id = %s", (node_id,))

            try:
                await self._tx("deregister node", leave)
            except StoreError as exc:
                _log.warning("postgres.deregister_failed", error=str(exc))

    def _maintain(self) -> None:
        s = self.settings
        tick = min(s.heartbeat, s.lease / 3)
        conn: psycopg.Connection[TupleRow] | None = None
        next_renew = 0.0
        next_prune = time.monotonic() + 10
        unreachable_since: float | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    if conn is not None:
                        self._stats["reconnects_total"] += 1
                    conn = psycopg.connect(
                        s.conninfo, autocommit=True, **self._connect_kwargs("node")
                    )
                    self._hold_liveness_lock(conn)
                self._heartbeat(conn)
                now = time.monotonic()
                if now >= next_renew:
                    self._renew(conn)
                    next_renew = now + s.lease / 3
                self._reap(conn)
                if now >= next_prune:
                    self._prune(conn)
                    next_prune = now + 60
                self._last_contact = time.monotonic()
                if unreachable_since is not None:
                    _log.warning(
                        "postgres.reconnected",
                        node=self.node_id,
                        after_s=round(time.monotonic() - unreachable_since, 1),
                    )
                    unreachable_since = None
                if self._cut_off:
                    self._cut_off = False
                    _log.warning("postgres.claiming_resumed", node=self.node_id)
            except psycopg.Error as exc:
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    _log.error(
                        "postgres.unreachable",
                        node=self.node_id,
                        store=s.display,
                        error=str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                    )
                if conn is not None:
                    conn.close()
                    conn = None
            self._stop.wait(tick)
        if conn is not None:
            conn.close()

    def _hold_liveness_lock(self, conn: psycopg.Connection[TupleRow]) -> None:
        row = conn.execute(
            "INSERT INTO omnicron_nodes (node_id) VALUES (%s) ON CONFLICT (node_id) "
            "DO UPDATE SET heartbeat_at = now() RETURNING seq",
            (self.node_id,),
        ).fetchone()
        assert row is not None
        conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (ADVISORY_CLASS, int(row[0]) % _INT4))

    def _heartbeat(self, conn: psycopg.Connection[TupleRow]) -> None:
        t0 = datetime.now(UTC)
        row = conn.execute(
            "UPDATE omnicron_nodes SET heartbeat_at = now() WHERE node_id = %s "
            "RETURNING clock_timestamp()",
            (self.node_id,),
        ).fetchone()
        t1 = datetime.now(UTC)
        if row is None:  # our row was removed (a long stop): register again
            self._hold_liveness_lock(conn)
            return
        self._offset = row[0] - (t0 + (t1 - t0) / 2)

    def _renew(self, conn: psycopg.Connection[TupleRow]) -> None:
        held = self._held.snapshot()
        self._stats["leases_held"] = len(held)
        if not held:
            return
        fires = [f for f, _ in held]
        attempts = [a for _, a in held]
        rows = conn.execute(
            "UPDATE omnicron_fires f SET lease_until = now() + %s * interval '1 second' "
            "FROM unnest(%b::bigint[], %b::int[]) AS u(id, attempt) "
            "WHERE f.id = u.id AND f.attempt = u.attempt AND f.state = 'running' "
            "RETURNING f.id",
            (self.settings.lease, fires, attempts),
        ).fetchall()
        kept = {r[0] for r in rows}
        lost = [f for f in fires if f not in kept and f not in self._held.lost]
        if lost:
            self._held.lost.update(lost)
            self._stats["lease_losses_total"] += len(lost)
            _log.error(
                "postgres.lease_lost",
                node=self.node_id,
                runs=len(lost),
                hint="another node took these runs back; their results will be refused",
            )

    def _dead_nodes_sql(self) -> str:
        return (
            "SELECT n.node_id FROM omnicron_nodes n WHERE n.node_id <> %(me)s AND ("
            " n.heartbeat_at < now() - %(timeout)s * interval '1 second'"
            " OR (n.heartbeat_at < now() - %(grace)s * interval '1 second' AND NOT EXISTS ("
            "  SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
            "  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            "  AND l.classid = %(cls)s AND l.objid::bigint = n.seq %% 2147483647"
            "  AND l.objsubid = 2)))"
        )

    def _reap(self, conn: psycopg.Connection[TupleRow]) -> int:
        """Take back runs whose lease expired or whose node is known dead."""
        s = self.settings
        params = {
            "me": self.node_id,
            "timeout": s.node_timeout,
            "grace": max(3 * s.heartbeat, 3.0),
            "cls": ADVISORY_CLASS,
        }
        reaped = 0
        with conn.transaction():
            rows = conn.execute(
                "SELECT f.id, f.job_id, f.scheduled_for, f.lease_owner, f.lease_until < now() "
                "FROM omnicron_fires f WHERE f.state = 'running' AND ("
                " f.lease_until < now() OR f.lease_owner IN (" + self._dead_nodes_sql() + ")"
                " OR f.lease_owner NOT IN (SELECT node_id FROM omnicron_nodes))"
                " ORDER BY f.id LIMIT 500 FOR UPDATE OF f SKIP LOCKED",
                params,
            ).fetchall()
            if not rows:
                return 0
            job_rows = conn.execute(
                "SELECT id, data FROM omnicron_jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                ([r[1] for r in rows],),
            ).fetchall()
            jobs = {r[0]: decode_job(r[1]) for r in job_rows}
            fire_ids: list[int] = []
            states: list[str] = []
            errors: list[str] = []
            changed: list[Job] = []
            for fire_id, job_id, scheduled_for, owner, expired in rows:
                why = f"lease expired on node {owner}" if expired else f"node {owner} is gone"
                job = jobs.get(job_id)
                retry = job is not None and self._wants_retry(job)
                fire_ids.append(fire_id)
                states.append("retrying" if retry else "interrupted")
                errors.append(why)
                if job is None:
                    continue
                if job.status != JobStatus.RUNNING:
                    # overlap policies other than skip: the job stays enabled while its runs
                    # go; free the slot the dead run held, and retry its fire if asked
                    left = [e for e in job.in_flight or () if e.at != scheduled_for]
                    if len(left) == len(job.in_flight or ()):
                        continue
                    job.in_flight = left or None
                    job.last_error = f"interrupted: {why}"
                    if (
                        retry
                        and job.status == JobStatus.ENABLED
                        and (job.next_run_at is None or scheduled_for < job.next_run_at)
                    ):
                        job.next_run_at = scheduled_for
                        job.next_fire_at = None
                    changed.append(job)
                    continue
                job.last_error = f"interrupted: {why}"
                job.in_flight = [e for e in job.in_flight or () if e.at != scheduled_for] or None
                if retry:
                    job.status = JobStatus.ENABLED
                    job.next_run_at = scheduled_for
                elif job.is_recurring():
                    # the claim already moved next_run_at to the following fire; without
                    # one, fire now and let that claim compute the next
                    job.status = JobStatus.ENABLED
                    job.next_run_at = job.next_run_at or datetime.now(UTC) + self._offset
                else:
                    job.status = JobStatus.DISABLED
                    job.next_run_at = None
                changed.append(job)
            interrupted = [(r[1], r[2], e) for r, st, e in zip(rows, states, errors, strict=True)]
            conn.execute(
                _history.INTERRUPT_RECORDS,
                (
                    [j for j, _, _ in interrupted],
                    [t for _, t, _ in interrupted],
                    [f"interrupted: {e}" for _, _, e in interrupted],
                ),
            )
            conn.execute(
                "UPDATE omnicron_fires f SET state = u.state, error = u.error, "
                "finished_at = CASE WHEN u.state = 'retrying' THEN NULL ELSE now() END, "
                "lease_owner = NULL, lease_until = NULL "
                "FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS u(id, state, error) "
                "WHERE f.id = u.id",
                (fire_ids, states, errors),
            )
            if changed:
                self._write_jobs_sync(conn, changed)
                self._notify_sync(conn, changed)
            reaped = len(fire_ids)
        self._stats["reaped_runs_total"] += reaped
        _log.warning("postgres.reaped", node=self.node_id, runs=reaped)
        return reaped

    def _wants_retry(self, job: Job) -> bool:
        policy = getattr(job, "policy", None)
        retry = getattr(policy, "retry", None) if policy is not None else None
        return self.settings.retry_interrupted or bool(getattr(retry, "attempts", 0))

    def _prune(self, conn: psycopg.Connection[TupleRow]) -> None:
        """Delete finished fire rows older than ``fire_retention`` (bounded batches; one node
        at a time). A pruned fire cannot come back: its job has moved past it."""
        with conn.transaction():
            got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (ADVISORY_CLASS,))
            row = got.fetchone()
            if row is None or not row[0]:
                return
            conn.execute(
                "DELETE FROM omnicron_fires WHERE id IN (SELECT id FROM omnicron_fires "
                "WHERE finished_at < now() - %s * interval '1 second' LIMIT 5000)",
                (self.settings.fire_retention,),
            )

    def _write_jobs_sync(self, conn: psycopg.Connection[TupleRow], jobs: Sequence[Job]) -> None:
        conn.execute(_UPDATE_JOBS, _job_columns(jobs))

    def _notify_sync(self, conn: psycopg.Connection[TupleRow], jobs: Sequence[Job]) -> None:
        payload = self._payload(jobs)
        if payload is not None:
            conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))

    def _payload(self, jobs: Sequence[Job]) -> str | None:
        """The notification for a write, or None when no node needs waking: only a job due
        before the nodes' next regular re-read (at most ``external_check``, 1 s, away; with
        margin) needs one. Skipping the rest matters: a NOTIFY holds a global lock through
        its commit, which would serialise concurrent writers."""
        soon = datetime.now(UTC) + self._offset + _NOTIFY_HORIZON
        if not any(
            j.status == JobStatus.ENABLED and j.next_run_at is not None and j.next_run_at < soon
            for j in jobs
        ):
            return None
        return json.dumps({"node": self.node_id, "at": time.time() + self._offset.total_seconds()})

    # -- LISTEN ---------------------------------------------------------------------------

    def watch(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake
        if wake is not None and self._listener is None and self._pool is not None:
            self._listener = asyncio.ensure_future(self._listen())
        elif wake is None and self._listener is not None:
            self._listener.cancel()
            self._listener = None

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake()

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.settings.conninfo, autocommit=True, **self._connect_kwargs("listen")
                )
            except psycopg.Error as exc:
                _log.warning("postgres.listen_failed", error=str(exc).strip()[:200])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    backoff = 0.2
                    # notifications sent while we were away are lost: re-read what is due
                    self._wake_up()
                    async for note in conn.notifies():
                        self._stats["notifies_received_total"] += 1
                        try:
                            data = json.loads(note.payload)
                        except ValueError:
                            data = {}
                        if data.get("at"):
                            lag = time.time() + self._offset.total_seconds() - float(data["at"])
                            self._stats["notify_lag_seconds"] = max(lag, 0.0)
                        if data.get("from") != self._token:
                            self._wake_up()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                self._stats["reconnects_total"] += 1
                _log.warning("postgres.listen_lost", error=str(exc).strip()[:200])
                await asyncio.sleep(backoff)

    # -- clock and stats --------------------------------------------------------------------

    async def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def stats(self) -> Mapping[str, float]:
        self._stats["leases_held"] = len(self._held)
        return dict(self._stats)

    def _claiming_allowed(self) -> bool:
        silent = time.monotonic() - self._last_contact
        if self._node_started and silent > self.settings.lease / 2:
            if not self._cut_off:
                self._cut_off = True
                _log.error(
                    "postgres.cut_off",
                    node=self.node_id,
                    silent_s=round(silent, 1),
                    hint="no heartbeat reached the database: not claiming until it does",
                )
            return False
        return True

    # -- records --------------------------------------------------------------------------

    async def save(self, job: Job) -> None:
        """Saves arriving while another is being written go out together, in one statement
        and one commit (a client-side group commit: concurrent callers share the WAL flush);
        each caller returns once its job is durable."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_saves.append((job, future))
        if self._saver is None or self._saver.done():
            self._saver = asyncio.ensure_future(self._write_saves())
        await future

    async def _write_saves(self) -> None:
        while self._pending_saves:
            batch, self._pending_saves = self._pending_saves, []
            try:
                await self.save_many([job for job, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # one caller's failure must not become another's: write them one by one
                for job, future in batch:
                    try:
                        await self.save_many([job])
                    except Exception as one:
                        if not future.done():
                            future.set_exception(one)
                    else:
                        if not future.done():
                            future.set_result(None)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def save_many(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        last = {job.id: job for job in jobs}  # one row per id: the last one wins
        if len(last) < len(jobs):
            jobs = builtins.list(last.values())

        payload = self._payload(jobs)

        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> None:
            if payload is None:
                await conn.execute(_UPSERT_JOBS, _job_columns(jobs))
            else:  # one statement: the notification leaves with the commit of the rows
                await conn.execute(
                    "WITH saved AS (" + _UPSERT_JOBS + ") SELECT pg_notify(%s, %s)",
                    (*_job_columns(jobs), self._channel, payload),
                )

        await self._tx("save", work, atomic=False)

    async def _notify(self, conn: psycopg.AsyncConnection[TupleRow], jobs: Sequence[Job]) -> None:
        payload = self._payload(jobs)
        if payload is not None:
            await conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))

    async def _query(self, what: str, query: str, params: Any = None) -> list[TupleRow]:
        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> list[TupleRow]:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

        return await self._tx(what, work, atomic=False)

    async def get(self, job_id: str) -> Job | None:
        rows = await self._query("get", "SELECT data FROM omnicron_jobs WHERE id = %s", (job_id,))
        return decode_job(rows[0][0]) if rows else None

    async def delete(self, job_id: str) -> bool:
        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> bool:
            cur = await conn.execute("DELETE FROM omnicron_jobs WHERE id = %s", (job_id,))
            return cur.rowcount > 0

        return await self._tx("delete", work, atomic=False)

    async def list(self, status: JobStatus | None = None) -> builtins.list[Job]:
        if status is None:
            rows = await self._query("list", "SELECT data FROM omnicron_jobs ORDER BY id")
        else:
            rows = await self._query(
                "list",
                "SELECT data FROM omnicron_jobs WHERE status = %s ORDER BY id",
                (str(status),),
            )
        return [decode_job(r[0]) for r in rows]

    async def list_by_metadata(self, key: str, value: str) -> builtins.list[Job]:
        rows = await self._query(
            "list",
            "SELECT data FROM omnicron_jobs WHERE data::jsonb->'metadata'->>%s = %s "
            "AND jsonb_typeof(data::jsonb->'metadata'->%s) = 'string' ORDER BY id",
            (key, value, key),
        )
        return [decode_job(r[0]) for r in rows]

    async def count(self, status: JobStatus | None = None) -> int:
        if status is None:
            rows = await self._query("count", "SELECT count(*) FROM omnicron_jobs")
        else:
            rows = await self._query(
                "count", "SELECT count(*) FROM omnicron_jobs WHERE status = %s", (str(status),)
            )
        return int(rows[0][0])

    async def next_due_at(self) -> datetime | None:
        rows = await self._query(
            "read", "SELECT min(next_run_at) FROM omnicron_jobs WHERE status = 'enabled'"
        )
        value: datetime | None = rows[0][0]
        empty = self._empty_claim_at
        if value is not None and empty is not None and value <= empty:
            # what is due is being claimed by another node (our claim skipped its locked
            # rows): look again in a moment instead of spinning until that node commits
            return empty + _BUSY_BACKOFF
        return value

    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        rows = await self._query(
            "read",
            "SELECT data FROM omnicron_jobs WHERE status = 'enabled' "
            "AND next_run_at IS NULL ORDER BY id LIMIT %s",
            (limit,),
        )
        return [decode_job(r[0]) for r in rows]

    # -- the fire path --------------------------------------------------------------------

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        mark: Callable[[Job], Job],
        *,
        owner: str = "",
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        await self._ensure_node(owner)
        if not self._claiming_allowed():
            return []
        lease_owner = self.node_id if self._fixed_node_id else (owner or self.node_id)
        self._lease_owner = lease_owner
        started = time.perf_counter()

        async def work(
            conn: psycopg.AsyncConnection[TupleRow],
        ) -> builtins.list[tuple[Job, int, int, datetime]]:
            cur = await conn.execute(_DUE, (now, limit))
            rows = await cur.fetchall()
            self._empty_claim_at = None if rows else now
            if not rows:
                return []
            jobs: builtins.list[Job] = []
            fires: builtins.list[datetime] = []
            attempted[:] = [jobs, fires]
            for _id, data, next_run_at in rows:
                job = decode_job(data)
                # the nominal fire time (jitter moves next_run_at later): the run answers it
                fires.append(job.next_fire_at or job.next_run_at or next_run_at)
                jobs.append(mark(job))
            # one statement records the fires and writes the jobs back
            cur = await conn.execute(
                _CLAIM,
                (
                    lease_owner,
                    self.settings.lease,
                    [j.id for j in jobs],
                    fires,
                    *_job_columns(jobs),
                ),
            )
            got = {r[1]: (int(r[0]), int(r[2])) for r in await cur.fetchall()}
            out: builtins.list[tuple[Job, int, int, datetime]] = []
            released: builtins.list[Job] = []
            decided: builtins.list[int] = []
            for job, fire_at in zip(jobs, fires, strict=True):
                fire = got.get(job.id)
                if fire is None:
                    # this fire already has its row: move the job on, do not run it
                    released.append(_released(job))
                    if runs is not None:  # the Scheduler does not start a rejected run
                        runs.rejected.add(fire_run_id(job.id, fire_at))
                elif _runs_fire(job, fire_at):
                    out.append((job, fire[0], fire[1], fire_at))
                else:
                    # the policy recorded this fire skipped or missed: nothing to lease
                    decided.append(fire[0])
                    out.append((job, 0, 0, fire_at))
            if released:
                await conn.execute(_UPDATE_JOBS, _job_columns(released))
            if decided:
                await conn.execute(
                    "UPDATE omnicron_fires SET state = 'skipped', finished_at = now(), "
                    "lease_owner = NULL, lease_until = NULL WHERE id = ANY(%s)",
                    (decided,),
                )
            await self._write_history(conn, runs)
            return out

        attempted: builtins.list[Any] = []  # [jobs, fire times] once mark was called
        try:
            claimed = await self._tx("claim", work, replayable=lambda: not attempted)
        except StoreError as exc:
            if not attempted:
                raise
            # the connection went down after ``mark``: the claim may have committed (its
            # COMMIT's answer was lost). Look by fire key: runs it committed start now
            # instead of waiting for their lease to run out; otherwise nothing happened
            claimed = await self._verify_claim(attempted[0], attempted[1], lease_owner, exc, runs)
        elapsed = time.perf_counter() - started
        st = self._stats
        st["claims_total"] += 1
        st["claim_seconds_total"] += elapsed
        st["claim_latency_seconds"] = elapsed
        st["claimed_fires_total"] += len(claimed)
        for job, fire_id, attempt, fire_at in claimed:
            if fire_id:
                self._held.add((job.id, fire_at), fire_id, attempt, lease_owner)
        return [job for job, _, _, _ in claimed]

    async def _verify_claim(
        self,
        jobs: builtins.list[Job],
        fires: builtins.list[datetime],
        lease_owner: str,
        error: StoreError,
        runs: RunWrites | None,
    ) -> builtins.list[tuple[Job, int, int, datetime]]:
        """After a claim whose outcome is unknown: the claimed runs if its transaction
        committed (their fire rows are ours and running), else ``error`` (rolled back)."""
        if not jobs:
            raise error

        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> builtins.list[TupleRow]:
            cur = await conn.execute(
                "SELECT f.id, f.job_id, f.attempt FROM omnicron_fires f "
                "JOIN unnest(%b::text[], %b::timestamptz[]) AS u(job_id, fire) "
                "ON f.job_id = u.job_id AND f.scheduled_for = u.fire "
                "WHERE f.state = 'running' AND f.lease_owner = %s",
                ([j.id for j in jobs], fires, lease_owner),
            )
            return await cur.fetchall()

        try:
            rows = await self._tx("verify claim", work)
        except StoreError:
            _log.error(
                "postgres.claim_unknown",
                node=self.node_id,
                jobs=len(jobs),
                hint="if the claim committed, its runs return when their lease runs out",
            )
            raise error from None
        got = {r[1]: (int(r[0]), int(r[2])) for r in rows}
        if not got:
            raise error
        _log.warning("postgres.claim_verified", node=self.node_id, runs=len(got))
        if runs is not None:
            # a run marked to start whose fire is not ours (it had its row already, or was
            # closed as skipped): the Scheduler must not start it
            runs.rejected.update(
                fire_run_id(job.id, at)
                for job, at in zip(jobs, fires, strict=True)
                if job.id not in got and _runs_fire(job, at)
            )
        return [
            (job, *got[job.id], at) for job, at in zip(jobs, fires, strict=True) if job.id in got
        ]

    async def finish_runs(
        self,
        job_ids: Sequence[str],
        patch: JobPatch,
        results: Mapping[str, Sequence[ExecutionResult]],
        *,
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        # each finished run's fire row, found by (job, fire time)
        fenced: builtins.list[tuple[str, tuple[str, datetime], tuple[int, int, str], Any]] = []
        for job_id in job_ids:
            for result in results.get(job_id, ()):
                at = result.scheduled_at
                held = self._held.get((job_id, at)) if at is not None else None
                if held is None and at is None:
                    mine = self._held.of_job(job_id)
                    if len(mine) == 1:  # no fire time given: the one run in flight
                        at, held = mine[0]
                if held is not None and at is not None:
                    fenced.append((job_id, (job_id, at), held, result))

        # runs the finish starts (a buffered fire's turn, a retry): the in-flight entries the
        # patch adds; each gets its fire row and lease in this transaction, like a claim's
        started: builtins.list[tuple[str, datetime, int]] = []

        def tracked(cur: Job) -> Job | None:
            patched.append(True)
            before = {(e.at, e.attempt) for e in cur.in_flight or ()}
            out = patch(cur)
            if out is not None:
                started.extend(
                    (out.id, e.at, e.attempt)
                    for e in out.in_flight or ()
                    if (e.at, e.attempt) not in before
                )
            return out

        lease_owner = self._lease_owner or self.node_id or default_node_id()
        patched: builtins.list[bool] = []  # the patch ran: no replay (its effects would double)
        leased: builtins.list[tuple[str, datetime, int, int]] = []

        async def work(
            conn: psycopg.AsyncConnection[TupleRow],
        ) -> tuple[builtins.list[Job], set[str]]:
            refused: set[str] = set()
            started.clear()
            leased.clear()
            # A finish need not wait for its WAL flush: if the database crashes before the
            # flush, the run stays `running` and its lease returns it (interrupted); nothing
            # runs twice. The claim, which decides what runs, always waits.
            await conn.execute("SET LOCAL synchronous_commit = off")
            if fenced:
                fires, attempts, owners, states, errors = [], [], [], [], []
                for _, _, (fire, attempt, owner), result in fenced:
                    fires.append(fire)
                    attempts.append(attempt)
                    owners.append(owner)
                    states.append(
                        "missed"
                        if result.started_at is None
                        else ("succeeded" if result.success else "failed")
                    )
                    errors.append((result.error or "")[:2048])
                cur = await conn.execute(_FINISH_FIRES, (fires, attempts, owners, states, errors))
                ok = {r[0] for r in await cur.fetchall()}
                # a job is refused when none of its finished runs still held its lease
                refused = {job_id for job_id, _, _, _ in fenced} - ok
            todo = [job_id for job_id in job_ids if job_id not in refused]
            written = await self._patch_jobs(conn, todo, tracked, notify=False)
            if started:
                cur = await conn.execute(
                    _LEASE_STARTS,
                    (
                        lease_owner,
                        self.settings.lease,
                        [j for j, _, _ in started],
                        [at for _, at, _ in started],
                    ),
                )
                got = {(r[1], r[2]): (int(r[0]), int(r[3])) for r in await cur.fetchall()}
                for job_id, at, attempt in started:
                    row = got.get((job_id, at))
                    if row is None:
                        # that fire is held or done elsewhere: the Scheduler must not start it
                        if runs is not None:
                            runs.rejected.add(fire_run_id(job_id, at, attempt))
                        _log.error(
                            "postgres.start_refused",
                            node=self.node_id,
                            job_id=job_id,
                            fire=at.isoformat(),
                            reason="the fire is running on another node or already done",
                        )
                    else:
                        leased.append((job_id, at, row[0], row[1]))
            await self._write_history(conn, runs)
            return written, refused

        written, refused = await self._tx("finish", work, replayable=lambda: not patched)
        for _, key, _, _ in fenced:
            self._held.pop(key)
        for job_id, at, fire_id, attempt in leased:
            self._held.add((job_id, at), fire_id, attempt, lease_owner)
        if refused:
            self._stats["finishes_refused_total"] += len(refused)
            _log.error(
                "postgres.finish_refused",
                node=self.node_id,
                job_ids=sorted(refused)[:20],
                runs=len(refused),
                reason="the run's lease was lost: another node took it back",
            )
        return written

    async def _write_history(
        self, conn: psycopg.AsyncConnection[TupleRow], runs: RunWrites | None
    ) -> None:
        """Run history records (issue 10's interface), in the caller's transaction."""
        await _history.write_runs(conn, runs)

    # -- run history ----------------------------------------------------------------------

    keeps_history = True

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 20,
        before: int | None = None,
        outcome: RunOutcome | None = None,
    ) -> builtins.list[RunRecord]:
        query, args = _history.history_query(job_id, limit, before, outcome)
        rows = await self._query("history", query, args)
        return [_history.decode(seq, data) for seq, data in rows]

    async def get_run(self, run_id: str) -> RunRecord | None:
        job_id = run_id.rpartition("@")[0]
        rows = await self._query(
            "history",
            "SELECT seq, data FROM omnicron_runs WHERE job_id = %s AND run_id = %s",
            (job_id, run_id),
        )
        if not rows and not job_id:
            rows = await self._query(
                "history", "SELECT seq, data FROM omnicron_runs WHERE run_id = %s", (run_id,)
            )
        return _history.decode(*rows[0]) if rows else None

    async def count_runs(self, job_id: str | None = None) -> int:
        if job_id is None:
            rows = await self._query("history", "SELECT count(*) FROM omnicron_runs")
        else:
            rows = await self._query(
                "history", "SELECT count(*) FROM omnicron_runs WHERE job_id = %s", (job_id,)
            )
        return int(rows[0][0])

    async def running_runs(self, limit: int, *, owner: str = "") -> builtins.list[RunRecord]:
        """Records still `running` that nobody holds: written by ``owner`` (a restart), or
        whose fire is no longer in flight (its lease was taken back)."""
        rows = await self._query("history", _history.RUNNING, (owner, limit))
        return [_history.decode(seq, data) for seq, data in rows]

    async def prune_runs(
        self,
        *,
        job_ids: Sequence[str] = (),
        keep_last: int | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> int:
        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> int:
            cur = await conn.execute(
                _history.PRUNE, _history.prune_args(job_ids, keep_last, older_than, limit)
            )
            return cur.rowcount

        return await self._tx("prune", work, atomic=False)

    async def update_many(
        self, job_ids: Sequence[str], patch: JobPatch, *, runs: RunWrites | None = None
    ) -> builtins.list[Job]:
        patched: builtins.list[bool] = []

        def tracked(cur: Job) -> Job | None:
            patched.append(True)
            return patch(cur)

        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> builtins.list[Job]:
            written = await self._patch_jobs(conn, job_ids, tracked, notify=True)
            await self._write_history(conn, runs)
            return written

        return await self._tx("update", work, replayable=lambda: not patched)

    async def _patch_jobs(
        self,
        conn: psycopg.AsyncConnection[TupleRow],
        job_ids: Sequence[str],
        patch: Callable[[Job], Job | None],
        *,
        notify: bool,
    ) -> builtins.list[Job]:
        if not job_ids:
            return []
        cur = await conn.execute(
            "SELECT data FROM omnicron_jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (builtins.list(job_ids),),
        )
        changed = [j for j in (patch(decode_job(r[0])) for r in await cur.fetchall()) if j]
        if changed:
            await conn.execute(_UPDATE_JOBS, _job_columns(changed))
            if notify:
                await self._notify(conn, changed)
        return changed

    async def recover_running(self, *, owner: str = "") -> builtins.list[str]:
        """Jobs left ``running`` by this node's previous life (same node id) or with no run in
        flight at all; their fire rows are closed ``interrupted`` first, so a late finish is
        refused. Other nodes' expired or dead runs are taken back by the reaper."""
        await self._ensure_node(owner)
        me = self.node_id if self._fixed_node_id else (owner or self.node_id)
        mine = {fire for fire, _ in self._held.snapshot()}

        async def work(conn: psycopg.AsyncConnection[TupleRow]) -> builtins.list[str]:
            cur = await conn.execute(
                "UPDATE omnicron_fires SET state = 'interrupted', finished_at = now(), "
                "lease_owner = NULL, lease_until = NULL, "
                "error = 'interrupted: the node restarted during the run' "
                "WHERE state = 'running' AND lease_owner = %s AND NOT (id = ANY(%s)) "
                "RETURNING job_id",
                (me, builtins.list(mine)),
            )
            ids = {r[0] for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT j.id FROM omnicron_jobs j WHERE j.status = 'running' AND NOT EXISTS ("
                "SELECT 1 FROM omnicron_fires f WHERE f.job_id = j.id AND f.state = 'running')"
            )
            ids.update(r[0] for r in await cur.fetchall())
            return sorted(ids)

        ids = await self._tx("recover", work)
        await asyncio.to_thread(self._reap_once)
        return ids

    def _reap_once(self) -> None:
        try:
            with psycopg.connect(
                self.settings.conninfo, autocommit=True, **self._connect_kwargs("reaper")
            ) as conn:
                while self._reap(conn) == 500:
                    pass
        except psycopg.Error as exc:
            _log.warning("postgres.reap_failed", error=str(exc).strip()[:200])


_DUE = (
    "SELECT id, data, next_run_at FROM omnicron_jobs "
    "WHERE status = 'enabled' AND next_run_at <= %s "
    "ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED"
)

# A fire already recorded is not inserted again; one waiting for a retry ('retrying') is
# taken with the next attempt number (the new fencing token).
_INSERT_FIRES = (
    "INSERT INTO omnicron_fires AS f (job_id, scheduled_for, state, attempt, lease_owner, "
    "lease_until) "
    "SELECT u.job_id, u.fire, 'running', 1, %s, now() + %s * interval '1 second' "
    "FROM unnest(%b::text[], %b::timestamptz[]) AS u(job_id, fire) "
    "ON CONFLICT ON CONSTRAINT omnicron_fires_fire DO UPDATE SET state = 'running', "
    "attempt = f.attempt + 1, lease_owner = EXCLUDED.lease_owner, "
    "lease_until = EXCLUDED.lease_until, started_at = now(), finished_at = NULL, error = '' "
    "WHERE f.state = 'retrying' "
    "RETURNING f.id, f.job_id, f.attempt"
)

# Runs a finish starts (a buffered fire's turn, a retry's next attempt): the fire's row is
# taken with a new fencing token when it is not in flight elsewhere and not done (a retry
# follows its own failed attempt; a buffered fire's row may be ours from its claim).
_LEASE_STARTS = (
    "INSERT INTO omnicron_fires AS f (job_id, scheduled_for, state, attempt, lease_owner, "
    "lease_until) "
    "SELECT u.job_id, u.fire, 'running', 1, %s, now() + %s * interval '1 second' "
    "FROM unnest(%b::text[], %b::timestamptz[]) AS u(job_id, fire) "
    "ON CONFLICT ON CONSTRAINT omnicron_fires_fire DO UPDATE SET state = 'running', "
    "attempt = f.attempt + 1, lease_owner = EXCLUDED.lease_owner, "
    "lease_until = EXCLUDED.lease_until, started_at = now(), finished_at = NULL, error = '' "
    "WHERE f.state IN ('failed', 'retrying') "
    "OR (f.state = 'running' AND f.lease_owner = EXCLUDED.lease_owner) "
    "RETURNING f.id, f.job_id, f.scheduled_for, f.attempt"
)

_FINISH_FIRES = (
    "UPDATE omnicron_fires f SET state = u.state, error = u.error, finished_at = now(), "
    "lease_owner = NULL, lease_until = NULL "
    "FROM unnest(%b::bigint[], %b::int[], %b::text[], %b::text[], %b::text[]) "
    "AS u(id, attempt, owner, state, error) "
    "WHERE f.id = u.id AND f.attempt = u.attempt AND f.lease_owner = u.owner "
    "AND f.state = 'running' "
    "RETURNING f.job_id"
)

_UPDATE_JOBS = (
    "UPDATE omnicron_jobs j SET status = u.status, next_run_at = u.next_run_at, "
    "data = u.data, updated_at = now() "
    "FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[]) "
    "AS u(id, status, next_run_at, data) WHERE j.id = u.id"
)

_UPSERT_JOBS = (
    "INSERT INTO omnicron_jobs (id, status, next_run_at, data) "
    "SELECT u.id, u.status, u.next_run_at, u.data "
    "FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[]) "
    "AS u(id, status, next_run_at, data) "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, "
    "next_run_at = EXCLUDED.next_run_at, data = EXCLUDED.data, updated_at = now()"
)


_CLAIM = (
    "WITH fired AS (" + _INSERT_FIRES + "), written AS (" + _UPDATE_JOBS + ") "
    "SELECT id, job_id, attempt FROM fired"
)


def _job_columns(
    jobs: Sequence[Job],
) -> tuple[list[str], list[str], list[datetime | None], list[str]]:
    return (
        [j.id for j in jobs],
        [str(j.status) for j in jobs],
        [j.next_run_at for j in jobs],
        [_encode(j) for j in jobs],
    )
