"""How a job's schedule is shown to an agent: plain English and the next fire times."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from .._cron_parse import split_zone_prefix
from .._errors import JobValidationError
from .._models import Job, JobStatus, Schedule, job_to_builtins
from .._policy import FireTimes
from .._runs import RunRecord
from .._schedule import schedule_zone

__all__ = [
    "answer_zone",
    "describe_schedule",
    "display_zone",
    "fire_preview",
    "history_view",
    "job_view",
    "rfc3339",
    "schedule_extras",
    "zone_name",
]

_UNITS = (
    (86_400_000_000_000, "day"),
    (3_600_000_000_000, "hour"),
    (60_000_000_000, "minute"),
    (1_000_000_000, "second"),
    (1_000_000, "millisecond"),
)


def rfc3339(when: datetime, zone: tzinfo | None = None) -> str:
    """``when`` in ``zone`` as RFC 3339 (``Z`` for UTC, fractions only when present).

    A time the zone cannot show (past year 9999 there) is shown in UTC instead."""
    try:
        local = when.astimezone(zone) if zone is not None else when
    except (OverflowError, ValueError):
        local = when.astimezone(UTC)
    text = local.isoformat(timespec="microseconds" if local.microsecond else "seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def describe_interval(ns: int) -> str:
    """``"Every 1 hour 30 minutes"``; sub-millisecond remainders are shown in Go form."""
    parts: list[str] = []
    rest = ns
    for size, unit in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(_plural(count, unit))
    if rest or not parts:
        from .._duration import format_go_duration

        return f"Every {format_go_duration(ns)}"
    return "Every " + " ".join(parts)


def display_zone(schedule: Schedule, location: tzinfo | None) -> tzinfo:
    """The zone a schedule's fire times are shown in (a ``CRON_TZ=`` prefix wins)."""
    zone = schedule_zone(schedule, location)
    if schedule.cron:
        from ..cron import parse_cron

        return parse_cron(schedule.cron, zone).timezone
    return zone


def answer_zone(schedule: Schedule, location: tzinfo | None) -> tzinfo:
    """The zone of a job's times in an answer: :func:`display_zone`, or, for a stored
    schedule this scheduler cannot read, the scheduler's zone (never raises)."""
    try:
        return display_zone(schedule, location)
    except Exception:  # an unreadable stored job still lists
        return location or UTC


def describe_schedule(schedule: Schedule, location: tzinfo | None) -> str:
    """A plain-English description of the schedule, naming its time zone."""
    zone = display_zone(schedule, location)
    if schedule.cron:
        from ..describe import describe_cron

        text = describe_cron(schedule.cron)
        prefix, body = split_zone_prefix(schedule.cron)
        if prefix is not None or body.lower().startswith("@every"):
            return text  # the description names the zone, or no zone matters
        return f"{text} ({zone_name(zone)})"
    if schedule.interval is not None and schedule.interval.ns > 0:
        return describe_interval(schedule.interval.ns)
    if schedule.once is not None:
        return f"Once, at {rfc3339(schedule.once, zone)}"
    return "No schedule"


def fire_preview(job: Job, location: tzinfo | None, count: int) -> list[str]:
    """The job's next ``count`` nominal fire times within its bounds, in its zone (none unless
    it is enabled): :meth:`FireTimes.upcoming`, the one preview of a job's fires."""
    if job.status != JobStatus.ENABLED:
        return []
    zone = display_zone(job.schedule, location)
    return [rfc3339(t, zone) for t in FireTimes(location).upcoming(job, count)]


def job_view(job: Job, location: tzinfo | None, count: int) -> dict[str, Any]:
    """The whole job as the original's JSON (its times in the job's display zone), plus
    ``schedule_description``, ``timezone`` and ``next_fire_times``."""
    out = job_to_builtins(job)
    zone = answer_zone(job.schedule, location)
    # One zone per answer: the job's times in the zone its next_fire_times are shown in.
    for key in ("created_at", "updated_at", "last_run_at", "next_run_at"):
        when = getattr(job, key)
        if when is not None:
            out[key] = rfc3339(when, zone)
    out.update(schedule_extras(job, location, count))
    return out


def schedule_extras(job: Job, location: tzinfo | None, count: int) -> dict[str, Any]:
    """``schedule_description``, ``timezone`` and ``next_fire_times`` of a job. Never raises:
    a stored job this scheduler cannot read (saved by another tool or version) is described
    as such, so that listing always works."""
    try:
        zone = display_zone(job.schedule, location)
        return {
            "schedule_description": describe_schedule(job.schedule, location),
            "timezone": zone_name(zone),
            "next_fire_times": fire_preview(job, location, count),
        }
    except Exception as exc:  # any stored job must list, whatever is wrong with it
        reason = exc.message if isinstance(exc, JobValidationError) else type(exc).__name__
        return {
            "schedule_description": f"unreadable schedule: {reason}",
            "timezone": job.schedule.timezone or (zone_name(location) if location else ""),
            "next_fire_times": [],
        }


def history_view(record: RunRecord, zone: tzinfo | None) -> dict[str, Any]:
    """A history record as an agent sees it: times in RFC 3339, lateness in seconds."""
    out: dict[str, Any] = {
        "scheduled_at": rfc3339(record.scheduled_at, zone),
        "trigger": str(record.trigger),
        "outcome": str(record.outcome),
    }
    if record.attempt > 1:
        out["attempt"] = record.attempt
    if record.started_at is not None:
        out["started_at"] = rfc3339(record.started_at, zone)
    if record.finished_at is not None and record.started_at is not None:
        out["duration_seconds"] = round((record.finished_at - record.started_at).total_seconds(), 3)
    if record.lateness is not None:
        out["lateness_seconds"] = round(record.lateness / 1e9, 3)
    if record.error:
        out["error"] = record.error
    return out
