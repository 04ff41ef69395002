"""The ``call_tool`` executor: run a registered, allowed tool with schema-checked params."""

from __future__ import annotations

import asyncio
import copy
import inspect
from typing import Annotated, Any

import msgspec
import pluggy

from omnicron_core.plugin import (
    ActionExecutor,
    ExecutionResult,
    Job,
    JobValidationError,
    ParamFlag,
    RunInfo,
    describe_error,
)

from ._builtins import BUILTIN_TOOLS
from ._settings import ToolSettings
from ._tool import ParamsError, Tool, ToolProblem, find_tools, get_tools

__all__ = ["ToolExecutor", "ToolParams", "is_builtin"]

TOOL_NAME_REQUIRED = "tool_name is required for call_tool action"


def is_builtin(tool: Tool) -> bool:
    """True for the tools this plugin ships (``echo``, ``now``), not for look-alikes."""
    return any(tool is builtin for builtin in BUILTIN_TOOLS)


class ToolParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The parameters of a call_tool action (the Go original's keys)."""

    tool_name: Annotated[str, msgspec.Meta(description="Name of a registered, allowed tool")]
    tool_params: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="The tool's arguments, checked against its JSON Schema"),
    ] = None


class ToolExecutor(ActionExecutor[ToolParams]):
    """Runs ``tool_name`` with ``tool_params`` as keyword arguments.

    Only tools that are registered (hook ``omnicron_tools``) and allowed (``[plugins.tool]
    allow``, plus the built-ins) run. Output: ``{tool_name, params, result}``.
    """

    action_type = "call_tool"
    description = "Call a registered tool (omnicron_tools hook) with JSON-Schema-checked params"
    params_type = ToolParams
    cli_flags = (
        ParamFlag("tool_name", "--tool-name", "Tool to call."),
        ParamFlag("tool_params", "--tool-params", "Tool parameters as a JSON object.", kind="json"),
    )

    def __init__(
        self,
        settings: ToolSettings | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self.settings = settings or ToolSettings()
        self.plugin_manager = plugin_manager

    def registered_tools(self) -> dict[str, Tool]:
        """Every tool the plugins provide, allowed or not (a broken provider's are left out,
        and logged with the plugin's name)."""
        if self.plugin_manager is None:
            return {tool.name: tool for tool in BUILTIN_TOOLS}
        return get_tools(self.plugin_manager)

    def _problems(self) -> dict[str, ToolProblem]:
        if self.plugin_manager is None:
            return {}
        return find_tools(self.plugin_manager)[1]

    def is_allowed(self, tool: Tool) -> bool:
        """Whether jobs may call ``tool`` under these settings."""
        return (
            self.settings.allows_all
            or tool.name in self.settings.allow
            or (self.settings.allow_builtins and is_builtin(tool))
        )

    def allowed_tools(self) -> dict[str, Tool]:
        """The tools jobs may call, by name (what an agent should be offered)."""
        return {
            name: t for name, t in sorted(self.registered_tools().items()) if self.is_allowed(t)
        }

    def resolve(self, action: ToolParams) -> Tool:
        """The tool the action calls, after every check; raises :class:`JobValidationError`."""
        name = action.tool_name
        if not name:
            raise JobValidationError(TOOL_NAME_REQUIRED, field="action.tool_name")
        registered = self.registered_tools()
        allowed = ", ".join(n for n, t in sorted(registered.items()) if self.is_allowed(t))
        tool = registered.get(name)
        if tool is None:
            problems = self._problems()
            if name in problems:  # two plugins provide it
                raise JobValidationError(problems[name].message, field="action.tool_name")
            broken = "".join(
                f"; not loaded: {p.message}"
                for p in problems.values()
                if p.event == "tool.provider_failed"
            )
            raise JobValidationError(
                f"unknown tool {name!r}; allowed tools: {allowed or 'none'}{broken}",
                field="action.tool_name",
            )
        if not self.is_allowed(tool):
            raise JobValidationError(
                f"tool {name!r} is not allowed; add it to plugins.tool.allow "
                f"(allowed tools: {allowed or 'none'})",
                field="action.tool_name",
            )
        try:
            tool.check_params(action.tool_params)
        except ParamsError as exc:
            raise JobValidationError(exc.message, field=f"action.{exc.path}") from None
        return tool

    def validate(self, params: ToolParams) -> None:
        self.resolve(params)

    def timeout_for(self, tool: Tool) -> float:
        return tool.timeout if tool.timeout is not None else self.settings.timeout

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        try:
            action = self.decode_params(job.action)
            tool = self.resolve(action)
        except JobValidationError as exc:
            return ExecutionResult.failed(f"invalid action: {exc.message}")
        except Exception as exc:  # e.g. two plugins registering one tool name
            return ExecutionResult.failed(f"tool execution failed: {_describe(exc)}")
        params = dict(action.tool_params or {})
        timeout = self.timeout_for(tool)
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                # A copy: the tool cannot change the job's stored params.
                result = await _invoke(tool, copy.deepcopy(params))
        except TimeoutError as exc:
            if deadline.expired():
                return ExecutionResult.failed(f"tool {tool.name!r} timed out after {timeout:g}s")
            return ExecutionResult.failed(f"tool execution failed: {_describe(exc)}")
        except Exception as exc:  # a run never raises: the tool's error becomes the result
            return ExecutionResult.failed(f"tool execution failed: {_describe(exc)}")
        return ExecutionResult.ok(
            {"tool_name": tool.name, "params": params, "result": _jsonable(result)}
        )


async def _invoke(tool: Tool, params: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(tool.func):
        result = await tool.func(**params)
    else:
        # A sync tool runs in a worker thread; on timeout the thread runs on, its result dropped.
        result = await asyncio.to_thread(tool.func, **params)
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        result = await result
    return result


def _jsonable(value: Any) -> Any:
    """``value`` as JSON builtins (datetimes become RFC 3339 strings...), else ``str(value)``."""
    try:
        return msgspec.json.decode(msgspec.json.encode(value))
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _describe(exc: BaseException) -> str:
    return describe_error(exc)
