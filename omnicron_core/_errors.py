"""Exceptions raised by omnicron, with the Go original's messages where it had one."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "JobNotFoundError",
    "JobValidationError",
    "OmnicronError",
    "PluginError",
    "SchedulerAlreadyRunningError",
    "StoreError",
    "describe_error",
]


class OmnicronError(Exception):
    """Base class of omnicron's own errors."""


class JobNotFoundError(OmnicronError, LookupError):
    """The job id is not in the store (the original's ``ErrJobNotFound``)."""

    def __init__(self, job_id: str | None = None) -> None:
        super().__init__("job not found")
        self.job_id = job_id


class JobValidationError(OmnicronError, ValueError):
    """A job (or part of one) is not acceptable; ``field`` names where, when known.

    ``str()`` is the message alone, as the original printed it (``"job name is required"``);
    ``field`` carries the location (``"schedule.cron"``) for callers that report paths.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def with_prefix(self, prefix: str) -> JobValidationError:
        """The same error located under ``prefix`` (``jobs[2]`` + ``schedule.cron``)."""
        if not prefix:
            return self
        field = f"{prefix}.{self.field}" if self.field else prefix
        return JobValidationError(self.message, field=field)


class SchedulerAlreadyRunningError(OmnicronError, RuntimeError):
    def __init__(self) -> None:
        super().__init__("scheduler already running")


class StoreError(OmnicronError):
    """A store backend failed or was misconfigured.

    ``transient`` tells the Scheduler whether waiting may help: ``True`` for a store that is
    busy or locked by another process (retried for as long as it lasts), ``False`` (the
    default) for one that will not heal by itself: read-only, damaged, full, missing,
    misconfigured. ``omnicron run`` stops with a non-zero exit when a permanent error outlasts
    ``scheduler.store_error_window``.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class PluginError(OmnicronError):
    """A plugin failed to load or registered something invalid."""


class ConfigError(OmnicronError, ValueError):
    """A configuration value is not acceptable; ``field`` is its dotted path
    (``plugins.webhook.timeout``)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


def describe_error(exc: BaseException) -> str:
    """An exception as a one-line message for a run's ``error``.

    omnicron's own errors (and those of its plugins) read as their message. Others that only
    make sense with their type (``KeyError('location')`` would read ``'location'``) get it
    in front, as does any exception without a message."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    if isinstance(exc, OmnicronError) or type(exc).__module__.startswith("omnicron"):
        return text
    if isinstance(exc, LookupError | AttributeError | TypeError | AssertionError):
        return f"{type(exc).__name__}: {text}"
    return text
