"""The optional StoreBackend hooks a shared backend uses: its clock (``now``), a wake-up
callback (``watch``), fenced run write-back (``finish_runs``) and ``stats`` for metrics."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from omnicron_core import (
    Action,
    ExecutionResult,
    Job,
    JobPatch,
    JobStatus,
    Schedule,
    Scheduler,
    SchedulerConfig,
    Store,
    new_job,
)
from omnicron_core.backends.memory import MemoryBackend


class HookedBackend(MemoryBackend):
    """A memory backend whose clock runs ``skew`` ahead and which records the hook calls."""

    def __init__(self, skew: timedelta = timedelta(0)) -> None:
        super().__init__()
        self.skew = skew
        self.wake: Callable[[], None] | None = None
        self.watch_calls: list[bool] = []
        self.finished: list[dict[str, list[ExecutionResult]]] = []
        self.refuse: set[str] = set()

    async def now(self) -> datetime:
        return datetime.now(UTC) + self.skew

    def watch(self, wake: Callable[[], None] | None) -> None:
        self.wake = wake
        self.watch_calls.append(wake is not None)

    async def finish_runs(
        self,
        job_ids: Sequence[str],
        patch: JobPatch,
        results: Mapping[str, Sequence[ExecutionResult]],
        **kw: Any,
    ) -> builtins.list[Job]:
        self.finished.append({k: list(v) for k, v in results.items()})
        return await self.update_many([i for i in job_ids if i not in self.refuse], patch, **kw)


def once_job(job_id: str, at: datetime) -> Job:
    return new_job(
        job_id, job_id, Schedule(once=at), Action(type="send_message", session_id="s", message="m")
    )


async def wait_for(cond: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_claims_use_the_backends_clock() -> None:
    # the store's clock is an hour ahead: a job due in 30 minutes (by this machine) is due now
    backend = HookedBackend(skew=timedelta(hours=1))
    ran: list[str] = []

    async def handler(job: Job) -> ExecutionResult:
        ran.append(job.id)
        return ExecutionResult.ok()

    sched = Scheduler(SchedulerConfig(store=Store(backend=backend), handler=handler))
    await sched.start()
    try:
        await sched.add_job(once_job("later", datetime.now(UTC) + timedelta(minutes=30)))
        await wait_for(lambda: ran == ["later"])
    finally:
        await sched.stop()


async def test_watch_gets_a_wake_function_and_finish_runs_gets_results() -> None:
    backend = HookedBackend()
    ran: list[str] = []

    async def handler(job: Job) -> ExecutionResult:
        ran.append(job.id)
        return ExecutionResult.failed("boom") if job.id == "bad" else ExecutionResult.ok()

    store = Store(backend=backend)
    sched = Scheduler(SchedulerConfig(store=store, handler=handler))
    await sched.start()
    try:
        assert backend.watch_calls == [True] and backend.wake is not None
        # a job written behind the scheduler's back (another process) and then a wake-up:
        # the loop, asleep for up to a minute, picks it up at once
        await asyncio.sleep(0.1)
        job = once_job("bad", datetime.now(UTC) - timedelta(seconds=1))
        job.next_run_at = job.schedule.once
        await backend.save(job)
        backend.wake()
        await wait_for(lambda: ran == ["bad"])
        await wait_for(lambda: bool(backend.finished))
        results = backend.finished[0]
        assert list(results) == ["bad"] and [r.error for r in results["bad"]] == ["boom"]
        stored = await backend.get("bad")
        assert stored is not None and stored.status == JobStatus.DISABLED
        assert stored.last_error == "boom"
    finally:
        await sched.stop()
    assert backend.watch_calls == [True, False]


async def test_a_refused_finish_leaves_the_stored_job_alone() -> None:
    backend = HookedBackend()
    backend.refuse.add("lost")

    async def handler(job: Job) -> ExecutionResult:
        return ExecutionResult.ok()

    sched = Scheduler(SchedulerConfig(store=Store(backend=backend), handler=handler))
    await sched.start()
    try:
        await sched.add_job(once_job("lost", datetime.now(UTC)))
        await wait_for(lambda: bool(backend.finished))
        stored = await backend.get("lost")
        # the backend refused the write: the job still shows the claim's state, unrecorded
        assert stored is not None and stored.status == JobStatus.RUNNING
        assert stored.run_count == 0
    finally:
        await sched.stop()


async def test_default_hooks() -> None:
    backend = MemoryBackend()
    before = datetime.now(UTC)
    assert before <= await backend.now() <= datetime.now(UTC)
    backend.watch(lambda: None)  # accepted, ignored
    assert backend.stats() == {}


async def test_the_store_does_not_cache_jobs_of_a_shared_backend() -> None:
    class Shared(MemoryBackend):
        shared = True

    backend = Shared()
    store = Store(backend=backend)
    await store.save(once_job("j", datetime.now(UTC) + timedelta(hours=1)))
    changed = await backend.get("j")
    assert changed is not None
    changed.name = "changed by another node"
    await backend.save(changed)
    assert (await store.get("j")).name == "changed by another node"
