"""The MCP server, driven by the SDK's own client over a real subprocess (stdio and HTTP)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("mcp")

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from omnicron_core import ConfigError
from omnicron_core.mcp_server import (
    load_server_settings,
    mcp_command,
    parse_plugin_settings,
    parse_skill_settings,
)
from omnicron_core.skill import Skill, SkillConfig

ROOT = Path(__file__).resolve().parents[1]
TOOL_NAMES = [
    "cron_create",
    "cron_list",
    "cron_get",
    "cron_delete",
    "cron_enable",
    "cron_disable",
    "cron_trigger",
    "cron_update",
    "cron_next",
    "cron_history",
]


def server_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "omnicron_core.mcp_server",
        "--store",
        f"sqlite:///{tmp_path / 'jobs.db'}",
        "--timezone",
        "UTC",
        "--skill-setting",
        "min_interval=100ms",
        "--plugin-setting",
        "send_message.transport=jsonl",
        "--plugin-setting",
        f"send_message.path={tmp_path / 'messages.jsonl'}",
        *extra,
    ]


def payload(result: Any) -> Any:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return json.loads(result.content[0].text)


async def wait_for_runs(session: ClientSession, job_id: str, runs: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        job = payload(await session.call_tool("cron_get", {"id": job_id}))
        if job["run_count"] >= runs or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        await anyio.sleep(0.1)


@asynccontextmanager
async def stdio_session(tmp_path: Path, *extra: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=server_args(tmp_path, *extra), cwd=str(ROOT)
    )
    with (tmp_path / "server.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as s:
            await s.initialize()
            yield s


async def test_stdio_server_lists_creates_fires_and_deletes(tmp_path: Path) -> None:
    async with stdio_session(tmp_path) as session:
        listed = await session.list_tools()
        assert [t.name for t in listed.tools] == TOOL_NAMES
        expected = {t.name: t.parameters for t in Skill(SkillConfig(min_interval="100ms")).tools()}
        for tool in listed.tools:
            assert tool.input_schema == expected[tool.name]
        get = next(t for t in listed.tools if t.name == "cron_get")
        assert get.description == "Get detailed information about a specific job"

        created = await session.call_tool(
            "cron_create",
            {
                "name": "ping",
                "schedule_interval": "300ms",
                "action_type": "send_message",
                "session_id": "s-1",
                "message": "ping",
            },
        )
        assert not created.is_error
        out = payload(created)
        assert created.structured_content == out
        assert out["schedule_description"] == "Every 300 milliseconds"
        assert out["timezone"] == "UTC" and len(out["next_fire_times"]) == 3

        job = await wait_for_runs(session, out["id"], 2)
        assert job["run_count"] >= 2
        assert "last_error" not in job  # the runs succeeded
        lines = (tmp_path / "messages.jsonl").read_text().splitlines()
        assert len(lines) >= 2
        first = json.loads(lines[0])
        assert (first["session_id"], first["message"], first["job_id"]) == (
            "s-1",
            "ping",
            out["id"],
        )

        listed_jobs = payload(await session.call_tool("cron_list", {}))
        assert [j["id"] for j in listed_jobs] == [out["id"]]
        history = payload(await session.call_tool("cron_history", {"id": out["id"], "limit": 2}))
        assert len(history) == 2 and {h["trigger"] for h in history} == {"schedule"}
        assert {h["outcome"] for h in history} <= {"succeeded", "running", "skipped"}
        paused = await session.call_tool("cron_disable", {"id": out["id"], "note": "enough"})
        assert payload(paused)["note"] == "enough"

        bad = await session.call_tool("cron_create", {"name": 7, "action_type": "send_message"})
        assert bad.is_error
        assert payload(bad) == {"error": "parameter 'name' must be a string, got integer (7)"}
        fast = await session.call_tool(
            "cron_create",
            {"name": "x", "schedule_interval": "10ms", "action_type": "call_tool"},
        )
        assert payload(fast) == {
            "error": "schedule_interval 10ms is shorter than the minimum interval between "
            "runs, 100ms"
        }

        too_many = await session.call_tool(
            "cron_create",
            {"name": "r", "schedule_interval": "1h", "action_type": "send_message",
             "session_id": "s-1", "message": "m", "policy": {"retry": {"attempts": 9}}},
        )  # fmt: skip
        assert payload(too_many) == {"error": "policy.retry.attempts: at most 3, got 9"}
        assert len(payload(await session.call_tool("cron_list", {}))) == 1  # nothing saved
        bounded = payload(
            await session.call_tool(
                "cron_update", {"id": out["id"], "policy": {"overlap": "buffer_one", "max_runs": 1}}
            )
        )
        assert bounded["policy"] == {"overlap": "buffer_one", "max_runs": 1}

        deleted = await session.call_tool("cron_delete", {"id": out["id"]})
        assert payload(deleted) == {"deleted": True, "id": out["id"]}
        assert payload(await session.call_tool("cron_list", {})) == []
        missing = await session.call_tool("cron_get", {"id": out["id"]})
        assert missing.is_error and payload(missing) == {"error": "get job: job not found"}


async def test_stdio_server_principal_scopes_the_jobs(tmp_path: Path) -> None:
    async with stdio_session(tmp_path, "--principal", "session:one") as one:
        made = payload(
            await one.call_tool(
                "cron_create",
                {
                    "name": "mine",
                    "schedule_cron": "0 9 * * *",
                    "action_type": "call_tool",
                    "tool_name": "now",
                },
            )
        )
    async with stdio_session(tmp_path, "--principal", "session:two") as two:
        assert payload(await two.call_tool("cron_list", {})) == []
        foreign = await two.call_tool("cron_trigger", {"id": made["id"]})
        assert payload(foreign) == {"error": "trigger job: job not found"}
    async with stdio_session(tmp_path, "--trusted") as host:
        job = payload(await host.call_tool("cron_get", {"id": made["id"]}))
        assert job["owner_principal"] == "session:one"
        assert job["schedule_description"] == "At 09:00 (UTC)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_http_server(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    args = server_args(tmp_path, "--transport", "http", "--port", str(port))
    with (tmp_path / "server.log").open("w") as errlog:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stderr=errlog)


async def test_streamable_http_server(tmp_path: Path) -> None:
    port = free_port()
    proc = start_http_server(tmp_path, port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "server did not listen"
                await anyio.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        async with streamable_http_client(url) as streams, ClientSession(*streams) as session:
            await session.initialize()
            assert [t.name for t in (await session.list_tools()).tools] == TOOL_NAMES
            out = payload(
                await session.call_tool(
                    "cron_create",
                    {
                        "name": "echo",
                        "schedule_interval": "300ms",
                        "action_type": "call_tool",
                        "tool_name": "echo",
                        "tool_params": {"text": "hi"},
                    },
                )
            )
            job = await wait_for_runs(session, out["id"], 1)
            assert job["run_count"] >= 1 and "last_error" not in job
            # a manual trigger keeps min_interval (100ms) from the last run: stop the schedule
            await session.call_tool("cron_disable", {"id": out["id"]})
            await anyio.sleep(0.3)
            run = payload(await session.call_tool("cron_trigger", {"id": out["id"]}))
            assert run["success"] is True, run
            again = payload(await session.call_tool("cron_trigger", {"id": out["id"]}))
            assert "minimum interval between runs is 100ms" in again["error"]
            assert run["output"] == {"tool_name": "echo", "params": {"text": "hi"}, "result": "hi"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- settings -------------------------------------------------------------------------------


def test_plugin_and_skill_settings_from_flags() -> None:
    assert parse_plugin_settings(
        ["send_message.transport=jsonl", 'tool.allow=["*"]', "webhook.timeout=5"]
    ) == {
        "send_message": {"transport": "jsonl"},
        "tool": {"allow": ["*"]},
        "webhook": {"timeout": 5},
    }
    with pytest.raises(ConfigError, match=r"is not NAME\.KEY=VALUE"):
        parse_plugin_settings(["transport=jsonl"])
    assert parse_skill_settings(["min_interval=0", "max_jobs_per_owner=5"]) == {
        "min_interval": "0",
        "max_jobs_per_owner": 5,
    }


def test_settings_from_a_config_file_with_a_skill_table(tmp_path: Path) -> None:
    path = tmp_path / "omnicron.toml"
    path.write_text(
        """
[scheduler]
store = "memory://"
timezone = "Europe/Paris"

[plugins.send_message]
transport = "jsonl"
path = "/tmp/a.jsonl"

[skill]
operators = ["user:root"]
min_interval = "5m"
"""
    )
    settings = load_server_settings(
        path,
        plugin_settings=["send_message.path=/tmp/b.jsonl"],
        skill_settings=["max_jobs_per_owner=3"],
        env={},
    )
    assert settings.store == "memory://"
    assert settings.timezone == "Europe/Paris"
    assert settings.plugins == {"send_message": {"transport": "jsonl", "path": "/tmp/b.jsonl"}}
    assert settings.skill == SkillConfig(
        operators=("user:root",), min_interval="5m", max_jobs_per_owner=3
    )
    assert load_server_settings(path, env={"OMNICRON_STORE": "sqlite:///x.db"}).store == (
        "sqlite:///x.db"
    )
    with pytest.raises(ConfigError, match="unknown key 'max_job'"):
        load_server_settings(None, skill_settings=["max_job=1"], env={})


def test_command_reports_bad_settings_without_a_traceback() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(
        mcp_command, ["--store", "memory://", "--plugin-setting", "send_message.transport=smoke"]
    )
    assert result.exit_code == 1
    assert "plugins.send_message.transport: unknown transport 'smoke'" in result.output
    assert "Traceback" not in result.output


async def test_mcp_refuses_env_secrets_even_for_a_trusted_client(tmp_path: Path) -> None:
    """Issue 9: a model must not read the server's environment through a webhook header."""
    async with stdio_session(
        tmp_path, "--trusted", "--skill-setting", 'allow_params=["webhook_headers"]'
    ) as session:
        made = payload(
            await session.call_tool(
                "cron_create",
                {
                    "name": "leak",
                    "schedule_interval": "1h",
                    "action_type": "call_webhook",
                    "webhook_url": "https://93.184.215.14/h",
                    "webhook_headers": {"X-Leak": "${env:HOME}"},
                },
            )
        )
        assert "action.webhook_headers.X-Leak holds a ${env:} reference" in made["error"]
        assert payload(await session.call_tool("cron_list", {})) == []
