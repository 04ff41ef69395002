"""The Scheduler: timers instead of polling, claims through the store, bounded concurrency,
per-job policies (overlap, catch-up, jitter, bounds, timeout, retries) and run history."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import msgspec

from ._duration import as_timedelta
from ._errors import (
    JobNotFoundError,
    JobValidationError,
    SchedulerAlreadyRunningError,
    StoreError,
    describe_error,
)
from ._limits import JobLimits
from ._log import get_logger
from ._models import ExecutionResult, Job, JobStatus, utcnow
from ._plugins import Registry, RunInfo, notify_each_plugin
from ._policy import FireTimes
from ._runs import (
    CatchUp,
    Overlap,
    PauseNote,
    PendingFire,
    RunCounts,
    RunOutcome,
    RunRecord,
    RunTrigger,
    RunWrites,
    deterministic_jitter,
    excerpt_error,
    excerpt_output,
    fire_run_id,
    manual_run_id,
)
from ._schedule import resolve_zone
from ._store import Store, StoreConfig
from ._validation import validate_job, validate_job_async

__all__ = [
    "TUNING_FIELDS",
    "BackfillResult",
    "ExecutionHandler",
    "JobDescription",
    "Scheduler",
    "SchedulerConfig",
]

#: A host's own runner for every job (the original's ``ExecutionHandler``); sync or async.
ExecutionHandler = Callable[[Job], "ExecutionResult | Awaitable[ExecutionResult]"]

#: ``asyncio.eager_task_factory`` where it exists (Python 3.12+), used to start each run
#: eagerly; ``None`` on 3.11, where runs are ordinary tasks.
_EAGER_TASK: (
    Callable[[asyncio.AbstractEventLoop, Coroutine[Any, Any, None]], asyncio.Task[None]] | None
) = getattr(asyncio, "eager_task_factory", None)

_log = get_logger("omnicron.scheduler")
_MAX_SLEEP = 60.0  # re-check the clock at least this often (wall-clock jumps, suspend)
_NS_PER_US = 1000
_WRITE_RETRIES = 5
_US = timedelta(microseconds=1)
_SKIPPED_OVERLAP = "skipped: the previous run was still going"
_INTERRUPTED = "interrupted: the scheduler stopped during the run"
_BACKFILL_MAX = 10_000


#: The settings that are plain values, shared with the config file's ``[scheduler]`` section
#: under the same names (:class:`omnicron_core.config.SchedulerSettings` takes its defaults
#: from here).
TUNING_FIELDS = (
    "max_concurrency",
    "claim_batch",
    "shutdown_grace",
    "misfire_grace",
    "external_check",
    "store_error_window",
    "limits",
    "history_keep",
    "history_max_age",
    "history_prune_interval",
)


@dataclass
class SchedulerConfig:
    """How a :class:`Scheduler` runs.

    - ``store``: where jobs live (default: an in-memory store).
    - ``handler``: run every job with this instead of the executor plugins.
    - ``location``: zone for cron expressions without their own (a tzinfo or an IANA name;
      default: the machine's). The config file calls it ``[scheduler] timezone``.
    - ``registry``: executors and backends (default: from the installed plugins).
    - ``max_concurrency``: runs in flight at once; due jobs beyond it wait their turn.
    - ``claim_batch``: most jobs taken from the store per claim.
    - ``shutdown_grace``: how long ``stop()`` waits for runs in flight before cancelling them.
    - ``misfire_grace``: the default catch-up window of jobs without their own
      (``policy.catch_up_window``): a fire older than this when claimed is recorded missed,
      not run; ``None`` runs the latest late fire once (coalesced).
    - ``external_check``: on a store other processes also write (an SQLite file), the longest
      the loop goes before re-reading the earliest fire time (one indexed query), so a job
      added by another process (``omnicron jobs add``) is not missed. Changes made through
      this scheduler always wake it at once.
    - ``store_error_window``: how long a *permanent* store error (read-only, damaged, full,
      missing: :attr:`StoreError.transient` is False) may last before the scheduler stops
      firing and reports it in :attr:`Scheduler.failure` (``omnicron run`` then exits 1).
      Transient errors (busy, locked) are retried for as long as they last.
    - ``owner``: this scheduler's name on a shared store (``host:pid``).
    - ``history_keep``: run-history records kept per job (the newest); ``None`` or 0: no limit.
    - ``history_max_age``: records older than this are pruned; ``None`` or 0: no limit.
    - ``history_prune_interval``: how often retention prunes, in the background.
    - ``clock``: the current time (aware); tests inject a controllable one.
    - ``limits``: size bounds on every job added or updated (:class:`JobLimits`).

    The spans accept a ``timedelta``, seconds (``30.0``) or a Go duration string
    (``"30s"``) and are held as ``timedelta``.
    """

    store: Store | None = None
    handler: ExecutionHandler | None = None
    location: tzinfo | str | None = None
    registry: Registry | None = None
    max_concurrency: int = 1024
    claim_batch: int = 1000
    shutdown_grace: timedelta = timedelta(seconds=30)
    misfire_grace: timedelta | None = None
    external_check: timedelta = timedelta(seconds=1)
    store_error_window: timedelta = timedelta(seconds=30)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    limits: JobLimits = field(default_factory=JobLimits)
    history_keep: int | None = 100
    history_max_age: timedelta | None = timedelta(days=30)
    history_prune_interval: timedelta = timedelta(seconds=60)
    clock: Callable[[], datetime] = utcnow

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "claim_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        self.shutdown_grace = as_timedelta(self.shutdown_grace, field="shutdown_grace")
        self.external_check = as_timedelta(self.external_check, field="external_check")
        self.store_error_window = as_timedelta(self.store_error_window, field="store_error_window")
        if self.misfire_grace is not None:
            self.misfire_grace = as_timedelta(self.misfire_grace, field="misfire_grace")
        # retention: 0 (a config file's way to say "no limit") is None
        if self.history_max_age is not None:
            self.history_max_age = as_timedelta(self.history_max_age, field="history_max_age")
            if not self.history_max_age:
                self.history_max_age = None
        self.history_prune_interval = as_timedelta(
            self.history_prune_interval, field="history_prune_interval"
        )
        if self.history_keep is not None:
            keep = self.history_keep
            if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
                raise ValueError(f"history_keep must be an integer >= 0, not {keep!r}")
            self.history_keep = keep or None


class JobDescription(msgspec.Struct, kw_only=True):
    """What :meth:`Scheduler.describe` returns: the job, its next fire times and its last
    runs (newest first)."""

    job: Job
    next_fires: list[datetime]
    recent_runs: list[RunRecord]


class BackfillResult(msgspec.Struct, kw_only=True):
    """What :meth:`Scheduler.backfill` did: fires in the range, runs started, fires that
    already had a record (not run again), fires skipped by the overlap policy, failed runs."""

    fires: int = 0
    started: int = 0
    already_recorded: int = 0
    skipped: int = 0
    failed: int = 0


class _Run:
    """One run in flight (or waiting for its retry)."""

    __slots__ = (
        "_run_id",
        "attempt",
        "cancel_reason",
        "claimed_at",
        "delay",
        "done",
        "due_at",
        "duplicate",
        "holds",
        "job",
        "record",
        "scheduled_at",
        "trigger",
    )

    def __init__(
        self,
        job: Job,
        trigger: RunTrigger,
        scheduled_at: datetime,
        run_id: str = "",
        attempt: int = 1,
        record: RunRecord | None = None,
        *,
        delay: float = 0.0,
        holds: str = "",
        done: asyncio.Future[ExecutionResult] | None = None,
        claimed_at: datetime | None = None,
        due_at: datetime | None = None,
    ) -> None:
        self.job = job
        self.trigger = trigger
        self.scheduled_at = scheduled_at
        self._run_id = run_id or (record.run_id if record is not None else "")
        self.attempt = attempt
        #: the record written when the run was claimed (policies other than skip, manual,
        #: backfill); None: the record is written when the run finishes
        self.record = record
        self.cancel_reason = ""
        #: seconds to wait before starting (a retry's backoff)
        self.delay = delay
        #: the job slot this run holds: "status" (overlap skip), "active" (other overlap
        #: policies), "" (manual and backfill runs hold none)
        self.holds = holds
        self.done = done
        self.claimed_at = claimed_at
        self.due_at = due_at
        #: its fire already had a record: not run, slot given back
        self.duplicate = False

    @property
    def run_id(self) -> str:
        if not self._run_id:
            self._run_id = fire_run_id(self.job.id, self.scheduled_at, self.attempt)
        return self._run_id


def _counts(job: Job) -> RunCounts:
    if job.counts is None:
        job.counts = RunCounts()
    return job.counts


class Scheduler:
    """Runs jobs at their fire times. Methods are coroutines, as the original's took a context."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        cfg = config or SchedulerConfig()
        self.config = cfg
        self.location: tzinfo = resolve_zone(cfg.location, field="location")
        self.registry = cfg.registry or Registry(location=self.location)
        self.store = cfg.store or Store(StoreConfig(url="memory://"), registry=self.registry)
        self._clock = cfg.clock
        self._times = FireTimes(self.location)
        self._handler: ExecutionHandler | None = cfg.handler
        self._running = False
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._prune_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._runs: set[asyncio.Task[None]] = set()
        # runs of cancel_other jobs by job id, so a later fire can cancel them
        self._cancellable: dict[str, dict[str, tuple[_Run, asyncio.Task[None]]]] = {}
        self._pending: list[tuple[_Run, ExecutionResult]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._wake_at: datetime | None = None
        self._ran_hook = self.registry.plugin_manager.hook.omnicron_job_ran
        self._recorded_hook = self.registry.plugin_manager.hook.omnicron_run_recorded
        self._history_jobs: set[str] = set()  # jobs with records since the last prune
        self._cancel_pending: set[str] = set()  # cancel_other jobs fired in this claim
        # The per-run logger is bound when the scheduler starts (after the host configured
        # structlog), so the fire path does not rebuild it through the lazy proxy each time.
        self._run_log: Any = _log
        # store trouble: when the current run of permanent errors began (monotonic), the
        # error that made the scheduler give up, and run results that could not be saved
        self._trouble_since: float | None = None
        self._store_problem: StoreError | None = None
        self._failure: StoreError | None = None
        self._failed: asyncio.Event | None = None
        self._unsaved = 0

    # -- configuration ------------------------------------------------------------------

    @property
    def handler(self) -> ExecutionHandler | None:
        return self._handler

    def set_handler(self, handler: ExecutionHandler | None) -> None:
        """Replace the handler; takes effect for the next run, before or after ``start``."""
        self._handler = handler

    def is_running(self) -> bool:
        return self._running

    @property
    def failure(self) -> StoreError | None:
        """The store error that stopped the scheduler firing (a permanent error that outlasted
        ``store_error_window``), or ``None``. Call :meth:`stop` after it is set."""
        return self._failure

    async def wait_failure(self) -> StoreError:
        """Wait until the store fails for good (see :attr:`failure`) and return the error."""
        while self._failure is None:
            if self._failed is None:
                self._failed = asyncio.Event()
            await self._failed.wait()
        return self._failure

    @property
    def store_problem(self) -> StoreError | None:
        """The permanent store error of the last store call, while it lasts (``None`` once a
        call succeeds): ``omnicron run`` stopping meanwhile reports it and exits 1."""
        return self._store_problem

    @property
    def state_saved(self) -> bool:
        """False when the run state of some finished runs could not be written (they stay
        ``running`` in the store; the next start recovers them)."""
        return self._unsaved == 0

    def _store_trouble(self, what: str, exc: Exception) -> bool:
        """Log a failed store call; True when the scheduler must give up (a permanent error
        that has lasted ``store_error_window``)."""
        transient = isinstance(exc, StoreError) and exc.transient
        error = exc.message if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
        _log.error(f"store.{what}_failed", error=error, transient=transient)
        if transient:
            return False
        now = time.monotonic()
        self._store_problem = exc if isinstance(exc, StoreError) else StoreError(error)
        if self._trouble_since is None:
            self._trouble_since = now
        if now - self._trouble_since < self.config.store_error_window.total_seconds():
            return False
        failure = exc if isinstance(exc, StoreError) else StoreError(error)
        self._failure = failure
        _log.critical("store.failed", error=error, note="the scheduler stopped firing")
        if self._failed is not None:
            self._failed.set()
        return True

    def now(self) -> datetime:
        """The scheduler's clock (``SchedulerConfig.clock``)."""
        return self._clock()

    async def validate(self, job: Job) -> None:
        """Raise :class:`JobValidationError` unless ``job`` could be added as it is: the
        checks :meth:`add_job` makes, executors' add-time I/O (a DNS lookup) awaited, never
        run on the event loop's thread."""
        await validate_job_async(
            job,
            self.registry,
            self.location,
            handler_runs_actions=self._handler is not None,
            limits=self.config.limits,
        )

    # -- time ---------------------------------------------------------------------------

    def _schedule(self, job: Job, now: datetime) -> None:
        """Set ``next_run_at`` for the job's status: the real next fire time, or none."""
        if job.status != JobStatus.ENABLED:
            self._times.set_next(job, None)
            return
        nominal = self._times.first(job, now)
        self._times.set_next(job, nominal)
        if nominal is None and job.is_recurring() and job.policy is not None:
            self._finish_bounds(job, "end_at reached")

    @staticmethod
    def _finish_bounds(job: Job, reason: str) -> None:
        """Mark a job that has no fire left within its bounds finished (kept, disabled)."""
        job.finished = reason
        job.next_run_at = None
        job.next_fire_at = None
        if job.status == JobStatus.ENABLED and job.active_runs == 0 and not job.buffered:
            job.status = JobStatus.DISABLED

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _poke_for(self, fire_at: datetime | None) -> None:
        """Wake the loop only if ``fire_at`` is earlier than the time it sleeps until."""
        if fire_at is not None and (self._wake_at is None or fire_at < self._wake_at):
            self._poke()

    def _notify(self, hook: str, **kwargs: Any) -> None:
        # through pluggy, one plugin at a time: a plugin that raises is logged, and neither
        # the scheduler nor the other plugins' implementations are affected
        for plugin, exc in notify_each_plugin(self.registry.plugin_manager, hook, **kwargs):
            _log.warning(
                "hook.failed", hook=hook, plugin=plugin, error=f"{type(exc).__name__}: {exc}"
            )

    def _changed(self, job: Job, change: str) -> None:
        _log.info(
            f"job.{change}",
            job_id=job.id,
            action_type=job.action.type,
            next_run_at=job.next_run_at,  # ISO text when emitted (omnicron_core._log)
        )
        self._notify("omnicron_job_changed", job=job, change=change)

    # -- job management -----------------------------------------------------------------

    async def _prepare_new(self, job: Job, now: datetime) -> Job:
        job = job.copy()
        job.created_at = job.created_at or now
        job.updated_at = job.updated_at or now
        if job.status == JobStatus.RUNNING:
            job.status = JobStatus.ENABLED
        job.in_flight = None
        job.buffered = None
        await self.validate(job)
        self._schedule(job, now)
        return job

    async def add_job(self, job: Job) -> Job:
        """Validate and save a job, and schedule it. Returns the saved copy (with
        ``next_run_at``). Nothing is saved when validation fails. An existing id is replaced,
        as in the original."""
        saved = await self._prepare_new(job, self.now())
        await self.store.save(saved)
        self._copy_state(saved, job)
        self._poke_for(saved.next_run_at)
        self._changed(saved, "added")
        return saved

    async def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        """Add many jobs in one transaction: all are validated first, and either all are saved
        or none. :class:`JobValidationError` names the index of the first bad job."""
        now = self.now()
        prepared: list[Job] = []
        for index, job in enumerate(jobs):
            try:
                prepared.append(await self._prepare_new(job, now))
            except JobValidationError as exc:
                raise exc.with_prefix(f"[{index}]") from None
        await self.store.save_many(prepared)
        self._poke_for(min((j.next_run_at for j in prepared if j.next_run_at), default=None))
        for job in prepared:
            self._changed(job, "added")
        return prepared

    @staticmethod
    def _copy_state(src: Job, dst: Job) -> None:
        """Give the caller's object what the save decided (the original mutated it in place)."""
        for name in ("created_at", "updated_at", "next_run_at", "status", "next_fire_at"):
            setattr(dst, name, getattr(src, name))

    async def update_job(self, job: Job) -> Job:
        """Replace a job's definition, keeping its run state. A job whose schedule and policy
        are unchanged keeps its next fire time. :class:`JobNotFoundError` for an unknown id.

        A job an agent made stays marked (``origin``) whatever the update says."""
        now = self.now()
        candidate = job.copy()
        candidate.updated_at = now
        if candidate.status == JobStatus.RUNNING:
            candidate.status = JobStatus.ENABLED
        if not candidate.origin:
            with contextlib.suppress(JobNotFoundError):
                candidate.origin = (await self.store.get(candidate.id)).origin
        await self.validate(candidate)

        def patch(cur: Job) -> Job | None:
            if cur.origin and not candidate.origin:
                return None  # marked between our read and this write: refuse, below
            new = candidate.copy()
            new.created_at = cur.created_at or now
            for name in (
                "run_count",
                "last_run_at",
                "last_error",
                "in_flight",
                "buffered",
                "counts",
                "pause",
            ):
                setattr(new, name, getattr(cur, name))
            if cur.status == JobStatus.RUNNING and new.status == JobStatus.ENABLED:
                new.status = JobStatus.RUNNING  # the run in flight will finish it
            if new.status == JobStatus.DISABLED:
                self._times.set_next(new, None)
            elif (
                new.schedule == cur.schedule
                and new.policy == cur.policy
                and cur.next_run_at is not None
            ):
                new.next_run_at, new.next_fire_at = cur.next_run_at, cur.next_fire_at
                new.finished = cur.finished
            else:
                new.finished = ""
                nominal = self._times.first(new, now)
                self._times.set_next(new, nominal)
                if nominal is None and new.is_recurring() and new.policy is not None:
                    self._finish_bounds(new, "end_at reached")
            return new

        saved = await self.store.update(candidate.id, patch)
        if saved is None:
            current = await self.store.get(candidate.id)  # JobNotFoundError for an unknown id
            if current.origin and not candidate.origin:
                return await self.update_job(job)  # re-validate with the agent mark
            raise JobNotFoundError(job.id)
        self._copy_state(saved, job)
        job.origin = saved.origin
        self._poke_for(saved.next_run_at)
        self._changed(saved, "updated")
        return saved

    async def remove_job(self, job_id: str) -> None:
        """Delete a job; an unknown id is not an error. A run in flight finishes, unrecorded
        on the job (its history record is still written). The history stays until pruned."""
        try:
            job: Job | None = await self.store.get(job_id)
        except JobNotFoundError:
            job = None
        await self.store.delete(job_id)
        if job is not None:
            self._changed(job, "removed")

    async def enable_job(self, job_id: str, *, catch_up: bool = False) -> Job:
        """Enable (resume) a job and compute its next fire time (no-op if enabled or running).

        By default it resumes from now: the fires it missed while disabled are not run. With
        ``catch_up`` its next fire is the first one after it was paused, so the job's
        catch-up window and policy apply to the fires missed meanwhile (those older than the
        window are recorded missed; within it, ``latest`` runs one)."""
        now = self.now()

        def patch(cur: Job) -> Job | None:
            if cur.status != JobStatus.DISABLED:
                return None
            paused_at = cur.pause.at if cur.pause is not None else cur.updated_at
            cur.status = JobStatus.ENABLED
            cur.updated_at = now
            cur.pause = None
            cur.finished = ""
            nominal: datetime | None
            if catch_up and paused_at is not None and cur.is_recurring():
                nominal = self._times.after(cur, paused_at)
            else:
                nominal = self._times.first(cur, now)
            self._times.set_next(cur, nominal)
            if nominal is None and cur.is_recurring() and cur.policy is not None:
                self._finish_bounds(cur, "end_at reached")
            return cur

        saved = await self.store.update(job_id, patch)
        if saved is None:
            return await self.store.get(job_id)  # JobNotFoundError, or already enabled
        self._poke_for(saved.next_run_at)
        self._changed(saved, "enabled")
        return saved

    async def disable_job(self, job_id: str, *, note: str = "", by: str = "") -> Job:
        """Disable (pause) a job and clear its next fire time (a run in flight finishes).

        ``note`` and ``by`` are kept on the job (``job.pause``: who, when, why) until it is
        enabled again. A manual trigger still runs a disabled job."""
        now = self.now()

        def patch(cur: Job) -> Job | None:
            if cur.status == JobStatus.DISABLED:
                if not (note or by):
                    return None
                cur.pause = PauseNote(at=now, by=by, note=note)  # re-paused: a new note
                return cur
            cur.status = JobStatus.DISABLED
            cur.updated_at = now
            self._times.set_next(cur, None)
            if note or by:
                cur.pause = PauseNote(at=now, by=by, note=note)
            return cur

        saved = await self.store.update(job_id, patch)
        if saved is None:
            return await self.store.get(job_id)
        self._changed(saved, "disabled")
        return saved

    async def pause_job(self, job_id: str, *, note: str = "", by: str = "") -> Job:
        """:meth:`disable_job` with a note: who paused the job and why."""
        return await self.disable_job(job_id, note=note, by=by)

    async def resume_job(self, job_id: str, *, catch_up: bool = False) -> Job:
        """:meth:`enable_job`: resume from now, or with the catch-up window applied."""
        return await self.enable_job(job_id, catch_up=catch_up)

    async def get_job(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    async def list_jobs(self) -> list[Job]:
        return await self.store.list()

    # -- history ----------------------------------------------------------------------------

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 20,
        before: int | None = None,
        outcome: RunOutcome | str | None = None,
    ) -> list[RunRecord]:
        """The job's run records, newest first: runs, skipped and missed fires. ``before``
        pages (pass the last record's ``seq``); ``outcome`` filters. Records outlive a
        deleted job until retention prunes them."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        return await self.store.history(job_id, limit=limit, before=before, outcome=outcome)

    async def describe(self, job_id: str, *, fires: int = 10, runs: int = 10) -> JobDescription:
        """The job, its next ``fires`` fire times (nominal, within its bounds) and its last
        ``runs`` history records. :class:`JobNotFoundError` for an unknown id."""
        job = await self.store.get(job_id)
        upcoming = self._times.upcoming(job, fires)
        recent = await self.store.history(job_id, limit=runs) if self.store.keeps_history else []
        return JobDescription(job=job, next_fires=upcoming, recent_runs=recent)

    # -- running ------------------------------------------------------------------------

    def _new_record(
        self,
        job_id: str,
        trigger: RunTrigger,
        outcome: RunOutcome,
        scheduled_at: datetime,
        now: datetime,
        *,
        run_id: str = "",
        attempt: int = 1,
        due_at: datetime | None = None,
        error: str = "",
    ) -> RunRecord:
        started = now if outcome == RunOutcome.RUNNING and due_at is None else None
        return RunRecord(
            run_id=run_id or fire_run_id(job_id, scheduled_at, attempt),
            job_id=job_id,
            trigger=trigger,
            outcome=outcome,
            scheduled_at=scheduled_at,
            due_at=due_at,
            started_at=started,
            finished_at=None if outcome == RunOutcome.RUNNING else now,
            lateness=max(0, (now - scheduled_at) // _US) * _NS_PER_US
            if trigger != RunTrigger.MANUAL
            else None,
            attempt=attempt,
            error=error,
            owner=self.config.owner,
            recorded_at=now,
        )

    async def trigger_job(self, job_id: str) -> ExecutionResult:
        """Run a job now and wait for it, whatever its status, started or not (a paused job
        too). Records ``last_run_at``, ``run_count`` and ``last_error`` and a ``manual``
        history record; leaves status and ``next_run_at``."""
        job = await self.store.get(job_id)
        now = self.now()
        run_id = manual_run_id(job.id)
        history = self.store.keeps_history
        record = (
            self._new_record(job.id, RunTrigger.MANUAL, RunOutcome.RUNNING, now, now, run_id=run_id)
            if history
            else None
        )
        if record is not None:
            await self.store.write_runs(RunWrites(insert=[record]))
        run = _Run(job, RunTrigger.MANUAL, now, run_id, record=record)
        result = await self._execute(job, RunInfo(run_id=run_id, manual=True), run)
        writes = RunWrites() if history else None
        final = self._final_record(run, result) if history else None
        if writes is not None and final is not None:
            writes.update.append(final)

        def patch(cur: Job) -> Job:
            self._apply_result(cur, result)
            self._count(cur, self._outcome(run, result))
            return cur

        saved = await self.store.update(job_id, patch, runs=writes)
        if final is not None:
            self._history_jobs.add(job_id)
            self._record_done(final)
        self._ran(saved or job, result)
        return result

    async def _execute(self, job: Job, run: RunInfo, ctx: _Run | None = None) -> ExecutionResult:
        started = self.now()
        policy = job.policy
        timeout = (
            policy.timeout.ns / 1e9 if policy is not None and policy.timeout is not None else None
        )
        try:
            handler = self._handler
            if timeout is None and handler is not None:
                # the host handler without a timeout: no extra coroutine on the hot path
                outcome = handler(job)
                result = await outcome if inspect.isawaitable(outcome) else outcome
                if not isinstance(result, ExecutionResult):
                    raise TypeError(
                        f"handler returned {type(result).__name__}, not ExecutionResult"
                    )
            elif timeout is None:
                result = await self._invoke(job, run)
            else:
                async with asyncio.timeout(timeout):
                    result = await self._invoke(job, run)
        except TimeoutError:
            assert policy is not None and policy.timeout is not None
            result = ExecutionResult.failed(f"timed out after {policy.timeout}")
        except asyncio.CancelledError:
            reason = ctx.cancel_reason if ctx is not None and ctx.cancel_reason else ""
            result = ExecutionResult.failed(reason or "run cancelled: the scheduler stopped")
            if ctx is not None and not ctx.cancel_reason:
                ctx.cancel_reason = result.error
        except JobValidationError as exc:
            result = ExecutionResult.failed(exc.message)
        except Exception as exc:
            result = ExecutionResult.failed(describe_error(exc))
        finished = self.now()
        result.started_at = started
        result.finished_at = finished
        result.duration = (finished - started) // _US * _NS_PER_US
        if run.scheduled_at is not None:
            result.scheduled_at = run.scheduled_at
            result.lateness = max(0, (started - run.scheduled_at) // _US) * _NS_PER_US
        return result

    async def _invoke(self, job: Job, run: RunInfo) -> ExecutionResult:
        handler = self._handler
        if handler is not None:
            outcome = handler(job)
            result = await outcome if inspect.isawaitable(outcome) else outcome
            if not isinstance(result, ExecutionResult):
                raise TypeError(f"handler returned {type(result).__name__}, not ExecutionResult")
            return result
        executor = self.registry.executors.get(job.action.type)
        if executor is None:
            return ExecutionResult.failed(f"unknown action type: {job.action.type}")
        # executors re-check their action inside execute (cheaply, no I/O)
        return await executor.execute(job, run)

    @staticmethod
    def _apply_result(job: Job, result: ExecutionResult) -> None:
        job.last_run_at = result.finished_at
        job.run_count += 1
        job.last_error = "" if result.success else (result.error or "failed")

    @staticmethod
    def _count(job: Job, outcome: RunOutcome, n: int = 1) -> None:
        counts = _counts(job)
        name = str(outcome)
        setattr(counts, name, getattr(counts, name) + n)

    def _logs_info(self) -> bool:
        """False when the host's structlog config filters INFO out (skip building events)."""
        enabled = getattr(self._run_log, "is_enabled_for", None)
        return True if enabled is None else bool(enabled(logging.INFO))

    def _ran(self, job: Job, result: ExecutionResult, *, log: bool = True) -> None:
        if log:
            self._run_log.info(
                "job.run",
                job_id=job.id,
                action_type=job.action.type,
                scheduled_at=result.scheduled_at,
                lateness_ms=None if result.lateness is None else result.lateness / 1e6,
                duration_ms=result.duration / 1e6,
                outcome="success" if result.success else "failure",
                error=result.error or None,
            )
        if self._ran_hook.get_hookimpls():
            self._notify("omnicron_job_ran", job=job, result=result)

    @staticmethod
    def _log_not_run(records: list[RunRecord]) -> None:
        """One event for the fires just recorded skipped or missed (not one per fire: under
        load a skip is routine); ``warning`` when any was missed, else ``info``."""
        skipped = [r for r in records if r.outcome == RunOutcome.SKIPPED]
        missed = [r for r in records if r.outcome == RunOutcome.MISSED]
        if not skipped and not missed:
            return
        jobs = sorted({r.job_id for r in (*missed, *skipped)})
        event = _log.warning if missed else _log.info
        event(
            "fires.not_run",
            missed=len(missed),
            skipped=len(skipped),
            jobs=jobs[:10],
            more_jobs=max(0, len(jobs) - 10),
            reason=(missed or skipped)[-1].error or None,
        )

    def _record_done(self, record: RunRecord) -> None:
        if self._recorded_hook.get_hookimpls():
            self._notify("omnicron_run_recorded", job_id=record.job_id, record=record)

    @staticmethod
    def _outcome(run: _Run, result: ExecutionResult) -> RunOutcome:
        if result.success:
            return RunOutcome.SUCCEEDED
        return RunOutcome.CANCELLED if run.cancel_reason else RunOutcome.FAILED

    def _final_record(self, run: _Run, result: ExecutionResult) -> RunRecord | None:
        """The run's finished record (``None`` for a duplicate fire, which is not run)."""
        if run.duplicate:
            return None
        outcome = self._outcome(run, result)
        manual = run.trigger == RunTrigger.MANUAL
        base = run.record
        if base is None:
            return RunRecord(
                run_id=run.run_id,
                job_id=run.job.id,
                trigger=run.trigger,
                outcome=outcome,
                scheduled_at=run.scheduled_at,
                due_at=run.due_at,
                started_at=result.started_at,
                finished_at=result.finished_at,
                lateness=None if manual else result.lateness,
                attempt=run.attempt,
                error=excerpt_error(result.error) if result.error else "",
                output="" if result.output is None else excerpt_output(result.output),
                owner=self.config.owner,
                recorded_at=run.claimed_at or result.started_at or self.now(),
            )
        return msgspec.structs.replace(
            base,
            outcome=outcome,
            started_at=result.started_at,
            finished_at=result.finished_at,
            lateness=None if manual else result.lateness,
            error=excerpt_error(result.error) if result.error else "",
            output=excerpt_output(result.output),
        )

    # -- the claim --------------------------------------------------------------------------

    def _claim_mark(
        self, now: datetime, starts: list[_Run], writes: RunWrites | None, done: list[RunRecord]
    ) -> Callable[[Job], Job]:
        """The claim's ``mark``: applies the job's policies to the fires that came due."""
        times = self._times
        grace = self.config.misfire_grace
        # jobs sharing an expression share its fires (everyone's "0 9 * * *")
        memo: dict[tuple[str, str, datetime], datetime | None] = {}

        def after(job: Job, t: datetime) -> datetime | None:
            sched = job.schedule
            if job.policy is None and sched.cron and not sched.cron.startswith("@every"):
                key = (sched.cron, sched.timezone, t)
                if key not in memo:
                    memo[key] = times.after(job, t)
                return memo[key]
            return times.after(job, t)

        def record(
            job: Job, trigger: RunTrigger, outcome: RunOutcome, at: datetime, error: str
        ) -> None:
            self._count(job, outcome)
            rec = self._new_record(job.id, trigger, outcome, at, now, error=error)
            done.append(rec)
            if writes is not None:
                writes.insert.append(rec)

        def mark(job: Job) -> Job:
            if job.policy is None:
                # the common case first: no policy, one fire due, within the grace
                fire = job.next_fire_at or job.next_run_at or now
                nxt = after(job, fire) if job.is_recurring() else None
                if (nxt is None or nxt > now) and (grace is None or now - fire <= grace):
                    job.status = JobStatus.RUNNING
                    job.in_flight = [PendingFire(at=fire)]
                    counts = job.counts
                    if counts is None:
                        counts = job.counts = RunCounts()
                    counts.started += 1
                    job.next_run_at = nxt
                    job.next_fire_at = None
                    starts.append(
                        _Run(job, RunTrigger.SCHEDULE, fire, holds="status", claimed_at=now)
                    )
                    return job
            policy = times.policy(job)
            fire = times.nominal(job) or now
            fires, nxt, _capped = times.due(job, fire, now, after)
            window = policy.catch_up_window
            limit = timedelta(microseconds=window.ns // 1000) if window is not None else grace
            last = fires[-1]
            missed = 0
            if limit is not None:
                cutoff = now - limit
                while missed < len(fires) and fires[missed] < cutoff:
                    missed += 1
            for at in fires[:missed]:
                trig = RunTrigger.SCHEDULE if at == last else RunTrigger.CATCH_UP
                record(job, trig, RunOutcome.MISSED, at, f"missed: older than {limit} when claimed")
            if missed:
                job.last_error = f"missed: started more than {limit} after its fire time"
            live = fires[missed:]
            if policy.catch_up == CatchUp.ALL:
                due = [(at, RunTrigger.CATCH_UP) for at in live[:-1]]
            else:
                for at in live[:-1]:
                    record(
                        job,
                        RunTrigger.CATCH_UP,
                        RunOutcome.SKIPPED,
                        at,
                        f"coalesced: the run of {live[-1].isoformat()} answers it",
                    )
                due = []
            if live:
                due.append((live[-1], RunTrigger.SCHEDULE))
            finished = ""
            if policy.max_runs is not None:
                left = policy.max_runs - (job.counts.started if job.counts else 0)
                if len(due) >= left:
                    due = due[: max(left, 0)]
                    finished = f"max_runs reached ({policy.max_runs})"
            if not finished and nxt is None and job.is_recurring() and job.policy is not None:
                finished = "end_at reached"
            self._admit(job, due, now, starts, writes, record)
            times.set_next(job, None if finished else nxt)
            if finished:
                self._finish_bounds(job, finished)
            elif (
                job.next_run_at is None
                and not job.is_recurring()
                and job.status == JobStatus.ENABLED
                and job.active_runs == 0
                and not job.buffered
            ):
                job.status = JobStatus.DISABLED
            return job

        return mark

    def _admit(
        self,
        job: Job,
        due: list[tuple[datetime, RunTrigger]],
        now: datetime,
        starts: list[_Run],
        writes: RunWrites | None,
        record: Callable[[Job, RunTrigger, RunOutcome, datetime, str], None],
    ) -> None:
        """Start, buffer or skip the fires ``due`` (in order) by the job's overlap policy."""
        policy = self._times.policy(job)
        overlap = policy.overlap
        for index, (at, trigger) in enumerate(due):
            busy = job.status == JobStatus.RUNNING or job.active_runs > 0
            if index > 0 and busy:
                # catch-up "all": the rest wait their turn, in order
                self._buffer(job, at, trigger, policy.buffer_limit, record)
                continue
            if not busy or (overlap == Overlap.ALLOW_ALL and job.active_runs < policy.concurrency):
                self._start(job, at, trigger, now, starts, writes)
            elif overlap == Overlap.CANCEL_OTHER:
                self._cancel_pending.add(job.id)
                self._start(job, at, trigger, now, starts, writes)
            elif overlap == Overlap.BUFFER_ONE:
                if job.buffered:
                    record(job, trigger, RunOutcome.SKIPPED, at, _SKIPPED_OVERLAP)
                else:
                    self._buffer(job, at, trigger, 1, record)
            elif overlap == Overlap.BUFFER_ALL:
                self._buffer(job, at, trigger, policy.buffer_limit, record)
            else:
                record(job, trigger, RunOutcome.SKIPPED, at, _SKIPPED_OVERLAP)

    @staticmethod
    def _buffer(
        job: Job,
        at: datetime,
        trigger: RunTrigger,
        limit: int,
        record: Callable[[Job, RunTrigger, RunOutcome, datetime, str], None],
    ) -> None:
        buffered = list(job.buffered or ())
        if len(buffered) >= limit:
            record(
                job, trigger, RunOutcome.SKIPPED, at, "skipped: the buffer of waiting fires is full"
            )
            return
        buffered.append(PendingFire(at=at, trigger=str(trigger)))
        job.buffered = buffered

    def _start(
        self,
        job: Job,
        at: datetime,
        trigger: RunTrigger,
        now: datetime,
        starts: list[_Run],
        writes: RunWrites | None,
        attempt: int = 1,
    ) -> None:
        """Take the job's slot for a run of the fire ``at`` and queue its start.

        Under overlap ``skip`` (the default) the in-flight fact lives in the job row
        (``status=running``, ``in_flight``) and the run's record is written once, when it
        finishes; under the other policies the record is also written now (``running``), so
        recovery finds such jobs, which stay ``enabled`` while they run."""
        policy = job.policy
        entry = PendingFire(at=at, trigger=trigger, attempt=attempt)
        record = None
        if policy is None or policy.overlap == Overlap.SKIP:
            job.status = JobStatus.RUNNING
            job.in_flight = [entry]
            holds = "status"
        else:
            job.in_flight = [*(job.in_flight or ()), entry]
            holds = "active"
            if writes is not None:
                record = self._new_record(job.id, trigger, RunOutcome.RUNNING, at, now)
                writes.insert.append(record)
        counts = job.counts
        if counts is None:
            counts = job.counts = RunCounts()
        counts.started += 1
        # the run reads only the definition (id, action, policy): it may share the object
        run = _Run(job, trigger, at, "", attempt, record, holds=holds, claimed_at=now)
        starts.append(run)

    # -- finishing ----------------------------------------------------------------------------

    def _release(
        self,
        cur: Job,
        run: _Run,
        now: datetime,
        starts: list[_Run],
        writes: RunWrites | None,
        done: list[RunRecord],
    ) -> None:
        """Give back the slot ``run`` held; start a waiting fire if the policy allows."""
        if run.holds == "status":
            if cur.status == JobStatus.RUNNING:
                cur.status = JobStatus.ENABLED
            cur.in_flight = None
        elif run.holds == "active":
            self._drop_in_flight(cur, run)
        else:
            return

        def record(
            job: Job, trigger: RunTrigger, outcome: RunOutcome, at: datetime, error: str
        ) -> None:
            self._count(job, outcome)
            if writes is not None:
                rec = self._new_record(job.id, trigger, outcome, at, now, error=error)
                writes.insert.append(rec)
                done.append(rec)

        if cur.status == JobStatus.DISABLED or self._stopping:
            why = (
                "the job was disabled"
                if cur.status == JobStatus.DISABLED
                else "the scheduler stopped"
            )
            for waiting in cur.buffered or ():
                record(
                    cur,
                    RunTrigger(waiting.trigger),
                    RunOutcome.SKIPPED,
                    waiting.at,
                    f"skipped: {why} before its turn",
                )
            cur.buffered = None
        elif (
            cur.buffered
            and cur.status != JobStatus.RUNNING
            and (
                cur.active_runs == 0
                or (
                    self._times.policy(cur).overlap == Overlap.ALLOW_ALL
                    and cur.active_runs < self._times.policy(cur).concurrency
                )
            )
        ):
            waiting, *rest = cur.buffered
            cur.buffered = rest or None
            self._start(cur, waiting.at, RunTrigger(waiting.trigger), now, starts, writes)
        if run.holds == "status" and cur.status == JobStatus.ENABLED:
            nominal = FireTimes.nominal(cur)
            if (
                cur.is_recurring()
                and nominal is not None
                and cur.next_run_at is not None
                and cur.next_run_at <= now
            ):
                # ticks that fell inside the run are skipped (recorded), not queued
                fires, nxt, _ = self._times.due(cur, nominal, now, self._times.after)
                for at in fires:
                    record(cur, RunTrigger.SCHEDULE, RunOutcome.SKIPPED, at, _SKIPPED_OVERLAP)
                self._times.set_next(cur, nxt)
                if nxt is None and cur.policy is not None:
                    self._finish_bounds(cur, "end_at reached")
            elif cur.is_recurring() and nominal is None and not cur.finished:
                self._times.set_next(cur, self._times.after(cur, now))
        if (
            cur.status == JobStatus.ENABLED
            and cur.active_runs == 0
            and not cur.buffered
            and cur.next_run_at is None
            and (cur.finished or not cur.is_recurring())
        ):
            cur.status = JobStatus.DISABLED

    @staticmethod
    def _drop_in_flight(cur: Job, run: _Run) -> None:
        entries = list(cur.in_flight or ())
        for index, entry in enumerate(entries):
            if entry.at == run.scheduled_at and entry.attempt == run.attempt:
                del entries[index]
                break
        else:
            if entries:  # not found (the stored job was replaced meanwhile): free one slot
                entries.pop()
        cur.in_flight = entries or None

    def _retry_delay(self, job: Job, run: _Run) -> float | None:
        """Seconds until the next attempt of a failed run, or None when none is left."""
        policy = job.policy
        if policy is None or policy.retry is None or run.trigger == RunTrigger.MANUAL:
            return None
        retry = policy.retry
        if run.attempt > retry.attempts:
            return None
        base_us = retry.backoff.ns // 1000 * (2 ** (run.attempt - 1))
        base = timedelta(microseconds=min(base_us, retry.max_backoff.ns // 1000))
        extra = deterministic_jitter(
            job.id, run.scheduled_at, base * retry.jitter, salt=str(run.attempt)
        )
        return (base + extra).total_seconds()

    def _finish_patch(
        self,
        finished: dict[str, list[tuple[_Run, ExecutionResult]]],
        now: datetime,
        starts: list[_Run],
        writes: RunWrites | None,
        done: list[RunRecord],
    ) -> Callable[[Job], Job]:
        def patch(cur: Job) -> Job:
            for run, result in finished[cur.id]:
                if (
                    cur.policy is None
                    and run.holds == "status"
                    and cur.status == JobStatus.RUNNING
                    and not cur.buffered
                    and not run.duplicate
                ):
                    # the common case: no policy, its one run done, nothing waiting
                    cur.last_run_at = result.finished_at
                    cur.run_count += 1
                    counts = cur.counts
                    if counts is None:
                        counts = cur.counts = RunCounts()
                    if result.success:
                        cur.last_error = ""
                        counts.succeeded += 1
                    else:
                        cur.last_error = result.error or "failed"
                        if run.cancel_reason:
                            counts.cancelled += 1
                        else:
                            counts.failed += 1
                    cur.in_flight = None
                    nxt = cur.next_run_at
                    if nxt is None:
                        if cur.is_recurring():
                            cur.status = JobStatus.ENABLED
                            self._times.set_next(cur, self._times.after(cur, now))
                        else:
                            cur.status = JobStatus.DISABLED
                    elif nxt > now:
                        cur.status = JobStatus.ENABLED
                    else:  # ticks fell inside the run: the general path records them
                        cur.status = JobStatus.RUNNING
                        self._release(cur, run, now, starts, writes, done)
                    continue
                if run.duplicate:
                    _counts(cur).started -= 1
                    self._release(cur, run, now, starts, writes, done)
                    continue
                if result.started_at is not None:
                    self._apply_result(cur, result)
                self._count(cur, self._outcome(run, result))
                delay = None
                if (
                    not result.success
                    and not run.cancel_reason
                    and cur.status != JobStatus.DISABLED
                ):
                    delay = self._retry_delay(cur, run)
                if delay is not None:
                    attempt = run.attempt + 1
                    run_id = fire_run_id(cur.id, run.scheduled_at, attempt)
                    due = now + timedelta(seconds=delay)
                    if run.holds:  # the next attempt holds the slot in its place
                        self._drop_in_flight(cur, run)
                        cur.in_flight = [
                            *(cur.in_flight or ()),
                            PendingFire(
                                at=run.scheduled_at, trigger=RunTrigger.RETRY, attempt=attempt
                            ),
                        ]
                    record = None
                    if writes is not None and run.holds != "status":
                        record = self._new_record(
                            cur.id,
                            RunTrigger.RETRY,
                            RunOutcome.RUNNING,
                            run.scheduled_at,
                            now,
                            run_id=run_id,
                            attempt=attempt,
                            due_at=due,
                        )
                        writes.insert.append(record)
                    _counts(cur).retried += 1
                    starts.append(
                        _Run(
                            cur.copy(),
                            RunTrigger.RETRY,
                            run.scheduled_at,
                            run_id,
                            attempt,
                            record,
                            delay=delay,
                            holds=run.holds,
                            done=run.done,
                            due_at=due,
                        )
                    )
                    run.done = None  # the last attempt answers a waiting backfill
                    continue
                self._release(cur, run, now, starts, writes, done)
            return cur

        return patch

    async def _flush(self) -> None:
        """Write back the run state and history of finished runs, many per transaction."""
        await asyncio.sleep(0)
        failures = 0
        history = self.store.keeps_history
        final_record = self._final_record
        while self._pending:
            batch, self._pending = self._pending, []
            finished: dict[str, list[tuple[_Run, ExecutionResult]]] = {}
            writes = RunWrites() if history else None
            finals: list[RunRecord] = []
            for item in batch:
                run, result = item
                final = final_record(run, result) if history else None
                if final is not None and writes is not None:
                    # one write per run: an insert, or the update of its claim-time record
                    (writes.insert if run.record is None else writes.update).append(final)
                    finals.append(final)
                finished.setdefault(run.job.id, []).append(item)
            starts: list[_Run] = []
            done: list[RunRecord] = []
            now = self.now()
            try:
                saved = await self.store.finish_runs(
                    list(finished),
                    self._finish_patch(finished, now, starts, writes, done),
                    {job_id: [result for _, result in runs] for job_id, runs in finished.items()},
                    runs=writes,
                )
            except Exception as exc:
                # keep the results and retry; after a few tries give up: the jobs stay
                # `running` in the store and start() recovers them
                failures += 1
                gave_up = self._store_trouble("write", exc)
                if gave_up or self._failure is not None or failures >= _WRITE_RETRIES:
                    self._unsaved += len(batch)
                    _log.error("store.runs_unsaved", runs=len(batch), note="recovered at start")
                    for run, result in batch:  # a waiting backfill gets its answer anyway
                        if run.done is not None and not run.done.done():
                            run.done.set_result(result)
                    continue
                self._pending[:0] = batch
                await asyncio.sleep(0.5 * failures)
                continue
            self._trouble_since = self._store_problem = None
            if history:
                self._history_jobs.update(finished)
                if writes is not None and writes.rejected:
                    # a fire that already had its record ran again (a concurrent backfill of
                    # the same fire): the first record stands, this one is only logged
                    _log.warning("run.duplicate_record", run_ids=sorted(writes.rejected))
                    finals = [r for r in finals if r.run_id not in writes.rejected]
            by_id = {j.id: j for j in saved}
            log_runs = self._logs_info()
            for run, result in batch:
                if run.duplicate:
                    continue
                self._ran(by_id.get(run.job.id, run.job), result, log=log_runs)
                if run.done is not None and not run.done.done():
                    run.done.set_result(result)
            if self._recorded_hook.get_hookimpls():
                for record in finals + done:
                    self._notify("omnicron_run_recorded", job_id=record.job_id, record=record)
            if done:
                self._log_not_run(done)
            self._spawn_all(starts, writes)
            self._poke_for(min((j.next_run_at for j in saved if j.next_run_at), default=None))

    def _spawn_all(self, starts: list[_Run], writes: RunWrites | None) -> None:
        rejected = writes.rejected if writes is not None else set()
        for run in starts:
            if run.run_id in rejected:
                # that fire already has its record (run before, elsewhere): not again
                _log.warning("run.duplicate", job_id=run.job.id, run_id=run.run_id)
                run.duplicate = True
                run.record = None
                self._pending.append((run, ExecutionResult.failed("duplicate fire: not run")))
                continue
            self._spawn(run)
        if self._pending and (self._flush_task is None or self._flush_task.done()):
            self._flush_task = asyncio.ensure_future(self._flush())

    def _spawn(self, run: _Run) -> None:
        coro = self._run_claimed(run)
        if _EAGER_TASK is not None:
            # Python >= 3.12: the run starts at once, inside this call; a handler that
            # finishes without awaiting never waits for a loop turn of its own
            task: asyncio.Task[None] = _EAGER_TASK(asyncio.get_running_loop(), coro)
        else:
            task = asyncio.ensure_future(coro)
        self._runs.add(task)
        task.add_done_callback(self._run_done)
        policy = run.job.policy
        if policy is not None and policy.overlap == Overlap.CANCEL_OTHER and not task.done():
            self._cancellable.setdefault(run.job.id, {})[run.run_id] = (run, task)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        if len(self._runs) == self.config.max_concurrency - 1:
            self._poke()

    async def _run_claimed(self, run: _Run) -> None:
        try:
            if run.delay > 0:
                await asyncio.sleep(run.delay)
                if run.record is not None:
                    run.record = msgspec.structs.replace(run.record, started_at=self.now())
            info = RunInfo(scheduled_at=run.scheduled_at, job_id=run.job.id)
            result = await self._execute(run.job, info, run)
            self._pending.append((run, result))
        except asyncio.CancelledError:
            # cancelled while waiting for a retry
            reason = run.cancel_reason or "run cancelled: the scheduler stopped"
            run.cancel_reason = reason
            self._pending.append((run, ExecutionResult.failed(reason)))
        finally:
            jobs = self._cancellable.get(run.job.id) if self._cancellable else None
            if jobs is not None:
                jobs.pop(run.run_id, None)
                if not jobs:
                    del self._cancellable[run.job.id]
            if self._flush_task is None or self._flush_task.done():
                self._flush_task = asyncio.ensure_future(self._flush())

    def _cancel_others(self, job_id: str, keep: set[str]) -> None:
        for run_id, (run, task) in list(self._cancellable.get(job_id, {}).items()):
            if run_id not in keep and not task.done():
                run.cancel_reason = run.cancel_reason or "cancelled: a newer fire replaced it"
                task.cancel()

    async def run_due(self) -> int:
        """Claim every fire due by the clock now and start its runs (the loop does this on
        its own; a host or a test with an injected clock may call it). Returns how many runs
        started."""
        started = 0
        while True:
            free = self.config.max_concurrency - len(self._runs)
            if free <= 0:
                return started
            limit = min(free, self.config.claim_batch)
            claimed, n = await self._claim(self.now(), limit)
            started += n
            if claimed < limit:
                return started

    async def wait_idle(self) -> None:
        """Wait until no run is in flight or waiting for its retry and every result is
        saved."""
        while (
            self._runs
            or self._pending
            or (self._flush_task is not None and not self._flush_task.done())
        ):
            if self._runs:
                await asyncio.wait(set(self._runs))
            if self._flush_task is not None and not self._flush_task.done():
                await self._flush_task
            elif self._pending:
                await self._flush()
            await asyncio.sleep(0)

    async def _claim(self, now: datetime, limit: int) -> tuple[int, int]:
        """One claim: returns (jobs claimed, runs started)."""
        starts: list[_Run] = []
        done: list[RunRecord] = []
        history = self.store.keeps_history
        writes = RunWrites() if history else None
        self._cancel_pending = set()
        claimed = await self.store.claim_due(
            now,
            limit,
            self._claim_mark(now, starts, writes, done),
            owner=self.config.owner,
            runs=writes,
        )
        if done:
            self._history_jobs.update(r.job_id for r in done)
        for job_id in self._cancel_pending:
            self._cancel_others(job_id, {r.run_id for r in starts if r.job.id == job_id})
        for record in done:
            self._record_done(record)
        self._log_not_run(done)
        if done:
            # a job whose fires were all missed reaches omnicron_job_ran as a failed result
            missed = {r.job_id: r.scheduled_at for r in done if r.outcome == RunOutcome.MISSED}
            started_jobs = {r.job.id for r in starts}
            for job in claimed:
                if job.id in missed and job.id not in started_jobs:
                    miss = ExecutionResult.failed(job.last_error)
                    miss.scheduled_at = missed[job.id]
                    self._ran(job, miss, log=False)
        self._spawn_all(starts, writes)
        return len(claimed), len(starts) - len(writes.rejected if writes else ())

    async def _store_now(self) -> datetime:
        """Now for deciding what is due: the store's clock (a shared database's, so every
        node agrees), unless a clock was injected (``SchedulerConfig.clock``); this
        machine's clock if the store cannot say."""
        if self._clock is not utcnow:
            return self.now()
        try:
            return await self.store.now()
        except Exception as exc:
            _log.error("store.read_failed", error=f"{type(exc).__name__}: {exc}")
            return self.now()

    async def _loop(self) -> None:
        assert self._wake is not None
        wake = self._wake
        claim_batch = self.config.claim_batch
        max_sleep = (
            min(_MAX_SLEEP, self.config.external_check.total_seconds())
            if self.store.backend.external_writers
            else _MAX_SLEEP
        )
        while not self._stopping:
            wake.clear()
            free = self.config.max_concurrency - len(self._runs)
            if free > 0:
                limit = min(free, claim_batch)
                try:
                    claimed, _ = await self._claim(await self._store_now(), limit)
                    self._trouble_since = self._store_problem = None
                except Exception as exc:  # a store hiccup must not kill the loop
                    if self._store_trouble("claim", exc):
                        return
                    claimed = 0
                    await asyncio.sleep(1.0)
                if claimed == limit:
                    await asyncio.sleep(0)
                    continue
                try:
                    next_at = await self.store.next_due_at()
                except Exception as exc:  # retry soon rather than let the loop die
                    if self._store_trouble("read", exc):
                        return
                    next_at = self.now() + timedelta(seconds=1)
                delay = (
                    max_sleep
                    if next_at is None
                    else (next_at - await self._store_now()).total_seconds()
                )
            else:
                delay = max_sleep  # woken when a slot frees
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            delay = min(delay, max_sleep)
            self._wake_at = self.now() + timedelta(seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            self._wake_at = None

    # -- backfill -----------------------------------------------------------------------------

    async def backfill(
        self,
        job_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: Overlap | str = Overlap.BUFFER_ALL,
        rate: float = 10.0,
    ) -> BackfillResult:
        """Run the job's fires in ``[start, end]`` (nominal fire times of its schedule, in
        order) and wait for them. Idempotent: a fire that already has a history record (run
        on schedule, or by an earlier backfill) is not run again. At most ``rate`` starts a
        second. ``overlap``: ``buffer_all`` runs them one after another, ``allow_all`` up to
        the job's ``policy.concurrency`` at once, ``skip`` records a fire skipped when another
        run of the job is in flight at its turn."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("backfill times must be aware datetimes")
        if end < start:
            raise ValueError("backfill end must not be before its start")
        if rate <= 0:
            raise ValueError("backfill rate must be positive")
        overlap = Overlap(overlap)
        if overlap not in (Overlap.BUFFER_ALL, Overlap.ALLOW_ALL, Overlap.SKIP):
            raise ValueError("backfill overlap must be buffer_all, allow_all or skip")
        if not self.store.keeps_history:
            raise ValueError("backfill needs a store that keeps run history")
        job = await self.store.get(job_id)
        fires: list[datetime] = []
        if job.is_recurring():
            cursor = start - _US
            while len(fires) <= _BACKFILL_MAX:
                nxt = self._times.after(job, cursor)
                if nxt is None or nxt > end:
                    break
                fires.append(nxt)
                cursor = nxt
        elif job.schedule.once is not None and start <= job.schedule.once <= end:
            fires.append(job.schedule.once.astimezone(UTC))
        if len(fires) > _BACKFILL_MAX:
            raise ValueError(
                f"backfill range holds more than {_BACKFILL_MAX} fires; split it into smaller ranges"
            )
        result = BackfillResult(fires=len(fires))
        width = FireTimes.policy(job).concurrency if overlap == Overlap.ALLOW_ALL else 1
        gap = 1.0 / rate
        inflight: set[asyncio.Future[ExecutionResult]] = set()
        loop = asyncio.get_running_loop()
        for index, at in enumerate(fires):
            if index:
                await asyncio.sleep(gap)
            if overlap == Overlap.SKIP:
                current = await self.store.get(job_id)
                busy = (
                    bool(inflight) or current.status == JobStatus.RUNNING or current.active_runs > 0
                )
                if busy:
                    now = self.now()
                    rec = self._new_record(
                        job_id,
                        RunTrigger.BACKFILL,
                        RunOutcome.SKIPPED,
                        at,
                        now,
                        error=_SKIPPED_OVERLAP,
                    )
                    writes = RunWrites(insert=[rec])

                    def count_skip(cur: Job) -> Job:
                        self._count(cur, RunOutcome.SKIPPED)
                        return cur

                    await self.store.update_many([job_id], count_skip, runs=writes)
                    if rec.run_id in writes.rejected:
                        result.already_recorded += 1
                    else:
                        result.skipped += 1
                        self._record_done(rec)
                    continue
            while len(inflight) >= width:
                finished, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                inflight -= finished
                result.failed += sum(1 for f in finished if not f.result().success)
            now = self.now()
            rec = self._new_record(job_id, RunTrigger.BACKFILL, RunOutcome.RUNNING, at, now)
            writes = RunWrites(insert=[rec])
            await self.store.write_runs(writes)
            if rec.run_id in writes.rejected:
                result.already_recorded += 1
                continue
            result.started += 1
            current = await self.store.get(job_id)
            future: asyncio.Future[ExecutionResult] = loop.create_future()
            run = _Run(current, RunTrigger.BACKFILL, at, rec.run_id, record=rec, done=future)
            self._history_jobs.add(job_id)
            self._spawn(run)
            inflight.add(future)
        if inflight:
            await asyncio.wait(inflight)
            result.failed += sum(1 for f in inflight if not f.result().success)
        return result

    # -- retention ------------------------------------------------------------------------------

    async def prune_history(self, *, batch: int = 1000) -> int:
        """Apply the retention limits now (``history_keep`` per job with new records,
        ``history_max_age``), in batches of ``batch``; returns how many records went."""
        if not self.store.keeps_history:
            return 0
        cfg = self.config
        jobs, self._history_jobs = sorted(self._history_jobs), set()
        older = self.now() - cfg.history_max_age if cfg.history_max_age is not None else None
        total = 0
        step = 200
        for start in range(0, max(len(jobs), 1), step):
            chunk = jobs[start : start + step] if cfg.history_keep is not None else []
            while True:
                n = await self.store.prune_runs(
                    job_ids=chunk,
                    keep_last=cfg.history_keep,
                    older_than=older if start == 0 else None,
                    limit=batch,
                )
                total += n
                if n < batch:
                    break
                await asyncio.sleep(0)
            await asyncio.sleep(0)
        return total

    async def _prune_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.history_prune_interval.total_seconds())
            try:
                pruned = await self.prune_history()
            except Exception as exc:
                _log.error("history.prune_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if pruned:
                _log.info("history.pruned", records=pruned)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the store, recover runs and jobs left ``running`` by a crash (their records
        become ``interrupted``), compute missing fire times, and start firing. Overdue
        recurring jobs are caught up by their policy (default: the latest fire runs once)."""
        if self._running:
            raise SchedulerAlreadyRunningError()
        self._running = True
        self._stopping = False
        self._failure = None
        self._trouble_since = self._store_problem = None
        self._unsaved = 0
        if self._failed is None:
            self._failed = asyncio.Event()
        self._failed.clear()
        try:
            await self.store.open()
            await self._recover()
        except BaseException:
            self._running = False
            raise
        self._run_log = _log.bind()
        self._wake = asyncio.Event()
        self.store.backend.watch(self._poke)
        self._loop_task = asyncio.ensure_future(self._loop())
        if self.store.keeps_history and (
            self.config.history_keep is not None or self.config.history_max_age is not None
        ):
            self._prune_task = asyncio.ensure_future(self._prune_loop())
        _log.info("scheduler.started", location=str(self.location))

    async def recover(self) -> None:
        """What :meth:`start` does first: mark runs a dead scheduler left ``running`` as
        ``interrupted``, free their jobs, and schedule jobs saved without a fire time."""
        await self.store.open()
        await self._recover()

    async def _recover(self) -> None:
        now = self.now()
        handled: set[str] = set()
        owner = self.config.owner
        # 1. records left running (policies other than skip, manual and backfill runs)
        while True:
            page = await self.store.running_runs(1000, owner=owner)
            if not page:
                break
            known = {r.run_id: self._interrupted(r, now) for r in page}
            writes = RunWrites(update=list(known.values()))
            done: list[RunRecord] = []
            ids = sorted({r.job_id for r in page})
            await self.store.update_many(ids, self._unstick(now, writes, done, known), runs=writes)
            handled.update(ids)
            for record in [*known.values(), *done]:
                self._record_done(record)
        # 2. jobs left running (overlap skip: the in-flight fire is in the job row)
        stuck = [i for i in await self.store.recover_running(owner=owner) if i not in handled]
        if stuck or handled:
            if stuck:
                writes = RunWrites()
                done = []
                await self.store.update_many(
                    stuck,
                    self._unstick(now, writes, done, {}),
                    runs=writes if self.store.keeps_history else None,
                )
                for record in done:
                    self._record_done(record)
            _log.warning("scheduler.recovered_running", count=len(stuck) + len(handled))
        seen: set[str] = set()
        while True:
            unscheduled = [j for j in await self.store.unscheduled(1000) if j.id not in seen]
            if not unscheduled:
                break
            seen.update(j.id for j in unscheduled)
            await self.store.update_many([j.id for j in unscheduled], self._schedule_or_park(now))

    @staticmethod
    def _interrupted(record: RunRecord, now: datetime) -> RunRecord:
        return msgspec.structs.replace(
            record,
            outcome=RunOutcome.INTERRUPTED,
            finished_at=now,
            error=_INTERRUPTED
            if record.started_at is not None
            else "interrupted: the scheduler stopped before the run started",
        )

    def _unstick(
        self,
        now: datetime,
        writes: RunWrites,
        done: list[RunRecord],
        known: dict[str, RunRecord],
    ) -> Callable[[Job], Job | None]:
        """Recovery's patch: record the job's in-flight fires ``interrupted`` (those not in
        ``known``, the records already found running), its buffered fires ``missed``, and
        free it; its next fire follows its catch-up policy."""
        by_job: dict[str, int] = {}
        for record in known.values():
            by_job[record.job_id] = by_job.get(record.job_id, 0) + 1

        def patch(cur: Job) -> Job | None:
            interrupted = by_job.get(cur.id, 0)
            stuck = cur.status == JobStatus.RUNNING or bool(cur.in_flight) or bool(cur.buffered)
            if not stuck and not interrupted:
                return None
            for entry in cur.in_flight or ():
                run_id = fire_run_id(cur.id, entry.at, entry.attempt)
                if run_id in known:
                    continue
                interrupted += 1
                rec = self._new_record(
                    cur.id,
                    RunTrigger(entry.trigger),
                    RunOutcome.INTERRUPTED,
                    entry.at,
                    now,
                    run_id=run_id,
                    attempt=entry.attempt,
                    error=_INTERRUPTED,
                )
                writes.update.append(rec)
                done.append(rec)
            if interrupted:
                self._count(cur, RunOutcome.INTERRUPTED, interrupted)
            for waiting in cur.buffered or ():
                self._count(cur, RunOutcome.MISSED)
                rec = self._new_record(
                    cur.id,
                    RunTrigger(waiting.trigger),
                    RunOutcome.MISSED,
                    waiting.at,
                    now,
                    error="missed: the scheduler stopped before it ran",
                )
                writes.insert.append(rec)
                done.append(rec)
            if not stuck:
                return cur
            cur.buffered = None
            cur.in_flight = None
            if cur.status == JobStatus.RUNNING:
                cur.status = (
                    JobStatus.ENABLED
                    if cur.is_recurring() and not cur.finished
                    else JobStatus.DISABLED
                )
            cur.last_error = _INTERRUPTED
            if cur.status != JobStatus.ENABLED:
                self._times.set_next(cur, None)
            elif cur.next_run_at is None:
                self._schedule(cur, now)
            # else: keep the next fire it had; the claim applies its catch-up policy
            return cur

        return patch

    def _schedule_or_park(self, now: datetime) -> Callable[[Job], Job | None]:
        def patch(cur: Job) -> Job | None:
            if cur.status != JobStatus.ENABLED or cur.next_run_at is not None:
                return None
            if cur.finished or cur.active_runs or cur.buffered:
                return None  # finished, or its runs in flight will settle it
            try:
                # the schedule only: actions are re-checked by their executor at run time
                validate_job(cur, None, self.location, check_action=False)
                self._schedule(cur, now)
            except JobValidationError as exc:
                # a stored job we cannot run (written by something else): park it, say why
                cur.status = JobStatus.DISABLED
                cur.last_error = f"cannot schedule: {exc.message}"
                _log.error("job.unschedulable", job_id=cur.id, error=exc.message)
            return cur

        return patch

    async def stop(self) -> None:
        """Stop firing; wait up to ``shutdown_grace`` for runs in flight (then cancel them),
        save their state. The scheduler can be started again."""
        if not self._running:
            return
        self._stopping = True
        self._poke()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
            self._prune_task = None
        if self._runs:
            _, pending = await asyncio.wait(
                set(self._runs), timeout=self.config.shutdown_grace.total_seconds()
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._flush_task is not None:
            await self._flush_task
        while self._pending:
            await self._flush()
            if self._runs:  # buffered fires started by the flush: cancel them too
                for task in set(self._runs):
                    task.cancel()
                await asyncio.wait(set(self._runs))
        await self.registry.aclose()
        self.store.backend.watch(None)
        self._running = False
        self._wake = None
        _log.info("scheduler.stopped")

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
