"""``sqlite:///path``: the embedded default store, one SQLite file in WAL mode.

- The file (and its WAL) is created with mode 0600: job definitions are private.
- A save that returned is committed to the WAL, so it survives ``kill -9`` of the process
  (``synchronous=NORMAL``); ``?synchronous=full`` also survives power loss, at an fsync a
  commit.
- The schema is versioned with ``PRAGMA user_version`` and migrated forward on open.
- Columns ``status`` and ``next_run_at`` mirror the job JSON so "what is due" is an indexed
  range scan; the JSON (Go-compatible field names) is the record.
- Calls run on the event loop's thread: they are short local I/O, and one connection is
  not shared between threads.

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._backend import JobPatch, StoreBackend
from .._errors import StoreError
from .._files import create_private_file
from .._models import Job, JobStatus, decode_job, fast_encode

__all__ = ["MIGRATIONS", "SQLiteBackend"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

#: Schema migrations, applied in order; ``PRAGMA user_version`` is the count applied.
MIGRATIONS: tuple[str, ...] = (
    # 1: jobs keyed by id; JSON record plus indexed mirrors of status and next_run_at;
    #    lease columns reserved for claims by several processes.
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        next_run_at INTEGER,
        lease_owner TEXT,
        lease_until INTEGER,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX jobs_due ON jobs (next_run_at) WHERE status = 'enabled';
    CREATE INDEX jobs_status ON jobs (status);
    """,
    # 2: one (status, next_run_at) index serves "what is due", "when is the next fire" and
    #    listing by status; with the two above, the planner picked the status index and
    #    sorted every enabled row (measured: 320 ms per due query at 1M jobs, now 0.02 ms).
    """
    CREATE INDEX jobs_status_due ON jobs (status, next_run_at);
    DROP INDEX jobs_due;
    DROP INDEX jobs_status;
    """,
)

_SYNC_MODES = {"off", "normal", "full", "extra"}
_CHUNK = 500


def _ts(dt: datetime | None) -> int | None:
    return None if dt is None else (dt - _EPOCH) // _US


def _row(job: Job) -> tuple[str, int | None, bytes, str]:
    return (str(job.status), _ts(job.next_run_at), fast_encode(job), job.id)


class SQLiteBackend(StoreBackend):
    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "normal") -> None:
        self.path = str(path)
        if synchronous.lower() not in _SYNC_MODES:
            raise StoreError(
                f"sqlite synchronous={synchronous!r} is not allowed; use one of "
                f"{', '.join(sorted(_SYNC_MODES))}"
            )
        self.synchronous = synchronous.lower()
        self.external_writers = self.path != ":memory:"
        self._db: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any]) -> SQLiteBackend:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(
                f"sqlite URL {url!r} has a host; use sqlite:///relative.db or sqlite:////abs.db"
            )
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise StoreError(f"sqlite URL {url!r} names no file; e.g. sqlite:///omnicron.db")
        if "\x00" in path:
            raise StoreError(f"sqlite URL {url!r} names a file with a NUL character")
        opts = dict(parse_qsl(parts.query))
        opts.update({k: str(v) for k, v in options.items()})
        unknown = set(opts) - {"synchronous"}
        if unknown:
            raise StoreError(f"unknown sqlite option(s) {sorted(unknown)}; allowed: synchronous")
        return cls(path, synchronous=opts.get("synchronous", "normal"))

    # -- connection ---------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("sqlite store is not open (or was closed)")
        return self._db

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            try:
                create_private_file(self.path)
            except OSError as exc:
                raise StoreError(
                    f"cannot create sqlite store {self.path!r}: {exc.strerror}"
                    + (f" ({exc.filename})" if exc.filename else "")
                ) from exc
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            db.execute("PRAGMA busy_timeout=10000")
            self._db = db
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db = None
            raise StoreError(f"cannot open sqlite store {self.path!r}: {exc}") from exc

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"sqlite store {self.path!r} has schema version {version}, newer than this "
                f"omnicron understands ({len(MIGRATIONS)}); upgrade omnicron"
            )
        for number in range(version, len(MIGRATIONS)):
            with self._tx() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number + 1}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- records ------------------------------------------------------------------------

    _UPSERT = (
        "INSERT INTO jobs (status, next_run_at, data, id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
        "next_run_at = excluded.next_run_at, data = excluded.data"
    )

    async def save(self, job: Job) -> None:
        self.db.execute(self._UPSERT, _row(job))

    async def save_many(self, jobs: Sequence[Job]) -> None:
        with self._tx() as db:
            db.executemany(self._UPSERT, [_row(job) for job in jobs])

    async def get(self, job_id: str) -> Job | None:
        row = self.db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else decode_job(row[0])

    async def delete(self, job_id: str) -> bool:
        return self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    async def list(self, status: JobStatus | None = None) -> builtins.list[Job]:
        if status is None:
            rows = self.db.execute("SELECT data FROM jobs ORDER BY id")
        else:
            rows = self.db.execute(
                "SELECT data FROM jobs WHERE status = ? ORDER BY id", (str(status),)
            )
        return [decode_job(r[0]) for r in rows]

    async def list_by_metadata(self, key: str, value: str) -> builtins.list[Job]:
        # JSON1 filters in SQLite: only matching rows are decoded
        if '"' in key or "\\" in key:
            raise ValueError(f"metadata key {key!r} may not contain quotes or backslashes")
        path = f'$.metadata."{key}"'
        rows = self.db.execute(
            "SELECT data FROM jobs WHERE json_extract(data, ?) = ? ORDER BY id", (path, value)
        )
        return [decode_job(r[0]) for r in rows]

    async def count(self, status: JobStatus | None = None) -> int:
        if status is None:
            return int(self.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = ?", (str(status),)
            ).fetchone()[0]
        )

    async def next_due_at(self) -> datetime | None:
        row = self.db.execute(
            "SELECT MIN(next_run_at) FROM jobs WHERE status = 'enabled'"
        ).fetchone()
        return None if row[0] is None else _EPOCH + timedelta(microseconds=row[0])

    _UPDATE = "UPDATE jobs SET status = ?, next_run_at = ?, data = ? WHERE id = ?"

    async def claim_due(
        self, now: datetime, limit: int, mark: Callable[[Job], Job], *, owner: str = ""
    ) -> builtins.list[Job]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT data FROM jobs WHERE status = 'enabled' AND next_run_at <= ? "
                "ORDER BY next_run_at LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
            if not rows:
                return []
            jobs = [mark(decode_job(r[0])) for r in rows]
            db.executemany(self._UPDATE, [_row(job) for job in jobs])
        return jobs

    async def update_many(self, job_ids: Sequence[str], patch: JobPatch) -> builtins.list[Job]:
        out: builtins.list[Job] = []
        with self._tx() as db:
            for start in range(0, len(job_ids), _CHUNK):
                chunk = list(job_ids[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = db.execute(f"SELECT data FROM jobs WHERE id IN ({marks})", chunk)
                changed = [j for j in (patch(decode_job(r[0])) for r in rows.fetchall()) if j]
                if changed:
                    db.executemany(self._UPDATE, [_row(job) for job in changed])
                    out.extend(changed)
        return out

    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        rows = self.db.execute(
            "SELECT data FROM jobs WHERE status = 'enabled' AND next_run_at IS NULL LIMIT ?",
            (limit,),
        )
        return [decode_job(r[0]) for r in rows]

    async def recover_running(self, *, owner: str = "") -> builtins.list[str]:
        rows = self.db.execute("SELECT id FROM jobs WHERE status = 'running'")
        return [r[0] for r in rows]
