"""Schedules: validation, time zones and fire times for cron, once and interval jobs.

One place for the time arithmetic of the three schedule kinds; cron expressions themselves
are compiled by :mod:`omnicron_core.cron` (on APScheduler's trigger classes).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import JobValidationError
from ._fire_times import successive
from ._models import Job, Schedule

__all__ = [
    "EARLIEST",
    "LATEST",
    "first_fire",
    "iter_fire_times",
    "local_zone",
    "next_fire_after",
    "next_fire_times",
    "resolve_zone",
    "validate_schedule",
]

_US = timedelta(microseconds=1)

#: The range of times a schedule may name. Every zone can show any instant in it (the
#: largest UTC offsets are +14h and -12h; ``datetime`` ends at year 9999), with room for the
#: arithmetic of fire times; a job outside it could be saved but never listed.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def resolve_zone(zone: tzinfo | str | None, *, field: str = "schedule.timezone") -> tzinfo:
    """A tzinfo for an IANA name (or a tzinfo, or ``None`` for the local zone)."""
    if zone is None:
        return local_zone()
    if isinstance(zone, tzinfo):
        return zone
    try:
        if not zone or zone.startswith(("/", ".")) or ".." in zone:
            raise ValueError(zone)
        return _zone(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise JobValidationError(
            f"unknown time zone {zone!r}: expected an IANA name such as 'Europe/Berlin' or 'UTC'",
            field=field,
        ) from None


@functools.lru_cache(maxsize=1)
def local_zone() -> tzinfo:
    """The machine's zone as an IANA zone (so DST is right), falling back to UTC."""
    try:
        import tzlocal

        zone: tzinfo = tzlocal.get_localzone()
        return zone
    except Exception:  # an odd /etc/localtime must not stop the scheduler
        return UTC


def schedule_zone(schedule: Schedule, location: tzinfo | None) -> tzinfo:
    """The zone a schedule is evaluated in: its own ``timezone``, else the scheduler's."""
    if schedule.timezone:
        return resolve_zone(schedule.timezone)
    return location if location is not None else local_zone()


def validate_schedule(schedule: Schedule, location: tzinfo | None = None) -> None:
    """Raise :class:`JobValidationError` (original's messages first) unless exactly one
    well-formed schedule kind is set."""
    kinds = schedule.kinds()
    if not kinds:
        raise JobValidationError("schedule is required (cron, once, or interval)", field="schedule")
    if len(kinds) > 1:
        raise JobValidationError(
            "only one schedule type allowed (cron, once, or interval)", field="schedule"
        )
    zone = schedule_zone(schedule, location)
    if schedule.cron:
        from .cron import validate_cron

        validate_cron(schedule.cron, zone)
    elif schedule.interval is not None:
        if schedule.interval.ns < 1_000_000:
            raise JobValidationError(
                f"interval {schedule.interval} is too short; the minimum is 1ms",
                field="schedule.interval",
            )
    elif schedule.once is not None:
        once = schedule.once
        if once.tzinfo is None:
            raise JobValidationError(
                "once must be an RFC 3339 time with a zone offset", field="schedule.once"
            )
        if not EARLIEST <= once < LATEST:
            shown = once.isoformat() if once.utcoffset() is not None else str(once)
            raise JobValidationError(
                f"once time {shown} is outside the supported range; give a time from "
                f"{EARLIEST:%Y-%m-%d} up to (not including) {LATEST:%Y-%m-%d}",
                field="schedule.once",
            )


def _interval_after(anchor: datetime, interval_ns: int, after: datetime) -> datetime:
    """The first ``anchor + k*interval`` (k >= 1) strictly after ``after``, in elapsed time."""
    step_us = max(1, interval_ns // 1000)
    elapsed_us = (after - anchor) // _US
    k = 1 if elapsed_us < step_us else elapsed_us // step_us + 1
    return (anchor + timedelta(microseconds=k * step_us)).astimezone(UTC)


def next_fire_after(
    schedule: Schedule,
    after: datetime,
    *,
    location: tzinfo | None = None,
    anchor: datetime | None = None,
) -> datetime | None:
    """The first fire time strictly after ``after``, or ``None`` if there is none.

    ``anchor`` is when an interval schedule (or ``@every``) started counting: fires fall at
    ``anchor + k*interval``, k >= 1 (the original's "first run one interval after creation"),
    and missed ones are skipped rather than queued.
    """
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    if schedule.cron:
        from .cron import parse_cron

        return parse_cron(schedule.cron, schedule_zone(schedule, location)).next_after(
            after, anchor=anchor
        )
    if schedule.interval is not None and schedule.interval.ns > 0:
        return _interval_after(anchor or after, schedule.interval.ns, after)
    if schedule.once is not None:
        return schedule.once if schedule.once > after else None
    return None


def first_fire(job: Job, now: datetime, location: tzinfo | None) -> datetime | None:
    """The ``next_run_at`` an enabled job gets when it is added, enabled or re-scheduled.

    A one-time job keeps its time even when it is already past, so it runs once, late.
    """
    if job.schedule.once is not None and not job.is_recurring():
        return job.schedule.once.astimezone(UTC)
    nxt = next_fire_after(job.schedule, now, location=location, anchor=job.created_at or now)
    return nxt.astimezone(UTC) if nxt is not None else None


def iter_fire_times(
    schedule: Schedule,
    after: datetime,
    *,
    location: tzinfo | None = None,
    anchor: datetime | None = None,
    first: datetime | None = None,
) -> Iterator[datetime]:
    """The fire times of ``schedule`` strictly after ``after``, in order, lazily (take what you
    need with ``itertools.islice``). ``first`` (a stored ``next_run_at``) comes first and the
    rest follow it; ``anchor`` defaults to ``after`` (see :func:`next_fire_after`).

    Every preview of fire times (the API, ``omnicron next``, ``omnicron jobs show``, the agent
    tools) goes through here; the schedule is assumed valid (:func:`validate_schedule`).
    """
    start = anchor or after

    def step(cursor: datetime) -> datetime | None:
        return next_fire_after(schedule, cursor, location=location, anchor=start)

    return successive(step, after, first=first)


def next_fire_times(
    schedule: Schedule,
    *,
    after: datetime,
    count: int,
    location: tzinfo | str | None = None,
    anchor: datetime | None = None,
) -> list[datetime]:
    """The next ``count`` fire times of ``schedule`` strictly after ``after`` (aware datetimes,
    in the schedule's zone for cron, as given otherwise)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    zone = resolve_zone(location, field="location") if location is not None else None
    validate_schedule(schedule, zone)
    return list(
        itertools.islice(iter_fire_times(schedule, after, location=zone, anchor=anchor), count)
    )
