"""The per-job schedule policies applied to fire times: bounds (start_at, end_at, max_runs),
deterministic jitter, and the enumeration of the fires that came due (for catch-up).

One place for this arithmetic: the Scheduler's claim, finish, add, enable and recovery paths
all go through :class:`FireTimes`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

from ._fire_times import successive
from ._models import Job, JobStatus
from ._runs import Policy, deterministic_jitter
from ._schedule import first_fire, next_fire_after

__all__ = ["DEFAULT_POLICY", "MAX_ENUMERATED", "FireTimes"]

DEFAULT_POLICY = Policy()
#: The most due fires enumerated at one claim (older ones past the cap are not recorded
#: one by one; k8s stops at 100, Temporal buffers 1000).
MAX_ENUMERATED = 1000
_US = timedelta(microseconds=1)


class FireTimes:
    """Fire-time arithmetic of jobs with their policies, in one zone context."""

    def __init__(self, location: tzinfo | None) -> None:
        self.location = location

    # -- nominal fires --------------------------------------------------------------------

    def after(self, job: Job, after: datetime) -> datetime | None:
        """The job's first nominal fire strictly after ``after`` within its bounds."""
        policy = job.policy
        if policy is not None and policy.start_at is not None and after < policy.start_at:
            after = policy.start_at - _US
        nxt = next_fire_after(
            job.schedule, after, location=self.location, anchor=job.created_at or after
        )
        if nxt is None:
            return None
        nxt = nxt.astimezone(UTC)
        if policy is not None and policy.end_at is not None and nxt > policy.end_at:
            return None
        return nxt

    def first(self, job: Job, now: datetime) -> datetime | None:
        """The first nominal fire of a job added or enabled at ``now`` (a one-time job keeps
        its time even when past, so it runs once, late)."""
        policy = job.policy
        if policy is None or (policy.start_at is None and policy.end_at is None):
            return first_fire(job, now, self.location)
        if job.schedule.once is not None and not job.is_recurring():
            once = job.schedule.once.astimezone(UTC)
            if policy.start_at is not None and once < policy.start_at:
                return None
            if policy.end_at is not None and once > policy.end_at:
                return None
            return once
        return self.after(job, now)

    def due(
        self,
        job: Job,
        fire: datetime,
        now: datetime,
        memo: Callable[[Job, datetime], datetime | None],
    ) -> tuple[list[datetime], datetime | None, bool]:
        """The nominal fires from ``fire`` up to ``now`` (in order, at most MAX_ENUMERATED,
        the latest kept when capped), the first one after ``now``, and whether the list was
        capped. ``memo(job, t)`` is :meth:`after`, possibly memoised."""
        if not job.is_recurring():
            return [fire], None, False
        fires = [fire]
        nxt = memo(job, fire)
        capped = False
        while nxt is not None and nxt <= now:
            if len(fires) >= MAX_ENUMERATED:
                capped = True
                # jump: the latest fire at or before now is what catch-up may still run
                last = self._last_at_or_before(job, now)
                if last is not None and last > fires[-1]:
                    fires.append(last)
                nxt = self.after(job, now)
                break
            fires.append(nxt)
            nxt = memo(job, nxt)
        return fires, nxt, capped

    def _last_at_or_before(self, job: Job, now: datetime) -> datetime | None:
        # fires are at most one period apart; step back a bounded number of periods
        nxt = self.after(job, now)
        if nxt is None:
            return None
        probe = now
        span = timedelta(milliseconds=1)
        for _ in range(48):
            probe = now - span
            first = self.after(job, probe)
            if first is not None and first <= now:
                cur = first
                while True:
                    following = self.after(job, cur)
                    if following is None or following > now:
                        return cur
                    cur = following
            span *= 2
        return None

    # -- previews ---------------------------------------------------------------------------

    def upcoming(self, job: Job, count: int) -> list[datetime]:
        """The job's next ``count`` nominal fire times within its bounds (``start_at``,
        ``end_at``, and the runs ``max_runs`` leaves): none for a disabled or finished job.

        Every preview goes through here: ``Scheduler.describe``, ``omnicron jobs show`` and
        the agent tools' ``next_fire_times`` (``cron_next`` with a draft job)."""
        nominal = self.nominal(job)
        if nominal is None or count <= 0 or job.status == JobStatus.DISABLED or job.finished:
            return []
        policy = self.policy(job)
        if policy.max_runs is not None:
            count = min(count, policy.max_runs - (job.counts.started if job.counts else 0))
        if count <= 0:
            return []
        if not job.is_recurring():
            return [nominal]
        times = successive(lambda t: self.after(job, t), nominal, first=nominal)
        return list(itertools.islice(times, count))

    # -- jitter -----------------------------------------------------------------------------

    def set_next(self, job: Job, nominal: datetime | None) -> None:
        """Set ``next_run_at`` (and ``next_fire_at`` when jitter moves it) for the nominal
        fire ``nominal``: the jitter is deterministic per (job, fire time) and ends before the
        following fire."""
        policy = job.policy
        if nominal is None or policy is None or policy.jitter is None or policy.jitter.ns <= 0:
            job.next_run_at = nominal
            job.next_fire_at = None
            return
        most = timedelta(microseconds=policy.jitter.ns // 1000)
        following = self.after(job, nominal)
        if following is not None:
            most = min(most, following - nominal)
        delay = deterministic_jitter(job.id, nominal, most)
        job.next_run_at = nominal + delay
        job.next_fire_at = nominal if delay else None

    @staticmethod
    def nominal(job: Job) -> datetime | None:
        """The nominal fire time of the job's ``next_run_at``."""
        return job.next_fire_at or job.next_run_at

    @staticmethod
    def policy(job: Job) -> Policy:
        return job.policy or DEFAULT_POLICY
