"""Go-compatible durations: ``"1h30m0s"`` on output, Go syntax or integer nanoseconds on input."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from ._limits import quote

__all__ = ["Duration", "DurationLike", "as_timedelta", "format_go_duration", "parse_go_duration"]

_NS = 1
_US = 1_000
_MS = 1_000_000
_S = 1_000_000_000
_M = 60 * _S
_H = 60 * _M
_D = 24 * _H

_UNITS = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,  # micro sign, what Go prints
    "\u03bcs": _US,  # Greek mu, which Go also accepts
    "ms": _MS,
    "s": _S,
    "m": _M,
    "h": _H,
}
_TOKEN = re.compile(r"(\d*)(?:\.(\d*))?([a-zA-Z\u00b5\u03bc]+)")
_MAX_NS = 2**63 - 1


def parse_go_duration(text: str, *, allow_days: bool = False) -> int:
    """Parse a Go duration string (``"90m"``, ``"1h2m3.5s"``, ``"300ms"``) into nanoseconds.

    ``allow_days`` adds a ``d`` unit (24 h), which Go itself lacks; the agent tools accept it.
    Raises ``ValueError`` naming the text and the accepted units.
    """
    orig = text
    units = dict(_UNITS, d=_D) if allow_days else _UNITS
    allowed = ", ".join(u for u in units if u not in ("\u03bcs",))
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {quote(orig)}: expected a string such as '1h30m'")
    s = text.strip()
    if s == "":
        raise ValueError(
            "invalid duration '': expected a number with a unit such as '90s' or '1h30m'"
        )
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {quote(orig)}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or (m.group(1) == "" and not m.group(2)):
            raise ValueError(
                f"invalid duration {quote(orig)}: expected numbers with units ({allowed}), e.g. '1h30m'"
            )
        whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
        if unit not in units:
            raise ValueError(
                f"invalid duration {quote(orig)}: unknown unit {quote(unit)}; allowed: {allowed}"
            )
        scale = units[unit]
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // 10 ** len(frac)
        total += value
        if total > _MAX_NS:
            raise ValueError(f"invalid duration {quote(orig)}: overflows 2^63-1 nanoseconds")
        pos = m.end()
    return sign * total


def _fmt_frac(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if frac == 0:
        return str(whole)
    digits = len(str(scale)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Format nanoseconds the way Go's ``time.Duration.String`` does (``"1h30m0s"``, ``"1.5s"``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < _US:
        return f"{sign}{u}ns"
    if u < _MS:
        return f"{sign}{_fmt_frac(u, _US)}\u00b5s"
    if u < _S:
        return f"{sign}{_fmt_frac(u, _MS)}ms"
    hours, rem = divmod(u, _H)
    minutes, rem = divmod(rem, _M)
    secs = _fmt_frac(rem, _S)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


class Duration:
    """A span of time held as integer nanoseconds, encoded as a Go duration string.

    ``Duration("90m")``, ``Duration(5_400_000_000_000)`` and ``Duration(timedelta(minutes=90))``
    are equal; ``str()`` gives ``"1h30m0s"``.
    """

    __slots__ = ("ns",)
    ns: int

    def __init__(self, value: Duration | str | int | timedelta = 0) -> None:
        if isinstance(value, Duration):
            ns = value.ns
        elif isinstance(value, bool):
            raise TypeError("Duration does not accept a bool")
        elif isinstance(value, int):
            ns = value
        elif isinstance(value, str):
            ns = parse_go_duration(value) if value else 0
        elif isinstance(value, timedelta):
            ns = (value.days * 86_400 + value.seconds) * _S + value.microseconds * _US
        else:
            raise TypeError(f"cannot make a Duration from {type(value).__name__}")
        object.__setattr__(self, "ns", ns)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Duration is immutable")

    @classmethod
    def from_seconds(cls, seconds: float) -> Duration:
        return cls(round(seconds * _S))

    def total_seconds(self) -> float:
        return self.ns / _S

    def to_timedelta(self) -> timedelta:
        return timedelta(microseconds=self.ns // _US)

    def __bool__(self) -> bool:
        return self.ns != 0

    def __int__(self) -> int:
        return self.ns

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Duration):
            return self.ns == other.ns
        return NotImplemented

    def __lt__(self, other: Duration) -> bool:
        return self.ns < other.ns

    def __le__(self, other: Duration) -> bool:
        return self.ns <= other.ns

    def __hash__(self) -> int:
        return hash(self.ns)

    def __str__(self) -> str:
        return format_go_duration(self.ns)

    def __repr__(self) -> str:
        return f"Duration({format_go_duration(self.ns)!r})"


#: What a scheduler setting that is a span of time accepts: a ``timedelta``, seconds (a number,
#: as in the TOML file), a Go duration string (``"30s"``, ``"1m30s"``) or a :class:`Duration`.
DurationLike = timedelta | float | int | str | Duration


def as_timedelta(value: DurationLike, *, field: str) -> timedelta:
    """``value`` as a ``timedelta`` (numbers are seconds); ``ValueError`` naming ``field`` for
    anything else or a negative span."""
    if isinstance(value, timedelta):
        span = value
    elif isinstance(value, bool):
        raise ValueError(f"{field}: expected seconds or a duration such as '30s', got a bool")
    elif isinstance(value, int | float):
        span = timedelta(seconds=value)
    elif isinstance(value, str | Duration):
        try:
            ns = Duration(value).ns
        except ValueError as exc:
            raise ValueError(f"{field}: {exc}") from None
        span = timedelta(microseconds=ns // _US)
    else:
        raise ValueError(
            f"{field}: expected seconds or a duration such as '30s', got {type(value).__name__}"
        )
    if span < timedelta(0):
        raise ValueError(f"{field}: must not be negative")
    return span
