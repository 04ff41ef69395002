"""The ``cron`` skill, called as an agent framework calls it: JSON arguments in, JSON out."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from omnicron_core import (
    ConfigError,
    ExecutionResult,
    Job,
    OmnicronError,
    Registry,
    Store,
    StoreConfig,
    get_plugin_manager,
)
from omnicron_core.skill import Skill, SkillConfig, ToolResult, load_skill_config

ME = "session:alice"
OTHER = "session:mallory"
TOKYO = "Asia/Tokyo"  # no DST: fire times are stable whatever the date

ORIGINAL_TOOLS = {
    "cron_create": "Create a new scheduled job. Use cron expressions (e.g., '0 0 9 * * *' for "
    "9am daily), interval (e.g., '1h' for hourly), or a specific time for one-time execution.",
    "cron_list": "List all scheduled jobs, optionally filtered by status",
    "cron_get": "Get detailed information about a specific job",
    "cron_delete": "Delete a scheduled job",
    "cron_enable": "Enable a disabled job to resume scheduling",
    "cron_disable": "Disable a job without deleting it",
    "cron_trigger": "Run a job immediately, regardless of its schedule",
}


def registry() -> Registry:
    return Registry(get_plugin_manager(), settings={"send_message": {"transport": "host"}})


def make_skill(config: SkillConfig | None = None, **kw: Any) -> Skill:
    reg = registry()
    kw.setdefault("store", Store(StoreConfig(url="memory://"), registry=reg))
    return Skill(config or SkillConfig(), registry=reg, location=TOKYO, **kw)


@pytest.fixture
async def skill() -> AsyncIterator[Skill]:
    s = make_skill()
    await s.init()
    try:
        yield s
    finally:
        await s.close()


def msg_args(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "standup",
        "schedule_cron": "0 0 9 * * *",
        "action_type": "send_message",
        "session_id": "alice",
        "message": "time for standup",
    }
    args.update(over)
    return {k: v for k, v in args.items() if v is not ...}


async def call(skill: Skill, tool: str, args: Any, principal: str | None = ME) -> ToolResult:
    """Call with JSON text, as a model's tool call arrives, and check the result is JSON."""
    text = args if isinstance(args, str) else json.dumps(args)
    result = await skill.call(tool, text, principal=principal)
    assert json.loads(result.text) == result.content
    return result


async def ok(skill: Skill, tool: str, args: Any, principal: str | None = ME) -> Any:
    result = await call(skill, tool, args, principal)
    assert not result.is_error, result.content
    return result.content


async def err(skill: Skill, tool: str, args: Any, principal: str | None = ME) -> str:
    result = await call(skill, tool, args, principal)
    assert result.is_error, result.content
    assert result.content == {"error": result.error}
    return result.error


# -- the original's surface -----------------------------------------------------------------


def test_identity_tools_and_descriptions_are_the_originals() -> None:
    s = make_skill()
    assert s.name() == "cron"
    assert s.description() == "Schedule and manage recurring jobs"
    names = [t.name for t in s.tools()]
    assert names == [*ORIGINAL_TOOLS, "cron_update", "cron_next", "cron_history"]
    for tool in s.tools():
        if tool.name in ORIGINAL_TOOLS and tool.name not in ("cron_create", "cron_list"):
            assert tool.description == ORIGINAL_TOOLS[tool.name]
    create = s.get_tool("cron_create")
    assert create is not None
    schema = create.parameters
    assert schema["required"] == ["name", "action_type"]
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == [
        "name",
        "description",
        "schedule_cron",
        "schedule_interval",
        "schedule_once",
        "timezone",
        "action_type",
        "tool_name",
        "tool_params",
        "webhook_url",
        "webhook_method",
        "session_id",
        "message",
        "policy",  # ours, after the original's
    ]
    # installed ∩ allowed (every installed type by default), each with its description
    assert schema["properties"]["action_type"]["enum"] == [
        "call_tool",
        "call_webhook",
        "send_message",
    ]
    assert (
        "send_message: Send a message to an agent session"
        in (schema["properties"]["action_type"]["description"])
    )
    assert schema["properties"]["tool_params"]["type"] == "object"
    disable = s.get_tool("cron_disable")
    assert disable is not None  # the original's id, plus an optional note (issue 10)
    assert disable.parameters["required"] == ["id"]
    assert set(disable.parameters["properties"]) == {"id", "note"}
    for name in ("cron_get", "cron_delete", "cron_enable", "cron_trigger"):
        id_tool = s.get_tool(name)
        assert id_tool is not None
        assert id_tool.parameters == {
            "type": "object",
            # the original's, plus a length bound (issue 9: nothing unbounded from a model)
            "properties": {"id": {"type": "string", "description": "Job ID", "maxLength": 256}},
            "required": ["id"],
            "additionalProperties": False,
        }


def test_exports_in_openai_anthropic_and_mcp_formats() -> None:
    s = make_skill()
    tool = s.get_tool("cron_get")
    assert tool is not None
    params = {
        "type": "object",
        "properties": {"id": {"type": "string", "description": "Job ID", "maxLength": 256}},
        "required": ["id"],
        "additionalProperties": False,
    }
    desc = "Get detailed information about a specific job"
    assert tool.to_openai() == {
        "type": "function",
        "function": {"name": "cron_get", "description": desc, "parameters": params},
    }
    assert tool.to_anthropic() == {"name": "cron_get", "description": desc, "input_schema": params}
    mcp_tool = tool.to_mcp()
    assert (mcp_tool.name, mcp_tool.description, mcp_tool.input_schema) == (
        "cron_get",
        desc,
        params,
    )
    assert [t["function"]["name"] for t in s.openai_tools()] == [t.name for t in s.tools()]
    assert [t["name"] for t in s.anthropic_tools()] == [t.name for t in s.tools()]
    json.dumps([s.openai_tools(), s.anthropic_tools()])  # plain JSON


def test_webhook_headers_and_body_only_when_the_config_allows() -> None:
    default = make_skill().get_tool("cron_create")
    assert default is not None
    assert "webhook_headers" not in default.parameters["properties"]
    assert "webhook_body" not in default.parameters["properties"]
    allowed = make_skill(SkillConfig(allow_params=("webhook_headers", "webhook_body")))
    tool = allowed.get_tool("cron_create")
    assert tool is not None
    assert tool.parameters["properties"]["webhook_headers"]["type"] == "object"
    assert tool.parameters["properties"]["webhook_body"]["type"] == "string"


async def test_init_needs_storage_and_tools_need_init() -> None:
    s = Skill()
    with pytest.raises(OmnicronError, match=r"^storage not configured$"):
        await s.init()
    assert await s.call("cron_list", "{}") == ToolResult.failure(
        "the cron skill is not initialised (the host must call init())"
    )
    preview = await s.call("cron_next", {"schedule_interval": "1h"})
    assert not preview.is_error


async def test_handler_set_before_init_is_used() -> None:
    """The original ignored a handler set before Init."""
    seen: list[str] = []

    def handler(job: Job) -> ExecutionResult:
        seen.append(job.name)
        return ExecutionResult.ok({"handled": job.name})

    s = make_skill()
    s.set_execution_handler(handler)
    async with s:
        assert s.get_scheduler() is not None
        created = await ok(s, "cron_create", msg_args())
        result = await ok(s, "cron_trigger", {"id": created["id"]})
    assert seen == ["standup"]
    assert set(result) == {"id", "success", "output", "error", "duration"}
    assert result["id"] == created["id"]
    assert (result["success"], result["output"], result["error"]) == (
        True,
        {"handled": "standup"},
        "",
    )
    assert result["duration"].endswith(("s", "ms", "µs", "ns"))


# -- create and describe --------------------------------------------------------------------


async def test_create_returns_the_original_shape_plus_description_and_fire_times(
    skill: Skill,
) -> None:
    out = await ok(skill, "cron_create", msg_args())
    assert list(out) == [
        "id",
        "name",
        "status",
        "next_run_at",
        "schedule_description",
        "timezone",
        "next_fire_times",
    ]
    assert out["name"] == "standup" and out["status"] == "enabled"
    assert out["schedule_description"] == "At 09:00 (Asia/Tokyo)"
    assert out["timezone"] == TOKYO
    fires = out["next_fire_times"]
    assert len(fires) == 3
    assert all(t.endswith("T09:00:00+09:00") for t in fires)
    days = [datetime.fromisoformat(t) for t in fires]
    assert [b - a for a, b in itertools.pairwise(days)] == [timedelta(days=1)] * 2
    assert datetime.fromisoformat(out["next_run_at"]) == days[0]
    # one zone per answer: next_run_at is shown like next_fire_times
    assert out["next_run_at"] == fires[0]


@pytest.mark.parametrize(
    ("over", "description", "suffix"),
    [
        ({"schedule_cron": "30 8 * * 1-5"}, "At 08:30, Monday through Friday (Asia/Tokyo)", None),
        (
            {"schedule_cron": "0 9 * * *", "timezone": "Europe/London"},
            "At 09:00 (Europe/London)",
            None,
        ),
        ({"schedule_cron": "@daily"}, "At 00:00 (Asia/Tokyo)", "T00:00:00+09:00"),
        ({"schedule_cron": ..., "schedule_interval": "2d"}, "Every 2 days", None),
        ({"schedule_cron": ..., "schedule_interval": "1h30m"}, "Every 1 hour 30 minutes", None),
    ],
)
async def test_create_accepts_5_and_6_fields_descriptors_and_day_intervals(
    skill: Skill, over: dict[str, Any], description: str, suffix: str | None
) -> None:
    out = await ok(skill, "cron_create", msg_args(**over))
    assert out["schedule_description"] == description
    assert len(out["next_fire_times"]) == 3
    if suffix:
        assert all(t.endswith(suffix) for t in out["next_fire_times"])


async def test_create_once_and_get_whole_job(skill: Skill) -> None:
    when = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    out = await ok(
        skill,
        "cron_create",
        msg_args(schedule_cron=..., schedule_once=when.isoformat().replace("+00:00", "Z")),
    )
    tokyo = when.astimezone(ZoneInfo(TOKYO)).isoformat()
    assert out["next_fire_times"] == [tokyo]
    assert out["schedule_description"] == f"Once, at {tokyo}"
    job = await ok(skill, "cron_get", {"id": out["id"]})
    assert job["id"] == out["id"]
    assert job["schedule"] == {"once": when.isoformat().replace("+00:00", "Z")}
    assert job["action"] == {
        "type": "send_message",
        "session_id": "alice",
        "message": "time for standup",
    }
    assert job["owner_principal"] == ME
    assert job["status"] == "enabled" and job["run_count"] == 0
    for key in ("created_at", "updated_at", "next_run_at", "schedule_description"):
        assert key in job


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"schedule_cron": "0 24 * * *"}, "cron field 'hour' has 24; allowed 0-23"),
        ({"schedule_cron": "0 0 24 * * *"}, "cron field 'hour' has 24; allowed 0-23"),
        (
            {"schedule_cron": ..., "schedule_interval": "5 minutes"},
            "invalid interval: invalid duration '5 minutes': expected numbers with units "
            "(ns, us, µs, ms, s, m, h, d), e.g. '1h30m'",
        ),
        (
            {"schedule_cron": ..., "schedule_interval": "-5m"},
            "invalid interval: '-5m' is not positive; use a duration such as '30m'",
        ),
        (
            {"schedule_cron": ..., "schedule_once": "tomorrow at 9"},
            "invalid once time: 'tomorrow at 9' is not an RFC 3339 timestamp such as "
            "'2026-04-25T14:30:00Z'",
        ),
        (
            {"schedule_cron": ..., "schedule_once": "2099-04-25T14:30:00"},
            "invalid once time: '2099-04-25T14:30:00' has no time zone offset; use RFC 3339 "
            "such as '2026-04-25T14:30:00Z' or '2026-04-25T16:30:00+02:00'",
        ),
        ({"schedule_cron": ...}, "schedule is required (cron, once, or interval)"),
        ({"schedule_cron": ""}, "schedule is required (cron, once, or interval)"),
        (
            {"schedule_interval": "1h"},
            "only one schedule type allowed (cron, once, or interval)",
        ),
        (
            {"timezone": "Mars/Olympus"},
            "unknown time zone 'Mars/Olympus': expected an IANA name such as 'Europe/Berlin' "
            "or 'UTC'",
        ),
        ({"message": ...}, "add job: invalid action: message is required for send_message action"),
    ],
)
async def test_create_errors_are_specific(skill: Skill, over: dict[str, Any], message: str) -> None:
    assert await err(skill, "cron_create", msg_args(**over)) == message
    assert await ok(skill, "cron_list", {}) == []


async def test_session_id_defaults_to_the_callers_session_only(skill: Skill) -> None:
    args = msg_args(session_id=...)
    assert await err(skill, "cron_create", args, "user:bob") == (
        "add job: invalid action: session_id is required for send_message action"
    )
    out = await ok(skill, "cron_create", args, ME)
    assert (await ok(skill, "cron_get", {"id": out["id"]}))["action"]["session_id"] == "alice"


async def test_once_in_the_past_is_refused(skill: Skill) -> None:
    message = await err(
        skill, "cron_create", msg_args(schedule_cron=..., schedule_once="2001-01-01T00:00:00Z")
    )
    assert message.startswith("invalid once time: 2001-01-01T00:00:00Z is in the past (it is now ")
    assert message.endswith("); give a future time, or use cron_trigger to run a job now")


async def test_webhook_ssrf_rules_apply(skill: Skill) -> None:
    message = await err(
        skill,
        "cron_create",
        {
            "name": "probe",
            "schedule_interval": "1h",
            "action_type": "call_webhook",
            "webhook_url": "http://169.254.169.254/latest/meta-data",
        },
    )
    assert message.startswith("add job: invalid action: webhook_url refused: 169.254.169.254")


async def test_call_tool_checks_the_tool_and_its_params(skill: Skill) -> None:
    base = {"name": "t", "schedule_interval": "1h", "action_type": "call_tool"}
    assert await err(skill, "cron_create", {**base, "tool_name": "rm_rf"}) == (
        "add job: invalid action: unknown tool 'rm_rf'; allowed tools: echo, now (at action.tool_name)"
    )
    assert await err(skill, "cron_create", {**base, "tool_name": "echo"}) == (
        "add job: invalid action: tool_params: 'text' is a required property"
    )
    out = await ok(
        skill, "cron_create", {**base, "tool_name": "echo", "tool_params": {"text": "hi"}}
    )
    run = await ok(skill, "cron_trigger", {"id": out["id"]})
    assert run["success"] is True
    assert run["output"]["tool_name"] == "echo"


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "raw", "message"),
    [
        (
            "cron_create",
            '{"name": "x",',
            "arguments are not valid JSON (Expecting property name enclosed in double quotes "
            'at line 1 column 14); send a JSON object such as {"id": "..."}',
        ),
        ("cron_get", '["abc"]', "arguments must be a JSON object, got array"),
        ("cron_get", "{}", "id is required"),
        ("cron_get", '{"id": ""}', "id is required"),
        ("cron_get", '{"id": null}', "id is required"),
        ("cron_get", '{"id": 42}', "parameter 'id' must be a string, got integer (42)"),
        (
            "cron_get",
            '{"id": "a", "verbose": true}',
            "unknown parameter 'verbose' for cron_get; allowed parameters: id",
        ),
        ("cron_create", '{"action_type": "send_message"}', "name is required"),
        ("cron_create", '{"name": "n"}', "action_type is required"),
        (
            "cron_create",
            '{"name": "n", "action_type": "send_email"}',
            "parameter 'action_type' must be one of call_tool, call_webhook, send_message; "
            "got 'send_email'",
        ),
        (
            "cron_create",
            '{"name": "n", "action_type": "call_tool", "tool_name": "echo", "tool_params": "x"}',
            "parameter 'tool_params' must be an object, got string",
        ),
        (
            "cron_create",
            '{"name": "n", "action_type": "call_webhook", "webhook_headers": {"A": "b"}}',
            "parameter 'webhook_headers' is not allowed: this scheduler does not let agents set "
            "webhook headers",
        ),
        (
            "cron_create",
            '{"name": "n", "action_type": "call_webhook", "webhook_body": "{}"}',
            "parameter 'webhook_body' is not allowed: this scheduler does not let agents set a "
            "webhook body",
        ),
        (
            "cron_list",
            '{"status": "paused"}',
            "parameter 'status' must be one of enabled, disabled, running; got 'paused'",
        ),
        (
            "cron_next",
            '{"schedule_interval": "1h", "count": 500}',
            "parameter 'count' must be between 1 and 20, got 500",
        ),
        (
            "cron_next",
            '{"schedule_interval": "1h", "count": true}',
            "parameter 'count' must be an integer, got boolean (True)",
        ),
        (
            "cron_update",
            '{"id": "x"}',
            "nothing to update: give the fields to change besides id (e.g. name, "
            "schedule_cron, or an action parameter)",
        ),
    ],
)
async def test_malformed_arguments(skill: Skill, tool: str, raw: str, message: str) -> None:
    assert await err(skill, tool, raw) == message


async def test_too_long_name_and_null_optionals(skill: Skill) -> None:
    assert await err(skill, "cron_create", msg_args(name="x" * 201)) == (
        "parameter 'name' is too long (201 characters); the maximum is 200"
    )
    out = await ok(skill, "cron_create", msg_args(description=None, schedule_interval=None))
    assert out["status"] == "enabled"


async def test_unknown_tool_and_dict_arguments(skill: Skill) -> None:
    assert (await skill.call("cron_explode", {})).content == {
        "error": "unknown tool 'cron_explode'; available tools: cron_create, cron_list, "
        "cron_get, cron_delete, cron_enable, cron_disable, cron_trigger, cron_update, cron_next, "
        "cron_history"
    }
    result = await skill.call("cron_list", {}, principal=ME)  # a dict works as well as JSON
    assert result == ToolResult([])
    assert result.to_openai_message("call_1") == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "[]",
    }
    failed = await skill.call("cron_get", "{}", principal=ME)
    assert failed.to_anthropic_block("tu_1") == {
        "type": "tool_result",
        "tool_use_id": "tu_1",
        "content": '{"error": "id is required"}',
        "is_error": True,
    }


# -- the job lifecycle ----------------------------------------------------------------------


async def test_list_enable_disable_update_delete(skill: Skill) -> None:
    a = await ok(skill, "cron_create", msg_args(name="a", description="first"))
    b = await ok(skill, "cron_create", msg_args(name="b", schedule_cron="0 12 * * *"))
    listed = await ok(skill, "cron_list", {})
    assert sorted(j["name"] for j in listed) == ["a", "b"]
    first = next(j for j in listed if j["id"] == a["id"])
    assert list(first)[:7] == [
        "id",
        "name",
        "description",
        "status",
        "run_count",
        "last_run_at",
        "next_run_at",
    ]
    assert first["description"] == "first" and first["last_run_at"] is None
    assert first["schedule_description"] == "At 09:00 (Asia/Tokyo)"

    disabled = await ok(skill, "cron_disable", {"id": b["id"]})
    assert disabled == {
        "id": b["id"],
        "status": "disabled",
        "schedule_description": "At 12:00 (Asia/Tokyo)",
        "timezone": TOKYO,
        "next_fire_times": [],
    }
    assert [j["id"] for j in await ok(skill, "cron_list", {"status": "disabled"})] == [b["id"]]
    enabled = await ok(skill, "cron_enable", {"id": b["id"]})
    assert list(enabled)[:3] == ["id", "status", "next_run_at"]
    assert enabled["status"] == "enabled" and enabled["next_run_at"].endswith("T12:00:00+09:00")

    updated = await ok(
        skill,
        "cron_update",
        {"id": a["id"], "name": "a2", "schedule_cron": "0 7 * * 1", "message": "new text"},
    )
    assert updated["name"] == "a2"
    assert updated["schedule"] == {"cron": "0 7 * * 1"}
    assert updated["action"]["message"] == "new text"
    assert updated["action"]["session_id"] == "alice"
    assert updated["schedule_description"] == "At 07:00, only on Monday (Asia/Tokyo)"
    assert all(
        datetime.fromisoformat(t).weekday() == 0 and t.endswith("T07:00:00+09:00")
        for t in updated["next_fire_times"]
    )

    assert await ok(skill, "cron_delete", {"id": a["id"]}) == {"deleted": True, "id": a["id"]}
    assert await err(skill, "cron_delete", {"id": a["id"]}) == "delete job: job not found"
    assert [j["id"] for j in await ok(skill, "cron_list", {})] == [b["id"]]


async def test_update_can_change_action_type_and_keeps_run_state(skill: Skill) -> None:
    job = await ok(skill, "cron_create", msg_args())
    await ok(skill, "cron_trigger", {"id": job["id"]})
    out = await ok(
        skill,
        "cron_update",
        {
            "id": job["id"],
            "action_type": "call_tool",
            "tool_name": "now",
            "timezone": "UTC",
        },
    )
    assert out["action"] == {"type": "call_tool", "tool_name": "now"}
    assert out["schedule"] == {"cron": "0 0 9 * * *", "timezone": "UTC"}
    assert out["run_count"] == 1
    assert all(t.endswith("T09:00:00Z") for t in out["next_fire_times"])


async def test_cron_next_previews_without_creating(skill: Skill) -> None:
    out = await ok(skill, "cron_next", {"schedule_cron": "0 9 * * 1-5", "count": 4})
    assert out["schedule_description"] == "At 09:00, Monday through Friday (Asia/Tokyo)"
    assert out["timezone"] == TOKYO
    assert len(out["next_fire_times"]) == 4
    assert all(
        t.endswith("T09:00:00+09:00") and datetime.fromisoformat(t).weekday() < 5
        for t in out["next_fire_times"]
    )
    assert "warning" not in out
    fast = await ok(skill, "cron_next", {"schedule_interval": "10s", "count": 2})
    assert fast["schedule_description"] == "Every 10 seconds"
    a, b = (datetime.fromisoformat(t) for t in fast["next_fire_times"])
    assert b - a == timedelta(seconds=10)
    assert fast["warning"] == (
        "cron_create would refuse this schedule: schedule_interval 10s is shorter than the "
        "minimum interval between runs, 1m0s"
    )
    assert await err(skill, "cron_next", {}) == "schedule is required (cron, once, or interval)"
    assert await ok(skill, "cron_list", {}) == []


# -- ownership ------------------------------------------------------------------------------


async def test_another_owners_job_is_exactly_like_an_unknown_id(skill: Skill) -> None:
    mine = await ok(skill, "cron_create", msg_args())
    theirs = await ok(skill, "cron_create", msg_args(name="theirs", session_id=...), OTHER)
    for tool, verb in [
        ("cron_get", "get job"),
        ("cron_delete", "delete job"),
        ("cron_enable", "enable job"),
        ("cron_disable", "disable job"),
        ("cron_trigger", "trigger job"),
    ]:
        foreign = await call(skill, tool, {"id": theirs["id"]})
        unknown = await call(skill, tool, {"id": "no-such-id"})
        assert foreign == unknown == ToolResult.failure(f"{verb}: job not found")
    assert await err(skill, "cron_update", {"id": theirs["id"], "name": "pwned"}) == (
        "update job: job not found"
    )
    assert [j["id"] for j in await ok(skill, "cron_list", {})] == [mine["id"]]
    assert [j["id"] for j in await ok(skill, "cron_list", {}, OTHER)] == [theirs["id"]]
    # their job is untouched and still theirs
    job = await ok(skill, "cron_get", {"id": theirs["id"]}, OTHER)
    assert (job["name"], job["status"], job["run_count"]) == ("theirs", "enabled", 0)
    assert job["owner_principal"] == OTHER
    assert job["action"]["session_id"] == "mallory"  # defaulted to the caller's own session


async def test_operators_and_trusted_host_code_see_every_job() -> None:
    s = make_skill(SkillConfig(operators=("user:admin",)))
    async with s:
        a = await ok(s, "cron_create", msg_args(), ME)
        b = await ok(s, "cron_create", msg_args(), OTHER)
        host = await ok(s, "cron_create", msg_args(), None)
        ids = {a["id"], b["id"], host["id"]}
        assert {j["id"] for j in await ok(s, "cron_list", {}, "user:admin")} == ids
        assert {j["id"] for j in await ok(s, "cron_list", {}, None)} == ids
        assert [j["id"] for j in await ok(s, "cron_list", {}, ME)] == [a["id"]]
        await ok(s, "cron_disable", {"id": b["id"]}, "user:admin")
        job = await ok(s, "cron_get", {"id": b["id"]}, OTHER)
        assert job["status"] == "disabled" and job["owner_principal"] == OTHER
        assert "owner_principal" not in await ok(s, "cron_get", {"id": host["id"]}, None)
        assert (await s.call("cron_list", {}, principal="")).error == (
            "principal must be a non-empty string, or None"
        )


# -- limits ---------------------------------------------------------------------------------


async def test_min_interval_refuses_frequent_schedules(skill: Skill) -> None:
    assert await err(
        skill, "cron_create", msg_args(schedule_cron=..., schedule_interval="30s")
    ) == ("schedule_interval 30s is shorter than the minimum interval between runs, 1m0s")
    message = await err(skill, "cron_create", msg_args(schedule_cron="*/10 * * * * *"))
    assert message.startswith("schedule_cron '*/10 * * * * *' runs as often as every 10s (at ")
    assert message.endswith("; the minimum interval between runs is 1m0s")
    # a burst inside an otherwise rare schedule is caught too
    burst = await err(skill, "cron_create", msg_args(schedule_cron="0,30 0 9 * * 1"))
    assert "runs as often as every 30s" in burst
    assert (await err(skill, "cron_create", msg_args(schedule_cron="@every 5s"))).startswith(
        "schedule_cron '@every 5s' runs as often as every 5s"
    )
    ok_job = await ok(skill, "cron_create", msg_args(schedule_cron="* * * * *"))
    assert await err(skill, "cron_update", {"id": ok_job["id"], "schedule_interval": "1s"}) == (
        "schedule_interval 1s is shorter than the minimum interval between runs, 1m0s"
    )


async def test_max_jobs_per_owner() -> None:
    s = make_skill(SkillConfig(max_jobs_per_owner=2))
    async with s:
        first = await ok(s, "cron_create", msg_args())
        await ok(s, "cron_create", msg_args())
        assert await err(s, "cron_create", msg_args()) == (
            "job limit reached: you have 2 jobs and the maximum is 2; delete one you no longer "
            "need (cron_delete) first"
        )
        await ok(s, "cron_create", msg_args(session_id=...), OTHER)  # a quota per owner
        await ok(s, "cron_delete", {"id": first["id"]})
        await ok(s, "cron_create", msg_args())


async def test_allowed_action_types_tools_and_own_session() -> None:
    config = SkillConfig(
        allowed_action_types=("send_message", "call_tool"),
        allowed_values={"tool_name": ("now",)},
        own_session_only=True,
        min_interval="0",
    )
    s = make_skill(config)
    async with s:
        tool = s.get_tool("cron_create")
        assert tool is not None
        assert tool.parameters["properties"]["action_type"]["enum"] == ["send_message", "call_tool"]
        assert await err(
            s,
            "cron_create",
            {"name": "w", "schedule_interval": "1h", "action_type": "call_webhook"},
        ) == ("parameter 'action_type' must be one of send_message, call_tool; got 'call_webhook'")
        base = {"name": "t", "schedule_interval": "1s", "action_type": "call_tool"}
        assert await err(
            s, "cron_create", {**base, "tool_name": "echo", "tool_params": {"text": "x"}}
        ) == ("parameter 'tool_name' must be one of now; got 'echo'")
        assert tool.parameters["properties"]["tool_name"]["enum"] == ["now"]
        await ok(s, "cron_create", {**base, "tool_name": "now"})
        assert await err(s, "cron_create", msg_args(session_id="bob")) == (
            "session_id must be your own session 'alice'; this scheduler does not let agents "
            "message other sessions"
        )
        await ok(s, "cron_create", msg_args(session_id="alice"))


def test_skill_config_forbids_unknown_fields_and_checks_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_skill_config({"max_jobs": 3})
    assert info.value.field == "skill.max_jobs"
    assert str(info.value).startswith(
        "skill.max_jobs: unknown key 'max_jobs' (check its spelling); allowed keys: operators, "
    )
    with pytest.raises(ConfigError, match=r"^skill\.max_jobs_per_owner: expected int >= 0"):
        load_skill_config({"max_jobs_per_owner": -1})
    with pytest.raises(ConfigError, match=r"^skill\.min_interval: invalid duration 'soon'"):
        load_skill_config({"min_interval": "soon"})
    assert load_skill_config({"min_interval": "2d"}).min_interval_ns == 2 * 86_400 * 10**9


# -- persistence ----------------------------------------------------------------------------


async def test_jobs_and_owners_survive_a_restart_on_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = Skill(registry=registry(), location=TOKYO)
    first.set_storage(url)
    async with first:
        created = await ok(first, "cron_create", msg_args())
    assert (tmp_path / "jobs.db").exists()

    second = Skill(registry=registry(), location=TOKYO)
    second.set_storage(url)
    async with second:
        job = await ok(second, "cron_get", {"id": created["id"]})
        assert job["owner_principal"] == ME
        assert job["next_fire_times"] == created["next_fire_times"]
        assert await err(second, "cron_get", {"id": created["id"]}, OTHER) == (
            "get job: job not found"
        )
    with pytest.raises(RuntimeError, match="before init"):
        second.set_storage(url)


async def test_a_failing_store_is_a_tool_error_not_an_exception(
    skill: Skill, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler = skill.get_scheduler()
    assert scheduler is not None

    async def broken() -> list[Job]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(scheduler, "list_jobs", broken)
    assert await err(skill, "cron_list", {}) == "cron_list failed: OSError: disk I/O error"


async def test_history_tool_and_disable_note(skill: Skill) -> None:
    created = await ok(
        skill,
        "cron_create",
        {"name": "n", "schedule_interval": "1h", "action_type": "send_message",
         "session_id": "s", "message": "m"},
    )  # fmt: skip
    job_id = created["id"]
    disabled = await ok(skill, "cron_disable", {"id": job_id, "note": "too noisy"})
    assert disabled == {**disabled, "status": "disabled", "note": "too noisy"}
    got = await ok(skill, "cron_get", {"id": job_id})
    assert got["pause"]["note"] == "too noisy" and got["pause"]["by"] == ME
    ran = await ok(skill, "cron_trigger", {"id": job_id})
    history = await ok(skill, "cron_history", {"id": job_id})
    outcome = "succeeded" if ran["success"] else "failed"
    assert [(h["trigger"], h["outcome"]) for h in history] == [("manual", outcome)]
    assert "scheduled_at" in history[0] and "duration_seconds" in history[0]
    other = "failed" if outcome == "succeeded" else "succeeded"
    assert await ok(skill, "cron_history", {"id": job_id, "outcome": other}) == []
    enabled = await ok(skill, "cron_enable", {"id": job_id})
    assert enabled["status"] == "enabled"
    assert "pause" not in await ok(skill, "cron_get", {"id": job_id})
    assert await err(skill, "cron_history", {"id": "nope"}) == "job history: job not found"
