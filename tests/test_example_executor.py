"""Proof from outside, executor half: the example third-party executor distribution
(examples/plugins/omnicron-append-file) installed with plain pip into a fresh virtualenv (no uv
workspace) works end to end: config, ``omnicron run``, CLI, ``omnicron plugins --json``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugins" / "omnicron-append-file"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv-example") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [str(path / "bin" / "python"), "-m", "pip", "install", "-q", f"{ROOT}[mcp]", str(EXAMPLE)],
        check=True,
        env=env,
        cwd=ROOT,
    )
    return path


def omnicron(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    return subprocess.run(
        [str(venv / "bin" / "omnicron"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def config(tmp_path: Path, action: str) -> Path:
    path = tmp_path / "omnicron.toml"
    path.write_text(
        f"""
[scheduler]
store = "sqlite:///{tmp_path / "jobs.db"}"
timezone = "UTC"

[plugins.append_file]
root = "{tmp_path / "notes"}"

[[jobs]]
id = "note"
name = "note"
schedule = {{ interval = "1s" }}
action = {action}
"""
    )
    return path


@pytest.mark.timeout(900)
def test_installed_with_pip_it_lists_its_schema(venv: Path, tmp_path: Path) -> None:
    proc = omnicron(venv, "plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["append_file"]["distribution"] == "omnicron-append-file"
    (action,) = plugins["append_file"]["actions"]
    assert action["type"] == "append_file"
    assert action["description"] == "Append text to a file under the configured root directory"
    schema = action["parameters"]
    assert schema["required"] == ["path", "text"]
    assert schema["properties"]["newline"] == {
        "description": "End the text with a newline",
        "type": "boolean",
        "default": True,
    }
    # only the core and the example are installed: no built-in action plugin
    assert {t for p in plugins.values() for t in p["action_types"]} == {"append_file"}
    text = omnicron(venv, "plugins", cwd=tmp_path).stdout
    assert "Append text to a file under the configured root directory" in text


@pytest.mark.timeout(900)
def test_omnicron_run_fires_the_third_party_action(venv: Path, tmp_path: Path) -> None:
    path = config(tmp_path, '{ type = "append_file", path = "log/beat.txt", text = "beat" }')
    target = tmp_path / "notes" / "log" / "beat.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    proc = subprocess.Popen(
        [str(venv / "bin" / "omnicron"), "run", "-c", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if target.exists() and target.read_text().count("beat\n") >= 2:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert target.read_text().startswith("beat\nbeat\n"), err
    assert set(target.read_text().splitlines()) == {"beat"}
    assert proc.returncode == 0, err


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            '{ type = "append_file", path = "../escape.txt", text = "x" }',
            "jobs[0].action.path: invalid action: path must stay inside the root directory",
        ),
        (
            '{ type = "append_file", path = "a.txt", text = 5 }',
            "jobs[0].action.text: invalid action: text: expected str, got int",
        ),
        (
            '{ type = "append_file", path = "a.txt" }',
            "jobs[0].action.text: invalid action: text is required for append_file action",
        ),
    ],
)
def test_bad_params_in_config_are_located(
    venv: Path, tmp_path: Path, action: str, expected: str
) -> None:
    proc = omnicron(venv, "validate", "-c", str(config(tmp_path, action)), cwd=tmp_path)
    assert proc.returncode != 0
    assert expected in proc.stderr + proc.stdout


@pytest.mark.timeout(900)
def test_cli_uses_the_plugins_flags_and_generic_params(venv: Path, tmp_path: Path) -> None:
    path = config(tmp_path, '{ type = "append_file", path = "a.txt", text = "a" }')
    own_flags = omnicron(
        venv, "jobs", "add", "-c", str(path), "--id", "f", "--name", "f", "--every", "1h",
        "--file", "f.txt", "--text", "from flags", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert own_flags.returncode == 0, own_flags.stderr
    assert json.loads(own_flags.stdout)["action"] == {
        "type": "append_file",
        "path": "f.txt",
        "text": "from flags",
    }
    generic = omnicron(
        venv, "jobs", "add", "-c", str(path), "--id", "g", "--name", "g", "--every", "1h",
        "--type", "append_file", "--param", "path=g.txt", "--param", "text=123",
        "--param", "newline=false", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert generic.returncode == 0, generic.stderr
    # text is declared a string, so 123 stays text; newline is not, so it parses as JSON
    assert json.loads(generic.stdout)["action"] == {
        "type": "append_file",
        "path": "g.txt",
        "text": "123",
        "newline": False,
    }
    bad = omnicron(
        venv, "jobs", "add", "-c", str(path), "--id", "b", "--name", "b", "--every", "1h",
        "--type", "append_file", "--param", "path=/etc/passwd", "--param", "text=x",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "action.path: invalid action: path must stay inside the root directory" in bad.stderr
    listed = omnicron(venv, "jobs", "list", "-c", str(path), "--json", cwd=tmp_path)
    assert sorted(j["id"] for j in json.loads(listed.stdout)) == ["f", "g"]


# A host program run by the virtualenv's own python: the public API and the agent tools.
HOST_SCRIPT = r"""
import asyncio, json, sys
from omnicron_core import (
    Action, Job, JobValidationError, Registry, Schedule, Scheduler, SchedulerConfig,
)
from omnicron_core.skill import Skill, SkillConfig

root = sys.argv[1]
out = {}

async def main():
    registry = Registry(settings={"append_file": {"root": root}})
    scheduler = Scheduler(SchedulerConfig(registry=registry))
    try:
        await scheduler.add_job(Job(id="a", name="a", schedule=Schedule(interval="1h"),
                                    action=Action("append_file", path="../x", text="t")))
    except JobValidationError as exc:
        out["api"] = [exc.field, exc.message]
    try:
        await scheduler.add_job(Job(id="b", name="b", schedule=Schedule(interval="1h"),
                                    action=Action("append_file", params={"path": "x"})))
    except JobValidationError as exc:
        out["api_missing"] = [exc.field, exc.message]

    skill = Skill(SkillConfig(min_interval="0"), store="memory://", registry=registry)
    create = skill.get_tool("cron_create")
    out["schema"] = create.parameters
    async with skill:
        base = {"name": "n", "schedule_interval": "1h", "action_type": "append_file"}
        bad = await skill.call("cron_create", {**base, "path": "/etc/passwd", "text": "x"})
        out["skill_bad"] = bad.error
        typed = await skill.call("cron_create", {**base, "path": "a.txt", "text": 5})
        out["skill_typed"] = typed.error
        good = await skill.call("cron_create", {**base, "path": "agent.txt", "text": "hi"})
        out["skill_good"] = good.content
        fired = await skill.call("cron_trigger", {"id": good.content["id"]})
        out["skill_fired"] = fired.content

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.timeout(900)
def test_api_and_agent_tools_from_the_pip_install(venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", HOST_SCRIPT, str(tmp_path / "notes")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # embedded: silent
    out = json.loads(proc.stdout)
    # the API: located on the parameter
    assert out["api"] == [
        "action.path",
        "invalid action: path must stay inside the root directory",
    ]
    assert out["api_missing"] == [
        "action.text",
        "invalid action: text is required for append_file action",
    ]
    # the agent tools: the type is offered with its Struct's schema and its description
    props = out["schema"]["properties"]
    assert props["action_type"]["enum"] == ["append_file"]
    assert (
        "append_file: Append text to a file under the configured root directory"
        in props["action_type"]["description"]
    )
    assert props["path"]["type"] == "string"
    assert "File to append to, relative to the root" in props["path"]["description"]
    assert props["newline"]["type"] == "boolean"
    assert out["skill_bad"] == "add job: invalid action: path must stay inside the root directory"
    assert out["skill_typed"] == "parameter 'text' must be a string, got integer (5)"
    assert out["skill_fired"]["success"] is True
    assert (tmp_path / "notes" / "agent.txt").read_text() == "hi\n"


def _payload(result: Any) -> Any:
    (content,) = result.content
    assert content.type == "text"
    return json.loads(content.text)


@pytest.mark.timeout(900)
async def test_omnicron_mcp_over_stdio_offers_the_third_party_type(
    venv: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mcp")
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    params = StdioServerParameters(
        command=str(venv / "bin" / "omnicron"),
        args=[
            "mcp", "--store", f"sqlite:///{tmp_path / 'jobs.db'}", "--timezone", "UTC",
            "--skill-setting", "min_interval=0",
            "--plugin-setting", f"append_file.root={tmp_path / 'notes'}",
        ],
        cwd=str(tmp_path),
        env=env,
    )  # fmt: skip
    with (tmp_path / "server.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as streams, ClientSession(*streams) as s:
            await s.initialize()
            tools = {t.name: t for t in (await s.list_tools()).tools}
            props = tools["cron_create"].input_schema["properties"]
            assert props["action_type"]["enum"] == ["append_file"]
            assert "Append text to a file" in props["action_type"]["description"]
            assert props["text"]["type"] == "string"
            assert "Text to append" in props["text"]["description"]
            base = {"name": "n", "schedule_interval": "1h", "action_type": "append_file"}
            bad = await s.call_tool("cron_create", {**base, "path": "../up.txt", "text": "x"})
            assert bad.is_error
            assert _payload(bad) == {
                "error": "add job: invalid action: path must stay inside the root directory"
            }
            good = await s.call_tool("cron_create", {**base, "path": "m.txt", "text": "mcp"})
            assert not good.is_error, good.content
            job_id = _payload(good)["id"]
            fired = await s.call_tool("cron_trigger", {"id": job_id})
            assert _payload(fired)["success"] is True
    assert (tmp_path / "notes" / "m.txt").read_text() == "mcp\n"
