"""Parsing of crontab expressions into value sets (the semantics of Debian cron / cronsim).

Private helper of :mod:`omnicron_core.cron`; see ``docs/cron.md`` for the accepted syntax.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

from omnicron_core._errors import CronError
from omnicron_core._limits import quote

__all__ = [
    "DESCRIPTORS",
    "DOW_NAMES",
    "FIELD_NAMES",
    "LAST",
    "LAST_WEEKDAY",
    "MONTH_NAMES",
    "CronError",
    "Fields",
    "parse_fields",
    "split_zone_prefix",
]

LAST = -1000  # "L" in day-of-month; (dow, LAST) in day-of-week
LAST_WEEKDAY = -1001  # "LW" in day-of-month

SECOND, MINUTE, HOUR, DOM, MONTH, DOW = range(6)
FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_LIMITS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
DOW_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DIGITS = frozenset("0123456789")

Item = int | tuple[int, int]

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def split_zone_prefix(expr: str) -> tuple[str | None, str]:
    """``"CRON_TZ=Europe/Berlin 0 9 * * *"`` -> ``("Europe/Berlin", "0 9 * * *")``; an
    expression without a ``CRON_TZ=`` / ``TZ=`` prefix -> ``(None, expr.strip())``.

    The zone name is returned as written (possibly ``""``); the caller resolves it."""
    text = expr.strip()
    first, _, rest = text.partition(" ")
    if not first.upper().startswith(("CRON_TZ=", "TZ=")):
        return None, text
    return first.split("=", 1)[1], rest.strip()


def _fail(field: int, msg: str) -> CronError:
    return CronError(f"cron field '{FIELD_NAMES[field]}' {msg}")


def _number(field: int, text: str, whole: str) -> int:
    if text == "" or not set(text) <= _DIGITS:
        lo, hi = _LIMITS[field]
        if field == MONTH:
            hint = f"a number {lo}-{hi} or a name JAN-DEC"
        elif field == DOW:
            hint = f"a number {lo}-{hi} (0 and 7 are Sunday) or a name SUN-SAT"
        else:
            hint = f"a number {lo}-{hi}"
        shown = f"{quote(text)} in {quote(whole)}" if text != whole else quote(text)
        raise _fail(field, f"has {shown}; expected {hint}")
    return int(text)


def _value(field: int, text: str, whole: str) -> int:
    if field == MONTH and text in MONTH_NAMES:
        return MONTH_NAMES.index(text) + 1
    if field == DOW and text in DOW_NAMES:
        return DOW_NAMES.index(text)
    v = _number(field, text, whole)
    lo, hi = _LIMITS[field]
    if not lo <= v <= hi:
        raise _fail(field, f"has {v}; allowed {lo}-{hi}")
    return v


def _parse(field: int, s: str, whole: str) -> set[Item]:
    lo, hi = _LIMITS[field]
    if s == "*":
        return set(range(lo, hi + 1))
    if "," in s:
        result: set[Item] = set()
        for term in s.split(","):
            if term == "":
                raise _fail(field, f"has an empty list item in {quote(whole)}")
            result |= _parse(field, term, whole)
        return result
    if field == DOW and "L" in s:
        value = s[:-1]
        if not s.endswith("L") or value == "" or not set(value) <= _DIGITS:
            raise _fail(
                field, f"has {quote(s)}; 'L' must follow a weekday number, as in '5L' (last Friday)"
            )
        return {(_value(field, value, whole), LAST)}
    if field == DOW and "#" in s:
        term, nth_text = s.split("#", 1)
        nth = _number(field, nth_text, whole)
        if not 1 <= nth <= 5:
            raise _fail(field, f"has {quote(s)}; the week number after '#' must be 1-5")
        return {(_value(field, term, whole), nth)}
    if "/" in s:
        term, step_text = s.split("/", 1)
        if step_text == "" or not set(step_text) <= _DIGITS:
            raise _fail(field, f"has {quote(s)}; the step after '/' must be a positive number")
        step = int(step_text)
        if step == 0:
            raise _fail(field, f"has step 0 in {quote(s)}; step must be at least 1")
        items = _parse(field, term, whole)
        if items in ({LAST}, {LAST_WEEKDAY}):
            return items  # cronsim ignores a step on L / LW
        if len(items) == 1:
            (start,) = items
            assert isinstance(start, int)
            return set(range(start, hi + 1)[::step])
        return set(sorted(i for i in items if isinstance(i, int))[::step])
    if "-" in s:
        start_text, end_text = s.split("-", 1)
        start = _value(field, start_text, whole)
        end = _value(field, end_text, whole)
        if end < start:
            raise _fail(field, f"has range {quote(s)} whose start is after its end")
        return set(range(start, end + 1))
    if field == DOM and s == "LW":
        return {LAST_WEEKDAY}
    if field == DOM and s == "L":
        return {LAST}
    return {_value(field, s, whole)}


def _last_weekday(first_dow: int, last: int) -> int:
    """Day number of the last Monday-Friday of a month whose 1st is ``first_dow`` (0=Sunday)."""
    last_dow = (first_dow + last - 1) % 7
    if last_dow == 0:
        return last - 2
    if last_dow == 6:
        return last - 1
    return last


@dataclass(frozen=True, slots=True)
class Fields:
    """The parsed sets of one expression; day-of-week numbers are 0-6 with 0 = Sunday."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]  # plain day numbers only
    last_day: bool  # L
    last_weekday: bool  # LW
    months: frozenset[int]
    weekdays: frozenset[int]  # plain weekdays, 0-6
    last_dows: frozenset[int]  # 5L
    nth_dows: frozenset[tuple[int, int]]  # (weekday, n) for 1#2
    day_and: bool  # True: day-of-month AND day-of-week; False: OR (both restricted)
    dom_star: bool  # day-of-month is '*' (all days, no L)
    dow_star: bool  # day-of-week is every day

    @property
    def special_days(self) -> bool:
        return bool(self.last_day or self.last_weekday or self.last_dows or self.nth_dows)

    def match_dom(self, day: int, first_dow: int, last: int) -> bool:
        if day in self.days:
            return True
        if self.last_day and day == last:
            return True
        return self.last_weekday and day == _last_weekday(first_dow, last)

    def match_dow(self, day: int, first_dow: int, last: int) -> bool:
        dow = (first_dow + day - 1) % 7
        if dow in self.weekdays:
            return True
        if dow in self.last_dows and day + 7 > last:
            return True
        return (dow, (day + 6) // 7) in self.nth_dows

    def match_day(self, day: int, first_dow: int, last: int) -> bool:
        if self.day_and:
            return self.match_dom(day, first_dow, last) and self.match_dow(day, first_dow, last)
        return self.match_dom(day, first_dow, last) or self.match_dow(day, first_dow, last)

    def match_date(self, year: int, month: int, day: int) -> bool:
        if month not in self.months:
            return False
        first_weekday, last = calendar.monthrange(year, month)  # Monday = 0
        return self.match_day(day, (first_weekday + 1) % 7, last)

    def can_fire(self) -> bool:
        """Whether some date matches: every month shape (length, first weekday) occurs."""
        for month in self.months:
            lengths = (28, 29) if month == 2 else (_DAYS_IN_MONTH[month],)
            for last in lengths:
                for first_dow in range(7):
                    if any(self.match_day(d, first_dow, last) for d in range(1, last + 1)):
                        return True
        return False


def parse_fields(parts: list[str], expr: str) -> Fields:
    """Parse 5 or 6 whitespace-split fields (seconds first when 6)."""
    upper = [p.upper() for p in parts]
    if len(upper) == 5:
        upper.insert(0, "0")
    sets = [_parse(i, s, s) for i, s in enumerate(upper)]
    day_items, dow_items = sets[DOM], sets[DOW]
    day_and = upper[DOM].startswith("*") or upper[DOW].startswith("*")
    days = frozenset(i for i in day_items if isinstance(i, int) and i > 0)
    weekdays = frozenset(i % 7 for i in dow_items if isinstance(i, int))
    fields = Fields(
        seconds=frozenset(i for i in sets[SECOND] if isinstance(i, int)),
        minutes=frozenset(i for i in sets[MINUTE] if isinstance(i, int)),
        hours=frozenset(i for i in sets[HOUR] if isinstance(i, int)),
        days=days,
        last_day=LAST in day_items,
        last_weekday=LAST_WEEKDAY in day_items,
        months=frozenset(i for i in sets[MONTH] if isinstance(i, int)),
        weekdays=weekdays,
        last_dows=frozenset(i[0] % 7 for i in dow_items if isinstance(i, tuple) and i[1] == LAST),
        nth_dows=frozenset(
            (i[0] % 7, i[1]) for i in dow_items if isinstance(i, tuple) and i[1] != LAST
        ),
        day_and=day_and,
        dom_star=len(days) == 31,
        dow_star=len(weekdays) == 7,
    )
    if (
        day_and
        and days
        and not (fields.last_day or fields.last_weekday)
        and min(days) > max(_DAYS_IN_MONTH[m] for m in fields.months)
    ) or not fields.can_fire():
        raise CronError(f"cron expression {quote(expr)} can never fire")
    return fields
