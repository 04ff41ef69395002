"""``omnicron next``, ``omnicron jobs ...`` and ``omnicron plugins`` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "omnicron_core.cli"]


def omnicron(
    *args: str, cwd: Path, stdin: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    env.update(extra)
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=30
    )


def test_next_text() -> None:
    proc = omnicron(
        "next", "0 9 * * MON-FRI", "--tz", "Europe/Berlin", "--after", "2026-01-02T10:00:00+01:00",
        "-n", "3", cwd=Path.cwd(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "At 09:00, Monday through Friday (Europe/Berlin)"
    assert [line.split()[0] for line in out[1:]] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert all("09:00:00+01:00" in line for line in out[1:])


def test_next_json_unquoted_expression() -> None:
    proc = omnicron(
        "next", "*/15", "*", "*", "*", "*", "--tz", "UTC", "--after", "2026-03-01T00:05:00Z",
        "-n", "2", "--json", cwd=Path.cwd(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["expression"] == "*/15 * * * *"
    assert data["next"] == ["2026-03-01T00:15:00+00:00", "2026-03-01T00:30:00+00:00"]
    assert data["description"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["0 9 * * 8"], "day-of-week"),
        (["* * *"], "* * *"),
        (["@daily", "--tz", "Nowhere/City"], "--tz"),
    ],
)
def test_next_errors(args: list[str], words: str) -> None:
    proc = omnicron("next", *args, cwd=Path.cwd())
    assert proc.returncode == 1
    assert words in proc.stderr


def test_jobs_round_trip(project: Path) -> None:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return omnicron("jobs", *args, cwd=project, stdin=stdin)  # finds ./omnicron.toml

    added = run(
        "add", "--id", "ping", "--name", "ping", "--every", "1h", "--session-id", "ops",
        "--message", "ping", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["action"]["type"] == "send_message"  # inferred
    tool_job = {
        "id": "tool",
        "name": "echo it",
        "schedule": {"cron": "0 9 * * *"},
        "action": {"type": "call_tool", "tool_name": "echo", "tool_params": {"text": "hi"}},
    }
    assert run("add", "-", stdin=json.dumps(tool_job)).returncode == 0
    assert run("add", "-", stdin=json.dumps(tool_job)).returncode == 1  # id taken

    listed = json.loads(run("list", "--json").stdout)
    assert [j["id"] for j in listed] == ["ping", "tool"]
    assert listed[1]["next_run_at"].endswith("T09:00:00Z")
    table = run("list").stdout
    assert "ping" in table and "every 1h0m0s" in table and "0 9 * * *" in table

    shown = run("show", "tool").stdout
    assert "schedule:    0 9 * * *" in shown and "source:      runtime" in shown
    assert json.loads(run("show", "tool", "--json").stdout)["name"] == "echo it"

    disabled = json.loads(run("disable", "ping", "--json").stdout)
    assert disabled == {"id": "ping", "status": "disabled"}
    assert "next_run_at" not in json.loads(run("show", "ping", "--json").stdout)
    enabled = json.loads(run("enable", "ping", "--json").stdout)
    assert enabled["status"] == "enabled" and enabled["next_run_at"]

    triggered = run("trigger", "tool", "--json")
    assert triggered.returncode == 0, triggered.stderr
    result = json.loads(triggered.stdout)
    assert result["success"] is True and result["output"]["result"] == "hi"
    assert run("trigger", "ping").returncode == 0
    sent = (project / "messages.jsonl").read_text().splitlines()
    assert len(sent) == 1 and json.loads(sent[0])["message"] == "ping"
    assert json.loads(run("show", "tool", "--json").stdout)["run_count"] == 1

    updated = run("update", "ping", "--message", "pong", "--json")
    assert updated.returncode == 0, updated.stderr
    after = json.loads(updated.stdout)
    assert after["action"]["message"] == "pong" and after["run_count"] == 1
    assert after["schedule"] == {"interval": "1h0m0s"}

    exported = run("export").stdout
    assert [j["id"] for j in json.loads(exported)] == ["ping", "tool"]
    removed = run("remove", "ping", "tool", "--json")
    assert json.loads(removed.stdout) == [
        {"deleted": True, "id": "ping"},
        {"deleted": True, "id": "tool"},
    ]
    assert json.loads(run("list", "--json").stdout) == []
    assert run("remove", "ping").returncode == 1

    imported = run("import", "-", stdin=exported)
    assert imported.returncode == 0, imported.stderr
    back = json.loads(run("list", "--json").stdout)
    assert [(j["id"], j.get("run_count")) for j in back] == [("ping", 1), ("tool", 1)]
    assert back[0]["action"]["message"] == "pong"


def test_jobs_errors_name_their_place(project: Path) -> None:
    bad = omnicron(
        "jobs", "add", "--name", "x", "--cron", "0 25 * * *", "--message", "m",
        "--session-id", "s", cwd=project,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "schedule.cron: cron field 'hour' has 25" in bad.stderr
    bad = omnicron(
        "jobs", "add", "-", cwd=project, stdin='{"name": "x", "schedule": {"interval": 5.5}}'
    )
    assert bad.returncode == 1 and "schedule.interval" in bad.stderr
    assert (
        omnicron("jobs", "show", "nope", cwd=project).stderr.strip() == "error: job not found: nope"
    )
    # an import with one bad job saves none
    jobs = [
        {"id": "a", "name": "a", "schedule": {"interval": "1h"}, "action": {"type": "call_tool", "tool_name": "now"}},
        {"id": "b", "name": "b", "schedule": {"cron": "nope"}, "action": {"type": "call_tool", "tool_name": "now"}},
    ]  # fmt: skip
    bad = omnicron("jobs", "import", "-", cwd=project, stdin=json.dumps(jobs))
    assert bad.returncode == 1 and "[1].schedule.cron" in bad.stderr
    assert json.loads(omnicron("jobs", "list", "--json", cwd=project).stdout) == []


def test_trigger_failure_exits_1(project: Path) -> None:
    job = {
        "id": "f",
        "name": "f",
        "schedule": {"interval": "1h"},
        "action": {"type": "call_tool", "tool_name": "now", "tool_params": {"timezone": "Mars/X"}},
    }
    added = omnicron("jobs", "add", "-", cwd=project, stdin=json.dumps(job))
    if added.returncode != 0:  # the tool plugin may refuse the zone when the job is added
        assert "tool_params" in added.stderr or "timezone" in added.stderr
        return
    proc = omnicron("jobs", "trigger", "f", cwd=project)
    assert proc.returncode == 1
    shown = json.loads(omnicron("jobs", "show", "f", "--json", cwd=project).stdout)
    assert shown["last_error"]


def test_plugins(tmp_path: Path) -> None:
    proc = omnicron("plugins", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    infos = {p["name"]: p for p in json.loads(proc.stdout)}
    assert infos["webhook"]["action_types"] == ["call_webhook"]
    assert infos["webhook"]["distribution"] == "omnicron-webhook" and infos["webhook"]["version"]
    assert infos["send_message"]["action_types"] == ["send_message"]
    assert infos["tool"]["action_types"] == ["call_tool"]
    assert infos["omnicron.builtin"]["store_schemes"] == ["memory", "sqlite"]
    text = omnicron("plugins", cwd=tmp_path, OMNICRON_DISABLE_PLUGINS="webhook").stdout
    webhook_line = next(line for line in text.splitlines() if line.startswith("webhook"))
    assert "disabled" in webhook_line
    assert "call_webhook" not in webhook_line


EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(example: Path, tmp_path: Path) -> None:
    proc = omnicron("validate", "-c", str(example), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OK (" in proc.stdout
    assert not list(tmp_path.iterdir())  # validating created no store


def test_demo_fires_within_seconds(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "examples" / "demo.toml"
    proc = omnicron("run", "-c", str(example), "--for", "3.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hello from omnicron" in proc.stdout
    assert '"job.run"' in proc.stderr
    assert (tmp_path / "omnicron.db").exists()


def test_jobs_action_flags_come_from_the_executors(project: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return omnicron("jobs", *args, cwd=project)

    helped = run("add", "--help").stdout
    for flag in ("--param KEY=VALUE", "--params JSON", "--session-id", "--webhook-url"):
        assert flag in helped, flag
    assert "(call_webhook)" in helped  # a plugin flag names its action type
    mixed = run("add", "--name", "x", "--every", "1h", "--session-id", "s", "--webhook-url", "u")
    assert mixed.returncode == 1
    assert "flags of several action types given (call_webhook, send_message)" in mixed.stderr
    generic = run(
        "add", "--id", "g", "--name", "g", "--every", "1h", "--type", "call_tool",
        "--param", "tool_name=echo", "--param", 'tool_params={"text": "hi"}', "--json",
    )  # fmt: skip
    assert generic.returncode == 0, generic.stderr
    assert json.loads(generic.stdout)["action"] == {
        "type": "call_tool",
        "tool_name": "echo",
        "tool_params": {"text": "hi"},
    }
    missing = run("add", "--name", "m", "--every", "1h", "--session-id", "s")
    assert missing.returncode == 1
    assert (
        "error: action.message: invalid action: message is required for send_message action"
        in missing.stderr
    )
    unknown = run("add", "--name", "m", "--every", "1h", "--type", "call_tool", "--param", "x=1")
    assert "action.x: invalid action: unknown parameter 'x' for call_tool action" in unknown.stderr
    # a new type on update starts a fresh set of parameters
    changed = run(
        "update", "g", "--type", "send_message", "--params", '{"session_id": "s", "message": "m"}',
        "--json",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["action"] == {
        "type": "send_message",
        "session_id": "s",
        "message": "m",
    }
    kept = run("update", "g", "--message", "again", "--json")
    assert json.loads(kept.stdout)["action"]["session_id"] == "s"
    assert json.loads(kept.stdout)["action"]["message"] == "again"
