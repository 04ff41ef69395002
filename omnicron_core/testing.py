"""Kits for plugin authors: :class:`StoreBackendContract`, the store backend conformance tests.

Subclass it in your backend's test suite and override one fixture, ``store_target``, that gives
a *fresh, empty* store for each test::

    import pytest
    from omnicron_core.testing import StoreBackendContract, StoreTarget

    class TestJsonFileStore(StoreBackendContract):
        @pytest.fixture
        def store_target(self, tmp_path):
            return StoreTarget(url=f"jsonfile:///{tmp_path}/jobs.json")

For a server database, give each test a fresh database or schema and drop it after::

    class TestPostgresStore(StoreBackendContract):
        @pytest.fixture
        def store_target(self, pg_server):
            url = pg_server.create_database()           # your own helper
            yield StoreTarget(url=url)
            pg_server.drop_database(url)

What the kit needs is plain ``pytest`` (no asyncio plugin: every test runs its scenario in a new
event loop with :func:`asyncio.run`). The backend is built from ``url`` and ``options`` by the
installed plugin that registers the URL's scheme (``omnicron_store_backends``), or by
``StoreTarget.factory`` when given. Tests that need a second process (a backend that declares
``external_writers`` or ``shared``) start ``sys.executable`` with the same ``url`` and
``options``; the child finds the backend through its entry point, or through
``StoreTarget.child_factory`` (``"package.module:callable"``), with ``StoreTarget.env`` added to
its environment. Each test's docstring says which rule of ``docs/stores.md`` it holds the
backend to; select or deselect them with ``-k`` as usual.

What it covers: CRUD, the ownership rule (no aliasing in or out), listing and counting with
their filters and order, metadata filters, ``claim_due`` (exclusive, earliest first, limit,
only enabled and due, a claimed job not returned until written back), ``update_many`` patch
semantics (``None`` leaves a job untouched, the patch sees the current stored version, unknown
ids are skipped), ``unscheduled``, ``recover_running``, ``next_due_at``, persistence across a
close, the integrity check, and, for backends that declare other writers or several
schedulers, a second real process writing while the first runs a Scheduler, and two processes
claiming at once; for a backend that keeps run history (``keeps_history``), the history cases
of :mod:`omnicron_core.testing_history` (records in the job's transaction, the unique fire key,
paging, retention, recovery of running records).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from ._backend import StoreBackend
from ._models import ExecutionResult, Job, JobStatus, decode_job
from .testing_history import RunHistoryContract

__all__ = ["StoreBackendContract", "StoreTarget", "make_test_job"]

#: The action type of the kit's jobs; the Scheduler test runs them with a handler.
ACTION_TYPE = "contract.noop"


@dataclass(frozen=True)
class StoreTarget:
    """Where the store under test lives, as a fresh empty store.

    - ``url``/``options``: what ``StoreConfig(url=..., options=...)`` would hold; a second
      process opens the same store from them.
    - ``factory``: builds the backend (default: the installed plugin for the URL's scheme).
    - ``child_factory``: ``"module:callable"`` a child process imports to build the backend
      (default: the installed plugin for the scheme).
    - ``env``: extra environment for child processes (``PYTHONPATH``, credentials).
    - ``persistent``: jobs outlive :meth:`StoreBackend.close` (False for ``memory://``).
    - ``cross_process_claims``: also run the two-process claim test on a backend that is not
      ``shared`` (SQLite does: its claim is one write transaction).
    """

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    factory: Callable[[str, Mapping[str, Any]], StoreBackend] | None = None
    child_factory: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    persistent: bool = True
    cross_process_claims: bool = False

    def make(self) -> StoreBackend:
        if self.factory is not None:
            return self.factory(self.url, dict(self.options))
        from ._store import make_backend

        return make_backend(self.url, self.options)


def make_test_job(
    job_id: str,
    *,
    status: JobStatus | str = JobStatus.ENABLED,
    next_run_at: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    interval: str = "1m",
    once: datetime | None = None,
) -> Job:
    """A small valid job built from JSON (as any backend would read it back)."""
    schedule: dict[str, Any] = {"once": once.isoformat()} if once else {"interval": interval}
    data: dict[str, Any] = {
        "id": job_id,
        "name": f"job {job_id}",
        "schedule": schedule,
        "action": {"type": ACTION_TYPE},
        "status": str(JobStatus(status)),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    if next_run_at is not None:
        data["next_run_at"] = next_run_at.isoformat()
    if metadata is not None:
        data["metadata"] = metadata
    return decode_job(msgspec.json.encode(data))


def _mark(job: Job) -> Job:
    job.status = JobStatus.RUNNING
    job.next_run_at = None
    return job


def _now() -> datetime:
    # whole milliseconds: some databases keep microseconds, none keeps more
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_CHILD = textwrap.dedent(
    """
    import sys
    from omnicron_core.testing import _child_main
    _child_main(sys.argv[1])
    """
)


def _child_main(spec_json: str) -> None:
    """Entry of the kit's child processes: open the store from url/options and do ``mode``."""
    spec = json.loads(spec_json)
    asyncio.run(_child(spec))


def _child_backend(spec: Mapping[str, Any]) -> StoreBackend:
    if spec["child_factory"]:
        module, _, name = spec["child_factory"].partition(":")
        factory = getattr(importlib.import_module(module), name)
        backend: StoreBackend = factory(spec["url"], spec["options"])
        return backend
    from ._store import make_backend

    return make_backend(spec["url"], spec["options"])


async def _child(spec: Mapping[str, Any]) -> None:
    backend = _child_backend(spec)
    await backend.open()
    try:
        if spec["mode"] == "write":
            # what `omnicron jobs add/update/remove` does next to a running scheduler
            now = datetime.now(UTC)
            for i in range(spec["count"]):
                await backend.save(make_test_job(f"child-{i:03d}", next_run_at=now))
                print(f"saved child-{i:03d}", flush=True)

            def rename(job: Job) -> Job:
                job.name = "renamed by the child"
                return job

            await backend.update_many(["child-000"], rename)
            await backend.delete("child-001")
            print("done", flush=True)
        elif spec["mode"] == "claim":
            taken: list[str] = []
            idle = 0
            while idle < 3:
                got = await backend.claim_due(
                    datetime.now(UTC), spec["limit"], _mark, owner=spec["owner"]
                )
                taken += [j.id for j in got]
                idle = 0 if got else idle + 1
                await asyncio.sleep(0)
            print(json.dumps(taken), flush=True)
    finally:
        await backend.close()


Scenario = Callable[[StoreBackend], Awaitable[None]]


class StoreBackendContract(RunHistoryContract):
    """The conformance tests of a store backend; see the module docstring. The run-history
    cases (:class:`~omnicron_core.testing_history.RunHistoryContract`) run when the backend
    sets ``keeps_history`` and are skipped otherwise."""

    @pytest.fixture
    def store_target(self) -> StoreTarget:
        """Override: a fresh empty store for each test."""
        pytest.fail("override the store_target fixture to return a StoreTarget")

    # -- helpers ------------------------------------------------------------------------

    def run(self, target: StoreTarget, scenario: Scenario) -> None:
        """Open a backend for ``target``, run ``scenario`` on it in a new loop, close it."""

        async def go() -> None:
            backend = target.make()
            await backend.open()
            try:
                await scenario(backend)
            finally:
                await backend.close()

        asyncio.run(go())

    def child(self, target: StoreTarget, mode: str, **params: Any) -> subprocess.Popen[str]:
        spec = {
            "url": target.url,
            "options": dict(target.options),
            "child_factory": target.child_factory,
            "mode": mode,
            **params,
        }
        return subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **target.env},
        )

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"child process failed ({proc.returncode}):\n{err}"
        return out

    # -- CRUD ---------------------------------------------------------------------------

    def test_save_get_round_trip(self, store_target: StoreTarget) -> None:
        """A saved job reads back equal, with aware datetimes, metadata and run state."""

        async def scenario(b: StoreBackend) -> None:
            at = _now() + timedelta(minutes=5)
            job = make_test_job("a", next_run_at=at, metadata={"k": "v", "n": [1, {"x": 2}]})
            job.run_count, job.last_error = 3, "boom"
            await b.save(job)
            got = await b.get("a")
            assert got is not None
            assert got == job
            assert got.next_run_at == at and got.next_run_at.tzinfo is not None
            assert await b.get("missing") is None

        self.run(store_target, scenario)

    def test_save_replaces_and_delete_reports(self, store_target: StoreTarget) -> None:
        """``save`` of an existing id replaces it; ``delete`` says whether there was one."""

        async def scenario(b: StoreBackend) -> None:
            await b.save(make_test_job("a"))
            second = make_test_job("a", status=JobStatus.DISABLED)
            second.name = "second"
            await b.save(second)
            got = await b.get("a")
            assert got is not None and got.name == "second" and got.status == JobStatus.DISABLED
            assert await b.count() == 1
            assert await b.delete("a") is True
            assert await b.delete("a") is False
            assert await b.get("a") is None and await b.count() == 0

        self.run(store_target, scenario)

    def test_list_and_count_filter_by_status_ordered_by_id(self, store_target: StoreTarget) -> None:
        """``list`` is ordered by id and filters by status; ``count`` agrees with it."""

        async def scenario(b: StoreBackend) -> None:
            statuses = {
                "c": JobStatus.ENABLED,
                "a": JobStatus.DISABLED,
                "d": JobStatus.RUNNING,
                "b": JobStatus.ENABLED,
            }
            await b.save_many([make_test_job(i, status=s) for i, s in statuses.items()])
            assert [j.id for j in await b.list()] == ["a", "b", "c", "d"]
            assert [j.id for j in await b.list(JobStatus.ENABLED)] == ["b", "c"]
            assert [j.id for j in await b.list(JobStatus.RUNNING)] == ["d"]
            assert await b.count() == 4
            assert await b.count(JobStatus.ENABLED) == 2
            assert await b.count(JobStatus.DISABLED) == 1

        self.run(store_target, scenario)

    def test_list_by_metadata_matches_string_values_only(self, store_target: StoreTarget) -> None:
        """``list_by_metadata(key, value)`` returns jobs whose ``metadata[key] == value`` (a
        string equal to the string), ordered by id; keys may contain dots."""

        async def scenario(b: StoreBackend) -> None:
            await b.save_many(
                [
                    make_test_job("z", metadata={"omnicron.source": "config"}),
                    make_test_job("y", metadata={"omnicron.source": "api"}),
                    make_test_job("x"),
                    make_test_job("w", metadata={"omnicron.source": "config", "n": 1}),
                    make_test_job("v", metadata={"n": 1}),
                    make_test_job("u", metadata={"omnicron": {"source": "config"}}),
                ]
            )
            found = await b.list_by_metadata("omnicron.source", "config")
            assert [j.id for j in found] == ["w", "z"]
            assert await b.list_by_metadata("omnicron.source", "none") == []
            assert await b.list_by_metadata("n", "1") == []  # 1 is not "1"

        self.run(store_target, scenario)

    def test_save_many_and_update_many_handle_large_batches(
        self, store_target: StoreTarget
    ) -> None:
        """Batches larger than any driver's parameter limit are written whole."""

        async def scenario(b: StoreBackend) -> None:
            ids = [f"j{i:05d}" for i in range(1500)]
            await b.save_many([make_test_job(i) for i in ids])
            assert await b.count() == 1500

            def bump(job: Job) -> Job:
                job.run_count += 1
                return job

            done = await b.update_many(ids, bump)
            assert sorted(j.id for j in done) == ids
            assert all(j.run_count == 1 for j in await b.list())

        self.run(store_target, scenario)

    def test_data_survives_close_and_reopen(self, store_target: StoreTarget) -> None:
        """A persistent store keeps its jobs and their state across close/open."""
        if not store_target.persistent:
            pytest.skip("the store is not persistent")
        at = _now() + timedelta(hours=1)

        async def write(b: StoreBackend) -> None:
            await b.save(make_test_job("kept", next_run_at=at))
            await b.save(make_test_job("off", status=JobStatus.DISABLED))

        async def read(b: StoreBackend) -> None:
            assert await b.exists() is True
            got = await b.get("kept")
            assert got is not None and got.next_run_at == at
            assert await b.next_due_at() == at
            assert await b.count(JobStatus.DISABLED) == 1

        self.run(store_target, write)
        self.run(store_target, read)

    def test_check_finds_nothing_wrong_with_a_healthy_store(
        self, store_target: StoreTarget
    ) -> None:
        """``check`` reports no problem on a store this backend wrote."""

        async def scenario(b: StoreBackend) -> None:
            await b.save_many([make_test_job(f"j{i}") for i in range(20)])
            assert await b.check() == []

        self.run(store_target, scenario)

    # -- ownership ----------------------------------------------------------------------

    def test_no_aliasing_into_the_store(self, store_target: StoreTarget) -> None:
        """Mutating a job after handing it to ``save``/``save_many`` does not change the
        store (the backend keeps no reference to a job it was given)."""

        async def scenario(b: StoreBackend) -> None:
            one = make_test_job("one", metadata={"tags": ["a"]})
            many = [make_test_job("two", metadata={"tags": ["a"]})]
            await b.save(one)
            await b.save_many(many)
            for job in (one, many[0]):
                job.name = "mutated"
                assert job.metadata is not None
                job.metadata["tags"].append("x")
                job.status = JobStatus.DISABLED
            for job_id in ("one", "two"):
                got = await b.get(job_id)
                assert got is not None
                assert got.name == f"job {job_id}" and got.metadata == {"tags": ["a"]}
                assert got.status == JobStatus.ENABLED

        self.run(store_target, scenario)

    def test_no_aliasing_out_of_the_store(self, store_target: StoreTarget) -> None:
        """Every job a backend returns is the caller's: mutating it (from ``get``, ``list``,
        ``list_by_metadata``, ``claim_due``, ``update_many``, ``unscheduled``) changes nothing
        stored, and two reads never return the same object."""

        async def scenario(b: StoreBackend) -> None:
            due = _now() - timedelta(seconds=1)
            await b.save(make_test_job("a", metadata={"k": "v", "tags": ["a"]}))
            await b.save(make_test_job("due", next_run_at=due))

            def spoil(job: Job) -> None:
                job.name = "spoiled"
                job.metadata = {"k": "spoiled"}

            first, second = await b.get("a"), await b.get("a")
            assert first is not None and second is not None and first is not second
            spoil(first)
            for job in await b.list():
                spoil(job)
            for job in await b.list_by_metadata("k", "v"):
                spoil(job)
            for job in await b.unscheduled(10):
                spoil(job)

            def keep(job: Job) -> Job:
                return job

            for job in await b.update_many(["a"], keep):
                spoil(job)
            got = await b.get("a")
            assert got is not None and got.name == "job a"
            assert got.metadata == {"k": "v", "tags": ["a"]}

            claimed = await b.claim_due(_now(), 10, _mark)
            assert [j.id for j in claimed] == ["due"]
            spoil(claimed[0])
            claimed[0].status = JobStatus.ENABLED
            stored = await b.get("due")
            assert stored is not None and stored.name == "job due"
            assert stored.status == JobStatus.RUNNING

        self.run(store_target, scenario)

    # -- the fire path ------------------------------------------------------------------

    def test_claim_due_takes_enabled_due_jobs_earliest_first(
        self, store_target: StoreTarget
    ) -> None:
        """``claim_due`` returns only enabled jobs with ``next_run_at <= now`` (inclusive),
        earliest first, at most ``limit``; ``mark`` is applied and written back."""

        async def scenario(b: StoreBackend) -> None:
            now = _now()
            s = timedelta(seconds=1)
            await b.save_many(
                [
                    make_test_job("late", next_run_at=now - 5 * s),
                    make_test_job("later", next_run_at=now - 3 * s),
                    make_test_job("exact", next_run_at=now),
                    make_test_job("future", next_run_at=now + 3600 * s),
                    make_test_job("off", status=JobStatus.DISABLED, next_run_at=now - 9 * s),
                    make_test_job("busy", status=JobStatus.RUNNING, next_run_at=now - 9 * s),
                    make_test_job("unscheduled"),
                ]
            )
            seen: list[str] = []

            def mark(job: Job) -> Job:
                seen.append(job.id)
                job.status = JobStatus.RUNNING
                job.next_run_at = now + 60 * s
                job.last_error = "marked"
                return job

            first = await b.claim_due(now, 2, mark)
            assert [j.id for j in first] == ["late", "later"]
            assert all(j.status == JobStatus.RUNNING and j.last_error == "marked" for j in first)
            rest = await b.claim_due(now, 10, mark)
            assert [j.id for j in rest] == ["exact"]
            assert seen == ["late", "later", "exact"]
            stored = await b.get("late")
            assert stored is not None and stored.status == JobStatus.RUNNING
            assert stored.next_run_at == now + 60 * s and stored.last_error == "marked"
            assert await b.claim_due(now + 600 * s, 10, mark) == []  # running: not again
            assert await b.count(JobStatus.RUNNING) == 4

        self.run(store_target, scenario)

    def test_a_claimed_job_is_claimable_again_once_written_back(
        self, store_target: StoreTarget
    ) -> None:
        """A claimed job comes back from ``claim_due`` only after ``update_many`` writes it
        back enabled (the Scheduler's finish); ``next_due_at`` follows each change."""

        async def scenario(b: StoreBackend) -> None:
            now = _now()
            await b.save(make_test_job("a", next_run_at=now - timedelta(seconds=1)))
            assert await b.next_due_at() == now - timedelta(seconds=1)
            assert [j.id for j in await b.claim_due(now, 10, _mark)] == ["a"]
            assert await b.next_due_at() is None
            assert await b.claim_due(now, 10, _mark) == []

            def finish(job: Job) -> Job:
                job.status = JobStatus.ENABLED
                job.next_run_at = now + timedelta(seconds=30)
                job.run_count += 1
                return job

            await b.update_many(["a"], finish)
            assert await b.next_due_at() == now + timedelta(seconds=30)
            assert await b.claim_due(now, 10, _mark) == []
            again = await b.claim_due(now + timedelta(seconds=30), 10, _mark)
            assert [j.id for j in again] == ["a"] and again[0].run_count == 1

        self.run(store_target, scenario)

    def test_concurrent_claims_in_one_process_never_share_a_job(
        self, store_target: StoreTarget
    ) -> None:
        """Claims from several tasks at once (one backend object) take each due job once."""

        async def scenario(b: StoreBackend) -> None:
            past = _now() - timedelta(minutes=1)
            await b.save_many(
                [
                    make_test_job(f"j{i:03d}", next_run_at=past + timedelta(milliseconds=i))
                    for i in range(120)
                ]
            )

            async def claimer() -> list[str]:
                taken: list[str] = []
                while got := await b.claim_due(_now(), 7, _mark):
                    taken += [j.id for j in got]
                return taken

            results = await asyncio.gather(*(claimer() for _ in range(4)))
            both = [job_id for taken in results for job_id in taken]
            assert sorted(both) == [f"j{i:03d}" for i in range(120)], "a job claimed twice"

        self.run(store_target, scenario)

    def test_next_due_at_is_the_earliest_enabled_fire(self, store_target: StoreTarget) -> None:
        """``next_due_at`` is the minimum ``next_run_at`` among enabled jobs, or None; it
        follows saves, deletes, disables and patches."""

        async def scenario(b: StoreBackend) -> None:
            now = _now()
            assert await b.next_due_at() is None
            await b.save(make_test_job("off", status="disabled", next_run_at=now))
            await b.save(make_test_job("run", status="running", next_run_at=now))
            assert await b.next_due_at() is None
            await b.save(make_test_job("b", next_run_at=now + timedelta(minutes=2)))
            await b.save(make_test_job("a", next_run_at=now + timedelta(minutes=1)))
            assert await b.next_due_at() == now + timedelta(minutes=1)
            await b.delete("a")
            assert await b.next_due_at() == now + timedelta(minutes=2)

            def later(job: Job) -> Job:
                job.next_run_at = now + timedelta(minutes=9)
                return job

            await b.update_many(["b"], later)
            assert await b.next_due_at() == now + timedelta(minutes=9)

            def disable(job: Job) -> Job:
                job.status = JobStatus.DISABLED
                job.next_run_at = None
                return job

            await b.update_many(["b"], disable)
            assert await b.next_due_at() is None

        self.run(store_target, scenario)

    # -- patches ------------------------------------------------------------------------

    def test_patch_returning_none_leaves_the_job_untouched(self, store_target: StoreTarget) -> None:
        """A patch that returns None writes nothing (even if it mutated its argument) and the
        job is not in the result."""

        async def scenario(b: StoreBackend) -> None:
            await b.save_many([make_test_job("a"), make_test_job("b")])

            def only_b(job: Job) -> Job | None:
                job.name = "changed"
                return job if job.id == "b" else None

            done = await b.update_many(["a", "b"], only_b)
            assert [j.id for j in done] == ["b"]
            a, bb = await b.get("a"), await b.get("b")
            assert a is not None and a.name == "job a"
            assert bb is not None and bb.name == "changed"

        self.run(store_target, scenario)

    def test_patch_sees_the_current_stored_version_and_skips_unknown_ids(
        self, store_target: StoreTarget
    ) -> None:
        """``update_many`` applies the patch to the version stored now (not one read
        earlier) and skips ids that are not stored."""

        async def scenario(b: StoreBackend) -> None:
            await b.save(make_test_job("a"))
            earlier = await b.get("a")
            newer = make_test_job("a")
            newer.name, newer.run_count = "newer", 7
            await b.save(newer)
            seen: list[tuple[str, int]] = []

            def bump(job: Job) -> Job:
                seen.append((job.name, job.run_count))
                job.run_count += 1
                return job

            done = await b.update_many(["ghost", "a", "ghost2"], bump)
            assert earlier is not None and earlier.run_count == 0
            assert seen == [("newer", 7)]
            assert [(j.id, j.run_count) for j in done] == [("a", 8)]
            got = await b.get("a")
            assert got is not None and got.run_count == 8 and got.name == "newer"
            assert await b.get("ghost") is None

        self.run(store_target, scenario)

    # -- start-up -----------------------------------------------------------------------

    def test_unscheduled_lists_enabled_jobs_without_a_fire_time(
        self, store_target: StoreTarget
    ) -> None:
        """``unscheduled(limit)`` returns enabled jobs with no ``next_run_at``, at most
        ``limit``, and none of any other status."""

        async def scenario(b: StoreBackend) -> None:
            now = _now()
            await b.save_many(
                [
                    make_test_job("u1"),
                    make_test_job("u2"),
                    make_test_job("u3"),
                    make_test_job("scheduled", next_run_at=now),
                    make_test_job("off", status=JobStatus.DISABLED),
                    make_test_job("busy", status=JobStatus.RUNNING),
                ]
            )
            assert sorted(j.id for j in await b.unscheduled(10)) == ["u1", "u2", "u3"]
            two = await b.unscheduled(2)
            assert len(two) == 2 and {j.id for j in two} <= {"u1", "u2", "u3"}

        self.run(store_target, scenario)

    def test_recover_running_returns_jobs_a_dead_scheduler_left(
        self, store_target: StoreTarget
    ) -> None:
        """After a claim, a scheduler starting on the store (a second backend object, as
        after a restart) gets the claimed jobs from ``recover_running``: for the same owner on
        a shared backend, for any owner on an embedded one. A shared backend does not hand a
        live claim to another owner."""

        async def scenario(b: StoreBackend) -> None:
            now = _now()
            await b.save_many(
                [
                    make_test_job("a", next_run_at=now - timedelta(seconds=2)),
                    make_test_job("b", next_run_at=now - timedelta(seconds=1)),
                    make_test_job("c", next_run_at=now + timedelta(hours=1)),
                ]
            )
            claimed = await b.claim_due(now, 10, _mark, owner="node-1:1")
            assert [j.id for j in claimed] == ["a", "b"]
            # the restarted scheduler's backend (the same object for an in-process store)
            restarted = store_target.make() if store_target.persistent else b
            if restarted is not b:
                await restarted.open()
            try:
                other = await restarted.recover_running(owner="node-2:2")
                if restarted.shared:
                    assert other == [], "a live claim was handed to another owner"
                else:
                    assert sorted(other) == ["a", "b"]
                assert sorted(await restarted.recover_running(owner="node-1:1")) == ["a", "b"]
            finally:
                if restarted is not b:
                    await restarted.close()

        self.run(store_target, scenario)

    # -- other processes ----------------------------------------------------------------

    def test_a_second_process_writes_while_a_scheduler_runs(
        self, store_target: StoreTarget
    ) -> None:
        """For a backend that declares ``external_writers`` (or ``shared``): while a
        Scheduler runs on the store and writes run state, another process saves, updates and
        deletes jobs on the same URL. Nothing is lost in either direction and the scheduler
        fires the other process's due jobs."""
        probe = store_target.make()
        if not (probe.external_writers or probe.shared):
            pytest.skip("the backend declares no other writers")

        async def scenario(b: StoreBackend) -> None:
            from ._scheduler import Scheduler, SchedulerConfig
            from ._store import Store, StoreConfig

            fired: dict[str, int] = {}
            all_fired = asyncio.Event()

            def handler(job: Job) -> ExecutionResult:
                fired[job.id] = fired.get(job.id, 0) + 1
                if {f"child-{i:03d}" for i in range(2, 30)} <= set(fired):
                    all_fired.set()
                return ExecutionResult.ok()

            store = Store(StoreConfig(url=store_target.url), backend=b)
            sched = Scheduler(
                SchedulerConfig(
                    store=store,
                    handler=handler,
                    location="UTC",
                    external_check=timedelta(seconds=0.2),
                )
            )
            # the scheduler's own jobs: fire every second, so it writes all the time
            now = _now()
            await b.save_many(
                [make_test_job(f"own-{i}", interval="1s", next_run_at=now) for i in range(5)]
            )
            await sched.start()
            try:
                proc = self.child(store_target, "write", count=30)
                out = await asyncio.to_thread(self.finish, proc)
                assert out.strip().endswith("done")
                seen = {j.id for j in await b.list()}
                missing = {f"child-{i:03d}" for i in range(2, 30)} - seen
                assert not missing, f"jobs saved by the other process are lost: {sorted(missing)}"
                try:
                    await asyncio.wait_for(all_fired.wait(), 30)
                except TimeoutError:
                    pytest.fail(
                        "the scheduler did not fire the other process's due jobs within 30 s; "
                        f"fired: {sorted(fired)}"
                    )
            finally:
                await sched.stop()
            assert "child-001" not in fired or fired["child-001"] <= 1
            ids = {j.id for j in await b.list()}
            expected = {f"child-{i:03d}" for i in range(30)} - {"child-001"}
            assert expected <= ids and "child-001" not in ids
            assert {f"own-{i}" for i in range(5)} <= ids
            renamed = await b.get("child-000")
            assert renamed is not None and renamed.name == "renamed by the child"
            for i in range(5):
                own = await b.get(f"own-{i}")
                assert own is not None and own.run_count >= 1

        self.run(store_target, scenario)

    def test_two_processes_claiming_at_once_never_share_a_job(
        self, store_target: StoreTarget
    ) -> None:
        """For a ``shared`` backend (or one whose target opts in): two processes claim from
        the same due jobs at the same time; every job is claimed exactly once."""
        probe = store_target.make()
        if not (probe.shared or store_target.cross_process_claims):
            pytest.skip("the backend is not shared between schedulers")
        count = 300

        async def fill(b: StoreBackend) -> None:
            past = _now() - timedelta(minutes=1)
            await b.save_many(
                [
                    make_test_job(f"j{i:04d}", next_run_at=past + timedelta(milliseconds=i))
                    for i in range(count)
                ]
            )

        self.run(store_target, fill)
        procs = [self.child(store_target, "claim", limit=7, owner=f"node-{n}:1") for n in (1, 2)]
        taken = [json.loads(self.finish(p).strip().splitlines()[-1]) for p in procs]
        both = taken[0] + taken[1]
        assert len(both) == len(set(both)), "a job was claimed by both processes"
        assert sorted(both) == [f"j{i:04d}" for i in range(count)]

        async def after(b: StoreBackend) -> None:
            assert await b.count(JobStatus.RUNNING) == count

        self.run(store_target, after)
