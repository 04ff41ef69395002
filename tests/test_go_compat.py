"""The Go original's job JSON: every built-in action type loads unchanged, passes its
executor's checks, and is written back byte for byte; the built-in types write the Go keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from omnicron_tool import Tool

from omnicron_core import (
    Action,
    Job,
    Registry,
    Schedule,
    Scheduler,
    SchedulerConfig,
    decode_job,
    encode_job,
    get_plugin_manager,
    hookimpl,
)

# As the Go original's json.Marshal writes them: struct field order, omitempty, a Go duration
# string for interval, RFC 3339 times, flat action keys. (Go's nanosecond times load too, but
# Python keeps microseconds: tests/test_models.py::test_go_job_loads_with_every_field.)
GO_JOBS = [
    '{"id":"msg","name":"Standup","description":"daily","schedule":{"cron":"0 9 * * 1-5"},'
    '"action":{"type":"send_message","session_id":"sess-1","message":"standup time"},'
    '"status":"enabled","created_at":"2026-04-25T14:30:00.123456Z",'
    '"updated_at":"2026-04-25T14:30:00.123456Z","next_run_at":"2026-04-27T09:00:00Z",'
    '"run_count":0,"metadata":{"team":"ops"}}',
    '{"id":"hook","name":"Ping","schedule":{"interval":"1h30m0s"},'
    '"action":{"type":"call_webhook","webhook_url":"https://example.com/hook",'
    '"webhook_method":"PUT","webhook_headers":{"Authorization":"Bearer x","X-A":"b"},'
    '"webhook_body":"{\\"k\\":1}"},"status":"disabled","created_at":"2026-04-25T14:30:00Z",'
    '"updated_at":"2026-04-25T16:30:00+02:00","last_run_at":"2026-04-25T15:00:00Z",'
    '"next_run_at":"2026-04-25T16:30:00Z","run_count":3,"last_error":"HTTP 500",'
    '"metadata":{"owner":"a","n":2}}',
    '{"id":"tool","name":"Clock","schedule":{"once":"2030-01-02T03:04:05Z"},'
    '"action":{"type":"call_tool","tool_name":"record","tool_params":{"text":"hi",'
    '"nested":{"list":[1,2.5,true,null]}}},"status":"enabled",'
    '"created_at":"2026-04-25T14:30:00Z","updated_at":"2026-04-25T14:30:00Z","run_count":0}',
]
GO_KEYS = {
    "type",
    "session_id",
    "message",
    "webhook_url",
    "webhook_method",
    "webhook_headers",
    "webhook_body",
    "tool_name",
    "tool_params",
}


def _record(**params: Any) -> dict[str, Any]:
    return params


class RecordTool:
    """A host tool taking any JSON object (so the fixture can carry nested tool_params)."""

    @hookimpl
    def omnicron_tools(self) -> list[Tool]:
        return [Tool(name="record", description="r", parameters={"type": "object"}, func=_record)]


def registry() -> Registry:
    return Registry(get_plugin_manager(plugins=[RecordTool()]), settings={"tool": {"allow": ["*"]}})


@pytest.mark.parametrize("raw", GO_JOBS, ids=["send_message", "call_webhook", "call_tool"])
def test_a_go_job_loads_and_is_written_back_byte_for_byte(raw: str) -> None:
    job = decode_job(raw)
    assert encode_job(job).decode() == raw
    assert json.loads(raw)["action"] == {"type": job.action.type, **job.action.params}


@pytest.mark.parametrize("raw", GO_JOBS, ids=["send_message", "call_webhook", "call_tool"])
def test_a_go_job_passes_its_built_in_executors_checks(raw: str) -> None:
    job = decode_job(raw)
    executor = registry().executors[job.action.type]
    params = executor.check(job.action)
    # the executor's Struct holds the Go keys' values
    for key, value in job.action.params.items():
        assert getattr(params, key) == value, key


def test_a_go_interval_in_nanoseconds_loads_and_is_written_as_a_go_string() -> None:
    as_string = GO_JOBS[1]
    as_ns = as_string.replace('"interval":"1h30m0s"', '"interval":5400000000000')
    assert as_ns != as_string
    assert decode_job(as_ns) == decode_job(as_string)
    assert encode_job(decode_job(as_ns)).decode() == as_string


@pytest.mark.parametrize(
    ("action", "index"),
    [
        (Action("send_message", session_id="sess-1", message="standup time"), 0),
        (
            Action(
                "call_webhook",
                webhook_url="https://example.com/hook",
                webhook_method="PUT",
                webhook_headers={"Authorization": "Bearer x", "X-A": "b"},
                webhook_body='{"k":1}',
            ),
            1,
        ),
        (
            Action(
                "call_tool",
                tool_name="record",
                tool_params={"text": "hi", "nested": {"list": [1, 2.5, True, None]}},
            ),
            2,
        ),
    ],
    ids=["send_message", "call_webhook", "call_tool"],
)
async def test_the_built_in_types_write_the_go_keys(action: Action, index: int) -> None:
    scheduler = Scheduler(SchedulerConfig(registry=registry()))
    added = await scheduler.add_job(
        Job(id="new", name="n", schedule=Schedule(interval="90m"), action=action)
    )
    stored = await scheduler.store.get(added.id)
    written: dict[str, Any] = json.loads(encode_job(stored))
    assert set(written["action"]) <= GO_KEYS
    go_action = json.loads(GO_JOBS[index])["action"]
    assert written["action"] == go_action
    # byte for byte, given the parameters in the Go struct's order
    assert json.dumps(written["action"], separators=(",", ":")) == json.dumps(
        go_action, separators=(",", ":")
    )
    assert written["schedule"] == {"interval": "1h30m0s"}
