"""The library's loggers: structlog events on the standard ``logging`` tree, silent by default.

Every event goes to a stdlib logger under ``omnicron`` (``omnicron.scheduler``,
``omnicron.runtime``, ``omnicron.webhook``...):

- a host that configured nothing sees nothing: ``omnicron`` carries a ``NullHandler`` (as the
  logging HOWTO asks of libraries), so not even warnings reach stderr through logging's
  last-resort handler;
- a host that configured the stdlib (``logging.basicConfig``, ``dictConfig``) gets records
  whose message reads ``job.run job_id=a scheduled_at=2026-01-01T09:00:00+00:00 ...`` and whose
  ``msg`` is also the event dict, so a structlog ``ProcessorFormatter`` renders it as its own;
- a host that configured structlog (``structlog.configure``) gets the events through its own
  processors (with ``structlog.stdlib.LoggerFactory`` they land on the same stdlib loggers).

Times are ISO 8601 strings in every case. A level nobody listens to costs one
``isEnabledFor`` (stdlib) or a bound filtering logger's no-op (structlog) per event.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["ROOT_LOGGER", "Logger", "get_logger"]

ROOT_LOGGER = "omnicron"
logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _isoformat_times(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, datetime | date):
            event[key] = value.isoformat()
    return event


def _text(value: Any) -> str:
    text = str(value)
    if text == "" or any(c.isspace() or c in "\"'=" for c in text):
        return repr(text)
    return text


class _Event(dict[str, Any]):
    """An event dict that a plain ``logging.Formatter`` shows as one readable line."""

    def __str__(self) -> str:
        parts = [str(self.get("event", ""))]
        parts += [f"{k}={_text(v)}" for k, v in self.items() if k != "event" and v is not None]
        return " ".join(parts)


def _to_record(logger: WrappedLogger, method: str, event: EventDict) -> Any:
    exc_info = event.pop("exc_info", None)
    # the keys ProcessorFormatter looks for (as structlog.stdlib.wrap_for_formatter sets them)
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method}}
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (_Event(event),), kwargs


class Logger:
    """A structlog-style logger (``info(event, **values)``, ``bind``, ``is_enabled_for``)."""

    __slots__ = ("_context", "_host_proxy", "_std", "_wrapped", "name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self.name = name
        self._context = context or {}
        self._std = logging.getLogger(name)
        self._wrapped: Any = structlog.wrap_logger(
            self._std,
            processors=[_isoformat_times, _to_record],
            wrapper_class=structlog.stdlib.BoundLogger,
            **self._context,
        )
        # structlog's lazy proxy reads the host's configuration when used (and caches only if
        # the host asked for cache_logger_on_first_use), so one proxy per logger is enough
        self._host_proxy: Any = structlog.get_logger(name, **self._context)

    def bind(self, **values: Any) -> Logger:
        return Logger(self.name, {**self._context, **values})

    def _host(self) -> Any:
        return self._host_proxy

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event at ``level`` goes anywhere (skip building costly values if not)."""
        if not structlog.is_configured():
            return self._std.isEnabledFor(level)
        bound = self._host().bind()
        check = getattr(bound, "is_enabled_for", None) or getattr(bound, "isEnabledFor", None)
        return True if check is None else bool(check(level))

    def _emit(self, method: str, event: str, values: dict[str, Any]) -> None:
        if structlog.is_configured():
            for key, value in values.items():
                if isinstance(value, datetime | date):
                    values[key] = value.isoformat()
            getattr(self._host(), method)(event, **values)
        elif self._std.isEnabledFor(_LEVELS[method]):
            getattr(self._wrapped, method)(event, **values)

    def debug(self, event: str, **values: Any) -> None:
        self._emit("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._emit("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._emit("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._emit("error", event, values)

    def critical(self, event: str, **values: Any) -> None:
        self._emit("critical", event, values)

    def exception(self, event: str, **values: Any) -> None:
        """``error`` with the exception being handled attached."""
        values.setdefault("exc_info", True)
        self._emit("error", event, values)


def get_logger(name: str = ROOT_LOGGER) -> Logger:
    """The logger for ``name`` (a dotted name under ``omnicron``); for the core and plugins."""
    if name != ROOT_LOGGER and not name.startswith(ROOT_LOGGER + "."):
        name = f"{ROOT_LOGGER}.{name}"
    return Logger(name)
