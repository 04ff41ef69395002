"""The interface every store backend implements (public as ``omnicron_core.plugin``).

The Store facade (``omnicron_core.Store``) adds the cache and the original's method names; the
Scheduler drives the fire path through :meth:`StoreBackend.claim_due` and
:meth:`StoreBackend.update_many`, so a shared backend (PostgreSQL) can make claiming atomic
across scheduler processes (one transaction with ``SELECT ... FOR UPDATE SKIP LOCKED``), while
an embedded backend does it in one local transaction.

Ownership rule: a backend never keeps a reference to a Job it was given and never hands out
one it keeps; every Job it returns is the caller's to mutate. The same holds for RunRecords.

Run history (issue 10; /work/coord/history-interface.md). A backend that keeps it sets
``keeps_history = True`` and implements the four ``*_runs``/``history`` methods, and accepts
``runs=`` on :meth:`claim_due` and :meth:`update_many`: the run records travel in the same
transaction as the job state they belong to. The Scheduler passes ``runs`` only to a backend
that keeps history, so a third-party backend written before it still works (without history).

The author guide is ``docs/stores.md``; ``omnicron_core.testing.StoreBackendContract`` checks
a backend against this contract.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._errors import StoreError
from ._models import ExecutionResult, Job, JobStatus, utcnow
from ._runs import RunOutcome, RunRecord, RunWrites

__all__ = ["JobPatch", "StoreBackend", "StoreBackendSpec"]

#: Applied to the current stored job inside the backend's transaction; returns the job to
#: write back, or ``None`` to leave it untouched.
JobPatch = Callable[[Job], Job | None]


class StoreBackend(abc.ABC):
    """A place where jobs live. All methods are async and must not block the event loop for
    longer than a local computation (run blocking I/O in a thread of the backend's own).
    Implementations must be safe to call from one event loop (the Scheduler never calls a
    backend from two threads). Failures are raised as :class:`StoreError` (``transient=True``
    for busy/locked), never as the driver's own exceptions."""

    #: True when several scheduler processes may share this backend: claims are exclusive
    #: across processes and :meth:`recover_running` only takes back runs whose owner is gone
    #: (or the caller's own).
    shared: bool = False
    #: True when other processes may open the same URL and write while a scheduler runs on it
    #: (``omnicron jobs add`` next to ``omnicron run``) without losing anything: every write
    #: is atomic against the others and reads see the other process's writes. The Scheduler
    #: then re-reads the earliest fire time at least every ``SchedulerConfig.external_check``
    #: seconds, since such a write cannot wake it. False (the default) makes the command line
    #: refuse to write to the store (``omnicron jobs add`` ... say why), so a store that cannot
    #: take a second writer never silently loses a job.
    external_writers: bool = False

    async def open(self) -> None:  # noqa: B027 - optional
        """Connect, create or migrate the schema. Called once before use."""

    async def exists(self) -> bool:
        """Whether the store has been created, without creating it (read-only commands ask
        before opening, so that a read never creates a store). Default: True (unknown)."""
        return True

    async def check(self) -> builtins.list[str]:
        """Problems found by an integrity check (``omnicron store check``), each a line saying
        what is wrong; empty when healthy. Must not modify the store. The default decodes
        every job; backends with their own check (SQLite ``PRAGMA integrity_check``) override
        it, and may be called without :meth:`open` (a damaged store may not open)."""
        await self.open()
        try:
            await self.list()
        except StoreError as exc:
            return [exc.message]
        return []

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
        self,
        now: datetime,
        limit: int,
        mark: Callable[[Job], Job],
        *,
        owner: str = "",
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        """Atomically take up to ``limit`` enabled jobs whose ``next_run_at <= now``, earliest
        first: apply ``mark`` to each (it sets ``status=running`` and the next fire time),
        write the results back, and return them. A job claimed here is not returned again
        until it is written back ``enabled``. ``owner`` identifies the claiming scheduler
        (``host:pid``): a shared backend records it on the runs it leases, so that
        :meth:`recover_running` can tell its own runs from another live scheduler's; embedded
        backends ignore it.

        ``runs`` (only passed when ``keeps_history``): ``mark`` appends run records to it;
        the backend writes them in the same transaction, after every ``mark`` and before
        the commit, as :class:`RunWrites` describes (an ``insert`` whose ``run_id`` exists
        is skipped and its id added to ``runs.rejected``)."""

    @abc.abstractmethod
    async def update_many(
        self, job_ids: Sequence[str], patch: JobPatch, *, runs: RunWrites | None = None
    ) -> builtins.list[Job]:
        """Apply ``patch`` to the current stored version of each job, atomically per job, and
        write back those it returns; returns the written jobs. Unknown ids are skipped.

        ``runs``: as for :meth:`claim_due`; written in the same transaction as the jobs
        (all of it, even when no patch returned a job, and with ``job_ids`` empty)."""

    # -- run history (issue 10) -----------------------------------------------------------

    #: True when this backend implements the run-history methods below.
    keeps_history: bool = False

    async def write_runs(self, runs: RunWrites) -> None:
        """Write run records alone (one transaction): ``update_many([], ..., runs=runs)``."""
        await self.update_many([], lambda job: None, runs=runs)

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 20,
        before: int | None = None,
        outcome: RunOutcome | None = None,
    ) -> builtins.list[RunRecord]:
        """The job's records, newest first (by ``seq``, insertion order), at most ``limit``;
        only those with ``seq < before`` when ``before`` is given (the paging cursor: pass
        the last record's ``seq``), only those with ``outcome`` when given. Records outlive
        their job: they are read by id even after the job is deleted."""
        raise StoreError(f"{type(self).__name__} keeps no run history")

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One record by ``run_id``, or ``None``."""
        raise StoreError(f"{type(self).__name__} keeps no run history")

    async def count_runs(self, job_id: str | None = None) -> int:
        """How many records are stored (for ``job_id``, if given)."""
        raise StoreError(f"{type(self).__name__} keeps no run history")

    async def running_runs(self, limit: int, *, owner: str = "") -> builtins.list[RunRecord]:
        """Up to ``limit`` records still ``running``, oldest first (``seq``): what start-up
        recovery marks ``interrupted``. A shared backend returns only those whose run lease
        expired (or whose ``owner`` is the caller's, after a restart)."""
        raise StoreError(f"{type(self).__name__} keeps no run history")

    async def prune_runs(
        self,
        *,
        job_ids: Sequence[str] = (),
        keep_last: int | None = None,
        older_than: datetime | None = None,
        limit: int = 1000,
    ) -> int:
        """Delete at most ``limit`` finished records (never a ``running`` one): for each job
        in ``job_ids``, those beyond its newest ``keep_last`` (by ``seq``); and, of any job,
        those with ``recorded_at < older_than``. Returns how many were deleted; the caller
        calls again while that equals ``limit`` (bounded batches, no long transaction)."""
        raise StoreError(f"{type(self).__name__} keeps no run history")

    @abc.abstractmethod
    async def unscheduled(self, limit: int) -> builtins.list[Job]:
        """Up to ``limit`` enabled jobs with no ``next_run_at`` (saved by something other than
        the Scheduler), so the Scheduler can compute their fire times at start."""

    async def recover_running(self, *, owner: str = "") -> builtins.list[str]:
        """Ids of jobs left ``running`` by a scheduler that died: every running job on an
        embedded backend; on a shared one, those claimed by ``owner`` (a restarted scheduler
        takes back its own at once) or whose owner's lease expired."""
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
        results: Mapping[str, Sequence[ExecutionResult]],
        *,
        runs: RunWrites | None = None,
    ) -> builtins.list[Job]:
        """Write back the run state of finished scheduled runs (``results``: each job's
        finished runs): :meth:`update_many` with ``patch`` and ``runs``, which is the
        default. A shared backend records each run's outcome here and refuses the write of a
        job all of whose runs it lost the lease of (another process took them back),
        returning only the jobs it wrote."""
        if runs is not None:
            return await self.update_many(job_ids, patch, runs=runs)
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
