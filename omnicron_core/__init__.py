"""omnicron: a job scheduler for agent platforms."""

from ._backend import JobPatch, StoreBackend
from ._duration import Duration, format_go_duration, parse_go_duration
from ._errors import (
    ConfigError,
    JobNotFoundError,
    JobValidationError,
    OmnicronError,
    PluginError,
    SchedulerAlreadyRunningError,
    StoreError,
    describe_error,
)
from ._limits import AGENT_ORIGIN, JobLimits
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
from ._schedule import next_fire_times
from ._scheduler import ExecutionHandler, Scheduler, SchedulerConfig
from ._store import DEFAULT_STORE_URL, Store, StoreConfig
from .hookspecs import hookimpl

__all__ = [
    "AGENT_ORIGIN",
    "DEFAULT_STORE_URL",
    "Action",
    "ActionExecutor",
    "ActionType",
    "ConfigError",
    "Duration",
    "ExecutionHandler",
    "ExecutionResult",
    "Job",
    "JobLimits",
    "JobNotFoundError",
    "JobPatch",
    "JobStatus",
    "JobValidationError",
    "OmnicronError",
    "PluginContext",
    "PluginError",
    "Registry",
    "RunInfo",
    "Schedule",
    "Scheduler",
    "SchedulerAlreadyRunningError",
    "SchedulerConfig",
    "Store",
    "StoreBackend",
    "StoreBackendSpec",
    "StoreConfig",
    "StoreError",
    "decode_job",
    "decode_jobs",
    "describe_error",
    "encode_job",
    "encode_jobs",
    "format_go_duration",
    "get_plugin_manager",
    "hookimpl",
    "job_from_builtins",
    "job_to_builtins",
    "new_job",
    "next_fire_times",
    "parse_go_duration",
]
