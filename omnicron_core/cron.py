"""Crontab schedules with Debian cron's semantics, computed with APScheduler 3's triggers.

``parse_cron("0 9 * * 1-5", "Europe/Berlin").next_after(now)`` gives the next fire time.
Accepted: 5-field crontab lines, 6-field lines with seconds first, ``@daily``-style
descriptors, ``@every <duration>`` and a ``CRON_TZ=Zone`` / ``TZ=Zone`` prefix.  The
semantics (Sunday as 0 or 7, the day-of-month/day-of-week OR rule, ``L``/``LW``/``5L``/
``1#2``, daylight-saving behaviour) follow Debian cron as modelled by ``cronsim``;
see ``docs/cron.md``.

APScheduler's :class:`CronTrigger` finds candidate *wall-clock* times (it is run in UTC
over local wall-clock readings, so it never sees a DST transition); the layer here maps
those readings onto real instants the way Debian cron does.
"""

from __future__ import annotations

import calendar
import functools
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.fields import DayOfMonthField
from apscheduler.triggers.interval import IntervalTrigger

from omnicron_core._cron_parse import (
    DESCRIPTORS,
    CronError,
    Fields,
    parse_fields,
    split_zone_prefix,
)
from omnicron_core._duration import parse_go_duration
from omnicron_core._fire_times import successive
from omnicron_core._limits import quote

__all__ = [
    "DESCRIPTORS",
    "MAX_CRON_LENGTH",
    "CronError",
    "CronExpression",
    "parse_cron",
    "validate_cron",
]

#: The longest expression the parser reads at all (``JobLimits.max_cron_length`` is lower).
MAX_CRON_LENGTH = 4096

_ONE_SECOND = timedelta(seconds=1)
_ONE_MINUTE = timedelta(minutes=1)
_MIDNIGHT = datetime.min.time()


def _compress(values: frozenset[int], lo: int, hi: int) -> str:
    """An APScheduler field expression for a set of integers (``*``, ``a-b/s`` or a list)."""
    vals = sorted(values)
    if vals == list(range(lo, hi + 1)):
        return "*"
    if len(vals) >= 3:
        step = vals[1] - vals[0]
        if all(b - a == step for a, b in itertools.pairwise(vals)):
            return f"{vals[0]}-{vals[-1]}/{step}"
    runs: list[str] = []
    start = prev = vals[0]
    for v in [*vals[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(runs)


class _DayMatchExpression:
    """An APScheduler day-field expression for ``L``, ``LW``, ``5L``, ``1#2`` and the
    day-of-month/day-of-week combinations APScheduler's own expressions cannot express."""

    def __init__(self, fields: Fields) -> None:
        self.fields = fields

    def get_next_value(self, dateval: datetime, fld: Any) -> int | None:
        first_weekday, last = calendar.monthrange(dateval.year, dateval.month)
        first_dow = (first_weekday + 1) % 7
        match = self.fields.match_day
        for day in range(dateval.day, last + 1):
            if match(day, first_dow, last):
                return day
        return None

    def __str__(self) -> str:
        return "cron-days"


def _build_trigger(f: Fields) -> Any:
    """APScheduler trigger matching the expression on wall-clock time (evaluated in UTC)."""
    common = {
        "second": _compress(f.seconds, 0, 59),
        "minute": _compress(f.minutes, 0, 59),
        "hour": _compress(f.hours, 0, 23),
        "month": _compress(f.months, 1, 12),
        "timezone": UTC,
    }
    if f.special_days or not f.day_and:
        # One CronTrigger whose day field runs cron's day rule: 3-4x faster than an
        # OrTrigger of two CronTriggers (dom | dow), and it also covers L, LW, 5L, 1#2.
        trigger = CronTrigger(**common)
        day_field = DayOfMonthField("day", "*")
        day_field.expressions = [_DayMatchExpression(f)]
        idx = CronTrigger.FIELD_NAMES.index("day")
        trigger.fields[idx] = day_field
        return trigger
    dom = _compress(f.days, 1, 31)
    # APScheduler counts weekdays from Monday = 0; cron from Sunday = 0.
    dow = _compress(frozenset((d - 1) % 7 for d in f.weekdays), 0, 6)
    return CronTrigger(day=dom, day_of_week=dow, **common)


def _transition(zone: tzinfo, lo: datetime, hi: datetime) -> datetime:
    """First whole-second UTC instant in (lo, hi] whose offset differs from lo's."""
    before = lo.astimezone(zone).utcoffset()
    a, b = int(lo.timestamp()), int(hi.timestamp())
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            a = mid
        else:
            b = mid
    return datetime.fromtimestamp(b, UTC)


@dataclass(frozen=True, eq=False)
class CronExpression:
    """A compiled cron expression; use :func:`parse_cron` to make one."""

    expr: str
    timezone: tzinfo
    has_seconds: bool
    every: timedelta | None = None
    fields: Fields | None = field(default=None, repr=False)
    _trigger: Any = field(default=None, repr=False)
    _fixed_time: bool = field(default=False, repr=False)

    # -- public API -------------------------------------------------------------------------

    def next_after(self, after: datetime, *, anchor: datetime | None = None) -> datetime | None:
        """First fire time strictly after ``after`` (aware), in :attr:`timezone`; None if none.

        ``anchor`` only matters for ``@every``: fires are ``anchor + k*d`` for k >= 1.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("next_after needs an aware datetime")
        try:
            if self.every is not None:
                return self._next_every(after, after if anchor is None else anchor)
            if self._fixed_time:
                return self._next_fixed(after)
            return self._next_real(after)
        except OverflowError:
            return None

    def next_times(
        self, after: datetime, count: int, *, anchor: datetime | None = None
    ) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (fewer if the schedule ends)."""
        if self.every is not None and anchor is None:
            anchor = after
        return list(
            itertools.islice(successive(lambda t: self.next_after(t, anchor=anchor), after), count)
        )

    # -- internals --------------------------------------------------------------------------

    def _wall_next(self, start: datetime) -> datetime | None:
        """First wall-clock reading >= ``start`` (naive) that matches the fields."""
        found = self._trigger.get_next_fire_time(None, start.replace(tzinfo=UTC))
        return None if found is None else found.replace(tzinfo=None)

    def _next_every(self, after: datetime, anchor: datetime) -> datetime:
        assert self.every is not None
        d = self.every
        # IntervalTrigger gives the candidate (float arithmetic), corrected exactly below.
        trigger = IntervalTrigger(seconds=d.total_seconds(), start_date=anchor + d, timezone=UTC)
        cand: datetime = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
        k = max(1, round((cand - anchor) / d))
        while k > 1 and anchor + (k - 1) * d > after:
            k -= 1
        while anchor + k * d <= after:
            k += 1
        return (anchor + k * d).astimezone(self.timezone)

    def _next_fixed(self, after: datetime) -> datetime | None:
        """Fixed-time jobs (5 fields, minute and hour not starting with '*'), as Debian cron:
        evaluated on local wall-clock time; a time skipped by a spring-forward jump fires at
        the first real minute after it; a repeated wall-clock time fires once (first pass)."""
        zone = self.timezone
        after_utc = after.astimezone(UTC)
        wall = after.astimezone(zone).replace(tzinfo=None, microsecond=0, fold=0)
        start = wall + _ONE_SECOND
        while True:
            w = self._wall_next(start)
            if w is None:
                return None
            result = w.replace(tzinfo=zone)
            if result.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != w:
                while True:  # imaginary: move forward minute by minute until real
                    w += _ONE_MINUTE
                    result = w.replace(tzinfo=zone)
                    if result.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == w:
                        break
            if result.astimezone(UTC) > after_utc:
                return result
            start = w + _ONE_SECOND

    def _next_real(self, after: datetime) -> datetime | None:
        """Other jobs: every real instant whose local wall-clock reading matches (both passes
        of a repeated hour fire; skipped readings do not), plus cronsim's midnight rule."""
        zone = self.timezone
        after_utc = after.astimezone(UTC)
        local = after.astimezone(zone)
        wall = local.replace(tzinfo=None, microsecond=0, fold=0)
        best: datetime | None = None
        start = wall + _ONE_SECOND
        while True:
            w = self._wall_next(start)
            if w is None:
                break
            first = w.replace(tzinfo=zone)
            o0 = first.utcoffset()
            second = w.replace(tzinfo=zone, fold=1)
            o1 = second.utcoffset()
            assert o0 is not None and o1 is not None
            if w.hour < 3 and w.date() > wall.date() and self._skips_first_hour(w):
                start = w + _ONE_SECOND
                continue
            if o0 == o1:
                if first.astimezone(UTC) > after_utc:
                    best = first
                    break
            elif o0 > o1:  # repeated reading: two instants
                if first.astimezone(UTC) > after_utc:
                    best = first
                    break
                if second.astimezone(UTC) > after_utc:
                    best = second
                    break
            else:  # skipped reading
                if w.time() == _MIDNIGHT and self._fresh_day(w.date()):
                    # cronsim reaches a non-matching day's successor at its (skipped)
                    # midnight and fires at the instant the clock jumps.
                    inst = first.astimezone(UTC)
                    if inst > after_utc:
                        best = inst.astimezone(zone)
                        break
                gap_start = (w - o0).replace(tzinfo=UTC) - (o1 - o0)
                t = _transition(zone, gap_start, (w - o0).replace(tzinfo=UTC))
                gap_end = (t + o1).replace(tzinfo=None)
                start = max(w + _ONE_SECOND, gap_end)
                continue
            start = w + _ONE_SECOND
        # `after` in the first pass of a repeated hour: the second pass comes before
        # anything later on the wall clock.
        if local.fold == 0:
            o_after = local.utcoffset()
            o_second = local.replace(fold=1).utcoffset()
            assert o_after is not None and o_second is not None
            if o_second < o_after:
                t = _transition(zone, after_utc, after_utc + (o_after - o_second))
                window_start = (t + o_second).replace(tzinfo=None)
                window_end = window_start + (o_after - o_second)
                w2 = self._wall_next(window_start)
                if w2 is not None and w2 < window_end:
                    cand = w2.replace(tzinfo=zone, fold=1)
                    if best is None or cand.astimezone(UTC) < best.astimezone(UTC):
                        best = cand
        return best

    def _skips_first_hour(self, w: datetime) -> bool:
        """cronsim quirk kept for agreement: on a day entered from a non-matching day whose
        midnight is skipped (DST at midnight), a job without hour 0 steps from the jump
        instant in whole hours, so the first real hour after the jump never matches."""
        f = self.fields
        assert f is not None
        if 0 in f.hours:
            return False
        zone = self.timezone
        midnight = datetime.combine(w.date(), _MIDNIGHT)
        real = midnight.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if real == midnight:
            return False
        return w < real + timedelta(hours=1) and self._fresh_day(w.date())

    def _fresh_day(self, day: date) -> bool:
        f = self.fields
        assert f is not None
        prev = day - timedelta(days=1)
        return f.match_date(day.year, day.month, day.day) and not f.match_date(
            prev.year, prev.month, prev.day
        )


def _zone(name: str, expr: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except Exception as exc:  # ValueError, ZoneInfoNotFoundError, ...
        raise CronError(
            f"cron expression {quote(expr)} has unknown time zone {quote(name)}"
        ) from exc


def _location_key(location: tzinfo | str | None) -> tzinfo | str:
    if location is None:
        return UTC
    if isinstance(location, ZoneInfo) and location.key:
        return location.key
    return location


@functools.lru_cache(maxsize=1024)
def _compile(expr: str, key: tzinfo | str) -> CronExpression:
    if not isinstance(expr, str):
        raise CronError(f"cron expression must be a string, not {type(expr).__name__}")
    text = expr.strip()
    if not text:
        raise CronError("cron expression is empty")
    zone: tzinfo = _zone(key, expr) if isinstance(key, str) else key
    name, text = split_zone_prefix(text)
    if name is not None:
        if not name:
            raise CronError(f"cron expression {quote(expr)} has an empty time zone after '='")
        zone = _zone(name, expr)
        if not text:
            raise CronError(f"cron expression {quote(expr)} has a time zone but no schedule")
    if text.startswith("@"):
        word, _, arg = text.partition(" ")
        word_l = word.lower()
        if word_l == "@every":
            return _compile_every(expr, arg.strip(), zone)
        if word_l not in DESCRIPTORS or arg.strip():
            if word_l in DESCRIPTORS:
                raise CronError(
                    f"cron expression {quote(expr)} has unexpected text after {quote(word)}: {quote(arg.strip())}"
                )
            allowed = ", ".join([*DESCRIPTORS, "@every <duration>"])
            raise CronError(
                f"cron expression {quote(expr)} has unknown descriptor {quote(word)}; expected one of "
                f"{allowed}"
            )
        text = DESCRIPTORS[word_l]
    parts = text.split()
    if len(parts) not in (5, 6):
        raise CronError(
            f"cron expression {quote(expr)} has {len(parts)} field{'s' if len(parts) != 1 else ''};"
            " expected 5 (minute hour day-of-month month day-of-week) or 6 (second first)"
        )
    fields = parse_fields(parts, expr)
    fixed = (
        len(parts) == 5
        and not parts[0].startswith("*")
        and not parts[1].startswith("*")
        and zone is not UTC
    )
    return CronExpression(
        expr=expr,
        timezone=zone,
        has_seconds=len(parts) == 6,
        fields=fields,
        _trigger=_build_trigger(fields),
        _fixed_time=fixed,
    )


def _compile_every(expr: str, arg: str, zone: tzinfo) -> CronExpression:
    if not arg:
        raise CronError(
            f"cron expression {quote(expr)}: @every needs a duration, e.g. '@every 1h30m'"
        )
    try:
        ns = parse_go_duration(arg)
    except ValueError as exc:
        raise CronError(f"cron expression {quote(expr)} has a bad @every duration: {exc}") from None
    if ns <= 0:
        raise CronError(f"cron expression {quote(expr)}: @every duration must be greater than 0")
    if ns < 1000:
        raise CronError(f"cron expression {quote(expr)}: @every duration must be at least 1µs")
    return CronExpression(
        expr=expr, timezone=zone, has_seconds=False, every=timedelta(microseconds=ns // 1000)
    )


def parse_cron(expr: str, location: tzinfo | str | None = None) -> CronExpression:
    """Compile ``expr`` evaluated in ``location`` (default UTC; a ``CRON_TZ=`` prefix wins).

    Raises :class:`CronError` naming the field and value for a bad expression.
    Compiled expressions are cached. An expression longer than :data:`MAX_CRON_LENGTH` is
    refused before it is read.
    """
    if isinstance(expr, str) and len(expr) > MAX_CRON_LENGTH:
        raise CronError(
            f"cron expression is too long ({len(expr)} characters); the maximum is "
            f"{MAX_CRON_LENGTH}"
        )
    return _compile(expr, _location_key(location))


def validate_cron(expr: str, location: tzinfo | str | None = None) -> None:
    """Raise :class:`CronError` if ``expr`` is not an acceptable cron expression."""
    parse_cron(expr, location)
