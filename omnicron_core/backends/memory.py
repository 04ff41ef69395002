"""``memory://``: jobs in this process only, gone at exit.

Jobs are kept as private deep copies (``Job.copy``), so nothing handed in or out is ever
shared with the store, and a heap of (next_run_at, id) answers "what is due" without
scanning.
"""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .._backend import JobPatch, StoreBackend
from .._models import Job, JobStatus
from .._runs import RunOutcome, RunRecord, RunWrites

__all__ = ["MemoryBackend"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _ts(dt: datetime | None) -> int | None:
    return None if dt is None else (dt - _EPOCH) // _US


def _copy_record(record: RunRecord) -> RunRecord:
    return msgspec.structs.replace(record)


class MemoryBackend(StoreBackend):
    keeps_history = True

    def __init__(self) -> None:
        # run history: run_id -> record (the unique key), and per job the run ids by seq
        self._runs: dict[str, RunRecord] = {}
        self._job_runs: dict[str, dict[int, str]] = {}
        self._seq = 0
        self._rows: dict[str, Job] = {}
        # id -> next_run_at in epoch microseconds, for enabled jobs that have one
        self._due: dict[str, int] = {}
        self._status: dict[str, JobStatus] = {}
        self._heap: builtins.list[tuple[int, str]] = []

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any]) -> MemoryBackend:
        return cls()

    async def close(self) -> None:
        return None

    def _put(self, job: Job) -> None:
        """Keep ``job`` itself: callers hand over a copy they no longer touch."""
        self._rows[job.id] = job
        self._status[job.id] = job.status
        ts = _ts(job.next_run_at) if job.status == JobStatus.ENABLED else None
        if ts is None:
            self._due.pop(job.id, None)
        elif self._due.get(job.id) != ts:
            self._due[job.id] = ts
            heapq.heappush(self._heap, (ts, job.id))

    async def save(self, job: Job) -> None:
        self._put(job.copy())

    async def save_many(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._put(job.copy())

    async def get(self, job_id: str) -> Job | None:
        job = self._rows.get(job_id)
        return None if job is None else job.copy()

    async def delete(self, job_id: str) -> bool:
        self._due.pop(job_id, None)
        self._status.pop(job_id, None)
        return self._rows.pop(job_id, None) is not None

    async def list(self, status: JobStatus | None = None) -> builtins.list[Job]:
        ids = sorted(
            self._rows if status is None else (i for i, s in self._status.items() if s == status)
        )
        return [self._rows[i].copy() for i in ids]

    async def count(self, status: JobStatus | None = None) -> int:
        if status is None:
            return len(self._rows)
        return sum(1 for s in self._status.values() if s == status)

    def _clean_top(self) -> None:
        heap = self._heap
        while heap:
            ts, job_id = heap[0]
            if self._due.get(job_id) == ts:
                return
            heapq.heappop(heap)

    async def next_due_at(self) -> datetime | None:
        self._clean_top()
        if not self._heap:
            return None
        return _EPOCH + timedelta(microseconds=self._heap[0][0])

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        mark: Callable[[Job], Job],
        *,
        owner: str = "",
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        now_ts = _ts(now)
        assert now_ts is not None
        out: builtins.list[Job] = []
        heap = self._heap
        while heap and len(out) < limit:
            ts, job_id = heap[0]
            if self._due.get(job_id) != ts:
                heapq.heappop(heap)
                continue
            if ts > now_ts:
                break
            heapq.heappop(heap)
            del self._due[job_id]
            job = mark(self._rows[job_id].copy())
            self._put(job.copy())
            out.append(job)
        if runs is not None:
            self._write_runs(runs)
        return out

    async def update_many(
        self, job_ids: Sequence[str], patch: JobPatch, *, runs: RunWrites | None = None
    ) -> builtins.list[Job]:
        out: builtins.list[Job] = []
        for job_id in job_ids:
            current = self._rows.get(job_id)
            if current is None:
                continue
            job = patch(current.copy())
            if job is not None:
                self._put(job.copy())
                out.append(job)
        if runs is not None:
            self._write_runs(runs)
        return out

    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        out: builtins.list[Job] = []
        for job_id, status in self._status.items():
            if status == JobStatus.ENABLED and job_id not in self._due:
                job = self._rows[job_id]
                if job.next_run_at is None:
                    out.append(job.copy())
                    if len(out) >= limit:
                        break
        return out

    # -- run history ----------------------------------------------------------------------

    def _store_run(self, record: RunRecord, seq: int | None) -> None:
        if seq is None:
            self._seq += 1
            seq = self._seq
        stored = _copy_record(record)
        stored.seq = seq
        self._runs[record.run_id] = stored
        self._job_runs.setdefault(record.job_id, {})[seq] = record.run_id

    def _write_runs(self, runs: RunWrites) -> None:
        for record in runs.insert:
            if record.run_id in self._runs:
                runs.rejected.add(record.run_id)
            else:
                self._store_run(record, None)
        for record in runs.update:
            old = self._runs.get(record.run_id)
            self._store_run(record, None if old is None else old.seq)

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 20,
        before: int | None = None,
        outcome: RunOutcome | None = None,
    ) -> builtins.list[RunRecord]:
        by_seq = self._job_runs.get(job_id, {})
        out: builtins.list[RunRecord] = []
        for seq in sorted(by_seq, reverse=True):
            if before is not None and seq >= before:
                continue
            record = self._runs[by_seq[seq]]
            if outcome is not None and record.outcome != outcome:
                continue
            out.append(_copy_record(record))
            if len(out) >= limit:
                break
        return out

    async def get_run(self, run_id: str) -> RunRecord | None:
        record = self._runs.get(run_id)
        return None if record is None else _copy_record(record)

    async def count_runs(self, job_id: str | None = None) -> int:
        if job_id is None:
            return len(self._runs)
        return len(self._job_runs.get(job_id, {}))

    async def running_runs(self, limit: int, *, owner: str = "") -> builtins.list[RunRecord]:
        running = sorted(
            (r for r in self._runs.values() if r.outcome == RunOutcome.RUNNING),
            key=lambda r: r.seq,
        )
        return [_copy_record(r) for r in running[:limit]]

    def _drop_run(self, record: RunRecord) -> None:
        del self._runs[record.run_id]
        by_seq = self._job_runs.get(record.job_id)
        if by_seq is not None:
            by_seq.pop(record.seq, None)
            if not by_seq:
                del self._job_runs[record.job_id]

    async def prune_runs(
        self,
        *,
        job_ids: Sequence[str] = (),
        keep_last: int | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> int:
        doomed: builtins.list[RunRecord] = []
        if keep_last is not None:
            for job_id in job_ids:
                by_seq = self._job_runs.get(job_id, {})
                for seq in sorted(by_seq, reverse=True)[keep_last:]:
                    record = self._runs[by_seq[seq]]
                    if record.outcome != RunOutcome.RUNNING:
                        doomed.append(record)
                        if len(doomed) >= limit:
                            break
                if len(doomed) >= limit:
                    break
        if older_than is not None and len(doomed) < limit:
            seen = {r.run_id for r in doomed}
            for record in sorted(self._runs.values(), key=lambda r: r.seq):
                if len(doomed) >= limit:
                    break
                if (
                    record.recorded_at < older_than
                    and record.outcome != RunOutcome.RUNNING
                    and record.run_id not in seen
                ):
                    doomed.append(record)
        for record in doomed:
            self._drop_run(record)
        return len(doomed)
