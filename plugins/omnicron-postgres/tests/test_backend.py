"""The PostgreSQL backend against a real server: settings, schema, claims, the fire key,
leases and fencing, the reaper, the clock, LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from omnicron_postgres import PostgresBackend
from omnicron_postgres._schema import MIGRATIONS
from omnicron_postgres.testing import TempPostgres
from structlog.testing import capture_logs

from omnicron_core import (
    Action,
    ExecutionResult,
    Job,
    JobStatus,
    Registry,
    Schedule,
    StoreError,
    get_plugin_manager,
    new_job,
)


def job(job_id: str, *, due: datetime | None = None, cron: str = "", **meta: str) -> Job:
    sched = Schedule(cron=cron) if cron else Schedule(once=due or datetime.now(UTC))
    j = new_job(
        job_id,
        job_id,
        sched,
        Action(type="send_message", session_id="s", message="m"),
        metadata=meta,
    )
    j.next_run_at = due or datetime.now(UTC) - timedelta(seconds=1)
    return j


def fired(at: datetime | None) -> ExecutionResult:
    """A successful result of the run for the fire at ``at``."""
    result = ExecutionResult.ok()
    result.started_at = datetime.now(UTC)
    result.scheduled_at = at
    return result


def running(j: Job) -> Job:
    j.status = JobStatus.RUNNING
    j.next_run_at = None
    return j


def finished(results: dict[str, ExecutionResult]) -> Callable[[Job], Job]:
    def patch(cur: Job) -> Job:
        cur.status = JobStatus.DISABLED
        cur.run_count += 1
        cur.last_error = results[cur.id].error
        return cur

    return patch


@pytest.fixture
async def make(pg_url: str) -> AsyncIterator[Callable[..., Any]]:
    opened: list[PostgresBackend] = []

    async def factory(**options: Any) -> PostgresBackend:
        backend = PostgresBackend.from_url(pg_url, options)
        await backend.open()
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        await backend.close()


def sql(url: str, query: str, params: Any = None) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


# -- settings ---------------------------------------------------------------------------------


def test_the_plugin_registers_both_schemes() -> None:
    backends = Registry(get_plugin_manager()).backends
    assert {"postgresql", "postgres"} <= set(backends)
    made = backends["postgres"].factory("postgres://u@db.example/x?lease=9", {})
    assert isinstance(made, PostgresBackend) and made.settings.lease == 9


def test_a_password_in_the_url_is_refused_and_never_shown() -> None:
    with pytest.raises(StoreError) as err:
        PostgresBackend.from_url("postgresql://app:s3cret@db/x", {})
    assert "s3cret" not in str(err.value)
    assert "app:***@db" in str(err.value) and "PGPASSWORD" in str(err.value)
    with pytest.raises(StoreError, match="password parameter"):
        PostgresBackend.from_url("postgresql://app@db/x?password=s3cret", {})


def test_options_are_checked_and_passwords_come_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreError, match=r"unknown postgres store option\(s\) \['leese'\]"):
        PostgresBackend.from_url("postgresql://db/x", {"leese": 3})
    with pytest.raises(StoreError, match="lease='soon' is not a number"):
        PostgresBackend.from_url("postgresql://db/x", {"lease": "soon"})
    with pytest.raises(StoreError, match="schema='Bad-Name'"):
        PostgresBackend.from_url("postgresql://db/x?schema=Bad-Name", {})
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    made = PostgresBackend.from_url("postgresql://app@db/x", {"password_file": str(secret)})
    assert made.settings.password == "from-file"
    assert "from-file" not in repr(made.settings)
    monkeypatch.setenv("DB_PW", "from-env")
    made = PostgresBackend.from_url("postgresql://app@db/x?password_env=DB_PW&sslmode=disable", {})
    assert made.settings.password == "from-env"
    assert made.settings.conninfo == "postgresql://app@db/x?sslmode=disable"
    with pytest.raises(StoreError, match="NOPE is not set"):
        PostgresBackend.from_url("postgresql://app@db/x", {"password_env": "NOPE"})


async def test_connection_errors_name_the_store_without_secrets(
    pg_server: TempPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PW", "hunter2")
    backend = PostgresBackend.from_url(
        f"postgresql://nobody@127.0.0.1:{pg_server.port}/nodb",
        {"password_env": "DB_PW", "connect_timeout": 1},
    )
    with pytest.raises(StoreError) as err:
        await backend.open()
    assert "hunter2" not in str(err.value) and "cannot connect" in str(err.value)


# -- schema -----------------------------------------------------------------------------------


async def test_nodes_starting_at_once_migrate_once(pg_server: TempPostgres, pg_schema: str) -> None:
    backends = [PostgresBackend.from_url(pg_server.url, {"schema": pg_schema}) for _ in range(4)]
    with capture_logs() as logs:
        await asyncio.gather(*(b.open() for b in backends))
    for b in backends:
        await b.close()
    # one node applied each migration once
    migrated = [e["version"] for e in logs if e["event"] == "postgres.migrated"]
    assert migrated == list(range(1, len(MIGRATIONS) + 1))
    rows = sql(pg_server.url, f'SELECT version FROM "{pg_schema}".omnicron_schema')
    assert rows == [(len(MIGRATIONS),)]
    # a schema from a newer omnicron-postgres is refused, not touched
    sql(pg_server.url, f'UPDATE "{pg_schema}".omnicron_schema SET version = 99')
    newer = PostgresBackend.from_url(pg_server.url, {"schema": pg_schema})
    with pytest.raises(StoreError, match="schema version 99, newer"):
        await newer.open()


async def test_sessions_bound_locks_idle_transactions_and_dead_peers(
    make: Callable[..., Any],
) -> None:
    backend = await make()
    async with backend.pool.connection() as conn:
        got = {}
        for name in (
            "lock_timeout",
            "idle_in_transaction_session_timeout",
            "tcp_keepalives_idle",
            "TimeZone",
        ):
            cur = await conn.execute(f"SHOW {name}")
            row = await cur.fetchone()
            assert row is not None
            got[name] = row[0]
        client = conn.info.get_parameters()
    assert client["keepalives_idle"] == "10" and client["keepalives_count"] == "3"
    assert got == {
        "lock_timeout": "5s",
        "idle_in_transaction_session_timeout": "30s",
        "tcp_keepalives_idle": "10",  # the server drops a vanished node's session too
        "TimeZone": "UTC",
    }


# -- records ----------------------------------------------------------------------------------


async def test_crud_and_queries(make: Callable[..., Any]) -> None:
    b = await make()
    a = job("a", team="x")
    c = job("c", due=datetime.now(UTC) + timedelta(hours=1))
    await b.save_many([c, a, job("b", team="1")])
    got = await b.get("a")
    assert got is not None and got.metadata == {"team": "x"} and got is not a
    assert [j.id for j in await b.list()] == ["a", "b", "c"]
    assert [j.id for j in await b.list_by_metadata("team", "x")] == ["a"]
    assert await b.count() == 3 and await b.count(JobStatus.DISABLED) == 0
    assert await b.next_due_at() == a.next_run_at
    assert await b.delete("b") and not await b.delete("b")
    assert await b.get("b") is None


async def test_two_nodes_claim_disjoint_sets(make: Callable[..., Any]) -> None:
    b1, b2 = await make(), await make()
    await b1.save_many([job(f"j{i:03}") for i in range(300)])
    now = await b1.now()
    got = await asyncio.gather(
        *(b.claim_due(now, 40, running, owner=f"n{k}") for k in range(4) for b in (b1, b2))
    )
    ids = [j.id for batch in got for j in batch]
    assert len(ids) == len(set(ids)) > 0
    rest = await b1.claim_due(now, 1000, running, owner="n9")
    assert sorted(ids + [j.id for j in rest]) == [f"j{i:03}" for i in range(300)]
    rows = sql(b1.settings.conninfo, "SELECT count(*), count(DISTINCT job_id) FROM omnicron_fires")
    assert rows == [(300, 300)]


async def test_a_fire_that_already_ran_is_not_run_again(make: Callable[..., Any]) -> None:
    b = await make()
    due = datetime.now(UTC) - timedelta(seconds=5)
    await b.save(job("once", due=due))
    now = await b.now()
    assert [j.id for j in await b.claim_due(now, 10, running)] == ["once"]
    await b.finish_runs(["once"], finished({"once": ExecutionResult.ok()}), {"once": [fired(due)]})
    # something puts the job back on the same fire time (a re-save, a restored backup):
    # the unique (job, fire time) key keeps it from running twice
    await b.save(job("once", due=due))
    assert await b.claim_due(now, 10, running) == []
    stored = await b.get("once")
    assert stored is not None and stored.status == JobStatus.DISABLED
    rows = sql(b.settings.conninfo, "SELECT state, attempt FROM omnicron_fires")
    assert rows == [("succeeded", 1)]


# -- leases, fencing, reaper ------------------------------------------------------------------


async def stall(backend: PostgresBackend) -> None:
    """Stop a backend's node thread (no more renewals, heartbeats or reaping)."""
    backend._stop.set()
    if backend._maint is not None:
        await asyncio.to_thread(backend._maint.join, 10)


async def until(cond: Callable[[], bool], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not cond():
        assert loop.time() - t0 < within, "condition not reached"
        await asyncio.sleep(0.1)


async def test_a_late_finish_after_the_lease_was_taken_back_is_refused(
    make: Callable[..., Any],
) -> None:
    a = await make(lease=30)
    b = await make(lease=30)
    await a.save(job("j", cron="*/5 * * * * *"))
    stored = await a.get("j")
    assert stored is not None
    ok = fired(stored.next_run_at)
    claimed = await a.claim_due(await a.now(), 10, running, owner="node-a")
    assert [j.id for j in claimed] == ["j"]
    # a stalls (its node thread stops renewing) and its lease runs out: b's reaper takes
    # the run back
    await stall(a)
    sql(a.settings.conninfo, "UPDATE omnicron_fires SET lease_until = now() - interval '1s'")
    await b.claim_due(await b.now(), 10, running, owner="node-b")  # starts b's node
    await until(
        lambda: sql(a.settings.conninfo, "SELECT state FROM omnicron_fires") == [("interrupted",)]
    )
    taken = await b.get("j")
    assert taken is not None and taken.status == JobStatus.ENABLED
    assert taken.last_error == "interrupted: lease expired on node node-a"
    with capture_logs() as logs:
        written = await a.finish_runs(["j"], finished({"j": ExecutionResult.ok()}), {"j": [ok]})
    assert written == []
    assert any(e["event"] == "postgres.finish_refused" for e in logs)
    after = await a.get("j")
    assert after is not None and after.run_count == 0 and after.status == JobStatus.ENABLED
    assert a.stats()["finishes_refused_total"] == 1
    assert sql(a.settings.conninfo, "SELECT state FROM omnicron_fires") == [("interrupted",)]


async def test_leases_are_renewed_while_the_event_loop_is_blocked(
    make: Callable[..., Any],
) -> None:
    a = await make(lease=3)
    await a.save(job("slow"))
    await a.claim_due(await a.now(), 10, running, owner="node-a")
    first = sql(a.settings.conninfo, "SELECT lease_until FROM omnicron_fires")[0][0]
    # an action that blocks the event loop past the lease: the node thread renews regardless
    time.sleep(3.5)  # noqa: ASYNC251 - blocking the loop is the point
    second = sql(a.settings.conninfo, "SELECT lease_until, state FROM omnicron_fires")[0]
    assert second[0] > first and second[1] == "running"


async def test_a_dead_nodes_runs_are_taken_back_before_its_lease_ends(
    make: Callable[..., Any], pg_url: str
) -> None:
    # a real process claims with a 60 s lease, then dies (kill -9 semantics: os._exit)
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from datetime import UTC, datetime, timedelta
        from omnicron_core import JobStatus
        from omnicron_postgres import PostgresBackend

        def mark(j):
            j.status = JobStatus.RUNNING
            return j

        async def main():
            b = PostgresBackend.from_url({pg_url!r}, {{"lease": 60}})
            await b.open()
            got = await b.claim_due(datetime.now(UTC), 10, mark, owner="doomed")
            print(len(got), flush=True)
            await asyncio.sleep(0.5)  # the node thread takes its liveness lock
            os._exit(9)

        asyncio.run(main())
        """
    )
    survivor = await make(lease=60, heartbeat=0.5)
    await survivor.save_many([job(f"d{i}", cron="* * * * *") for i in range(5)])
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "5", out.stderr
    await survivor.claim_due(await survivor.now(), 1, running, owner="survivor")  # starts its node
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while True:
        states = sql(pg_url, "SELECT DISTINCT state FROM omnicron_fires")
        if states == [("interrupted",)]:
            break
        assert loop.time() - t0 < 30, f"not reaped; lease is 60 s: {states}"
        await asyncio.sleep(0.2)
    jobs = await survivor.list()
    assert all(j.status == JobStatus.ENABLED for j in jobs)
    assert {j.last_error for j in jobs} == {"interrupted: node doomed is gone"}


async def test_retry_interrupted_runs_the_same_fire_again_with_a_new_token(
    make: Callable[..., Any],
) -> None:
    a = await make(retry_interrupted=True)
    await a.save(job("r"))
    fire = (await a.get("r")).next_run_at  # type: ignore[union-attr]
    await a.claim_due(await a.now(), 10, running, owner="node-a")
    await stall(a)
    sql(a.settings.conninfo, "UPDATE omnicron_fires SET lease_until = now() - interval '1s'")
    await a.recover_running(owner="other")
    assert sql(a.settings.conninfo, "SELECT state FROM omnicron_fires") == [("retrying",)]
    a._held = type(a._held)()
    again = await a.claim_due(await a.now(), 10, running, owner="node-a")
    assert [j.id for j in again] == ["r"]
    rows = sql(a.settings.conninfo, "SELECT scheduled_for, state, attempt FROM omnicron_fires")
    assert rows == [(fire, "running", 2)]


# -- clock, notifications, cut-off ------------------------------------------------------------


async def test_fires_send_no_notification_and_changes_send_one(
    make: Callable[..., Any], pg_url: str
) -> None:
    b = await make()
    listener = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    async with listener:
        await listener.execute(f'LISTEN "{b._channel}"')
        notes: list[str] = []

        async def drain() -> None:
            # a round trip delivers whatever arrived before it
            await listener.execute("SELECT 1")
            gen = listener.notifies(timeout=0.3)
            notes.extend([n.payload async for n in gen])

        await b.save_many([job(f"f{i}", cron="* * * * * *") for i in range(20)])
        await drain()
        assert len(notes) == 1  # one change (due soon): one notification, not one per job
        notes.clear()
        for _ in range(3):  # claim and finish every job's fire: no notification
            claimed = await b.claim_due(await b.now() + timedelta(seconds=2), 100, running)
            results = {j.id: [fired(None)] for j in claimed}

            def back(cur: Job) -> Job:
                cur.status = JobStatus.ENABLED
                cur.next_run_at = datetime.now(UTC) + timedelta(seconds=1)
                return cur

            await b.finish_runs([j.id for j in claimed], back, results)
        await drain()
        assert notes == []
        await b.update_many(["f0"], back)  # a change again (due within the horizon)
        await drain()
        assert len(notes) == 1


async def test_now_is_the_database_clock(make: Callable[..., Any]) -> None:
    b = await make()
    mine = await b.now()
    server = sql(b.settings.conninfo, "SELECT clock_timestamp()")[0][0]
    assert abs((server - mine).total_seconds()) < 1.0
    b._offset = timedelta(hours=2)  # as if this machine's clock were two hours behind
    assert (await b.now() - datetime.now(UTC)) > timedelta(hours=1, minutes=59)


async def test_changes_from_another_process_wake_the_node_and_survive_a_dropped_listener(
    make: Callable[..., Any],
) -> None:
    node, writer = await make(), await make()
    woken: list[float] = []
    node.watch(lambda: woken.append(1))
    loop = asyncio.get_running_loop()

    async def wait_wakes(n: int) -> None:
        t0 = loop.time()
        while len(woken) < n:
            assert loop.time() - t0 < 10
            await asyncio.sleep(0.02)

    await wait_wakes(1)  # connected: one wake for the re-read
    await writer.save(job("new"))
    await wait_wakes(2)
    # the listening session is cut (pg_terminate_backend): it reconnects, wakes to re-read,
    # and hears later changes
    sql(
        node.settings.conninfo,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name LIKE 'omnicron listen%'",
    )
    await wait_wakes(3)
    await writer.save(job("newer"))
    await wait_wakes(4)
    node.watch(None)


async def test_a_node_cut_off_from_the_database_stops_claiming_and_says_so(
    make: Callable[..., Any],
) -> None:
    b = await make(lease=30)
    await b.save(job("x"))
    await b.claim_due(await b.now(), 0, running, owner="n")  # starts the node
    b._last_contact -= 60  # as if no heartbeat got through for a minute
    b._stop.set()  # and none will
    with capture_logs() as logs:
        assert await b.claim_due(await b.now(), 10, running, owner="n") == []
    assert [e["event"] for e in logs] == ["postgres.cut_off"]


async def test_exists_and_check_are_read_only_probes(pg_url: str) -> None:
    fresh = PostgresBackend.from_url(pg_url, {"schema": "probe"})
    assert await fresh.exists() is False
    assert await fresh.check() == ["no omnicron schema in 'probe' (never opened?)"]
    assert await fresh.exists() is False  # the probes created nothing
    await fresh.open()
    try:
        await fresh.save(job("ok"))
        assert await fresh.exists() is True
        assert await fresh.check() == []
        sql(pg_url, "UPDATE probe.omnicron_jobs SET status = 'disabled' WHERE id = 'ok'")
        sql(
            pg_url,
            "INSERT INTO probe.omnicron_jobs (id, status, data) VALUES ('bad', 'enabled', '{')",
        )
        problems = await fresh.check()
        assert len(problems) == 2
        assert problems[0].startswith("job 'bad': stored JSON does not decode")
        assert problems[1].startswith("job 'ok': columns (status=disabled")
    finally:
        await fresh.close()
