"""The interface every store backend implements.

The Store facade (``omnicron_core.Store``) adds the cache and the original's method names; the
Scheduler drives the fire path through :meth:`StoreBackend.claim_due` and
:meth:`StoreBackend.update_many`, so a shared backend (PostgreSQL) can make claiming atomic
across scheduler processes (``SELECT ... FOR UPDATE SKIP LOCKED`` and a lease), while an
embedded backend does it in one local transaction.

Ownership rule: a backend never keeps a reference to a Job it was given and never hands out
one it keeps; every Job it returns is the caller's to mutate.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._models import ExecutionResult, Job, JobStatus, utcnow

__all__ = ["JobPatch", "StoreBackend", "StoreBackendSpec"]

#: Applied to the current stored job inside the backend's transaction; returns the job to
#: write back, or ``None`` to leave it untouched.
JobPatch = Callable[[Job], Job | None]


class StoreBackend(abc.ABC):
    """A place where jobs live. All methods are async; implementations must be safe to call
    from one event loop (the Scheduler never calls a backend from two threads)."""

    #: True when several scheduler processes may share this backend (claims then use leases,
    #: and recovery only takes back expired leases).
    shared: bool = False
    #: True when other processes may write the same jobs (an SQLite file that
    #: ``omnicron jobs add`` also opens): the Scheduler then re-reads the earliest fire time
    #: at least every ``SchedulerConfig.external_check`` seconds, since such a write cannot
    #: wake it.
    external_writers: bool = False

    async def open(self) -> None:  # noqa: B027 - optional
        """Connect, create or migrate the schema. Called once before use."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files."""

    @abc.abstractmethod
    async def save(self, job: Job) -> None:
        """Insert or replace one job. Durable when it returns."""

    async def save_many(self, jobs: Sequence[Job]) -> None:
        """Insert or replace many jobs, all or nothing where the backend can."""
        for job in jobs:
            await self.save(job)

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None``."""

    @abc.abstractmethod
    async def delete(self, job_id: str) -> bool:
        """Remove a job; False if there was none."""

    @abc.abstractmethod
    async def list(self, status: JobStatus | None = None) -> builtins.list[Job]:
        """Jobs ordered by id, optionally only those with ``status``."""

    async def list_by_metadata(self, key: str, value: str) -> builtins.list[Job]:
        """Jobs whose ``metadata[key] == value``, ordered by id. Backends should override
        this with a query that does not decode every job (the config reconcile uses it)."""
        return [job for job in await self.list() if (job.metadata or {}).get(key) == value]

    @abc.abstractmethod
    async def count(self, status: JobStatus | None = None) -> int:
        """How many jobs (with ``status``, if given)."""

    @abc.abstractmethod
    async def next_due_at(self) -> datetime | None:
        """The earliest ``next_run_at`` among enabled jobs, or ``None``."""

    @abc.abstractmethod
    async def claim_due(
        self, now: datetime, limit: int, mark: Callable[[Job], Job], *, owner: str = ""
    ) -> builtins.list[Job]:
        """Atomically take up to ``limit`` enabled jobs whose ``next_run_at <= now``, earliest
        first: apply ``mark`` to each (it sets ``status=running`` and the next fire time),
        write the results back, and return them. A job claimed here is not returned again
        until it is written back ``enabled``. ``owner`` identifies the claiming scheduler on a
        shared backend."""

    @abc.abstractmethod
    async def update_many(self, job_ids: Sequence[str], patch: JobPatch) -> builtins.list[Job]:
        """Apply ``patch`` to the current stored version of each job, atomically per job, and
        write back those it returns; returns the written jobs. Unknown ids are skipped."""

    @abc.abstractmethod
    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        """Up to ``limit`` enabled jobs with no ``next_run_at`` (saved by something other than
        the Scheduler), so the Scheduler can compute their fire times at start."""

    async def recover_running(self, *, owner: str = "") -> builtins.list[str]:
        """Ids of jobs left ``running`` by a scheduler that died (every running job on an
        embedded backend; only expired leases on a shared one)."""
        return [job.id for job in await self.list(JobStatus.RUNNING)]

    # -- optional hooks for shared backends (PostgreSQL); the defaults suit embedded ones ----

    async def now(self) -> datetime:
        """The current time by the store's clock (aware, UTC). The Scheduler claims with it,
        so several processes sharing a database agree on what is due whatever their own
        clocks say. Default: this machine's clock."""
        return utcnow()

    def watch(self, wake: Callable[[], None] | None) -> None:  # noqa: B027 - optional
        """Called by the Scheduler when it starts (``None`` when it stops) with a function
        that wakes its loop. A backend that hears of other processes' writes (PostgreSQL's
        LISTEN/NOTIFY) calls it from the event loop's thread. Default: nothing."""

    async def finish_runs(
        self,
        job_ids: Sequence[str],
        patch: JobPatch,
        results: Mapping[str, ExecutionResult],
    ) -> builtins.list[Job]:
        """Write back the run state of finished scheduled runs (``results`` by job id):
        :meth:`update_many` with ``patch``, which is the default. A shared backend records
        each run's outcome here and refuses the write of a run whose lease it lost (another
        process took the job back), returning only the jobs it wrote."""
        return await self.update_many(job_ids, patch)

    def stats(self) -> Mapping[str, float]:
        """Counters and gauges of this process's use of the store, exported by the metrics
        server as ``omnicron_store_<name>`` (names ending in ``_total`` are counters).
        Default: none."""
        return {}


@dataclass(frozen=True, slots=True)
class StoreBackendSpec:
    """A store backend registration: URL scheme and ``factory(url, options) -> StoreBackend``.

    Returned from the ``omnicron_store_backends`` hook. It lives beside the interface (not
    with the plugin manager) so that the built-in plugin imports it without an import circle.
    """

    scheme: str
    factory: Callable[[str, Mapping[str, Any]], StoreBackend]
    description: str = ""
