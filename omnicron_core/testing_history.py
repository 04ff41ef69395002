"""Conformance cases for a store backend's run history (issue 10).

:class:`RunHistoryContract` is a mixin of plain pytest tests for a backend that sets
``keeps_history = True``. ``omnicron_core.testing.StoreBackendContract`` includes it; until then
(or on its own) a test class that provides ``store_target`` (a fixture with ``make()`` giving a
fresh empty backend, and ``persistent``) and ``run(target, scenario)`` (open the backend, run the
async scenario in a new loop, close it) gets these cases by subclassing it::

    class TestMyStoreHistory(RunHistoryContract):
        @pytest.fixture
        def store_target(self, tmp_path): ...
        def run(self, target, scenario): ...

The rules are those of ``StoreBackend``'s history methods and :class:`RunWrites`
(``/work/coord/history-interface.md`` while the docs settle; ``docs/stores.md``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from ._backend import StoreBackend
from ._models import Job, JobStatus, decode_job
from ._runs import RunOutcome, RunRecord, RunTrigger, RunWrites, fire_run_id, manual_run_id

__all__ = ["RunHistoryContract", "make_run_record"]

Scenario = Callable[[StoreBackend], Awaitable[None]]
_T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_run_record(
    job_id: str,
    at: datetime,
    *,
    outcome: RunOutcome | str = RunOutcome.SUCCEEDED,
    trigger: RunTrigger | str = RunTrigger.SCHEDULE,
    attempt: int = 1,
    recorded_at: datetime | None = None,
) -> RunRecord:
    """A record for the fire of ``job_id`` at ``at`` (a manual one gets a random id)."""
    trigger = RunTrigger(trigger)
    run_id = (
        manual_run_id(job_id) if trigger is RunTrigger.MANUAL else fire_run_id(job_id, at, attempt)
    )
    outcome = RunOutcome(outcome)
    return RunRecord(
        run_id=run_id,
        job_id=job_id,
        trigger=trigger,
        outcome=outcome,
        scheduled_at=at,
        due_at=at,
        started_at=None if outcome in (RunOutcome.SKIPPED, RunOutcome.MISSED) else at,
        finished_at=at + timedelta(seconds=1) if outcome.finished else None,
        attempt=attempt,
        error="boom" if outcome is RunOutcome.FAILED else "",
        output='{"ok":true}',
        owner="contract:1",
        recorded_at=recorded_at or at,
    )


def _job(job_id: str, next_run_at: datetime | None = None) -> Job:
    data: dict[str, Any] = {
        "id": job_id,
        "name": f"job {job_id}",
        "schedule": {"interval": "1m"},
        "action": {"type": "contract.noop"},
        "status": "enabled",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    if next_run_at is not None:
        data["next_run_at"] = next_run_at.isoformat()
    return decode_job(msgspec.json.encode(data))


def _unseq(records: list[RunRecord]) -> list[RunRecord]:
    return [msgspec.structs.replace(r, seq=0) for r in records]


class RunHistoryContract:
    """Run-history conformance cases (see the module docstring)."""

    def run(self, target: Any, scenario: Scenario) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _history_run(self, target: Any, scenario: Scenario) -> None:
        backend = target.make()
        if not backend.keeps_history:
            pytest.skip(f"{type(backend).__name__} keeps no run history")
        self.run(target, scenario)

    def test_history_records_read_back_newest_first_with_seq(self, store_target: Any) -> None:
        """Inserted records read back equal (but for ``seq``), newest first, with a growing
        ``seq``; ``get_run`` and ``count_runs`` see them."""

        async def scenario(b: StoreBackend) -> None:
            records = [make_run_record("a", _T0 + timedelta(minutes=i)) for i in range(3)]
            records.append(make_run_record("b", _T0, outcome=RunOutcome.FAILED))
            await b.write_runs(RunWrites(insert=records))
            got = await b.history("a")
            assert _unseq(got) == list(reversed(records[:3]))
            seqs = [r.seq for r in got]
            assert seqs == sorted(seqs, reverse=True) and all(s > 0 for s in seqs)
            assert len(set(seqs)) == 3
            one = await b.get_run(records[3].run_id)
            assert one is not None and _unseq([one]) == [records[3]]
            assert one.scheduled_at.tzinfo is not None
            assert await b.get_run("nope") is None
            assert await b.count_runs() == 4
            assert await b.count_runs("a") == 3
            assert await b.count_runs("zzz") == 0
            assert await b.history("zzz") == []

        self._history_run(store_target, scenario)

    def test_history_unique_key_rejects_a_second_record_of_a_fire(self, store_target: Any) -> None:
        """A second insert of the same (job, fire time, attempt) is not written and is
        reported in ``rejected``, in a later call or in the same batch; other attempts and
        manual runs are separate records."""

        async def scenario(b: StoreBackend) -> None:
            first = make_run_record("a", _T0)
            await b.write_runs(RunWrites(insert=[first]))
            again = make_run_record("a", _T0, outcome=RunOutcome.FAILED)
            fresh = make_run_record("a", _T0 + timedelta(minutes=1))
            runs = RunWrites(insert=[again, fresh])
            await b.write_runs(runs)
            assert runs.rejected == {first.run_id}
            stored = await b.get_run(first.run_id)
            assert stored is not None and stored.outcome == RunOutcome.SUCCEEDED
            twice = make_run_record("a", _T0 + timedelta(minutes=2))
            runs = RunWrites(insert=[twice, msgspec.structs.replace(twice)])
            await b.write_runs(runs)
            assert runs.rejected == {twice.run_id}
            retry = make_run_record("a", _T0, attempt=2, trigger=RunTrigger.RETRY)
            manual = [make_run_record("a", _T0, trigger=RunTrigger.MANUAL) for _ in range(2)]
            runs = RunWrites(insert=[retry, *manual])
            await b.write_runs(runs)
            assert runs.rejected == set()
            assert await b.count_runs("a") == 6

        self._history_run(store_target, scenario)

    def test_history_update_replaces_by_run_id_and_keeps_seq(self, store_target: Any) -> None:
        """``update`` replaces a record whole (keeping its place in the order) and inserts
        one that is absent."""

        async def scenario(b: StoreBackend) -> None:
            running = make_run_record("a", _T0, outcome=RunOutcome.RUNNING)
            later = make_run_record("a", _T0 + timedelta(minutes=1))
            await b.write_runs(RunWrites(insert=[running, later]))
            before = await b.get_run(running.run_id)
            assert before is not None
            done = msgspec.structs.replace(
                running, outcome=RunOutcome.FAILED, error="x", finished_at=_T0
            )
            gone = make_run_record("a", _T0 + timedelta(minutes=5))
            await b.write_runs(RunWrites(update=[done, gone]))
            after = await b.get_run(running.run_id)
            assert after is not None and after.outcome == RunOutcome.FAILED
            assert after.seq == before.seq and after.error == "x"
            assert [r.run_id for r in await b.history("a")] == [
                gone.run_id,
                later.run_id,
                running.run_id,
            ]

        self._history_run(store_target, scenario)

    def test_history_is_written_in_the_same_transaction_as_the_jobs(
        self, store_target: Any
    ) -> None:
        """Records appended by ``mark``/``patch`` are written with the jobs; a patch that
        raises leaves neither; ``update_many`` writes them even when no patch returns a job."""

        async def scenario(b: StoreBackend) -> None:
            await b.save_many([_job("a", _T0), _job("b", _T0 + timedelta(hours=1))])
            runs = RunWrites()

            def mark(job: Job) -> Job:
                job.status = JobStatus.RUNNING
                job.next_run_at = None
                runs.insert.append(make_run_record(job.id, _T0, outcome=RunOutcome.RUNNING))
                return job

            claimed = await b.claim_due(_T0 + timedelta(seconds=1), 10, mark, runs=runs)
            assert [j.id for j in claimed] == ["a"]
            assert [r.outcome for r in await b.history("a")] == [RunOutcome.RUNNING]

            def failing(job: Job) -> Job:
                runs.update.append(make_run_record(job.id, _T0, outcome=RunOutcome.SUCCEEDED))
                job.status = JobStatus.ENABLED
                raise RuntimeError("patch failed")

            runs = RunWrites()
            with pytest.raises(RuntimeError):
                await b.update_many(["a"], failing, runs=runs)
            assert [r.outcome for r in await b.history("a")] == [RunOutcome.RUNNING]
            stored = await b.get("a")
            assert stored is not None and stored.status == JobStatus.RUNNING

            runs = RunWrites()

            def untouched(job: Job) -> Job | None:
                runs.insert.append(make_run_record(job.id, _T0, outcome=RunOutcome.SKIPPED))
                return None

            assert await b.update_many(["b"], untouched, runs=runs) == []
            assert [r.outcome for r in await b.history("b")] == [RunOutcome.SKIPPED]

        self._history_run(store_target, scenario)

    def test_history_pages_with_the_before_cursor_and_filters_outcome(
        self, store_target: Any
    ) -> None:
        """``limit`` and ``before`` page through every record once; ``outcome`` filters."""

        async def scenario(b: StoreBackend) -> None:
            outcomes = [RunOutcome.SUCCEEDED, RunOutcome.FAILED, RunOutcome.SKIPPED]
            records = [
                make_run_record("a", _T0 + timedelta(minutes=i), outcome=outcomes[i % 3])
                for i in range(10)
            ]
            await b.write_runs(RunWrites(insert=records))
            seen: list[str] = []
            cursor: int | None = None
            while True:
                page = await b.history("a", limit=3, before=cursor)
                if not page:
                    break
                assert len(page) <= 3
                seen += [r.run_id for r in page]
                cursor = page[-1].seq
            assert seen == [r.run_id for r in reversed(records)]
            failed = await b.history("a", outcome=RunOutcome.FAILED, limit=100)
            assert [r.run_id for r in failed] == [
                r.run_id for r in reversed(records) if r.outcome == RunOutcome.FAILED
            ]

        self._history_run(store_target, scenario)

    def test_history_running_runs_are_the_unfinished_oldest_first(self, store_target: Any) -> None:
        """``running_runs`` lists only ``running`` records, oldest first, up to ``limit``."""

        async def scenario(b: StoreBackend) -> None:
            records = [
                make_run_record(
                    f"j{i}",
                    _T0 + timedelta(minutes=i),
                    outcome=RunOutcome.RUNNING if i % 2 else RunOutcome.SUCCEEDED,
                )
                for i in range(6)
            ]
            await b.write_runs(RunWrites(insert=records))
            running = await b.running_runs(10)
            assert [r.job_id for r in running] == ["j1", "j3", "j5"]
            assert [r.job_id for r in await b.running_runs(2)] == ["j1", "j3"]

        self._history_run(store_target, scenario)

    def test_history_prune_keeps_the_last_n_per_job_and_a_max_age(self, store_target: Any) -> None:
        """Pruning removes records beyond the newest ``keep_last`` of the named jobs and
        those recorded before ``older_than``, never a ``running`` one, at most ``limit`` a
        call."""

        async def scenario(b: StoreBackend) -> None:
            # recorded_at grows with insertion, as it does when a scheduler writes them
            a = [make_run_record("a", _T0 + timedelta(minutes=i)) for i in range(12)]
            a[0] = make_run_record("a", _T0, outcome=RunOutcome.RUNNING)
            other = [
                make_run_record(
                    "b", _T0 + timedelta(minutes=i), recorded_at=_T0 + timedelta(hours=i)
                )
                for i in range(5)
            ]
            await b.write_runs(RunWrites(insert=a + other))
            assert await b.prune_runs(job_ids=["a"], keep_last=4, limit=3) == 3
            total = 3
            while (n := await b.prune_runs(job_ids=["a"], keep_last=4, limit=3)) > 0:
                total += n
            assert total == 7  # 12 - 4 kept - 1 running
            left = [r.run_id for r in await b.history("a", limit=100)]
            assert left == [r.run_id for r in reversed(a[8:])] + [a[0].run_id]
            assert await b.count_runs("b") == 5  # not named: untouched by keep_last
            cutoff = _T0 + timedelta(hours=3)
            deleted = 0
            while (n := await b.prune_runs(older_than=cutoff, limit=2)) > 0:
                deleted += n
            assert deleted == 7  # a's four finished and b's first three; a's running stays
            assert [r.scheduled_at for r in await b.history("b", limit=100)] == [
                _T0 + timedelta(minutes=i) for i in (4, 3)
            ]
            assert await b.get_run(a[0].run_id) is not None

        self._history_run(store_target, scenario)

    def test_history_outlives_its_job_and_is_never_aliased(self, store_target: Any) -> None:
        """Deleting a job keeps its records; records handed in or out are not shared."""

        async def scenario(b: StoreBackend) -> None:
            await b.save(_job("a", _T0))
            record = make_run_record("a", _T0)
            runs = RunWrites(insert=[record])
            await b.write_runs(runs)
            record.error = "changed after the write"
            assert await b.delete("a")
            got = await b.history("a")
            assert len(got) == 1 and got[0].error == ""
            got[0].error = "changed after the read"
            again = await b.get_run(got[0].run_id)
            assert again is not None and again.error == ""

        self._history_run(store_target, scenario)

    def test_history_survives_close_and_reopen(self, store_target: Any) -> None:
        """A persistent backend keeps its records (and their order) across a close."""
        if not getattr(store_target, "persistent", True):
            pytest.skip("the store does not outlive close()")
        records = [make_run_record("a", _T0 + timedelta(minutes=i)) for i in range(3)]

        async def write(b: StoreBackend) -> None:
            await b.write_runs(RunWrites(insert=records))

        async def read(b: StoreBackend) -> None:
            assert _unseq(await b.history("a")) == list(reversed(records))
            runs = RunWrites(insert=[records[0]])
            await b.write_runs(runs)
            assert runs.rejected == {records[0].run_id}

        self._history_run(store_target, write)
        self._history_run(store_target, read)
