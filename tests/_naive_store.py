"""A store that declares other writers but cannot take them (it caches the whole file and
writes its cache back): the kind of third-party store that silently lost a job. The
conformance kit must reject it (tests/test_store_contract.py)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from omnicron_core import Job, JobStatus, decode_jobs, encode_jobs
from omnicron_core.plugin import JobPatch, StoreBackend


class NaiveFileBackend(StoreBackend):
    external_writers = True  # a false claim

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.jobs: dict[str, Job] = {}

    async def open(self) -> None:
        if self.path.exists():
            self.jobs = {j.id: j for j in decode_jobs(self.path.read_bytes())}

    async def close(self) -> None:
        return None

    def _flush(self) -> None:
        self.path.write_bytes(encode_jobs([self.jobs[k] for k in sorted(self.jobs)]))

    async def save(self, job: Job) -> None:
        self.jobs[job.id] = job.copy()
        self._flush()

    async def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return None if job is None else job.copy()

    async def delete(self, job_id: str) -> bool:
        found = self.jobs.pop(job_id, None) is not None
        self._flush()
        return found

    async def list(self, status: JobStatus | None = None) -> builtins.list[Job]:
        return [
            self.jobs[k].copy()
            for k in sorted(self.jobs)
            if status is None or self.jobs[k].status == status
        ]

    async def count(self, status: JobStatus | None = None) -> int:
        return len(await self.list(status))

    async def next_due_at(self) -> datetime | None:
        due = [
            j.next_run_at
            for j in self.jobs.values()
            if j.status == JobStatus.ENABLED and j.next_run_at is not None
        ]
        return min(due, default=None)

    async def claim_due(
        self, now: datetime, limit: int, mark: Callable[[Job], Job], *, owner: str = ""
    ) -> builtins.list[Job]:
        due = sorted(
            (j.next_run_at, j.id)
            for j in self.jobs.values()
            if j.status == JobStatus.ENABLED and j.next_run_at is not None and j.next_run_at <= now
        )[:limit]
        out = [mark(self.jobs[i].copy()) for _, i in due]
        for job in out:
            self.jobs[job.id] = job.copy()
        self._flush()
        return out

    async def update_many(self, job_ids: Sequence[str], patch: JobPatch) -> builtins.list[Job]:
        out: builtins.list[Job] = []
        for job_id in job_ids:
            if job_id in self.jobs:
                job = patch(self.jobs[job_id].copy())
                if job is not None:
                    self.jobs[job_id] = job.copy()
                    out.append(job)
        self._flush()
        return out

    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        return [
            j.copy()
            for j in self.jobs.values()
            if j.status == JobStatus.ENABLED and j.next_run_at is None
        ][:limit]


def make(url: str, options: Mapping[str, Any]) -> NaiveFileBackend:
    return NaiveFileBackend(url.removeprefix("naive://"))
