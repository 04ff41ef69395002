"""Logging of omnicron: :func:`get_logger` for the library and plugins (silent until the host
configures ``logging`` or structlog; see :mod:`omnicron_core._log`), and
:func:`configure_logging`, which only the ``omnicron`` command calls.

The command's events go to stderr: a console renderer on a terminal, one JSON object a line otherwise.
The stdlib ``logging`` records of other libraries (APScheduler, httpx) pass through the same
renderer via :class:`structlog.stdlib.ProcessorFormatter`.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ._log import ROOT_LOGGER, Logger, _isoformat_times, get_logger
from ._text import plain

__all__ = ["LEVELS", "ROOT_LOGGER", "Logger", "configure_logging", "get_logger"]

LEVELS = ("debug", "info", "warning", "error", "critical")
Format = Literal["auto", "console", "json"]


def configure_logging(
    level: str = "info", fmt: Format | str = "auto", *, stream: TextIO | None = None
) -> str:
    """Configure structlog and the stdlib root logger once for this process.

    ``fmt`` is ``console``, ``json`` or ``auto`` (console when ``stream`` is a terminal).
    Returns the format chosen.
    """
    out = stream or sys.stderr
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    if fmt not in ("console", "json"):
        raise ValueError(f"unknown log format {fmt!r}; expected auto, console or json")
    numeric = logging.getLevelName(level.upper())

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _isoformat_times,
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _passthrough,
            _escape_controls if fmt == "console" else _passthrough,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # APScheduler announces every trigger computation at INFO; keep its warnings only.
    logging.getLogger("apscheduler").setLevel(max(numeric, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return fmt


def _passthrough(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return event


def _escape_controls(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Console format only: job names, errors and URLs in an event are shown with their
    control characters escaped, so no ESC sequence from a job reaches the terminal (the JSON
    renderer escapes them itself)."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = plain(value)
    return event
