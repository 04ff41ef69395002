"""The plugin author's API: everything an executor or store plugin needs, in one module.

Import from here, never from a ``_private`` module of ``omnicron_core``::

    import msgspec
    from omnicron_core.plugin import ActionExecutor, ExecutionResult, hookimpl

    class AppendFileParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
        path: str
        text: str

    class AppendFileExecutor(ActionExecutor[AppendFileParams]):
        action_type = "append_file"
        description = "Append a line of text to a file"
        params_type = AppendFileParams

        async def execute(self, job, run):
            params = self.check(job.action)
            ...
            return ExecutionResult.ok({"path": params.path})

    @hookimpl
    def omnicron_action_executors(context):
        return [AppendFileExecutor()]

An executor declares its parameters as a msgspec Struct (``params_type``); omnicron decodes a
job's ``action.params`` into it when the job is added (located errors such as
``action.path: ...``), derives the CLI's ``--param`` handling, the agent tools' schemas, the MCP
server and ``omnicron plugins --json`` from it. See docs/plugins.md (executors) and
docs/stores.md (store backends).
"""

from __future__ import annotations

from ._backend import JobPatch, StoreBackend
from ._duration import Duration, format_go_duration, parse_go_duration
from ._errors import (
    ConfigError,
    JobNotFoundError,
    JobValidationError,
    OmnicronError,
    PluginError,
    StoreError,
    describe_error,
)
from ._files import make_private_dirs
from ._log import get_logger
from ._models import (
    Action,
    ExecutionResult,
    Job,
    JobStatus,
    Schedule,
    dec_hook,
    decode_job,
    encode_job,
    job_from_builtins,
    job_to_builtins,
)
from ._plugins import (
    ENTRY_POINT_GROUP,
    ActionExecutor,
    HookResult,
    ParamFlag,
    PluginContext,
    RunInfo,
    StoreBackendSpec,
    call_each_plugin,
    params_json_schema,
)
from ._runs import RunOutcome, RunRecord, RunWrites, fire_run_id
from .bodies import BodyReader, UndecodableBodyError
from .hookspecs import hookimpl, hookspec
from .secrets import (
    MissingEnvVarError,
    SecretNotAllowedError,
    find_env_refs,
    malformed_env_ref,
    resolve_env_refs,
    resolve_job_env_refs,
)
from .settings import SettingError, load_plugin_settings

__all__ = [
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionExecutor",
    "BodyReader",
    "ConfigError",
    "Duration",
    "ExecutionResult",
    "HookResult",
    "Job",
    "JobNotFoundError",
    "JobPatch",
    "JobStatus",
    "JobValidationError",
    "MissingEnvVarError",
    "OmnicronError",
    "ParamFlag",
    "PluginContext",
    "PluginError",
    "RunInfo",
    "RunOutcome",
    "RunRecord",
    "RunWrites",
    "Schedule",
    "SecretNotAllowedError",
    "SettingError",
    "StoreBackend",
    "StoreBackendSpec",
    "StoreError",
    "UndecodableBodyError",
    "call_each_plugin",
    "dec_hook",
    "decode_job",
    "describe_error",
    "encode_job",
    "find_env_refs",
    "fire_run_id",
    "format_go_duration",
    "get_logger",
    "hookimpl",
    "hookspec",
    "job_from_builtins",
    "job_to_builtins",
    "load_plugin_settings",
    "make_private_dirs",
    "malformed_env_ref",
    "params_json_schema",
    "parse_go_duration",
    "resolve_env_refs",
    "resolve_job_env_refs",
]
