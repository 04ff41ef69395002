"""The runtime in process: config checks, the reconcile of declared jobs, metrics over HTTP."""

from __future__ import annotations

import asyncio
import json
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest

from omnicron_core import (
    Action,
    ActionExecutor,
    Duration,
    ExecutionResult,
    Job,
    JobStatus,
    PluginContext,
    RunInfo,
    Schedule,
    get_plugin_manager,
    hookimpl,
    new_job,
)
from omnicron_core.config import SOURCE_KEY, ConfigErrors, decode_config
from omnicron_core.metrics import MetricsServer
from omnicron_core.runtime import Runtime, is_declared
from omnicron_core.settings import load_plugin_settings


def config_text(db: Path, jobs: str, extra: str = "") -> str:
    return f'[scheduler]\nstore = "sqlite:///{db}"\ntimezone = "UTC"\n{extra}\n{jobs}'


def job_entry(job_id: str, message: str = "hi", schedule: str = "{ interval = '1h' }") -> str:
    return (
        f"[[jobs]]\nid = '{job_id}'\nname = '{job_id}'\nschedule = {schedule}\n"
        f"action = {{ type = 'send_message', session_id = 's', message = '{message}' }}\n"
    )


def runtime_for(text: str) -> Runtime:
    return Runtime(decode_config(tomllib.loads(text)))


async def reconcile(text: str) -> tuple[Runtime, dict[str, Job]]:
    rt = runtime_for(text)
    await rt.reconcile()
    jobs = {j.id: j for j in await rt.store.list()}
    await rt.close()
    return rt, jobs


async def test_reconcile_adds_updates_removes_and_keeps_run_state(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _, jobs = await reconcile(config_text(db, job_entry("a") + job_entry("b")))
    assert set(jobs) == {"a", "b"}
    assert all(is_declared(j) for j in jobs.values())
    first_next = jobs["a"].next_run_at
    assert first_next is not None

    # run state written by runs, and a job added at run time
    rt = runtime_for(config_text(db, ""))

    def ran(job: Job) -> Job:
        job.run_count, job.last_error = 7, "boom"
        return job

    await rt.store.update_many(["a", "b"], ran)
    extra = new_job(
        "manual", "manual", Schedule(cron="0 9 * * *"), Action(type="call_tool", tool_name="echo")
    )
    extra.action.params["tool_params"] = {"text": "x"}
    await rt.scheduler.add_job(extra)
    await rt.close()

    # unchanged: untouched, keeps its fire time
    _, jobs = await reconcile(config_text(db, job_entry("a") + job_entry("b")))
    assert jobs["a"].next_run_at == first_next and jobs["a"].run_count == 7

    # b changed, a removed from the file, c new; the runtime job survives
    _, jobs = await reconcile(config_text(db, job_entry("b", "changed") + job_entry("c")))
    assert set(jobs) == {"b", "c", "manual"}
    assert jobs["b"].action.params["message"] == "changed"
    assert jobs["b"].run_count == 7 and jobs["b"].last_error == "boom"
    assert jobs["c"].run_count == 0
    assert not is_declared(jobs["manual"])

    # an empty file removes only what a file declared
    _, jobs = await reconcile(config_text(db, ""))
    assert set(jobs) == {"manual"}


async def test_reconcile_is_all_or_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    _, before = await reconcile(config_text(db, job_entry("a")))
    rt = runtime_for(
        config_text(
            db,
            job_entry("a", "new")
            + job_entry("b")
            + job_entry("c", schedule="{ cron = '99 * * * *' }"),
        )
    )
    with pytest.raises(ConfigErrors) as info:
        await rt.reconcile()
    assert [e.field for e in info.value.errors] == ["jobs[2].schedule.cron"]
    after = {j.id: j for j in await rt.store.list()}
    await rt.close()
    assert set(after) == {"a"}
    assert after["a"].action.params["message"] == "hi"
    assert after["a"].updated_at == before["a"].updated_at


async def test_reconcile_refuses_an_id_taken_at_run_time(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    rt = runtime_for(config_text(db, ""))
    await rt.scheduler.add_job(
        new_job(
            "x",
            "mine",
            Schedule(interval=Duration("1h")),
            Action(type="send_message", session_id="s", message="m"),
        )
    )
    await rt.close()
    rt = runtime_for(config_text(db, job_entry("x")))
    with pytest.raises(ConfigErrors) as info:
        await rt.reconcile()
    assert info.value.errors[0].field == "jobs[0].id"
    assert "added at run time" in info.value.errors[0].message
    job = await rt.store.get("x")
    await rt.close()
    assert job.name == "mine" and SOURCE_KEY not in (job.metadata or {})


def test_check_reports_plugin_and_job_errors_together(tmp_path: Path) -> None:
    text = config_text(
        tmp_path / "c.db",
        job_entry("a", schedule="{ cron = '* * * * * * * *' }")
        + "[[jobs]]\nid='b'\nname='b'\nschedule={interval='1s'}\naction={type='nope'}\n",
        extra="[plugins.send_message]\ntransport = 'pigeon'\n[plugins.nosuch]\n",
    )
    errors = runtime_for(text).check()
    fields = [e.field for e in errors]
    assert fields == [
        "plugins.nosuch",
        "plugins.send_message.transport",
        "jobs[0].schedule.cron",
        "jobs[1].action.type",
    ]
    assert not (tmp_path / "c.db").exists()


def test_check_names_a_missing_plugin(tmp_path: Path) -> None:
    text = config_text(
        tmp_path / "c.db",
        "[[jobs]]\nid='w'\nname='w'\nschedule={interval='1s'}\n"
        "action={type='call_webhook', webhook_url='https://example.com/hook'}\n",
        extra="[plugins.webhook]\ntimeout = 5\n",
    )
    pm = get_plugin_manager(disabled=["webhook"])
    rt = Runtime(decode_config(tomllib.loads(text)), plugin_manager=pm)
    errors = {e.field: e.message for e in rt.check()}
    assert "disabled" in errors["plugins.webhook"]
    assert "webhook (omnicron-webhook): disabled" in errors["jobs[0].action.type"]


def test_check_store_url(tmp_path: Path) -> None:
    errors = runtime_for("[scheduler]\nstore = 'redis://x'\n").check()
    assert [e.field for e in errors] == ["scheduler.store"]
    assert "sqlite://" in errors[0].message


def test_bad_timezone_is_located() -> None:
    with pytest.raises(ConfigErrors) as info:
        runtime_for("[scheduler]\ntimezone = 'Mars/Olympus'\n")
    assert info.value.errors[0].field == "scheduler.timezone"


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_metrics_server_counts_runs_and_jobs(tmp_path: Path) -> None:
    transport = f"[plugins.send_message]\ntransport = 'jsonl'\npath = '{tmp_path / 'm.jsonl'}'\n"
    rt = runtime_for(config_text(tmp_path / "m.db", job_entry("a") + job_entry("b"), transport))
    await rt.reconcile()
    server = MetricsServer(rt.plugin_manager, rt.store)
    server.start(0)
    server.attach(asyncio.get_running_loop())
    try:
        await rt.scheduler.trigger_job("a")
        await rt.scheduler.disable_job("b")
        await asyncio.sleep(0.6)
        status, body = await asyncio.to_thread(fetch, server.url)
        assert status == 200
        assert (
            'omnicron_job_runs_total{action_type="send_message",outcome="success",trigger="manual"} 1.0'
            in body
        )
        assert 'omnicron_jobs{status="disabled"} 1.0' in body
        assert 'omnicron_jobs{status="enabled"} 1.0' in body
        assert 'omnicron_job_changes_total{change="disabled"} 1.0' in body
        assert "omnicron_job_duration_seconds_count" in body
        status, body = await asyncio.to_thread(fetch, server.url.replace("/metrics", "/healthz"))
        assert status == 200 and json.loads(body) == {"status": "ok"}
        status, _ = await asyncio.to_thread(fetch, server.url.replace("/metrics", "/other"))
        assert status == 404
    finally:
        await server.stop()
        await rt.close()
    assert not rt.plugin_manager.is_registered(server.plugin)


def test_metrics_plugin_records_failures_and_lateness() -> None:
    from omnicron_core.metrics import MetricsPlugin

    plugin = MetricsPlugin()
    job = Job(id="x", name="x", action=Action(type="call_tool"), status=JobStatus.ENABLED)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    failed = ExecutionResult.failed("nope")
    failed.started_at, failed.scheduled_at, failed.lateness, failed.duration = (
        now,
        now,
        2_000_000_000,
        10,
    )
    plugin.omnicron_job_ran(job=job, result=failed)
    get = plugin.registry.get_sample_value
    assert get("omnicron_job_failures_total", {"action_type": "call_tool"}) == 1.0
    assert get("omnicron_job_lateness_seconds_sum", {"action_type": "call_tool"}) == 2.0
    assert (
        get(
            "omnicron_job_runs_total",
            {"action_type": "call_tool", "outcome": "failure", "trigger": "scheduled"},
        )
        == 1.0
    )


class _LoopSafeProbe:
    """An executor plugin whose synchronous check refuses to run on the event loop's thread
    (as a DNS lookup there would block every other job)."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    @hookimpl
    def omnicron_action_executors(self) -> list[ActionExecutor[Any]]:
        probe = self

        class Probe(ActionExecutor[_NoParams]):
            action_type = "probe"
            params_type = _NoParams

            def validate(self, params: _NoParams) -> None:
                try:
                    asyncio.get_running_loop()
                except RuntimeError:
                    return
                raise AssertionError("a blocking check ran on the event loop")

            async def validate_async(self, params: _NoParams) -> None:
                probe.checked.append(self.action_type)
                await asyncio.sleep(0)

            async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
                return ExecutionResult.ok("probed")

        return [Probe()]


async def test_reconcile_validates_asynchronously(tmp_path: Path) -> None:
    probe = _LoopSafeProbe()
    entry = "[[jobs]]\nid = 'p'\nname = 'p'\nschedule = { interval = '1h' }\n"
    entry += "action = { type = 'probe' }\n"
    rt = Runtime(
        decode_config(tomllib.loads(config_text(tmp_path / "p.db", entry))), plugins=[probe]
    )
    report = await rt.reconcile()
    await rt.close()
    assert report.added == ["p"]
    assert probe.checked == ["probe", "probe"]  # the reconcile's check, then add_jobs'


class _NoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class _EchoSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    prefix: str = ""


class _EchoPlugin:
    """A third-party executor with its own settings section, [plugins.echo]."""

    @hookimpl
    def omnicron_action_executors(self, context: PluginContext) -> list[ActionExecutor[Any]]:
        settings = load_plugin_settings(context.settings_for("echo"), _EchoSettings, "echo")

        class Echo(ActionExecutor[_NoParams]):
            action_type = "echo"
            params_type = _NoParams

            async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
                return ExecutionResult.ok(settings.prefix)

        return [Echo()]


def test_a_typo_in_plugin_settings_is_reported_as_the_setting_not_as_the_action_type(
    tmp_path: Path,
) -> None:
    jobs = "[[jobs]]\nid = 'e'\nname = 'e'\nschedule = { interval = '1h' }\n"
    jobs += "action = { type = 'echo' }\n"
    jobs += job_entry("m", message="")  # send_message built fine: its executor still checks
    text = config_text(tmp_path / "t.db", jobs, "[plugins.echo]\nprefx = '>'\n")
    pm = get_plugin_manager()
    pm.register(_EchoPlugin(), name="echo")
    errors = Runtime(decode_config(tomllib.loads(text)), plugin_manager=pm).check()
    assert [(e.field, e.message) for e in errors] == [
        ("plugins.echo.prefx", "unknown key 'prefx' (check its spelling); allowed keys: prefix"),
        ("jobs[1].action.message", "invalid action: message is required for send_message action"),
    ]
