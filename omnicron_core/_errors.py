"""Exceptions raised by omnicron, with the Go original's messages where it had one.

One tree: everything omnicron raises on purpose is an :class:`OmnicronError`::

    OmnicronError
    ├── JobNotFoundError (LookupError)
    ├── JobValidationError (ValueError)   .field: "schedule.cron"
    │   └── CronError                       a bad cron expression
    ├── ConfigError (ValueError)          .field: "plugins.webhook.timeout"
    │   ├── SettingError                    raised by a plugin's settings Struct
    │   └── ConfigErrors                    several at once (omnicron_core.config)
    ├── ArgumentError (ValueError)        an agent tool call's arguments
    ├── ToolError                         an agent tool call failed (omnicron_core.skill)
    ├── MissingEnvVarError (KeyError)     a ${env:NAME} reference to an unset variable
    ├── SecretNotAllowedError (ValueError) a ${env:NAME} reference in an agent's job
    ├── SchedulerAlreadyRunningError (RuntimeError)
    ├── StoreError
    └── PluginError
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "ConfigError",
    "CronError",
    "JobNotFoundError",
    "JobValidationError",
    "MissingEnvVarError",
    "OmnicronError",
    "PluginError",
    "SchedulerAlreadyRunningError",
    "SecretNotAllowedError",
    "SettingError",
    "StoreError",
    "ToolError",
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


class CronError(JobValidationError):
    """A cron expression is not acceptable; the message names the field and the value."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="schedule.cron")


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


class SettingError(ConfigError):
    """Raise from a settings Struct's ``__post_init__`` to name the offending key
    (``SettingError("needs a path", "path")``); the settings loader puts the section in front
    (``plugins.send_message.path``)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message, field=key)
        self.key = key


class ArgumentError(OmnicronError, ValueError):
    """The arguments of an agent tool call are not acceptable; ``str()`` is the message for
    the model."""


class ToolError(OmnicronError):
    """An agent tool call failed for a reason the model can act on; ``str()`` is the message."""


class MissingEnvVarError(OmnicronError, KeyError):
    """A ``${env:NAME}`` reference names a variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"environment variable {self.name} is not set"


class SecretNotAllowedError(OmnicronError, ValueError):
    """A job an agent made holds a ``${env:NAME}`` reference: it never resolves."""

    def __str__(self) -> str:
        return (
            "${env:} references do not resolve in a job made by an agent (origin 'agent'); "
            "secrets are for operators' jobs only"
        )


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
