"""The Store facade (cache, names of the original) and SQLite specifics; the backend contract
itself is tests/test_store_contract.py (omnicron_core.testing.StoreBackendContract)."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from omnicron_core import (
    Action,
    Duration,
    Job,
    JobNotFoundError,
    JobStatus,
    Schedule,
    Store,
    StoreConfig,
    StoreError,
    new_job,
)
from omnicron_core.backends.sqlite import MIGRATIONS


def _job(
    job_id: str, status: JobStatus = JobStatus.ENABLED, next_run: datetime | None = None
) -> Job:
    job = new_job(
        job_id,
        f"job {job_id}",
        Schedule(interval=Duration("1m")),
        Action(type="send_message", session_id="s", message="m"),
        metadata={"tags": ["a"]},
    )
    job.status = status
    job.next_run_at = next_run
    return job


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/jobs.db"
    s = Store(StoreConfig(url=url))
    yield s
    await s.close()


async def test_save_get_delete_list_count(store: Store) -> None:
    for i, status in enumerate([JobStatus.ENABLED, JobStatus.DISABLED, JobStatus.ENABLED]):
        await store.save(_job(f"j{2 - i}", status))
    assert [j.id for j in await store.list()] == ["j0", "j1", "j2"]
    assert [j.id for j in await store.list_enabled()] == ["j0", "j2"]
    assert [j.id for j in await store.list_by_status("disabled")] == ["j1"]
    assert await store.count() == 3
    assert await store.count(JobStatus.ENABLED) == 2
    got = await store.get("j1")
    assert got.status is JobStatus.DISABLED and got.metadata == {"tags": ["a"]}
    await store.delete("j1")
    await store.delete("never-existed")  # not an error, as in the original
    with pytest.raises(JobNotFoundError, match="job not found"):
        await store.get("j1")
    assert await store.count() == 2


async def test_cache_never_aliases(store: Store) -> None:
    job = _job("a")
    await store.save(job)
    job.name = "mutated after save"
    assert job.metadata is not None
    job.metadata["tags"].append("x")
    first = await store.get("a")
    assert first.name == "job a" and first.metadata == {"tags": ["a"]}
    first.name = "mutated after get"
    first.action.params["message"] = "changed"
    second = await store.get("a")
    assert second.name == "job a" and second.action.params["message"] == "m"
    assert second is not first


async def test_cache_answers_until_cleared_as_in_the_original(store: Store) -> None:
    await store.save(_job("a"))
    await store.backend.delete("a")  # behind the cache's back
    assert (await store.get("a")).id == "a"
    store.clear_cache()
    with pytest.raises(JobNotFoundError):
        await store.get("a")


async def test_unknown_scheme_names_the_installed_ones() -> None:
    with pytest.raises(
        StoreError, match=r"no store backend for URL 'redis://x'.*memory://.*sqlite://"
    ):
        await Store(StoreConfig(url="redis://x")).get("a")


async def test_sqlite_file_is_private_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "jobs.db"
    store = Store(StoreConfig(url=f"sqlite:///{path}"))
    await store.save(_job("a"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = path.with_name("jobs.db-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this omnicron understands"):
        await Store(StoreConfig(url=f"sqlite:///{path}")).count()


async def test_sqlite_absolute_and_relative_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rel = Store(StoreConfig(url="sqlite:///rel.db"))
    await rel.save(_job("a"))
    await rel.close()
    assert (tmp_path / "rel.db").exists()
    absolute = Store(StoreConfig(url=f"sqlite:///{tmp_path}/abs.db"))
    await absolute.save(_job("a"))
    await absolute.close()
    assert (tmp_path / "abs.db").exists()
    with pytest.raises(StoreError, match="synchronous"):
        await Store(StoreConfig(url="sqlite:///x.db?synchronous=sometimes")).count()


def test_a_save_that_returned_survives_kill_9(tmp_path: Path) -> None:
    """A child process saves jobs, reports each, and is killed with SIGKILL mid-stream."""
    path = tmp_path / "jobs.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from omnicron_core import Store, StoreConfig, new_job, Schedule, Action, Duration
        async def main():
            store = Store(StoreConfig(url="sqlite:///{path}"))
            i = 0
            while True:
                job = new_job(f"job-{{i}}", "n", Schedule(interval=Duration("1m")),
                              Action(type="send_message", session_id="s", message="m"))
                await store.save(job)
                print(job.id, flush=True)
                i += 1
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = [proc.stdout.readline().strip() for _ in range(200)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(path)
    stored = {row[0] for row in db.execute("SELECT id FROM jobs")}
    db.close()
    assert set(acknowledged) <= stored
