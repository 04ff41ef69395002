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

from .._backend import JobPatch, StoreBackend
from .._models import Job, JobStatus

__all__ = ["MemoryBackend"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _ts(dt: datetime | None) -> int | None:
    return None if dt is None else (dt - _EPOCH) // _US


class MemoryBackend(StoreBackend):
    def __init__(self) -> None:
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
        self, now: datetime, limit: int, mark: Callable[[Job], Job], *, owner: str = ""
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
        return out

    async def update_many(self, job_ids: Sequence[str], patch: JobPatch) -> builtins.list[Job]:
        out: builtins.list[Job] = []
        for job_id in job_ids:
            current = self._rows.get(job_id)
            if current is None:
                continue
            job = patch(current.copy())
            if job is not None:
                self._put(job.copy())
                out.append(job)
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
