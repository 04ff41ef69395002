from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import omnicron_tool
import pytest
from omnicron_tool import BUILTIN_TOOLS, Tool, ToolExecutor, ToolSettings, get_tools, load_settings
from structlog.testing import capture_logs

from omnicron_core import (
    Action,
    ConfigError,
    Job,
    JobValidationError,
    Registry,
    RunInfo,
    get_plugin_manager,
    hookimpl,
)

RUN = RunInfo(run_id="r1", scheduled_at=datetime(2026, 11, 29, 9, tzinfo=UTC))
TEXT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
    "required": ["text"],
}


def job(tool_name: str, params: dict[str, Any] | None = None) -> Job:
    return Job(
        id="j", name="j", action=Action(type="call_tool", tool_name=tool_name, tool_params=params)
    )


def shout(text: str, count: int = 1) -> str:
    return (text.upper() + "!") * count


async def whisper(text: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"quiet": text.lower(), "thread": threading.current_thread().name}


def where(text: str) -> str:
    return threading.current_thread().name


def slow_sync(text: str) -> str:
    time.sleep(1.0)
    return "late"


async def slow_async(text: str) -> str:
    await asyncio.sleep(5)
    return "late"


def broken(text: str) -> str:
    raise RuntimeError(f"cannot handle {text!r}")


def odd_result(text: str) -> object:
    return {1, 2} if text == "set" else object()


def tool(name: str, func: Any, timeout: float | None = None, schema: Any = None) -> Tool:
    return Tool(
        name=name,
        description=f"{name} tool",
        parameters=schema or TEXT_SCHEMA,
        func=func,
        timeout=timeout,
    )


class HostTools:
    def __init__(self, *tools: Tool) -> None:
        self.tools = tools

    @hookimpl
    def omnicron_tools(self) -> Iterable[Tool]:
        return self.tools


HOST = HostTools(
    tool("shout", shout),
    tool("whisper", whisper),
    tool("where", where),
    tool("slow_sync", slow_sync, timeout=0.2),
    tool("slow_async", slow_async, timeout=0.2),
    tool("broken", broken),
    tool("odd", odd_result),
)


def executor(settings: dict[str, Any] | None = None, *plugins: object) -> ToolExecutor:
    pm = get_plugin_manager(plugins=plugins or [HOST])
    ex = Registry(
        pm, settings={"tool": settings if settings is not None else {"allow": ["*"]}}
    ).executors["call_tool"]
    assert isinstance(ex, ToolExecutor)
    return ex


# --- discovery and registration --------------------------------------------------------------


def test_entry_point_plugin_provides_executor_and_builtins() -> None:
    pm = get_plugin_manager()
    ex = Registry(pm).executors["call_tool"]
    assert isinstance(ex, ToolExecutor) and ex.settings == ToolSettings()
    assert set(get_tools(pm)) >= {"echo", "now"}
    assert get_tools(pm)["echo"] is BUILTIN_TOOLS[0]


def test_plugin_works_without_installing_it() -> None:
    pm = get_plugin_manager(plugins=[omnicron_tool, HOST], load_entrypoints=False)
    assert "call_tool" in Registry(pm).executors
    assert set(get_tools(pm)) == {
        "echo",
        "now",
        "shout",
        "whisper",
        "where",
        "slow_sync",
        "slow_async",
        "broken",
        "odd",
    }


def test_host_tools_are_registered_through_the_hook() -> None:
    tools = get_tools(get_plugin_manager(plugins=[HostTools(tool("shout", shout))]))
    assert tools["shout"].func is shout
    assert tools["shout"].parameters == TEXT_SCHEMA


def test_a_tool_name_two_plugins_provide_is_left_out_naming_both() -> None:
    pm = get_plugin_manager(plugins=[HostTools(tool("echo", shout), tool("shout", shout))])
    with capture_logs() as logs:
        tools = get_tools(pm)
    assert "echo" not in tools and "now" in tools and "shout" in tools
    (event,) = [e for e in logs if e["event"] == "tool.name_conflict"]
    assert "tool 'echo' is provided by both" in event["error"]
    assert "'tool'" in event["error"] and "HostTools" in event["error"]


async def test_a_duplicate_tool_fails_its_runs_only() -> None:
    ex = executor(None, HostTools(tool("echo", shout), tool("shout", shout)))
    result = await ex.execute(job("echo", {"text": "x"}), RUN)
    assert not result.success and "provided by both" in result.error
    assert (await ex.execute(job("shout", {"text": "x"}), RUN)).output["result"] == "X!"
    assert (await ex.execute(job("now", {}), RUN)).success


class Raising:
    @hookimpl
    def omnicron_tools(self) -> list[Tool]:
        raise RuntimeError("provider exploded")


class Wrong:
    @hookimpl
    def omnicron_tools(self) -> list[object]:
        return [{"name": "x"}]


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        (Raising(), "failed in omnicron_tools: RuntimeError: provider exploded"),
        (Wrong(), "returned dict from omnicron_tools; expected omnicron_tool.Tool"),
    ],
)
async def test_a_broken_tool_provider_is_isolated_and_logged_by_name(
    broken: object, words: str
) -> None:
    pm = get_plugin_manager(plugins=[HOST])
    pm.register(broken, name="broken-provider")
    ex = Registry(pm, settings={"tool": {"allow": ["*"]}}).executors["call_tool"]
    assert isinstance(ex, ToolExecutor)
    with capture_logs() as logs:
        result = await ex.execute(job("shout", {"text": "still"}), RUN)
    assert result.success and result.output["result"] == "STILL!"
    assert set(get_tools(pm)) >= {"echo", "now", "shout"}
    logged = [e for e in logs if e["event"] == "tool.provider_failed"]
    assert logged and all(
        e["plugin"] == "broken-provider" and words in e["error"] and e["log_level"] == "error"
        for e in logged
    )
    # a job naming a tool that is not there hears why some tools are missing
    with pytest.raises(JobValidationError) as info:
        ex.validate(ex.decode_params(Action("call_tool", tool_name="gone")))
    assert "unknown tool 'gone'" in info.value.message
    assert f"not loaded: plugin 'broken-provider' {words.split(':')[0]}" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "has space"}, "tool name 'has space'"),
        ({"parameters": {"type": "objekt"}}, "invalid parameters schema at parameters.type"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"func": "not callable"}, "func must be callable"),
    ],
)
def test_bad_tool_descriptors_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    args: dict[str, Any] = {
        "name": "t",
        "description": "",
        "parameters": TEXT_SCHEMA,
        "func": shout,
    }
    with pytest.raises((ValueError, TypeError), match=fragment):
        Tool(**{**args, **kwargs})


def test_tool_copies_its_schema() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "string"}}}
    t = Tool(name="t", description="", parameters=schema, func=shout)
    schema["properties"]["a"]["type"] = "integer"
    t.check_params({"a": "still a string"})


# --- validation ------------------------------------------------------------------------------


def test_tool_name_is_required_with_the_original_message() -> None:
    reg = Registry(get_plugin_manager())
    with pytest.raises(JobValidationError) as info:
        reg.validate_action(Action(type="call_tool"))
    assert str(info.value) == "invalid action: tool_name is required for call_tool action"
    assert info.value.field == "action.tool_name"


def test_unknown_tool_lists_the_allowed_tools() -> None:
    with pytest.raises(JobValidationError) as info:
        executor({}).check(Action(type="call_tool", tool_name="rm_rf"))
    assert str(info.value) == "invalid action: unknown tool 'rm_rf'; allowed tools: echo, now"
    assert info.value.field == "action.tool_name"


def test_registered_tool_outside_the_allow_list_is_refused() -> None:
    ex = executor({"allow": ["whisper"]})
    ex.check(Action(type="call_tool", tool_name="whisper", tool_params={"text": "a"}))
    with pytest.raises(JobValidationError) as info:
        ex.check(Action(type="call_tool", tool_name="shout", tool_params={"text": "a"}))
    assert str(info.value) == (
        "invalid action: tool 'shout' is not allowed; add it to plugins.tool.allow (allowed tools: echo, now, whisper)"
    )


def test_builtins_can_be_disallowed() -> None:
    ex = executor({"allow_builtins": False})
    assert ex.allowed_tools() == {}
    with pytest.raises(
        JobValidationError, match=r"tool 'echo' is not allowed; .*allowed tools: none"
    ):
        ex.check(Action(type="call_tool", tool_name="echo", tool_params={"text": "a"}))


def test_star_allows_every_registered_tool() -> None:
    assert set(executor({"allow": ["*"]}).allowed_tools()) == {
        "echo",
        "now",
        "shout",
        "whisper",
        "where",
        "slow_sync",
        "slow_async",
        "broken",
        "odd",
    }


@pytest.mark.parametrize(
    ("params", "message", "field"),
    [
        ({"text": 5}, "tool_params.text: 5 is not of type 'string'", "action.tool_params.text"),
        ({}, "tool_params: 'text' is a required property", "action.tool_params"),
        (None, "tool_params: 'text' is a required property", "action.tool_params"),
        (
            {"text": "a", "count": 0},
            "tool_params.count: 0 is less than the minimum of 1",
            "action.tool_params.count",
        ),
    ],
)
def test_schema_failures_name_the_path(
    params: dict[str, Any] | None, message: str, field: str
) -> None:
    reg = Registry(get_plugin_manager(plugins=[HOST]), settings={"tool": {"allow": ["shout"]}})
    with pytest.raises(JobValidationError) as info:
        reg.validate_action(Action(type="call_tool", tool_name="shout", tool_params=params))
    assert str(info.value) == f"invalid action: {message}"
    assert info.value.field == field


def test_nested_paths_use_indexes() -> None:
    t = Tool(
        name="t",
        description="",
        parameters={
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"n": {"type": "number"}}},
                }
            },
        },
        func=shout,
    )
    with pytest.raises(omnicron_tool.ParamsError) as info:
        t.check_params({"items": [{"n": 1}, {"n": "two"}]})
    assert str(info.value) == "tool_params.items[1].n: 'two' is not of type 'number'"


async def test_execute_revalidates() -> None:
    result = await executor().execute(job("shout", {"text": 1}), RUN)
    assert not result.success
    assert result.error == "invalid action: tool_params.text: 1 is not of type 'string'"


# --- execution -------------------------------------------------------------------------------


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    ex = executor()
    result = await ex.execute(job("shout", {"text": "hi", "count": 2}), RUN)
    assert result.success, result.error
    assert result.output == {
        "tool_name": "shout",
        "params": {"text": "hi", "count": 2},
        "result": "HI!HI!",
    }
    where_result = await ex.execute(job("where", {"text": "x"}), RUN)
    assert where_result.output["result"] != threading.current_thread().name


async def test_async_tool_runs_on_the_loop() -> None:
    result = await executor().execute(job("whisper", {"text": "HeLLo"}), RUN)
    assert result.success, result.error
    assert result.output["result"] == {"quiet": "hello", "thread": threading.current_thread().name}


@pytest.mark.parametrize("name", ["slow_sync", "slow_async"])
async def test_tool_timeout(name: str) -> None:
    started = time.monotonic()
    result = await executor().execute(job(name, {"text": "x"}), RUN)
    assert time.monotonic() - started < 0.9
    assert not result.success
    assert result.error == f"tool '{name}' timed out after 0.2s"


async def test_settings_timeout_applies_to_tools_without_their_own() -> None:
    def nap(text: str) -> str:
        time.sleep(0.5)
        return text

    ex = executor({"allow": ["nap"], "timeout": 0.1}, HostTools(tool("nap", nap)))
    result = await ex.execute(job("nap", {"text": "x"}), RUN)
    assert result.error == "tool 'nap' timed out after 0.1s"


async def test_tool_raising_timeout_itself_is_not_reported_as_our_timeout() -> None:
    def upstream(text: str) -> str:
        raise TimeoutError("upstream API timed out")

    ex = executor({"allow": ["up"]}, HostTools(tool("up", upstream)))
    result = await ex.execute(job("up", {"text": "x"}), RUN)
    assert result.error == "tool execution failed: upstream API timed out"


async def test_raising_tool_fails_the_run() -> None:
    result = await executor().execute(job("broken", {"text": "x"}), RUN)
    assert not result.success
    assert result.error == "tool execution failed: cannot handle 'x'"


async def test_non_json_results_are_converted() -> None:
    ex = executor()
    as_list = await ex.execute(job("odd", {"text": "set"}), RUN)
    assert sorted(as_list.output["result"]) == [1, 2]
    as_str = await ex.execute(job("odd", {"text": "obj"}), RUN)
    assert as_str.success and as_str.output["result"].startswith("<object object at")


async def test_tool_cannot_change_the_jobs_params() -> None:
    def mutate(**params: Any) -> str:
        params["items"].append("added")
        return "done"

    schema = {"type": "object", "properties": {"items": {"type": "array"}}}
    ex = executor({"allow": ["mutate"]}, HostTools(tool("mutate", mutate, schema=schema)))
    the_job = job("mutate", {"items": ["a"]})
    result = await ex.execute(the_job, RUN)
    assert result.success and the_job.action.params["tool_params"] == {"items": ["a"]}
    assert result.output["params"] == {"items": ["a"]}


# --- built-ins -------------------------------------------------------------------------------


async def test_echo_returns_its_text() -> None:
    result = await executor({}).execute(job("echo", {"text": "héllo"}), RUN)
    assert result.success and result.output == {
        "tool_name": "echo",
        "params": {"text": "héllo"},
        "result": "héllo",
    }


async def test_now_in_utc_and_in_a_time_zone() -> None:
    ex = executor({})
    utc = await ex.execute(job("now"), RUN)
    tokyo = await ex.execute(job("now", {"timezone": "Asia/Tokyo"}), RUN)
    assert utc.success and tokyo.success
    utc_at = datetime.fromisoformat(utc.output["result"])
    tokyo_at = datetime.fromisoformat(tokyo.output["result"])
    assert utc_at.utcoffset() == timedelta(0) and tokyo_at.utcoffset() == timedelta(hours=9)
    assert abs(utc_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert abs(tokyo_at - utc_at) < timedelta(seconds=5)
    assert "T" in utc.output["result"] and utc.output["result"].endswith("+00:00")


def test_now_refuses_an_unknown_time_zone_at_validation() -> None:
    with pytest.raises(JobValidationError) as info:
        executor({}).check(
            Action(type="call_tool", tool_name="now", tool_params={"timezone": "Mars/Base"})
        )
    assert "tool_params.timezone: 'Mars/Base'" in str(info.value)
    assert info.value.field == "action.tool_params.timezone"


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"timeout": 0}, "plugins.tool.timeout", "> 0"),
        ({"allow": "echo"}, "plugins.tool.allow", "array"),
        ({"allow": ["ok", "bad name"]}, "plugins.tool.allow[1]", "not a tool name"),
        (
            {"allowlist": ["x"]},
            "plugins.tool.allowlist",
            "allowed keys: allow, allow_builtins, timeout",
        ),
        ({"allow_builtins": "maybe"}, "plugins.tool.allow_builtins", "bool"),
    ],
)
def test_settings_errors_name_the_field(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert info.value.field == field
    assert fragment in info.value.message


def test_settings_defaults() -> None:
    s = load_settings({})
    assert (s.allow, s.allow_builtins, s.timeout) == ((), True, 30.0)
    with pytest.raises(ConfigError, match=r"plugins\.tool\.timeout"):
        _ = Registry(get_plugin_manager(), settings={"tool": {"timeout": -1}}).executors


def test_public_names() -> None:
    assert set(omnicron_tool.__all__) == {
        "ALLOW_ALL",
        "BUILTIN_TOOLS",
        "FORMAT_CHECKER",
        "ParamsError",
        "Tool",
        "ToolExecutor",
        "ToolParams",
        "ToolSettings",
        "get_tools",
        "hookspecs",
        "is_builtin",
        "load_settings",
    }
    for name in omnicron_tool.__all__:
        assert hasattr(omnicron_tool, name)
