"""omnicron: a job scheduler for agent platforms."""

from ._duration import Duration, format_go_duration, parse_go_duration
from ._errors import (
    ConfigError,
    JobNotFoundError,
    JobValidationError,
    OmnicronError,
    PluginError,
    SchedulerAlreadyRunningError,
    StoreError,
)
from ._models import (
    Action,
    ActionType,
    ExecutionResult,
    Job,
    JobStatus,
    Schedule,
    decode_job,
    decode_jobs,
    encode_job,
    encode_jobs,
    job_from_builtins,
    job_to_builtins,
    new_job,
)
from ._plugins import (
    ActionExecutor,
    PluginContext,
    Registry,
    RunInfo,
    StoreBackendSpec,
    get_plugin_manager,
)
from .hookspecs import hookimpl

__all__ = [
    "Action",
    "ConfigError",
    "ActionExecutor",
    "ActionType",
    "Duration",
    "ExecutionResult",
    "Job",
    "JobNotFoundError",
    "JobStatus",
    "JobValidationError",
    "OmnicronError",
    "PluginContext",
    "PluginError",
    "Registry",
    "RunInfo",
    "Schedule",
    "SchedulerAlreadyRunningError",
    "StoreBackendSpec",
    "StoreError",
    "decode_job",
    "decode_jobs",
    "encode_job",
    "encode_jobs",
    "format_go_duration",
    "get_plugin_manager",
    "hookimpl",
    "job_from_builtins",
    "job_to_builtins",
    "new_job",
    "parse_go_duration",
]
