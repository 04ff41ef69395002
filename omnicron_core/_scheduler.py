"""The Scheduler: timers instead of polling, claims through the store, bounded concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

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
from ._schedule import first_fire, next_fire_after, resolve_zone
from ._store import Store, StoreConfig
from ._validation import validate_job, validate_job_async

__all__ = ["TUNING_FIELDS", "ExecutionHandler", "Scheduler", "SchedulerConfig"]

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
    - ``misfire_grace``: a fire later than this is skipped (recorded, not run); ``None`` runs
      every late fire once (coalesced).
    - ``external_check``: on a store other processes also write (an SQLite file), the longest
      the loop goes before re-reading the earliest fire time (one indexed query), so a job
      added by another process (``omnicron jobs add``) is not missed. Changes made through
      this scheduler always wake it at once.
    - ``store_error_window``: how long a *permanent* store error (read-only, damaged, full,
      missing: :attr:`StoreError.transient` is False) may last before the scheduler stops
      firing and reports it in :attr:`Scheduler.failure` (``omnicron run`` then exits 1).
      Transient errors (busy, locked) are retried for as long as they last.
    - ``owner``: this scheduler's name on a shared store (``host:pid``).
    - ``limits``: size bounds on every job added or updated (:class:`JobLimits`).

    The four spans accept a ``timedelta``, seconds (``30.0``) or a Go duration string
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


class Scheduler:
    """Runs jobs at their fire times. Methods are coroutines, as the original's took a context."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        cfg = config or SchedulerConfig()
        self.config = cfg
        self.location: tzinfo = resolve_zone(cfg.location, field="location")
        self.registry = cfg.registry or Registry(location=self.location)
        self.store = cfg.store or Store(StoreConfig(url="memory://"), registry=self.registry)
        self._handler: ExecutionHandler | None = cfg.handler
        self._running = False
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._pending: list[tuple[Job, ExecutionResult, datetime]] = []
        self._flush_task: asyncio.Task[None] | None = None
        self._wake_at: datetime | None = None
        self._ran_hook = self.registry.plugin_manager.hook.omnicron_job_ran
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

    def _next_after(self, job: Job, after: datetime) -> datetime | None:
        nxt = next_fire_after(
            job.schedule, after, location=self.location, anchor=job.created_at or after
        )
        return nxt.astimezone(UTC) if nxt is not None else None

    def _schedule(self, job: Job, now: datetime) -> None:
        """Set ``next_run_at`` for the job's status: the real next fire time, or none."""
        job.next_run_at = (
            first_fire(job, now, self.location) if job.status == JobStatus.ENABLED else None
        )

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
        await self.validate(job)
        self._schedule(job, now)
        return job

    async def add_job(self, job: Job) -> Job:
        """Validate and save a job, and schedule it. Returns the saved copy (with
        ``next_run_at``). Nothing is saved when validation fails. An existing id is replaced,
        as in the original."""
        saved = await self._prepare_new(job, utcnow())
        await self.store.save(saved)
        self._copy_state(saved, job)
        self._poke_for(saved.next_run_at)
        self._changed(saved, "added")
        return saved

    async def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        """Add many jobs in one transaction: all are validated first, and either all are saved
        or none. :class:`JobValidationError` names the index of the first bad job."""
        now = utcnow()
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
        for name in ("created_at", "updated_at", "next_run_at", "status"):
            setattr(dst, name, getattr(src, name))

    async def update_job(self, job: Job) -> Job:
        """Replace a job's definition, keeping its run state. A job whose schedule is
        unchanged keeps its next fire time. :class:`JobNotFoundError` for an unknown id.

        A job an agent made stays marked (``origin``) whatever the update says."""
        now = utcnow()
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
            new.run_count, new.last_run_at, new.last_error = (
                cur.run_count,
                cur.last_run_at,
                cur.last_error,
            )
            if cur.status == JobStatus.RUNNING and new.status == JobStatus.ENABLED:
                new.status = JobStatus.RUNNING  # the run in flight will finish it
            if new.status == JobStatus.DISABLED:
                new.next_run_at = None
            elif new.schedule == cur.schedule and cur.next_run_at is not None:
                new.next_run_at = cur.next_run_at
            else:
                new.next_run_at = first_fire(new, now, self.location)
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
        """Delete a job; an unknown id is not an error. A run in flight finishes, unrecorded."""
        try:
            job: Job | None = await self.store.get(job_id)
        except JobNotFoundError:
            job = None
        await self.store.delete(job_id)
        if job is not None:
            self._changed(job, "removed")

    async def enable_job(self, job_id: str) -> Job:
        """Enable a job and compute its next fire time (no-op if enabled or running)."""
        now = utcnow()

        def patch(cur: Job) -> Job | None:
            if cur.status != JobStatus.DISABLED:
                return None
            cur.status = JobStatus.ENABLED
            cur.updated_at = now
            cur.next_run_at = first_fire(cur, now, self.location)
            return cur

        saved = await self.store.update(job_id, patch)
        if saved is None:
            return await self.store.get(job_id)  # JobNotFoundError, or already enabled
        self._poke_for(saved.next_run_at)
        self._changed(saved, "enabled")
        return saved

    async def disable_job(self, job_id: str) -> Job:
        """Disable a job and clear its next fire time (a run in flight finishes)."""
        now = utcnow()

        def patch(cur: Job) -> Job | None:
            if cur.status == JobStatus.DISABLED:
                return None
            cur.status = JobStatus.DISABLED
            cur.updated_at = now
            cur.next_run_at = None
            return cur

        saved = await self.store.update(job_id, patch)
        if saved is None:
            return await self.store.get(job_id)
        self._changed(saved, "disabled")
        return saved

    async def get_job(self, job_id: str) -> Job:
        return await self.store.get(job_id)

    async def list_jobs(self) -> list[Job]:
        return await self.store.list()

    async def trigger_job(self, job_id: str) -> ExecutionResult:
        """Run a job now and wait for it, whatever its status, started or not. Records
        ``last_run_at``, ``run_count`` and ``last_error``; leaves status and ``next_run_at``."""
        job = await self.store.get(job_id)
        result = await self._execute(job, RunInfo(run_id=str(uuid.uuid4()), manual=True))

        def patch(cur: Job) -> Job:
            self._apply_result(cur, result)
            return cur

        saved = await self.store.update(job_id, patch)
        self._ran(saved or job, result)
        return result

    # -- running ------------------------------------------------------------------------

    async def _execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        started = utcnow()
        try:
            handler = self._handler
            if handler is not None:
                outcome = handler(job)
                result = await outcome if inspect.isawaitable(outcome) else outcome
                if not isinstance(result, ExecutionResult):
                    raise TypeError(
                        f"handler returned {type(result).__name__}, not ExecutionResult"
                    )
            else:
                executor = self.registry.executors.get(job.action.type)
                if executor is None:
                    result = ExecutionResult.failed(f"unknown action type: {job.action.type}")
                else:
                    # executors re-check their action inside execute (cheaply, no I/O)
                    result = await executor.execute(job, run)
        except asyncio.CancelledError:
            result = ExecutionResult.failed("run cancelled: the scheduler stopped")
        except JobValidationError as exc:
            result = ExecutionResult.failed(exc.message)
        except Exception as exc:
            result = ExecutionResult.failed(describe_error(exc))
        finished = utcnow()
        result.started_at = started
        result.finished_at = finished
        result.duration = (finished - started) // timedelta(microseconds=1) * _NS_PER_US
        if run.scheduled_at is not None:
            result.scheduled_at = run.scheduled_at
            result.lateness = (
                max(0, (started - run.scheduled_at) // timedelta(microseconds=1)) * _NS_PER_US
            )
        return result

    @staticmethod
    def _apply_result(job: Job, result: ExecutionResult) -> None:
        job.last_run_at = result.finished_at
        job.run_count += 1
        job.last_error = "" if result.success else (result.error or "failed")

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

    async def _run_claimed(self, job: Job, scheduled_at: datetime) -> None:
        try:
            if (
                self.config.misfire_grace is not None
                and utcnow() - scheduled_at > self.config.misfire_grace
            ):
                result = ExecutionResult.failed(
                    f"missed: started more than {self.config.misfire_grace} after its fire time"
                )
                result.scheduled_at = scheduled_at
                missed = True
            else:
                run = RunInfo(scheduled_at=scheduled_at, job_id=job.id)
                result = await self._execute(job, run)
                missed = False
            self._pending.append((job, result, scheduled_at))
            if missed:
                _log.warning("job.missed", job_id=job.id, scheduled_at=scheduled_at)
        finally:
            if self._flush_task is None or self._flush_task.done():
                self._flush_task = asyncio.ensure_future(self._flush())

    def _finish_patch(
        self, results: dict[str, ExecutionResult], now: datetime
    ) -> Callable[[Job], Job]:
        def patch(cur: Job) -> Job:
            result = results[cur.id]
            if result.started_at is not None:
                self._apply_result(cur, result)
            else:
                cur.last_error = result.error
            if cur.status == JobStatus.RUNNING:
                cur.status = JobStatus.ENABLED if cur.is_recurring() else JobStatus.DISABLED
            if cur.status != JobStatus.ENABLED:
                cur.next_run_at = None
            elif cur.is_recurring() and (cur.next_run_at is None or cur.next_run_at <= now):
                # ticks that fell inside the run are skipped, not queued
                cur.next_run_at = self._next_after(cur, now)
            return cur

        return patch

    async def _flush(self) -> None:
        """Write back the run state of finished runs, many per transaction."""
        await asyncio.sleep(0)
        failures = 0
        while self._pending:
            batch, self._pending = self._pending, []
            results = {job.id: result for job, result, _ in batch}
            try:
                saved = await self.store.update_many(
                    list(results), self._finish_patch(results, utcnow())
                )
            except Exception as exc:
                # keep the results and retry; after a few tries give up: the jobs stay
                # `running` in the store and start() recovers them
                failures += 1
                gave_up = self._store_trouble("write", exc)
                if gave_up or self._failure is not None or failures >= _WRITE_RETRIES:
                    self._unsaved += len(batch)
                    _log.error("store.runs_unsaved", runs=len(batch), note="recovered at start")
                    continue
                self._pending[:0] = batch
                await asyncio.sleep(0.5 * failures)
                continue
            self._trouble_since = self._store_problem = None
            by_id = {j.id: j for j in saved}
            log_runs = self._logs_info()
            for job, result, _ in batch:
                self._ran(by_id.get(job.id, job), result, log=log_runs)
            self._poke_for(min((j.next_run_at for j in saved if j.next_run_at), default=None))

    def _spawn(self, job: Job, scheduled_at: datetime) -> None:
        coro = self._run_claimed(job, scheduled_at)
        if _EAGER_TASK is not None:
            # Python >= 3.12: the run starts at once, inside this call; a handler that
            # finishes without awaiting never waits for a loop turn of its own
            task: asyncio.Task[None] = _EAGER_TASK(asyncio.get_running_loop(), coro)
        else:
            task = asyncio.ensure_future(coro)
        self._runs.add(task)
        task.add_done_callback(self._run_done)

    def _run_done(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        if len(self._runs) == self.config.max_concurrency - 1:
            self._poke()

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
                now = utcnow()
                scheduled: dict[str, datetime] = {}
                # jobs sharing an expression share its next fire (everyone's "0 9 * * *")
                memo: dict[tuple[str, str], datetime | None] = {}

                def mark(
                    job: Job,
                    now: datetime = now,
                    scheduled: dict[str, datetime] = scheduled,
                    memo: dict[tuple[str, str], datetime | None] = memo,
                ) -> Job:
                    scheduled[job.id] = job.next_run_at or now
                    job.status = JobStatus.RUNNING
                    sched = job.schedule
                    if sched.cron and not sched.cron.startswith("@every"):
                        key = (sched.cron, sched.timezone)
                        if key not in memo:
                            memo[key] = self._next_after(job, now)
                        job.next_run_at = memo[key]
                    elif job.is_recurring():
                        job.next_run_at = self._next_after(job, now)
                    else:
                        job.next_run_at = None
                    return job

                limit = min(free, claim_batch)
                try:
                    claimed = await self.store.claim_due(now, limit, mark, owner=self.config.owner)
                    self._trouble_since = self._store_problem = None
                except Exception as exc:  # a store hiccup must not kill the loop
                    if self._store_trouble("claim", exc):
                        return
                    claimed = []
                    await asyncio.sleep(1.0)
                for job in claimed:
                    self._spawn(job, scheduled[job.id])
                if len(claimed) == limit:
                    await asyncio.sleep(0)
                    continue
                try:
                    next_at = await self.store.next_due_at()
                except Exception as exc:  # retry soon rather than let the loop die
                    if self._store_trouble("read", exc):
                        return
                    next_at = utcnow() + timedelta(seconds=1)
                delay = max_sleep if next_at is None else (next_at - utcnow()).total_seconds()
            else:
                delay = max_sleep  # woken when a slot frees
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            delay = min(delay, max_sleep)
            self._wake_at = utcnow() + timedelta(seconds=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            self._wake_at = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the store, recover jobs left ``running`` by a crash, compute missing fire
        times, and start firing. Overdue recurring jobs run once (coalesced)."""
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
        self._loop_task = asyncio.ensure_future(self._loop())
        _log.info("scheduler.started", location=str(self.location))

    async def _recover(self) -> None:
        now = utcnow()
        stuck = await self.store.recover_running(owner=self.config.owner)
        if stuck:

            def unstick(cur: Job) -> Job | None:
                if cur.status != JobStatus.RUNNING:
                    return None
                cur.status = JobStatus.ENABLED if cur.is_recurring() else JobStatus.DISABLED
                cur.last_error = "interrupted: the scheduler stopped during the run"
                cur.next_run_at = (
                    first_fire(cur, now, self.location) if cur.is_recurring() else None
                )
                return cur

            await self.store.update_many(stuck, unstick)
            _log.warning("scheduler.recovered_running", count=len(stuck))
        seen: set[str] = set()
        while True:
            page = [j for j in await self.store.unscheduled(1000) if j.id not in seen]
            if not page:
                break
            seen.update(j.id for j in page)
            await self.store.update_many([j.id for j in page], self._schedule_or_park(now))

    def _schedule_or_park(self, now: datetime) -> Callable[[Job], Job | None]:
        def patch(cur: Job) -> Job | None:
            if cur.status != JobStatus.ENABLED or cur.next_run_at is not None:
                return None
            try:
                # the schedule only: actions are re-checked by their executor at run time
                validate_job(cur, None, self.location, check_action=False)
                cur.next_run_at = first_fire(cur, now, self.location)
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
        if self._pending:
            await self._flush()
        await self.registry.aclose()
        self._running = False
        self._wake = None
        _log.info("scheduler.stopped")

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
