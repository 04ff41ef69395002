"""Plain-English descriptions of cron expressions, in the style of cron-descriptor.

``describe_cron("0 9 * * 1-5")`` -> ``"At 09:00, Monday through Friday"``.
"""

from __future__ import annotations

from omnicron_core._cron_parse import DESCRIPTORS, DOW_NAMES, MONTH_NAMES, split_zone_prefix
from omnicron_core._duration import format_go_duration, parse_go_duration
from omnicron_core.cron import parse_cron

__all__ = ["describe_cron"]

_DAY_FULL = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_FULL = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_START = {"dow": "on", "dom": "on", "month": "in"}
_ORDINAL = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _int(token: str, kind: str) -> int:
    """A number or name as written (already upper-cased) -> its value."""
    if kind == "month" and token in MONTH_NAMES:
        return MONTH_NAMES.index(token) + 1
    if kind == "dow" and token in DOW_NAMES:
        return DOW_NAMES.index(token)
    return int(token)


def _name(value: int, kind: str) -> str:
    if kind == "month":
        return _MONTH_FULL[value - 1]
    if kind == "dow":
        return _DAY_FULL[value % 7]
    return f"{value:02d}" if kind == "hour" else str(value)


def _is_number(tok: str, kind: str) -> bool:
    return (
        tok.isdigit()
        or (kind == "month" and tok in MONTH_NAMES)
        or (kind == "dow" and tok in DOW_NAMES)
    )


_UNITS = {
    "second": ("second", "seconds past the minute"),
    "minute": ("minute", "minutes past the hour"),
    "hour": ("hour", "hours"),
    "dom": ("day", "day of the month"),
    "month": ("month", "month"),
    "dow": ("day of the week", "day of the week"),
}


def _step_phrase(step: int, kind: str) -> str:
    unit = _UNITS[kind][0]
    if step == 1:
        return f"every {unit}"
    if kind == "dow":
        return f"every {step} days of the week"
    return f"every {step} {unit}s"


def _item(tok: str, kind: str) -> str:
    """One comma-separated item of a field, described on its own."""
    if "/" in tok:
        base, step_text = tok.split("/", 1)
        step = int(step_text)
        phrase = _step_phrase(step, kind)
        if base == "*":
            return phrase
        if "-" in base:
            a, b = base.split("-", 1)
            return f"{phrase}, {_range(_int(a, kind), _int(b, kind), kind)}"
        if base in ("L", "LW"):
            return _item(base, kind)
        start = _single(_int(base, kind), kind)
        return f"{phrase}, starting {_START.get(kind, 'at')} {start}"
    if "-" in tok:
        a, b = tok.split("-", 1)
        return _range(_int(a, kind), _int(b, kind), kind)
    return _single_token(tok, kind)


def _single(v: int, kind: str) -> str:
    if kind in ("month", "dow"):
        return _name(v, kind)
    if kind == "hour":
        return f"{v:02d}:00"
    if kind == "dom":
        return f"day {v}"
    return f"{kind} {v}"


def _single_token(tok: str, kind: str) -> str:
    if tok == "*":
        return _step_phrase(1, kind)
    if kind == "dom" and tok == "L":
        return "the last day of the month"
    if kind == "dom" and tok == "LW":
        return "the last weekday of the month"
    if kind == "dow" and tok.endswith("L"):
        return f"the last {_name(int(tok[:-1]), 'dow')} of the month"
    if kind == "dow" and "#" in tok:
        day, nth = tok.split("#", 1)
        return f"the {_ORDINAL[int(nth)]} {_name(_int(day, 'dow'), 'dow')} of the month"
    return _single(_int(tok, kind), kind)


def _range(a: int, b: int, kind: str) -> str:
    if kind in ("month", "dow"):
        return f"{_name(a, kind)} through {_name(b, kind)}"
    if kind == "hour":
        return f"between {a:02d}:00 and {b:02d}:59"
    if kind == "dom":
        return f"between day {a} and {b} of the month"
    return f"{kind}s {a} through {b} past the {'minute' if kind == 'second' else 'hour'}"


def _field(text: str, kind: str) -> str:
    """A whole field: plain lists of numbers get one phrase, anything else item by item."""
    items = list(dict.fromkeys(text.split(",")))
    if all(_is_number(i, kind) for i in items):
        values = [_int(i, kind) for i in items]
        if kind in ("second", "minute"):
            unit = _UNITS[kind][1]
            if len(values) == 1:
                return f"at {_plural(values[0], kind).split(' ', 1)[0]} {unit}"
            return f"at {_join([str(v) for v in values])} {unit}"
        if kind == "hour":
            return "at " + _join([f"{v:02d}:00" for v in values])
        if kind == "dom":
            return f"on day {_join([str(v) for v in values])} of the month"
        if kind == "month":
            return "only in " + _join([_name(v, kind) for v in values])
        return "only on " + _join([_name(v, kind) for v in values])
    parts = [_item(i, kind) for i in items]
    if kind == "dom":
        return (
            "on " + _join(parts)
            if all("-" not in i and "/" not in i for i in items)
            else _join(parts)
        )
    if kind == "dow" and any(i.endswith("L") or "#" in i for i in items):
        return "on " + _join(parts)
    return _join(parts)


def _time(sec: str | None, minute: str, hour: str) -> str:
    sec_fixed = sec is None or sec.isdigit()
    if sec_fixed and minute.isdigit() and all(h.isdigit() for h in hour.split(",")):
        hours = [int(h) for h in hour.split(",")]
        s = "" if sec is None or int(sec) == 0 else f":{int(sec):02d}"
        return "At " + _join([f"{h:02d}:{int(minute):02d}{s}" for h in hours])
    parts: list[str] = []
    if sec is not None and sec != "*" and not (sec == "0" and minute != "*"):
        parts.append(_field(sec, "second"))
    elif sec == "*":
        parts.append("every second")
    if minute == "*":
        if sec is None or sec == "0":
            parts.append("every minute")
    elif minute == "0" and (sec is None or sec == "0"):
        if hour == "*":
            parts.append("every hour")
    else:
        parts.append(_field(minute, "minute"))
    if hour != "*":
        h = _field(hour, "hour")
        if hour.isdigit():
            h = f"between {int(hour):02d}:00 and {int(hour):02d}:59"
        elif all(x.isdigit() for x in hour.split(",")):
            h = "only in hours " + _join([f"{int(x):02d}" for x in hour.split(",")])
        if minute == "0" and (sec is None or sec == "0") and "/" in hour and "," not in hour:
            base = hour.split("/", 1)[0]
            h = (
                _item(hour, "hour")
                if base != "*"
                else _step_phrase(int(hour.split("/")[1]), "hour")
            )
        parts.append(h)
    text = ", ".join(p for p in parts if p)
    if text[:1].isdigit():
        text = "at " + text
    return text[:1].upper() + text[1:]


def _days(dom: str, month: str, dow: str) -> str:
    out = ""
    dom_part = "" if dom == "*" else _field(dom, "dom")
    dow_part = "" if dow == "*" else _field(dow, "dow")
    if dom_part:
        if dom_part.startswith("on ") or dom_part.startswith("between "):
            out += " " + dom_part
        else:
            out += ", " + dom_part
    if dow_part:
        # both restricted (neither starts with '*'): cron fires on either
        either = not dom.startswith("*") and not dow.startswith("*") and dom != "*"
        if either:
            dow_part = dow_part.removeprefix("only ")
            out += ", and " + (dow_part if dow_part.startswith("on ") else "on " + dow_part)
        else:
            out += ", " + dow_part
    if month != "*":
        out += ", " + _field(month, "month")
    return out


def describe_cron(expr: str) -> str:
    """A plain-English description of ``expr`` (validated with :func:`parse_cron`)."""
    parse_cron(expr)  # raises CronError for a bad expression
    zone, text = split_zone_prefix(expr)
    suffix = f" ({zone})" if zone is not None else ""
    if text.startswith("@"):
        word, _, arg = text.partition(" ")
        if word.lower() == "@every":
            return f"Every {format_go_duration(parse_go_duration(arg.strip()))}{suffix}"
        text = DESCRIPTORS[word.lower()]
    parts = text.upper().split()
    sec: str | None = None
    if len(parts) == 6:
        sec = parts.pop(0)
    minute, hour, dom, month, dow = parts
    try:
        body = _time(sec, minute, hour) + _days(dom, month, dow)
    except (ValueError, KeyError, IndexError):  # pragma: no cover - defensive
        body = f"Cron schedule {text!r}"
    return body + suffix
