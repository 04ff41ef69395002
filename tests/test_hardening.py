"""Issue 9, agent-facing items: hostile input from a model (or any other entry point).

Secrets (``${env:}``) never resolve in a job an agent made; sizes are bounded before parsing;
times stay inside a horizon every zone can show; listing survives any stored job; manual
triggers and the per-owner job count hold across Skill instances sharing one store.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from omnicron_core import (
    Action,
    ConfigError,
    ExecutionResult,
    Job,
    JobValidationError,
    Registry,
    Schedule,
    Scheduler,
    SchedulerConfig,
    Store,
    StoreConfig,
    get_plugin_manager,
    job_from_builtins,
    job_to_builtins,
    new_job,
)
from omnicron_core.skill import Skill, SkillConfig

ME = "session:alice"
TOKYO = "Asia/Tokyo"
KIRITIMATI = "Pacific/Kiritimati"  # UTC+14, the largest offset in use


def registry() -> Registry:
    return Registry(
        get_plugin_manager(),
        settings={
            "send_message": {"transport": "host"},
            "tool": {"allow": ["*"]},
            "webhook": {"allow_networks": ["127.0.0.0/8"]},
        },
    )


def act(**flat: Any) -> Action:
    """An action from its flat JSON (``{"type": ..., "message": ...}``): the shape every
    version of ``Action`` reads, whatever its Python fields."""
    return job_from_builtins({"action": flat}).action


def action_json(job: Job) -> dict[str, Any]:
    action: dict[str, Any] = job_to_builtins(job)["action"]
    return action


MSG = {"type": "send_message", "session_id": "s", "message": "m"}


def make_skill(config: SkillConfig | None = None, **kw: Any) -> Skill:
    reg = kw.pop("registry", None) or registry()
    kw.setdefault("store", Store(StoreConfig(url="memory://"), registry=reg))
    return Skill(config or SkillConfig(), registry=reg, location=TOKYO, **kw)


@pytest.fixture
async def skill() -> AsyncIterator[Skill]:
    s = make_skill(SkillConfig(allow_params=("webhook_headers", "webhook_body")))
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
        "message": "time for standup",
    }
    args.update(over)
    if args["action_type"] != "send_message" and "message" not in over:
        del args["message"]  # a parameter of another type is refused
    return args


def hook_args(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": "leak",
        "schedule_interval": "1h",
        "action_type": "call_webhook",
        "webhook_url": "http://127.0.0.1:9/hook",
    }
    args.update(over)
    return args


async def call(skill: Skill, tool: str, args: Any, principal: str | None = ME) -> Any:
    """Call with a dict, as the MCP server hands arguments over (already decoded)."""
    result = await skill.call(tool, args, principal=principal)
    assert json.loads(result.text) == result.content
    return result


async def stored(skill: Skill) -> list[Job]:
    scheduler = skill.get_scheduler()
    assert scheduler is not None
    return await scheduler.list_jobs()


# -- 1: ${env:} secrets never resolve in an agent's job ------------------------------------------


async def test_skill_refuses_env_reference_in_headers(skill: Skill) -> None:
    result = await call(skill, "cron_create", hook_args(webhook_headers={"X-Leak": "${env:HOME}"}))
    assert result.is_error
    assert "webhook_headers" in result.error and "${env:" in result.error
    assert "agent" in result.error
    assert await stored(skill) == []


@pytest.mark.parametrize(
    "args",
    [
        hook_args(webhook_body='{"k": "${env:HOME}"}'),
        msg_args(message="hi ${env:HOME}"),
        msg_args(
            action_type="call_tool", tool_name="echo", tool_params={"a": [{"b": "${env:HOME}"}]}
        ),
        msg_args(action_type="call_tool", tool_name="echo", tool_params={"${env:HOME}": 1}),
    ],
    ids=["body", "message", "nested-tool-param", "tool-param-key"],
)
async def test_skill_refuses_env_reference_anywhere_in_the_action(
    skill: Skill, args: dict[str, Any]
) -> None:
    result = await call(skill, "cron_create", args)
    assert result.is_error, result.content
    assert "${env:" in result.error
    assert await stored(skill) == []


async def test_skill_refuses_env_reference_on_update_and_for_trusted_callers(skill: Skill) -> None:
    made = await call(skill, "cron_create", hook_args())
    assert not made.is_error, made.content
    result = await call(
        skill,
        "cron_update",
        {"id": made.content["id"], "webhook_headers": {"Authorization": "Bearer ${env:TOKEN}"}},
    )
    assert result.is_error and "webhook_headers" in result.error
    job = (await stored(skill))[0]
    assert not action_json(job).get("webhook_headers")
    # principal=None (trusted host code, or `omnicron mcp --trusted`) is still a model's input
    trusted = await call(
        skill, "cron_create", hook_args(webhook_headers={"X": "${env:HOME}"}), principal=None
    )
    assert trusted.is_error and "${env:" in trusted.error


async def test_jobs_made_through_the_skill_are_marked_and_the_mark_sticks(skill: Skill) -> None:
    made = await call(skill, "cron_create", hook_args())
    scheduler = skill.get_scheduler()
    assert scheduler is not None
    job = await scheduler.get_job(made.content["id"])
    assert job.origin == "agent"
    # an operator's later edit through the API cannot clear the mark by omitting it
    job.origin = ""
    job.name = "renamed"
    saved = await scheduler.update_job(job)
    assert saved.origin == "agent"
    # and the core refuses a secret in a marked job at every entry point, not just the skill
    saved.action = act(**{**action_json(saved), "webhook_headers": {"X": "${env:HOME}"}})
    with pytest.raises(JobValidationError) as caught:
        await scheduler.update_job(saved)
    assert caught.value.field == "action.webhook_headers.X"
    with pytest.raises(JobValidationError):
        await scheduler.add_job(msgspec.structs.replace(saved, id="other"))
    legacy = msgspec.structs.replace(saved, id="legacy", origin="", owner_principal=ME)
    with pytest.raises(JobValidationError):  # owned jobs come from the tools too
        await scheduler.add_job(legacy)


async def test_agent_edit_of_an_operator_job_with_secrets_is_refused(skill: Skill) -> None:
    scheduler = skill.get_scheduler()
    assert scheduler is not None
    job = new_job(
        "ops",
        "operator hook",
        Schedule(interval=None, cron="0 9 * * *"),
        act(
            type="call_webhook",
            webhook_url="http://127.0.0.1:9/x",
            webhook_headers={"Authorization": "Bearer ${env:TOKEN}"},
        ),
    )
    await scheduler.add_job(job)  # an operator's job may use secrets
    result = await call(
        skill, "cron_update", {"id": "ops", "webhook_url": "http://127.0.0.1:8/mine"}, None
    )
    assert result.is_error and "${env:" in result.error
    after = await scheduler.get_job("ops")
    assert action_json(after)["webhook_url"] == "http://127.0.0.1:9/x"
    assert after.origin == ""


# -- 3: time horizon; listing survives any stored job -------------------------------------------


@pytest.mark.parametrize("zone", [KIRITIMATI, TOKYO, "Pacific/Pago_Pago"])
async def test_far_once_time_is_refused_and_nothing_saved(skill: Skill, zone: str) -> None:
    result = await call(
        skill,
        "cron_create",
        msg_args(schedule_cron=None, schedule_once="9999-12-31T23:59:59Z", timezone=zone),
    )
    assert result.is_error
    assert "schedule.once" in result.error or "once" in result.error
    assert "9000" in result.error
    assert await stored(skill) == []
    listed = await call(skill, "cron_list", {})
    assert not listed.is_error and listed.content == []


async def test_api_refuses_times_outside_the_horizon() -> None:
    async with Scheduler(SchedulerConfig(location=KIRITIMATI, registry=registry())) as sched:
        for when in (
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC),
        ):
            job = new_job("x", "far", Schedule(once=when), act(**MSG))
            with pytest.raises(JobValidationError) as caught:
                await sched.add_job(job)
            assert caught.value.field == "schedule.once"
            with pytest.raises(JobValidationError):
                await sched.validate(job)
        assert await sched.list_jobs() == []


def _bad_stored_jobs() -> list[Job]:
    far = new_job(
        "far",
        "far",
        Schedule(once=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), timezone=KIRITIMATI),
        act(**MSG),
    )
    far.next_run_at = far.schedule.once
    far.owner_principal = ME
    old = new_job(
        "old",
        "old",
        Schedule(cron="0 9 * * *", timezone="America/New_York"),
        act(**MSG),
    )
    old.created_at = old.last_run_at = datetime(1, 1, 1, tzinfo=UTC)
    old.owner_principal = ME
    broken = new_job(
        "broken",
        "broken",
        Schedule(cron="not a cron"),
        act(**MSG),
    )
    broken.owner_principal = ME
    return [far, old, broken]


async def test_listing_survives_bad_stored_jobs(tmp_path: Path) -> None:
    reg = registry()
    store = Store(StoreConfig(url=f"sqlite:///{tmp_path / 'jobs.db'}"), registry=reg)
    await store.save_many(_bad_stored_jobs())  # saved behind the scheduler's back
    s = Skill(SkillConfig(), registry=reg, location=KIRITIMATI, store=store, start_scheduler=False)
    await s.init()
    for principal in (ME, None):
        listed = await call(s, "cron_list", {}, principal)
        assert not listed.is_error, listed.content
        assert {j["id"] for j in listed.content} == {"far", "old", "broken"}
        for item in listed.content:
            got = await call(s, "cron_get", {"id": item["id"]}, principal)
            assert not got.is_error, got.content
    await store.close()


def _omnicron(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    return subprocess.run(
        [sys.executable, "-m", "omnicron_core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_lists_and_shows_bad_stored_jobs(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    (tmp_path / "omnicron.toml").write_text(
        f'[scheduler]\nstore = "sqlite:///{db}"\ntimezone = "{TOKYO}"\n'
    )
    store = Store(StoreConfig(url=f"sqlite:///{db}"), registry=registry())
    await store.save_many(_bad_stored_jobs())
    await store.close()
    listed = await asyncio.to_thread(_omnicron, "jobs", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    for name in ("far", "old", "broken"):
        assert name in listed.stdout
        shown = await asyncio.to_thread(_omnicron, "jobs", "show", name, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr


# -- 4: size limits, checked before parsing; short error quotes ---------------------------------

BIG = 4 * 1024 * 1024


async def test_huge_cron_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    import omnicron_core.cron as cron

    reached: list[str] = []
    real = cron._compile

    def spy(expr: str, key: Any) -> Any:
        reached.append(expr)
        return real(expr, key)

    monkeypatch.setattr(cron, "_compile", spy)
    async with Scheduler(SchedulerConfig(location=TOKYO, registry=registry())) as sched:
        job = new_job("x", "x", Schedule(cron="* " * (BIG // 2)), act(**MSG))
        with pytest.raises(JobValidationError) as caught:
            await sched.add_job(job)
        assert caught.value.field == "schedule.cron"
        assert len(str(caught.value)) < 200
        assert "characters" in caught.value.message
        assert await sched.list_jobs() == []
    assert reached == []  # refused on its length alone
    with pytest.raises(JobValidationError) as caught:
        cron.parse_cron("* " * (BIG // 2))  # the parser's own guard, for every other caller
    assert reached == [] and len(str(caught.value)) < 100


async def test_skill_never_parses_a_huge_cron(monkeypatch: pytest.MonkeyPatch) -> None:
    import omnicron_core.cron as cron

    reached: list[str] = []
    monkeypatch.setattr(cron, "_compile", lambda expr, key: reached.append(expr))
    s = make_skill()
    await s.init()
    huge = "* " * (BIG // 2)
    for tool, args in (
        ("cron_create", msg_args(schedule_cron=huge)),
        ("cron_next", {"schedule_cron": huge}),
    ):
        result = await call(s, tool, args)
        assert result.is_error and "schedule_cron" in result.error and len(result.error) < 100
    assert reached == []
    await s.close()


async def test_skill_refuses_huge_cron_with_a_short_message(skill: Skill) -> None:
    result = await call(skill, "cron_create", msg_args(schedule_cron="* " * (BIG // 2)))
    assert result.is_error and len(result.error) < 200
    assert "schedule_cron" in result.error
    result = await call(skill, "cron_next", {"schedule_cron": "1 " * (BIG // 2)})
    assert result.is_error and len(result.error) < 200


async def test_skill_refuses_huge_argument_text_before_decoding(skill: Skill) -> None:
    text = json.dumps(msg_args(message="m" * BIG))
    result = await skill.call("cron_create", text, principal=ME)
    assert result.is_error and "arguments are too large" in result.error
    assert len(result.error) < 200
    deep = "[" * 100_000 + "]" * 100_000
    result = await skill.call("cron_create", '{"name": ' + deep + "}", principal=ME)
    assert result.is_error and len(result.error) < 300
    huge_int = '{"id": ' + "9" * 5000 + "}"
    result = await skill.call("cron_get", huge_int, principal=ME)
    assert result.is_error and len(result.error) < 300
    assert await stored(skill) == []


@pytest.mark.parametrize(
    ("over", "words"),
    [
        (
            {"action_type": "call_tool", "tool_name": "echo", "tool_params": {"text": "y" * BIG}},
            "action",
        ),
        (
            {
                "action_type": "call_tool",
                "tool_name": "echo",
                "tool_params": {"text": "x", **{f"k{i}": "v" * 1000 for i in range(4000)}},
            },
            "action",
        ),
        ({"action_type": "a" * BIG}, "action_type"),
        ({"timezone": "Z" * BIG}, "timezone"),
        ({"schedule_cron": None, "schedule_interval": "1" * BIG}, "schedule_interval"),
        ({"schedule_cron": None, "schedule_once": "2" * BIG}, "schedule_once"),
        ({"session_id": "s" * BIG}, "session_id"),
    ],
    ids=["tool-param-string", "tool-params-total", "enum", "tz", "interval", "once", "session"],
)
async def test_skill_refuses_oversized_fields_with_short_messages(
    skill: Skill, over: dict[str, Any], words: str
) -> None:
    result = await call(skill, "cron_create", msg_args(**over))
    assert result.is_error, str(result.content)[:200]
    assert len(result.error) < 300, result.error[:300]
    assert words in result.error
    assert await stored(skill) == []


async def test_skill_refuses_oversized_body_and_headers(skill: Skill) -> None:
    for over in (
        {"webhook_body": "b" * BIG},
        {"webhook_headers": {"X-Big": "v" * BIG}},
        {"webhook_headers": {f"X-{i}": "v" for i in range(5000)}},
    ):
        result = await call(skill, "cron_create", hook_args(**over))
        assert result.is_error, str(result.content)[:200]
        assert len(result.error) < 300
    assert await stored(skill) == []


async def test_api_limits_apply_to_every_field() -> None:
    async with Scheduler(SchedulerConfig(location=TOKYO, registry=registry())) as sched:

        def job(**kw: Any) -> Job:
            j = new_job("x", "n", Schedule(cron="0 9 * * *"), act(**MSG))
            for key, value in kw.items():
                setattr(j, key, value)
            return j

        cases = {
            "name": job(name="n" * 100_000),
            "description": job(description="d" * 1_000_000),
            "metadata": job(metadata={"blob": "m" * BIG}),
            "action": job(
                action=act(type="call_tool", tool_name="echo", tool_params={"p": "x" * BIG})
            ),
        }
        for field, bad in cases.items():
            with pytest.raises(JobValidationError) as caught:
                await sched.add_job(bad)
            assert caught.value.field.startswith(field), (field, caught.value.field)
            assert len(str(caught.value)) < 300
        deep: Any = "x"
        for _ in range(200):
            deep = [deep]
        with pytest.raises(JobValidationError) as caught:
            await sched.add_job(
                job(action=act(type="call_tool", tool_name="echo", tool_params={"d": deep}))
            )
        assert "nest" in caught.value.message
        assert await sched.list_jobs() == []


async def test_limits_are_configurable() -> None:
    from omnicron_core import JobLimits

    limits = JobLimits(max_name_length=5)
    async with Scheduler(
        SchedulerConfig(location=TOKYO, registry=registry(), limits=limits)
    ) as sched:
        j = new_job("x", "toolong", Schedule(cron="0 9 * * *"), act(**MSG))
        with pytest.raises(JobValidationError) as caught:
            await sched.add_job(j)
        assert caught.value.field == "name" and "5" in caught.value.message


def test_config_file_jobs_get_the_limits(tmp_path: Path) -> None:
    from omnicron_core.config import load_config
    from omnicron_core.runtime import Runtime

    (tmp_path / "omnicron.toml").write_text(
        '[scheduler]\nstore = "memory://"\n[scheduler.limits]\nmax_name_length = 4\n'
        '[[jobs]]\nid = "a"\nname = "too long"\nschedule = {cron = "0 9 * * *"}\n'
        'action = {type = "send_message", session_id = "s", message = "m"}\n'
    )
    errors = Runtime(load_config(tmp_path / "omnicron.toml")).check()
    assert any(e.field == "jobs[0].name" for e in errors), errors


@pytest.mark.parametrize("bad", ["\x1b]0;pwned\x07", "a\x00b", "x\u202eevil", "line\nbreak"])
async def test_control_characters_in_names_are_refused(skill: Skill, bad: str) -> None:
    result = await call(skill, "cron_create", msg_args(name=bad))
    assert result.is_error and "name" in result.error
    assert "\x1b" not in result.error and "\x00" not in result.error
    assert await stored(skill) == []
    scheduler = skill.get_scheduler()
    assert scheduler is not None
    j = new_job("x", bad, Schedule(cron="0 9 * * *"), act(**MSG))
    with pytest.raises(JobValidationError) as caught:
        await scheduler.add_job(j)
    assert caught.value.field == "name"
    j.name, j.description = "fine", "desc " + bad.replace("\n", "\x07")
    with pytest.raises(JobValidationError) as caught:
        await scheduler.add_job(j)
    assert caught.value.field == "description"


async def test_descriptions_may_span_lines(skill: Skill) -> None:
    result = await call(skill, "cron_create", msg_args(description="first line\nsecond\tline"))
    assert not result.is_error, result.content


# -- 5: manual triggers honour min_interval ------------------------------------------------------


async def test_trigger_is_rate_limited_for_agents() -> None:
    runs: list[str] = []

    async def handler(job: Job) -> ExecutionResult:
        runs.append(job.id)
        return ExecutionResult.ok("done")

    s = make_skill(SkillConfig(min_interval="1m"))
    s.set_execution_handler(handler)
    await s.init()
    try:
        made = await call(s, "cron_create", msg_args())
        first = await call(s, "cron_trigger", {"id": made.content["id"]})
        assert not first.is_error and first.content["success"]
        again = await call(s, "cron_trigger", {"id": made.content["id"]})
        assert again.is_error
        assert "1m0s" in again.error and "trigger job" in again.error
        burst = await asyncio.gather(
            *(call(s, "cron_trigger", {"id": made.content["id"]}) for _ in range(20))
        )
        assert all(r.is_error for r in burst)
        assert len(runs) == 1
    finally:
        await s.close()


async def test_concurrent_triggers_run_once(tmp_path: Path) -> None:
    runs: list[str] = []

    async def handler(job: Job) -> ExecutionResult:
        runs.append(job.id)
        await asyncio.sleep(0.05)
        return ExecutionResult.ok("done")

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    skills = []
    for _ in range(2):
        reg = registry()
        s = Skill(
            SkillConfig(min_interval="1m"),
            registry=reg,
            location=TOKYO,
            store=Store(StoreConfig(url=url), registry=reg),
            start_scheduler=False,
        )
        s.set_execution_handler(handler)
        await s.init()
        skills.append(s)
    made = await call(skills[0], "cron_create", msg_args())
    results = await asyncio.gather(
        *(call(skills[i % 2], "cron_trigger", {"id": made.content["id"]}) for i in range(10))
    )
    assert sum(not r.is_error for r in results) == 1
    assert len(runs) == 1
    off = make_skill(SkillConfig(min_interval="0"))
    off.set_execution_handler(handler)
    await off.init()
    made = await call(off, "cron_create", msg_args(schedule_cron="* * * * * *"))
    for _ in range(3):
        assert not (await call(off, "cron_trigger", {"id": made.content["id"]})).is_error
    await off.close()
    for s in skills:
        await s.close()


# -- 6: the per-owner job limit holds across Skill instances on one store ------------------------


async def test_job_limit_counts_the_shared_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Scheduler.validate

    async def slow_validate(self: Scheduler, job: Job) -> None:
        await asyncio.sleep(0.01)  # an executor's add-time check doing I/O (the webhook's DNS)
        await real(self, job)

    monkeypatch.setattr(Scheduler, "validate", slow_validate)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    skills = []
    for _ in range(2):
        reg = registry()
        s = Skill(
            SkillConfig(max_jobs_per_owner=3),
            registry=reg,
            location=TOKYO,
            store=Store(StoreConfig(url=url), registry=reg),
            start_scheduler=False,
        )
        await s.init()
        skills.append(s)
    for name in ("one", "two"):
        assert not (await call(skills[0], "cron_create", msg_args(name=name))).is_error
    # two creates in flight at once (one per instance) must not both take the last place
    results = await asyncio.gather(
        *(call(skills[i % 2], "cron_create", msg_args(name=f"n{i}")) for i in range(8))
    )
    owned = [j for j in await stored(skills[1]) if j.owner_principal == ME]
    assert len(owned) <= 3
    refused = [r for r in results if r.is_error]
    assert refused and all("job limit reached" in r.error for r in refused)
    assert len(owned) == 2 + sum(not r.is_error for r in results)
    # and, one at a time, the second instance sees the first's jobs (the race above may
    # have refused every create: store calls yield, so the two instances can run in step)
    for i in range(3 - len(owned)):
        assert not (await call(skills[0], "cron_create", msg_args(name=f"fill{i}"))).is_error
    refused = await call(skills[1], "cron_create", msg_args(name="late"))
    assert refused.is_error and "you have 3 jobs" in refused.error
    for s in skills:
        await s.close()


async def test_skill_limit_settings_load() -> None:
    from omnicron_core.skill import load_skill_config

    cfg = load_skill_config({"max_cron_length": 64, "max_action_bytes": 1000})
    assert cfg.max_cron_length == 64
    with pytest.raises(ConfigError):
        load_skill_config({"max_action_bytes": -1})
    s = make_skill(cfg)
    await s.init()
    result = await call(s, "cron_create", msg_args(schedule_cron="0 0 9 * * *" + " " * 60))
    assert result.is_error and "schedule_cron" in result.error
    result = await call(s, "cron_create", msg_args(message="m" * 1200))
    assert result.is_error
    await s.close()


# -- 9 (same class): an exception's message alone can be cryptic -------------------------------


async def test_keyerror_style_run_errors_carry_their_type() -> None:
    from omnicron_core import describe_error

    async def handler(job: Job) -> ExecutionResult:
        return {}["location"]  # type: ignore[no-any-return]

    async with Scheduler(
        SchedulerConfig(location=TOKYO, registry=registry(), handler=handler)
    ) as sched:
        j = new_job("k", "k", Schedule(cron="0 9 * * *"), act(**MSG))
        await sched.add_job(j)
        result = await sched.trigger_job("k")
    assert result.error == "KeyError: 'location'"
    assert describe_error(ValueError("plain")) == "plain"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_origin_is_in_the_json_only_when_set() -> None:
    from omnicron_core import decode_job, encode_job
    from omnicron_core._validation import validate_job

    j = new_job("o", "o", Schedule(cron="0 9 * * *"), act(**MSG))
    assert b"origin" not in encode_job(j)  # the Go original's JSON is unchanged
    j.owner_principal, j.origin = ME, "agent"
    data = json.loads(encode_job(j))
    keys = list(data)
    assert data["origin"] == "agent" and keys.index("origin") == keys.index("owner_principal") + 1
    assert decode_job(encode_job(j)).origin == "agent"
    odd = decode_job(encode_job(j).replace(b'"agent"', b'"admin"'))  # a hand-edited row
    assert odd.origin == "admin"  # still lists, and counts as an agent's job:
    with pytest.raises(JobValidationError) as caught:
        validate_job(odd, None, UTC)
    assert caught.value.field == "origin"


async def test_cli_and_config_refuse_far_times_and_save_nothing(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    (tmp_path / "omnicron.toml").write_text(
        f'[scheduler]\nstore = "sqlite:///{db}"\ntimezone = "{KIRITIMATI}"\n'
        '[plugins.send_message]\ntransport = "console"\n'
    )
    added = await asyncio.to_thread(
        _omnicron,
        "jobs", "add", "--name", "far", "--at", "9999-12-31T23:59:59Z",
        "--session-id", "s", "--message", "m",
        cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == 1, added.stderr
    assert "schedule.once" in added.stderr and "Traceback" not in added.stderr
    named = await asyncio.to_thread(
        _omnicron, "jobs", "add", "--name", "\x1b]0;x\x07", "--every", "1h",
        "--session-id", "s", "--message", "m",
        cwd=tmp_path,
    )  # fmt: skip
    assert named.returncode == 1 and "control characters" in named.stderr
    listed = await asyncio.to_thread(_omnicron, "jobs", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout or "[]") == []
    (tmp_path / "bad.toml").write_text(
        '[[jobs]]\nid = "far"\nname = "far"\n'
        "schedule = {once = 9999-12-31T23:59:59Z}\n"
        'action = {type = "send_message", session_id = "s", message = "m"}\n'
    )
    checked = await asyncio.to_thread(_omnicron, "validate", "-c", "bad.toml", cwd=tmp_path)
    assert checked.returncode == 1
    assert "jobs[0].schedule.once" in checked.stderr + checked.stdout
