"""``omnicron run`` and ``omnicron validate`` as real processes on temp configs and SQLite files."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from omnicron_core import Job, decode_job

CLI = [sys.executable, "-m", "omnicron_core.cli"]


def start_cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """A real ``omnicron`` process in ``cwd``, its output captured."""
    return subprocess.Popen(
        [*CLI, *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    out.update({"OMNICRON_LOG_FORMAT": "json", **extra})
    return out


def omnicron(
    *args: str, cwd: Path, timeout: float = 30, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env(**extra), capture_output=True, text=True, timeout=timeout
    )


def stored(db: Path, *, while_starting: bool = False) -> dict[str, Job]:
    """The jobs in the file; with ``while_starting``, {} while the process is still creating
    the file's schema (the file exists a moment before its tables do)."""
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT data FROM jobs ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            if while_starting:
                return {}
            raise
    return {job.id: job for job in (decode_job(row[0]) for row in rows)}


def runs_so_far(db: Path, job_id: str) -> int:
    """The job's run count, 0 while the starting process has not created it (or the file)."""
    try:
        job = stored(db).get(job_id) if db.exists() else None
    except sqlite3.OperationalError:  # the file exists, its schema not yet
        return 0
    return job.run_count if job is not None else 0


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_config(tmp_path: Path, jobs: str, *, scheduler: str = "") -> Path:
    path = tmp_path / "omnicron.toml"
    path.write_text(
        f"""
[scheduler]
store = "sqlite:///{tmp_path / "jobs.db"}"
timezone = "UTC"
shutdown_grace = 5
{scheduler}

[plugins.send_message]
transport = "jsonl"
path = "{tmp_path / "messages.jsonl"}"

{jobs}
"""
    )
    return path


def message_job(job_id: str, interval: str = "300ms", message: str = "tick") -> str:
    return f"""
[[jobs]]
id = "{job_id}"
name = "{job_id}"
schedule = {{ interval = "{interval}" }}
action = {{ type = "send_message", session_id = "s-{job_id}", message = "{message}" }}
"""


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (sqlite3.OperationalError, KeyError):
            pass  # the process has created the file but not yet its table or the job
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_run_fires_and_exits_after_for(tmp_path: Path) -> None:
    config = write_config(tmp_path, message_job("tick"))
    proc = omnicron("run", "-c", str(config), "--for", "1.6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sent = lines(tmp_path / "messages.jsonl")
    assert 3 <= len(sent) <= 6
    assert {m["session_id"] for m in sent} == {"s-tick"}
    job = stored(tmp_path / "jobs.db")["tick"]
    assert job.run_count == len(sent)
    assert job.status == "enabled" and job.last_error == ""
    # the banner names the store, the plugins and the action types
    assert f"sqlite:///{tmp_path / 'jobs.db'}" in proc.stderr
    assert "send_message (omnicron-send-message" in proc.stderr
    assert "call_tool, call_webhook, send_message" in proc.stderr
    # one JSON event per run, with the fields operators need
    runs = [
        json.loads(line)
        for line in proc.stderr.splitlines()
        if line.startswith("{") and '"job.run"' in line
    ]
    assert len(runs) == len(sent)
    assert {
        "job_id",
        "action_type",
        "scheduled_at",
        "lateness_ms",
        "duration_ms",
        "outcome",
    } <= set(runs[0])
    assert runs[0]["outcome"] == "success" and runs[0]["action_type"] == "send_message"


def test_sigterm_saves_state_and_restart_loses_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, message_job("tick"))
    messages = tmp_path / "messages.jsonl"
    proc = start_cli(tmp_path, "run", "-c", str(config))
    try:
        wait_for(lambda: len(lines(messages)) >= 3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"runtime.stopping"' in err and '"SIGTERM"' in err
    first = stored(tmp_path / "jobs.db")["tick"]
    assert first.run_count == len(lines(messages))
    assert first.status == "enabled" and first.next_run_at is not None

    # restart: the declared job is unchanged, so its run count carries on
    proc2 = omnicron("run", "-c", str(config), "--for", "1", cwd=tmp_path)
    assert proc2.returncode == 0, proc2.stderr
    assert "0 added, 0 updated, 0 removed, 1 unchanged" in proc2.stderr
    second = stored(tmp_path / "jobs.db")["tick"]
    sent = lines(messages)
    assert second.run_count > first.run_count
    assert second.run_count == len(sent)  # every run recorded once, none lost
    fires = [m["scheduled_for"] for m in sent]
    assert all(fires) and len(fires) == len(set(fires))  # and no fire ran twice


def test_sigint_waits_for_a_running_action(tmp_path: Path) -> None:
    # call_tool 'now' is quick; what matters: a stop during runs still exits 0 with state saved
    config = write_config(
        tmp_path,
        """
[[jobs]]
id = "clock"
name = "clock"
schedule = { interval = "200ms" }
action = { type = "call_tool", tool_name = "now" }
""",
    )
    proc = start_cli(tmp_path, "run", "-c", str(config))
    try:
        wait_for(lambda: runs_so_far(tmp_path / "jobs.db", "clock") >= 2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    job = stored(tmp_path / "jobs.db")["clock"]
    assert job.status == "enabled"  # not left 'running'
    assert job.run_count == err.count('"job.run"')


def test_run_without_a_config_uses_the_embedded_default(tmp_path: Path) -> None:
    proc = omnicron("run", "--for", "0.2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "omnicron.db").exists()
    assert stored(tmp_path / "omnicron.db") == {}
    assert "sqlite:///omnicron.db" in proc.stderr


def test_store_env_overrides_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, message_job("tick", "1h"))
    other = tmp_path / "other.db"
    proc = omnicron(
        "run", "-c", str(config), "--for", "0.2", cwd=tmp_path, OMNICRON_STORE=f"sqlite:///{other}"
    )
    assert proc.returncode == 0, proc.stderr
    assert set(stored(other)) == {"tick"}
    assert not (tmp_path / "jobs.db").exists()


GOOD = message_job("ok", "1h")
BAD_CONFIGS = [
    ("wrong-type", '[scheduler]\nmax_concurrency = "ten"\n', "scheduler.max_concurrency"),
    ("unknown-key", "[scheduler]\nshutdown_grase = 3\n", "scheduler.shutdown_grase"),
    (
        "bad-cron",
        GOOD + message_job("bad", "1h").replace('interval = "1h"', 'cron = "61 * * * *"'),
        "jobs[1].schedule.cron: cron field 'minute' has 61",
    ),
    (
        "unknown-action-type",
        GOOD + message_job("x").replace('type = "send_message"', 'type = "teleport"'),
        "jobs[1].action.type: invalid action: invalid action type: teleport",
    ),
    (
        "missing-field",
        GOOD + message_job("x").replace('message = "tick"', 'message = ""'),
        "jobs[1].action.message",
    ),
    ("bad-plugin-setting", "[plugins.tool]\ntimeout = -1\n", "plugins.tool.timeout"),
    ("unknown-job-key", GOOD + 'sesion_id = "x"\n', "jobs[0].sesion_id: unknown key"),
]


@pytest.mark.parametrize(("case", "toml", "expected"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_located_and_touches_nothing(
    tmp_path: Path, case: str, toml: str, expected: str
) -> None:
    if toml.startswith("[scheduler]"):
        # a second [scheduler] table is a TOML error; put the key into the written one instead
        config = write_config(tmp_path, GOOD, scheduler=toml.split("\n", 1)[1])
    else:
        config = write_config(tmp_path, toml)
    for command in (["validate"], ["run", "--for", "0.2"]):
        proc = omnicron(*command, "-c", str(config), cwd=tmp_path)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "jobs.db").exists()


def test_bad_config_leaves_an_existing_store_unchanged(tmp_path: Path) -> None:
    config = write_config(tmp_path, message_job("tick", "200ms"))
    assert omnicron("run", "-c", str(config), "--for", "0.7", cwd=tmp_path).returncode == 0
    db = tmp_path / "jobs.db"
    before = stored(db)
    assert before["tick"].run_count >= 1
    config.write_text(
        config.read_text().replace('message = "tick"', 'message = "changed"')
        + message_job("bad").replace('interval = "300ms"', 'cron = "* * * *"')
    )
    proc = omnicron("run", "-c", str(config), "--for", "0.5", cwd=tmp_path)
    assert proc.returncode == 1
    assert "jobs[1].schedule.cron" in proc.stderr
    assert stored(db) == before


def test_missing_plugin(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
[plugins.webhook]
timeout = 5

[[jobs]]
id = "hook"
name = "hook"
schedule = { cron = "@hourly" }
action = { type = "call_webhook", webhook_url = "https://hooks.example.com/x" }
""",
    )
    assert omnicron("validate", "-c", str(config), cwd=tmp_path).returncode == 0
    proc = omnicron("validate", "-c", str(config), cwd=tmp_path, OMNICRON_DISABLE_PLUGINS="webhook")
    assert proc.returncode == 1
    assert "plugins.webhook: plugin 'webhook' is disabled" in proc.stderr
    assert (
        "jobs[0].action.type: invalid action: invalid action type: call_webhook; installed action "
        "types: call_tool, send_message; plugins not loaded: webhook (omnicron-webhook): disabled"
        in proc.stderr
    )
    proc = omnicron(
        "run", "-c", str(config), "--for", "0.2", cwd=tmp_path, OMNICRON_DISABLE_PLUGINS="webhook"
    )
    assert proc.returncode == 1
    assert not (tmp_path / "jobs.db").exists()


def test_validate_reports_every_error_at_once_as_json(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "[plugins.nosuch]\n"
        + message_job("a").replace('interval = "300ms"', 'cron = "* * *"')
        + message_job("b").replace('type = "send_message"', 'type = "x"')
        + message_job("c").replace('interval = "300ms"', 'interval = "3 seconds"'),
    )
    proc = omnicron("validate", "-c", str(config), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["valid"] is False
    assert [e["field"] for e in report["errors"]] == [
        "plugins.nosuch",
        "jobs[0].schedule.cron",
        "jobs[1].action.type",
        "jobs[2].schedule.interval",
    ]


def test_validate_ok(tmp_path: Path) -> None:
    config = write_config(tmp_path, message_job("a") + message_job("b"))
    proc = omnicron("validate", "-c", str(config), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "OK (2 jobs" in proc.stdout
    assert not (tmp_path / "jobs.db").exists()


def test_reconcile_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    config = write_config(tmp_path, message_job("a", "200ms") + message_job("b", "1h"))
    assert omnicron("run", "-c", str(config), "--for", "0.7", cwd=tmp_path).returncode == 0
    ran = stored(db)["a"].run_count
    assert ran >= 2
    added = omnicron(
        "jobs", "add", "-c", str(config), "--id", "mine", "--name", "mine", "--every", "1h",
        "--session-id", "me", "--message", "mine", cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    config = write_config(
        tmp_path, message_job("a", "1h", message="changed") + message_job("c", "1h")
    )
    proc = omnicron("run", "-c", str(config), "--for", "0.2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 added, 1 updated, 1 removed, 0 unchanged" in proc.stderr
    jobs = stored(db)
    assert set(jobs) == {"a", "c", "mine"}
    assert jobs["a"].action.params["message"] == "changed"
    assert jobs["a"].run_count == ran  # run state survives the update
    assert jobs["mine"].metadata in (None, {})  # never marked, never touched


def test_metrics_endpoint_over_http(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path, message_job("tick", "200ms"))
    proc = start_cli(tmp_path, "run", "-c", str(config), "--metrics-port", str(port))
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return 0, ""

    try:
        wait_for(lambda: get("/healthz")[0] == 200)
        wait_for(lambda: len(lines(tmp_path / "messages.jsonl")) >= 3)
        time.sleep(0.3)
        status, body = get("/metrics")
        assert status == 200
        runs = [
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("omnicron_job_runs_total{")
            and 'outcome="success"' in line
            and 'action_type="send_message"' in line
        ]
        assert runs and runs[0] >= 2
        assert "omnicron_job_lateness_seconds_bucket" in body
        assert 'omnicron_jobs{status="enabled"}' in body
        assert json.loads(get("/healthz")[1])["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"{base}/metrics" in err
