"""The built-in tools: harmless and free of side effects, so they are allowed by default."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ._tool import Tool

__all__ = ["BUILTIN_TOOLS", "ECHO", "NOW"]


def echo(text: str) -> str:
    """Return ``text`` unchanged."""
    return text


def now(timezone: str = "UTC") -> str:
    """The current time in ``timezone`` (an IANA name), as RFC 3339 with seconds."""
    zone = UTC if timezone == "UTC" else ZoneInfo(timezone)
    return datetime.now(zone).isoformat(timespec="seconds")


ECHO = Tool(
    name="echo",
    description="Return the given text unchanged.",
    parameters={
        "type": "object",
        "properties": {"text": {"type": "string", "description": "the text to return"}},
        "required": ["text"],
        "additionalProperties": False,
    },
    func=echo,
    timeout=5,
)

NOW = Tool(
    name="now",
    description="The current date and time (RFC 3339), in an optional IANA time zone.",
    parameters={
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "format": "iana-time-zone",
                "description": "IANA time zone name, e.g. 'Europe/Paris'; default UTC",
            }
        },
        "additionalProperties": False,
    },
    func=now,
    timeout=5,
)

#: The tools this plugin registers itself; allowed unless ``allow_builtins = false``.
BUILTIN_TOOLS: tuple[Tool, ...] = (ECHO, NOW)
