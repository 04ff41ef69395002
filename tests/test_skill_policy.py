"""Agents set a job's schedule policy through ``cron_create`` / ``cron_update`` (and bound a
``cron_next`` preview) within ``[skill.policy]``; every fire-time preview applies the bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from omnicron_core import Action, Job, Schedule
from omnicron_core._duration import Duration
from omnicron_core._runs import Overlap, Policy, RunCounts
from omnicron_core._scheduler import Scheduler, SchedulerConfig
from omnicron_core._store import Store, StoreConfig
from omnicron_core.skill import Skill
from omnicron_core.skill._config import load_skill_config
from omnicron_core.skill._present import fire_preview
from tests.test_skill import make_skill

SEND = {"action_type": "send_message", "session_id": "s1", "message": "hi"}


@pytest.fixture
async def skill() -> AsyncIterator[Skill]:
    s = make_skill(start_scheduler=False)
    await s.init()
    try:
        yield s
    finally:
        await s.close()


async def call(s: Skill, tool: str, args: dict[str, Any]) -> Any:
    result = await s.call(tool, args)
    return result.content


def rfc(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def test_create_with_a_policy_saves_it_and_previews_within_its_bounds(skill: Skill) -> None:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    out = await call(
        skill,
        "cron_create",
        {
            "name": "bounded",
            "schedule_cron": "0 * * * *",
            "timezone": "UTC",
            **SEND,
            "policy": {
                "overlap": "buffer_one",
                "catch_up_window": "10m",
                "start_at": rfc(start),
                "end_at": rfc(start + timedelta(hours=5)),
                "max_runs": 2,
                "retry": {"attempts": 2, "backoff": "90s"},
                "timeout": "5m",
            },
        },
    )
    assert "error" not in out, out
    got = await call(skill, "cron_get", {"id": out["id"]})
    assert got["policy"]["overlap"] == "buffer_one" and got["policy"]["max_runs"] == 2
    assert got["policy"]["retry"]["attempts"] == 2 and got["policy"]["retry"]["backoff"] == "1m30s"
    # the preview starts at start_at and stops after max_runs (not three hourly times from now)
    hours = [start, start + timedelta(hours=1)]
    assert [datetime.fromisoformat(t) for t in out["next_fire_times"]] == hours
    described = await skill._sched.describe(out["id"], fires=5)
    assert described.next_fires == hours
    assert [datetime.fromisoformat(t) for t in got["next_fire_times"]] == hours


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"overlap": "sometimes"}, "policy.overlap: invalid enum value 'sometimes'"),
        ({"catch_up_window": "25h"}, "policy.catch_up_window: 25h0m0s is longer than agents"),
        ({"jitter": "2h"}, "policy.jitter: 2h0m0s is longer than agents may set (1h)"),
        ({"timeout": "7h"}, "policy.timeout: 7h0m0s is longer than agents may set (6h)"),
        ({"timeout": "soon"}, "policy.timeout: invalid duration"),
        ({"concurrency": 4}, "policy.concurrency: at most 3, got 4"),
        ({"buffer_limit": 11}, "policy.buffer_limit: at most 10, got 11"),
        ({"retry": {"attempts": 4}}, "policy.retry.attempts: at most 3, got 4"),
        ({"retry": {"attempts": 1, "backoff": "1s"}}, "policy.retry.backoff: 1s is shorter"),
        ({"retry": {"tries": 1}}, "policy.retry.tries: unknown field"),
        ({"retry": 3}, "policy.retry: must be an object, got integer"),
        ({"end_at": "2999-01-01T00:00:00Z"}, "policy.end_at: more than 366d from now"),
        ({"start_at": "2999-01-01T00:00:00Z"}, "policy.start_at: more than 366d from now"),
        ({"end_at": "2001-01-01T00:00:00Z"}, "policy.end_at: must be in the future"),
        ({"start_at": "tomorrow"}, "policy.start_at: "),
        ({"start_at": "2027-01-01T00:00:00"}, "policy.start_at: "),  # no offset
        (
            {
                "start_at": rfc(datetime.now(UTC) + timedelta(days=3)),
                "end_at": rfc(datetime.now(UTC) + timedelta(days=2)),
            },
            "policy.end_at: end_at must be after start_at",
        ),
        ({"max_runs": 0}, "policy.max_runs: "),
        # times some zone cannot show (year 0 in UTC) and counters past 64 bits
        ({"start_at": "0001-01-01T00:00:00+14:00"}, "policy.start_at: start_at 0001-01-01"),
        ({"max_runs": 10**30}, "policy.max_runs: max_runs must be at most 1000000000000"),
        ({"owner": "x"}, "policy.owner: unknown policy field"),
    ],
)
async def test_bad_policy_is_located_and_nothing_is_saved(
    skill: Skill, policy: dict[str, Any], message: str
) -> None:
    args = {"name": "x", "schedule_cron": "0 * * * *", **SEND, "policy": policy}
    out = await call(skill, "cron_create", args)
    assert "error" in out and message in out["error"], out
    assert await call(skill, "cron_list", {}) == []
    # the same on update: the job is unchanged
    made = await call(skill, "cron_create", {**args, "policy": {"overlap": "skip"}})
    before = await skill._sched.get_job(made["id"])
    upd = await call(skill, "cron_update", {"id": made["id"], "name": "renamed", "policy": policy})
    assert "error" in upd and message in upd["error"], upd
    after = await skill._sched.get_job(made["id"])
    assert after.name == "x" and after.policy == before.policy and after.policy is None


async def test_fields_agents_may_not_set_are_refused_and_not_offered() -> None:
    s = make_skill(load_skill_config({"policy": {"fields": ["overlap"]}}), start_scheduler=False)
    await s.init()
    try:
        create = s.get_tool("cron_create")
        assert create is not None
        assert list(create.parameters["properties"]["policy"]["properties"]) == ["overlap"]
        nxt = s.get_tool("cron_next")
        assert nxt is not None and "policy" not in nxt.parameters["properties"]
        out = await call(
            s,
            "cron_create",
            {"name": "x", "schedule_cron": "0 * * * *", **SEND, "policy": {"jitter": "1m"}},
        )
        assert out["error"] == "policy.jitter: agents may not set this field (allowed: overlap)"
        assert await call(s, "cron_list", {}) == []
    finally:
        await s.close()
    none = make_skill(load_skill_config({"policy": {"fields": []}}))
    tool = none.get_tool("cron_create")
    assert tool is not None and "policy" not in tool.parameters["properties"]
    with pytest.raises(Exception, match=r"skill\.policy\.fields: unknown policy field 'owner'"):
        load_skill_config({"policy": {"fields": ["owner"]}})
    with pytest.raises(Exception, match=r"skill\.policy\.max_timeout: invalid duration"):
        load_skill_config({"policy": {"max_timeout": "long"}})


async def test_update_merges_resets_with_null_and_lowers_core_defaults(skill: Skill) -> None:
    made = await call(
        skill,
        "cron_create",
        {"name": "x", "schedule_cron": "0 * * * *", **SEND, "policy": {"overlap": "allow_all"}},
    )
    job = await skill._sched.get_job(made["id"])
    # the core's default concurrency (10) is past the agent bound (3): the bound applies
    assert job.policy == Policy(overlap=Overlap.ALLOW_ALL, concurrency=3)
    await call(skill, "cron_update", {"id": made["id"], "policy": {"jitter": "5m"}})
    job = await skill._sched.get_job(made["id"])
    assert job.policy == Policy(overlap=Overlap.ALLOW_ALL, concurrency=3, jitter=Duration("5m"))
    await call(skill, "cron_update", {"id": made["id"], "policy": {"overlap": None}})
    job = await skill._sched.get_job(made["id"])
    assert job.policy == Policy(concurrency=3, jitter=Duration("5m"))
    out = await call(
        skill,
        "cron_update",
        {"id": made["id"], "policy": {"jitter": None, "concurrency": None}},
    )
    assert "policy" not in out  # all defaults again: omitted, as the Go original's JSON
    assert (await skill._sched.get_job(made["id"])).policy is None


async def test_cron_next_applies_the_bounds(skill: Skill) -> None:
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    out = await call(
        skill,
        "cron_next",
        {
            "schedule_cron": "0 * * * *",
            "timezone": "UTC",
            "count": 10,
            "policy": {"start_at": rfc(start), "end_at": rfc(start + timedelta(hours=3))},
        },
    )
    assert [datetime.fromisoformat(t) for t in out["next_fire_times"]] == [
        start + timedelta(hours=h) for h in range(4)
    ]
    capped = await call(
        skill, "cron_next", {"schedule_interval": "1h", "policy": {"max_runs": 2}, "count": 5}
    )
    assert len(capped["next_fire_times"]) == 2
    refused = await call(
        skill, "cron_next", {"schedule_interval": "1h", "policy": {"overlap": "allow_all"}}
    )
    assert "policy.overlap: agents may not set this field" in refused["error"]


async def test_every_preview_is_the_one_iterator_with_the_bounds(tmp_path: Any) -> None:
    """describe, the presenter (cron_get/cron_list) and a used-up max_runs all agree."""
    now = datetime.now(UTC).replace(microsecond=0)
    store = Store(StoreConfig(url=f"sqlite:///{tmp_path}/jobs.db"))
    s = Scheduler(SchedulerConfig(store=store, location="UTC"))
    try:
        job = Job(
            id="j",
            name="j",
            schedule=Schedule(interval=Duration("1h")),
            action=Action(type="send_message", params={"session_id": "s", "message": "m"}),
            created_at=now,
            policy=Policy(start_at=now + timedelta(hours=10), end_at=now + timedelta(hours=12)),
        )
        saved = await s.add_job(job)
        expected = [now + timedelta(hours=h) for h in (10, 11, 12)]
        assert (await s.describe("j", fires=10)).next_fires == expected
        assert [datetime.fromisoformat(t) for t in fire_preview(saved, UTC, 10)] == expected

        def use_one_of_three(cur: Job) -> Job:
            cur.counts = RunCounts(started=1)
            cur.policy = Policy(max_runs=3, start_at=now + timedelta(hours=10))
            return cur

        used = await s.store.update("j", use_one_of_three)
        assert used is not None
        assert (await s.describe("j", fires=10)).next_fires == expected[:2]
        assert len(fire_preview(used, UTC, 10)) == 2
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("min_interval", "retry", "message"),
    [
        (
            "1m",
            {"attempts": 3, "backoff": "30s"},
            "policy.retry.backoff: 30s is shorter than "
            "agents may set (1m0s, the minimum interval between runs)",
        ),
        ("1h", {"attempts": 1, "backoff": "59m"}, "policy.retry.backoff: 59m0s is shorter"),
        (
            "1h",
            {"attempts": 1, "backoff": "1h", "max_backoff": "30m"},
            "policy.retry.max_backoff: retry max_backoff must be at least backoff",
        ),
    ],
)
async def test_agent_retry_backoff_below_min_interval_is_refused(
    min_interval: str, retry: dict[str, Any], message: str
) -> None:
    """A retry is a run: an agent's retries may not come sooner than min_interval allows."""
    s = make_skill(load_skill_config({"min_interval": min_interval}), start_scheduler=False)
    await s.init()
    try:
        args = {"name": "x", "schedule_cron": "0 * * * *", **SEND, "policy": {"retry": retry}}
        out = await call(s, "cron_create", args)
        assert "error" in out and message in out["error"], out
        assert await call(s, "cron_list", {}) == []
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("min_interval", "backoff", "max_backoff"),
    [("1m", "1m0s", "10m0s"), ("1h", "1h0m0s", "1h0m0s"), ("0", "10s", "10m0s")],
)
async def test_agent_retry_backoff_defaults_to_min_interval(
    min_interval: str, backoff: str, max_backoff: str
) -> None:
    """Without a backoff an agent's retries wait at least min_interval (and the cap follows)."""
    s = make_skill(load_skill_config({"min_interval": min_interval}), start_scheduler=False)
    await s.init()
    try:
        args = {
            "name": "x",
            "schedule_cron": "0 0 * * *",
            **SEND,
            "policy": {"retry": {"attempts": 3}},
        }
        out = await call(s, "cron_create", args)
        assert "error" not in out, out
        job = await s._sched.get_job(out["id"])
        assert job.policy is not None and job.policy.retry is not None
        assert (
            job.policy.retry.backoff.ns
            >= load_skill_config({"min_interval": min_interval}).min_interval_ns
        )
        got = await call(s, "cron_get", {"id": out["id"]})
        assert got["policy"]["retry"]["backoff"] == backoff
        assert got["policy"]["retry"]["max_backoff"] == max_backoff
        # the schema says so
        tool = s.get_tool("cron_create")
        assert tool is not None
        desc = tool.parameters["properties"]["policy"]["properties"]["retry"]["description"]
        assert f"backoff (at least {'10s' if min_interval == '0' else backoff}" in desc, desc
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("a\x1b]0;pwn\x07", "disable job: parameter 'note': pause note must not contain control"),
        (
            "x\u202ey",
            "parameter 'note': pause note must not contain control characters (found U+202E)",
        ),
    ],
)
async def test_agent_pause_note_with_control_characters_is_refused(
    skill: Skill, note: str, message: str
) -> None:
    made = await call(skill, "cron_create", {"name": "x", "schedule_cron": "0 * * * *", **SEND})
    out = await call(skill, "cron_disable", {"id": made["id"], "note": note})
    assert "error" in out and message in out["error"], out
    job = await skill._sched.get_job(made["id"])
    assert str(job.status) == "enabled" and job.pause is None
