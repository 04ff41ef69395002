"""Schedule policies and run history, on both embedded backends, with an injected clock.

The clock only moves when a test moves it; ``run_due()`` claims what is due at that instant and
``wait_idle()`` waits for the runs and their saved state, so every timeline here is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from omnicron_core import Action, ExecutionResult, Job, JobStatus, JobValidationError, Schedule
from omnicron_core._duration import Duration
from omnicron_core._models import decode_job, encode_job, job_to_builtins
from omnicron_core._runs import (
    ERROR_EXCERPT_CHARS,
    OUTPUT_EXCERPT_BYTES,
    Policy,
    RetryPolicy,
    RunCounts,
    RunOutcome,
    RunRecord,
    deterministic_jitter,
    fire_run_id,
)
from omnicron_core._schedule import next_fire_times
from omnicron_core._scheduler import Scheduler, SchedulerConfig
from omnicron_core._store import Store, StoreConfig

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, whole minute


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when


class Gate:
    """A handler whose runs wait until the test lets them finish (or fail)."""

    def __init__(self, *, block: bool = True) -> None:
        self.block = block
        self.started: list[Job] = []
        self.events: list[asyncio.Event] = []
        self.fail_first = 0
        self.fail_only = ""  # fail only this job's runs (when fail_first is set)

    async def __call__(self, job: Job) -> ExecutionResult:
        self.started.append(job)
        event = asyncio.Event()
        self.events.append(event)
        if self.block:
            await event.wait()
        if self.fail_first > 0 and self.fail_only in ("", job.id):
            self.fail_first -= 1
            return ExecutionResult.failed("boom")
        return ExecutionResult.ok("done")

    def release(self, index: int) -> None:
        self.events[index].set()

    def release_all(self) -> None:
        self.block = False
        for event in self.events:
            event.set()


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


Make = Callable[..., Scheduler]


@pytest.fixture
async def make(store_url: str, clock: Clock) -> AsyncIterator[Make]:
    made: list[Scheduler] = []

    def factory(handler: Any, *, url: str | None = None, **kw: Any) -> Scheduler:
        store = Store(StoreConfig(url=url or store_url))
        s = Scheduler(
            SchedulerConfig(store=store, handler=handler, clock=clock, location="UTC", **kw)
        )
        made.append(s)
        return s

    yield factory
    for s in made:
        for task in list(s._runs):
            task.cancel()
        await s.stop()
        await s.store.close()


def job(
    job_id: str = "j",
    *,
    every: str = "1m",
    cron: str = "",
    tz: str = "",
    policy: Policy | None = None,
    created: datetime = T0,
) -> Job:
    schedule = Schedule(cron=cron, timezone=tz) if cron else Schedule(interval=Duration(every))
    return Job(
        id=job_id,
        name=job_id,
        schedule=schedule,
        action=Action(type="send_message", session_id="s", message="m"),
        created_at=created,
        updated_at=created,
        policy=policy,
    )


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def outcomes(s: Scheduler, job_id: str = "j") -> list[tuple[str, str, datetime]]:
    """(outcome, trigger, fire time) oldest first."""
    records = await s.history(job_id, limit=1000)
    return [(str(r.outcome), str(r.trigger), r.scheduled_at) for r in reversed(records)]


def m(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


# -- compatibility ---------------------------------------------------------------------------


async def test_a_job_without_policies_keeps_the_go_json_shape() -> None:
    plain = job()
    data = job_to_builtins(plain)
    for key in ("policy", "pause", "finished", "next_fire_at", "active_runs", "buffered"):
        assert key not in data
    go = (
        b'{"id":"x","name":"x","schedule":{"cron":"0 9 * * *"},"action":{"type":"send_message",'
        b'"session_id":"s","message":"m"},"status":"enabled","created_at":"2026-01-01T00:00:00Z",'
        b'"updated_at":"2026-01-01T00:00:00Z","run_count":0}'
    )
    assert decode_job(go).policy is None
    with_policy = job(policy=Policy(overlap="buffer_one", jitter=Duration("10s")))
    back = decode_job(encode_job(with_policy))
    assert back.policy == with_policy.policy
    assert job_to_builtins(with_policy)["policy"] == {"overlap": "buffer_one", "jitter": "10s"}


async def test_policy_errors_name_the_field(make: Make) -> None:
    from omnicron_core import JobValidationError

    s = make(Gate())
    bad = job(policy=Policy(start_at=m(10), end_at=m(5)))
    with pytest.raises(JobValidationError) as info:
        await s.add_job(bad)
    assert info.value.field == "policy.end_at"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.policy\.overlap"):
        decode_job(b'{"id":"x","policy":{"overlap":"sometimes"}}')
    assert await s.store.count() == 0


# -- overlap -----------------------------------------------------------------------------------


async def test_overlap_skip_records_the_fires_that_came_during_a_run(
    make: Make, clock: Clock
) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job())
    clock.set(m(1))
    assert await s.run_due() == 1
    await settle()
    clock.set(m(2))
    assert await s.run_due() == 0  # still running: not claimed
    clock.set(m(2) + timedelta(seconds=30))
    gate.release(0)
    await s.wait_idle()
    assert await outcomes(s) == [
        ("succeeded", "schedule", m(1)),
        ("skipped", "schedule", m(2)),
    ]
    stored = await s.get_job("j")
    assert stored.status == JobStatus.ENABLED and stored.next_run_at == m(3)
    assert stored.counts is not None and (stored.counts.started, stored.counts.skipped) == (1, 1)


async def test_overlap_buffer_one_keeps_one_fire_and_skips_the_rest(
    make: Make, clock: Clock
) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job(policy=Policy(overlap="buffer_one")))
    clock.set(m(1))
    await s.run_due()
    await settle()
    for minute in (2, 3):
        clock.set(m(minute))
        assert await s.run_due() == 0
    stored = await s.get_job("j")
    assert [b.at for b in stored.buffered or ()] == [m(2)]
    assert stored.status == JobStatus.ENABLED and stored.active_runs == 1
    clock.set(m(3) + timedelta(seconds=10))
    gate.release(0)
    await settle()
    await asyncio.sleep(0.01)
    assert len(gate.started) == 2  # the buffered fire started when the first finished
    gate.release_all()
    await s.wait_idle()
    assert await outcomes(s) == [
        ("succeeded", "schedule", m(1)),
        ("skipped", "schedule", m(3)),
        ("succeeded", "schedule", m(2)),
    ]
    second = (await s.history("j", outcome="succeeded"))[0]
    assert second.lateness == 70 * 10**9  # started at 3:10 for its 2:00 fire
    stored = await s.get_job("j")
    assert stored.active_runs == 0 and stored.buffered is None


async def test_overlap_buffer_all_runs_every_fire_in_order_up_to_its_limit(
    make: Make, clock: Clock
) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job(policy=Policy(overlap="buffer_all", buffer_limit=2)))
    for minute in (1, 2, 3, 4):
        clock.set(m(minute))
        await s.run_due()
        await settle()
    gate.release_all()
    await s.wait_idle()
    got = await outcomes(s)
    assert [o for o in got if o[0] == "succeeded"] == [
        ("succeeded", "schedule", m(1)),
        ("succeeded", "schedule", m(2)),
        ("succeeded", "schedule", m(3)),
    ]
    assert ("skipped", "schedule", m(4)) in got
    assert [j.id for j in gate.started] == ["j", "j", "j"]


async def test_overlap_allow_all_runs_side_by_side_up_to_the_cap(make: Make, clock: Clock) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job(policy=Policy(overlap="allow_all", concurrency=2)))
    for minute in (1, 2, 3):
        clock.set(m(minute))
        await s.run_due()
        await settle()
    assert len(gate.started) == 2  # two at once; the third fire is over the cap
    stored = await s.get_job("j")
    assert stored.active_runs == 2
    gate.release_all()
    await s.wait_idle()
    assert await outcomes(s) == [
        ("succeeded", "schedule", m(1)),
        ("succeeded", "schedule", m(2)),
        ("skipped", "schedule", m(3)),
    ]
    assert (await s.get_job("j")).active_runs == 0


async def test_overlap_cancel_other_cancels_the_running_one(make: Make, clock: Clock) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job(policy=Policy(overlap="cancel_other")))
    clock.set(m(1))
    await s.run_due()
    await settle()
    clock.set(m(2))
    await s.run_due()
    await settle()
    assert len(gate.started) == 2
    gate.release_all()
    await s.wait_idle()
    records = {r.scheduled_at: r for r in await s.history("j")}
    assert records[m(1)].outcome == RunOutcome.CANCELLED
    assert "replaced" in records[m(1)].error
    assert records[m(2)].outcome == RunOutcome.SUCCEEDED
    stored = await s.get_job("j")
    assert stored.counts is not None and stored.counts.cancelled == 1
    assert stored.active_runs == 0


# -- catch-up ------------------------------------------------------------------------------------


async def test_catch_up_window_records_old_fires_missed_and_runs_the_latest(
    make: Make, clock: Clock
) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(job(policy=Policy(catch_up_window=Duration("3m30s"))))
    clock.set(m(10) + timedelta(seconds=5))
    assert await s.run_due() == 1
    await s.wait_idle()
    got = await outcomes(s)
    assert [o for o in got if o[0] == "missed"] == [
        ("missed", "catch_up", m(n)) for n in range(1, 7)
    ]
    assert [o for o in got if o[0] == "skipped"] == [
        ("skipped", "catch_up", m(n)) for n in (7, 8, 9)
    ]
    assert [o for o in got if o[0] == "succeeded"] == [("succeeded", "schedule", m(10))]
    assert len(gate.started) == 1
    assert (await s.get_job("j")).next_run_at == m(11)


async def test_catch_up_all_runs_each_fire_in_the_window_in_order(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(job(policy=Policy(catch_up_window=Duration("3m30s"), catch_up="all")))
    clock.set(m(10) + timedelta(seconds=5))
    await s.run_due()
    await s.wait_idle()
    ran = [(o[1], o[2]) for o in await outcomes(s) if o[0] == "succeeded"]
    assert ran == [("catch_up", m(7)), ("catch_up", m(8)), ("catch_up", m(9)), ("schedule", m(10))]
    assert len(gate.started) == 4


async def test_misfire_grace_is_the_default_window(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate, misfire_grace=timedelta(seconds=90))
    await s.add_job(job())
    clock.set(m(5) + timedelta(seconds=1))
    await s.run_due()
    await s.wait_idle()
    got = await outcomes(s)
    assert [o[2] for o in got if o[0] == "missed"] == [m(1), m(2), m(3)]
    assert [o[2] for o in got if o[0] == "succeeded"] == [m(5)]


async def test_restart_after_downtime_longer_than_the_window_is_no_storm(
    tmp_path: Path, clock: Clock
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    gate = Gate(block=False)
    first = Scheduler(SchedulerConfig(store=Store(StoreConfig(url=url)), handler=gate, clock=clock))
    await first.add_job(job(policy=Policy(catch_up_window=Duration("5m"))))
    await first.start()
    await first.stop()
    await first.store.close()
    clock.set(m(60) + timedelta(seconds=20))  # an hour down
    second = Scheduler(
        SchedulerConfig(store=Store(StoreConfig(url=url)), handler=gate, clock=clock)
    )
    await second.recover()
    assert await second.run_due() == 1
    await second.wait_idle()
    got = await outcomes(second)
    assert len(gate.started) == 1
    assert len([o for o in got if o[0] == "missed"]) == 55  # minutes 1..55
    assert len([o for o in got if o[0] == "skipped"]) == 4  # 56..59 coalesced
    assert [o[2] for o in got if o[0] == "succeeded"] == [m(60)]
    assert len(got) == 60  # exactly one record per fire
    await second.store.close()


async def test_recovery_marks_runs_of_every_policy_interrupted(make: Make, clock: Clock) -> None:
    """What a dead scheduler left (runs in flight under skip and allow_all, a buffered fire)
    is recorded by the next one: interrupted runs, a missed buffered fire, free jobs."""
    gate = Gate()  # never released: the first scheduler "dies" with its runs in flight
    first = make(gate)
    await first.add_job(job("s"))
    await first.add_job(job("a", policy=Policy(overlap="allow_all")))
    await first.add_job(job("b", policy=Policy(overlap="buffer_one")))
    for minute in (1, 2):
        clock.set(m(minute))
        await first.run_due()
        await settle()
    assert (await first.get_job("a")).active_runs == 2
    assert [f.at for f in (await first.get_job("b")).buffered or ()] == [m(2)]
    second = make(Gate(block=False), url=str(first.store.config.url))
    if first.store.config.url == "memory://":
        second.store = first.store  # the same memory store, as a restart would see a file
    clock.set(m(2) + timedelta(seconds=30))
    await second.recover()
    interrupted = {
        (r.job_id, r.scheduled_at)
        for job_id in "sab"
        for r in await second.history(job_id)
        if r.outcome == RunOutcome.INTERRUPTED
    }
    assert interrupted == {("s", m(1)), ("a", m(1)), ("a", m(2)), ("b", m(1))}
    missed = await second.history("b", outcome="missed")
    assert [r.scheduled_at for r in missed] == [m(2)]
    # s was running when its 12:02 fire came: that fire is still due, under its catch-up policy
    for job_id, count, following in (("s", 1, m(2)), ("a", 2, m(3)), ("b", 1, m(3))):
        stored = await second.get_job(job_id)
        assert stored.status == JobStatus.ENABLED and stored.active_runs == 0
        assert stored.buffered is None
        assert stored.counts is not None and stored.counts.interrupted == count
        assert stored.next_run_at == following


# -- jitter ---------------------------------------------------------------------------------------


async def test_jitter_is_deterministic_and_never_past_the_next_fire(
    make: Make, clock: Clock
) -> None:
    s = make(Gate(block=False))
    a = await s.add_job(job("a", policy=Policy(jitter=Duration("20s"))))
    big = await s.add_job(job("b", policy=Policy(jitter=Duration("1h"))))
    again = make(Gate(block=False), url="memory://")
    a2 = await again.add_job(job("a", policy=Policy(jitter=Duration("20s"))))
    assert a.next_run_at == a2.next_run_at  # same (job, fire time): same instant
    assert a.next_fire_at == m(1) or (a.next_fire_at is None and a.next_run_at == m(1))
    assert m(1) <= (a.next_run_at or T0) < m(1) + timedelta(seconds=20)
    assert big.next_run_at is not None and m(1) <= big.next_run_at < m(2)
    # the run answers the nominal fire; the next jitter is computed for the next fire
    clock.set(big.next_run_at)
    await s.run_due()
    await s.wait_idle()
    record = (await s.history("b"))[0]
    assert record.scheduled_at == m(1) and record.run_id == fire_run_id("b", m(1))
    stored = await s.get_job("b")
    assert stored.next_run_at is not None and m(2) <= stored.next_run_at < m(3)


# -- bounds ---------------------------------------------------------------------------------------


async def test_bounds_start_at_end_at_and_max_runs(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    started = await s.add_job(job("late", policy=Policy(start_at=m(10) + timedelta(seconds=1))))
    assert started.next_run_at == m(11)
    await s.add_job(job("ends", policy=Policy(end_at=m(2))))
    await s.add_job(job("twice", policy=Policy(max_runs=2)))
    for minute in (1, 2, 3, 4):
        clock.set(m(minute))
        await s.run_due()
        await s.wait_idle()
    ends = await s.get_job("ends")
    assert ends.status == JobStatus.DISABLED and ends.finished == "end_at reached"
    assert ends.run_count == 2 and ends.next_run_at is None
    twice = await s.get_job("twice")
    assert twice.status == JobStatus.DISABLED and twice.finished.startswith("max_runs reached")
    assert twice.run_count == 2
    assert [j.id for j in gate.started].count("twice") == 2
    assert await s.store.count() == 3  # finished, not deleted
    description = await s.describe("twice")
    assert description.next_fires == []


# -- timeout and retries --------------------------------------------------------------------------


async def test_timeout_fails_the_run(make: Make, clock: Clock) -> None:
    gate = Gate()  # never released
    s = make(gate)
    await s.add_job(job(policy=Policy(timeout=Duration("20ms"))))
    clock.set(m(1))
    await s.run_due()
    await s.wait_idle()
    record = (await s.history("j"))[0]
    assert record.outcome == RunOutcome.FAILED and record.error == "timed out after 20ms"
    assert (await s.get_job("j")).status == JobStatus.ENABLED


async def test_retries_record_each_attempt(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    gate.fail_first = 2
    s = make(gate)
    retry = RetryPolicy(attempts=3, backoff=Duration("5ms"), max_backoff=Duration("20ms"))
    await s.add_job(job(policy=Policy(retry=retry)))
    clock.set(m(1))
    await s.run_due()
    await s.wait_idle()
    records = list(reversed(await s.history("j")))
    assert [(r.attempt, str(r.trigger), str(r.outcome)) for r in records] == [
        (1, "schedule", "failed"),
        (2, "retry", "failed"),
        (3, "retry", "succeeded"),
    ]
    assert {r.scheduled_at for r in records} == {m(1)}
    assert records[2].run_id == fire_run_id("j", m(1), 3)
    stored = await s.get_job("j")
    assert stored.counts is not None
    assert (stored.counts.retried, stored.counts.failed, stored.counts.succeeded) == (2, 2, 1)
    assert stored.status == JobStatus.ENABLED and stored.last_error == ""


async def test_retries_stop_after_the_last_attempt(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    gate.fail_first = 5
    s = make(gate)
    await s.add_job(job(policy=Policy(retry=RetryPolicy(attempts=1, backoff=Duration("1ms")))))
    clock.set(m(1))
    await s.run_due()
    await s.wait_idle()
    assert [r.outcome for r in await s.history("j")] == ["failed", "failed"]
    assert len(gate.started) == 2


# -- pause and resume -----------------------------------------------------------------------------


async def test_pause_with_a_note_manual_trigger_and_resume_from_now(
    make: Make, clock: Clock
) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(job())
    clock.set(m(0) + timedelta(seconds=30))
    paused = await s.pause_job("j", note="vendor outage", by="ops@example")
    assert paused.status == JobStatus.DISABLED and paused.pause is not None
    assert (paused.pause.by, paused.pause.note, paused.pause.at) == (
        "ops@example",
        "vendor outage",
        m(0) + timedelta(seconds=30),
    )
    result = await s.trigger_job("j")  # a manual trigger still works while paused
    assert result.success
    clock.set(m(10) + timedelta(seconds=5))
    assert await s.run_due() == 0
    resumed = await s.resume_job("j")
    assert resumed.pause is None and resumed.next_run_at == m(11)
    assert [(o[0], o[1]) for o in await outcomes(s)] == [("succeeded", "manual")]


async def test_resume_with_catch_up_applies_the_window(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(job(policy=Policy(catch_up_window=Duration("2m30s"))))
    clock.set(m(0) + timedelta(seconds=30))
    await s.pause_job("j", note="maintenance")
    clock.set(m(10) + timedelta(seconds=5))
    resumed = await s.resume_job("j", catch_up=True)
    assert resumed.next_run_at == m(1)
    await s.run_due()
    await s.wait_idle()
    got = await outcomes(s)
    assert [o[2] for o in got if o[0] == "missed"] == [m(n) for n in range(1, 8)]
    assert [o[2] for o in got if o[0] == "succeeded"] == [m(10)]


# -- backfill --------------------------------------------------------------------------------------


async def test_backfill_is_idempotent(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(job(created=T0 - timedelta(hours=1)))
    clock.set(m(1))
    await s.run_due()  # the 12:01 fire runs on schedule
    await s.wait_idle()
    first = await s.backfill("j", m(-3), m(1), rate=1000)
    assert (first.fires, first.started, first.already_recorded) == (5, 4, 1)
    again = await s.backfill("j", m(-3), m(1), rate=1000)
    assert (again.fires, again.started, again.already_recorded) == (5, 0, 5)
    got = await outcomes(s)
    assert sorted(o[2] for o in got) == [m(n) for n in range(-3, 2)]
    assert {o[1] for o in got if o[2] < m(1)} == {"backfill"}
    assert len(gate.started) == 5


async def test_backfill_refuses_an_unbounded_range(make: Make) -> None:
    s = make(Gate(block=False))
    await s.add_job(job(every="1s", created=T0 - timedelta(days=2)))
    with pytest.raises(ValueError, match="more than"):
        await s.backfill("j", T0 - timedelta(days=1), T0)
    with pytest.raises(ValueError, match="before its start"):
        await s.backfill("j", T0, T0 - timedelta(days=1))


# -- history, describe, retention -------------------------------------------------------------------


async def test_one_record_per_fire_even_when_claimed_twice(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(job())
    clock.set(m(1))
    await asyncio.gather(s.run_due(), s.run_due())
    await s.wait_idle()
    assert len(await s.history("j")) == 1 and len(gate.started) == 1


async def test_describe_and_history_paging(make: Make, clock: Clock) -> None:
    s = make(Gate(block=False))
    await s.add_job(job())
    for minute in range(1, 8):
        clock.set(m(minute))
        await s.run_due()
        await s.wait_idle()
    d = await s.describe("j", fires=3, runs=2)
    assert d.next_fires == [m(8), m(9), m(10)]
    assert [r.scheduled_at for r in d.recent_runs] == [m(7), m(6)]
    page1 = await s.history("j", limit=4)
    page2 = await s.history("j", limit=4, before=page1[-1].seq)
    assert [r.scheduled_at for r in page1 + page2] == [m(n) for n in range(7, 0, -1)]
    assert await s.history("j", outcome="failed") == []


async def test_retention_keeps_the_last_n_and_counters_survive(make: Make, clock: Clock) -> None:
    s = make(Gate(block=False), history_keep=3, history_max_age=timedelta(minutes=30))
    await s.add_job(job())
    for minute in range(1, 11):
        clock.set(m(minute))
        await s.run_due()
        await s.wait_idle()
    assert await s.prune_history(batch=2) == 7
    assert [r.scheduled_at for r in await s.history("j")] == [m(10), m(9), m(8)]
    stored = await s.get_job("j")
    assert stored.counts is not None and stored.counts.succeeded == 10
    assert stored.run_count == 10
    clock.set(m(60))
    assert await s.prune_history() == 3  # older than 30 minutes
    assert await s.store.count_runs("j") == 0


# -- DST -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "cron", "start", "hours"),
    [
        # spring forward: 02:30 does not exist on 2026-03-29 in Berlin
        ("Europe/Berlin", "30 2 * * *", datetime(2026, 3, 27, 12, tzinfo=UTC), 96),
        # fall back: 01:30 happens twice on 2026-11-01 in New York
        ("America/New_York", "30 1 * * *", datetime(2026, 10, 30, 12, tzinfo=UTC), 96),
    ],
)
async def test_dst_transitions_fire_once_per_fire_time(
    make: Make, clock: Clock, zone: str, cron: str, start: datetime, hours: int
) -> None:
    clock.set(start)
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(
        job(cron=cron, tz=zone, created=start, policy=Policy(catch_up_window=Duration("20m")))
    )
    step = timedelta(minutes=10)
    end = start + timedelta(hours=hours)
    while clock.now < end:
        clock.advance(minutes=10)
        await s.run_due()
        await s.wait_idle()
    expected = next_fire_times(
        Schedule(cron=cron, timezone=zone), after=start, count=10, location="UTC"
    )
    expected = [e.astimezone(UTC) for e in expected if e <= end]
    records: list[RunRecord] = list(reversed(await s.history("j", limit=100)))
    assert [r.scheduled_at for r in records] == expected
    assert all(r.outcome == RunOutcome.SUCCEEDED for r in records)
    assert all(
        r.lateness is not None and r.lateness < step // timedelta(microseconds=1) * 1000
        for r in records
    )
    assert len({r.run_id for r in records}) == len(records) == len(gate.started)


# -- crash -------------------------------------------------------------------------------------------


def test_kill_9_mid_run_leaves_the_record_interrupted_and_the_next_fire_follows_policy(
    tmp_path: Path,
) -> None:
    """A real process is SIGKILLed during a run: after a restart that run's record is
    ``interrupted`` (written by recovery, not lost), and the job fires again under its policy:
    the fires of the downtime older than its catch-up window are recorded missed, and one run
    follows."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    db = tmp_path / "jobs.db"
    script = textwrap.dedent(
        f"""
        import asyncio
        from omnicron_core import *
        from omnicron_core._runs import Policy
        from omnicron_core._duration import Duration
        async def handler(job):
            print("running", flush=True)
            await asyncio.sleep(60)
            return ExecutionResult.ok()
        async def main():
            s = Scheduler(SchedulerConfig(store=Store(StoreConfig(url="sqlite:///{db}")),
                                          handler=handler, location="UTC"))
            job = new_job("iv", "iv", Schedule(interval=Duration("100ms")),
                          Action(type="send_message", session_id="s", message="m"))
            job.policy = Policy(catch_up_window=Duration("300ms"))
            await s.add_job(job)
            await s.start()
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "running":  # log lines come first
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    async def check() -> None:
        store = Store(StoreConfig(url=f"sqlite:///{db}"))
        crashed = await store.get("iv")  # what the crash left: the run in flight, in the job
        assert crashed.status == JobStatus.RUNNING and crashed.in_flight is not None
        (entry,) = crashed.in_flight
        assert await store.history("iv") == []  # a skip-policy run's record comes at its end
        await asyncio.sleep(1.0)  # downtime: longer than the 300ms window
        started: list[datetime] = []
        release = asyncio.Event()

        async def handler(job: Job) -> ExecutionResult:
            started.append(datetime.now(UTC))
            await release.wait()
            return ExecutionResult.ok()

        s = Scheduler(SchedulerConfig(store=store, handler=handler, location="UTC"))
        await s.start()
        try:
            async with asyncio.timeout(10):
                while not started:
                    await asyncio.sleep(0.01)
            killed = await store.get_run(fire_run_id("iv", entry.at))
            assert killed is not None and killed.outcome == RunOutcome.INTERRUPTED
            assert killed.error == "interrupted: the scheduler stopped during the run"
            job_now = await s.get_job("iv")
            assert job_now.counts is not None and job_now.counts.interrupted == 1
            records = await s.history("iv", limit=100)
            assert any(r.outcome == RunOutcome.MISSED for r in records)
            assert not any(r.outcome == RunOutcome.RUNNING for r in records)
            running = await s.get_job("iv")  # the new run is in flight, in the job row
            assert running.status == JobStatus.RUNNING and running.active_runs == 1
            assert len(started) == 1  # no storm: one run after the restart
            release.set()
        finally:
            await s.stop()
            await store.close()

    asyncio.run(check())


# -- metrics -----------------------------------------------------------------------------------------


async def test_metrics_count_missed_skipped_retried_and_cancelled_fires(clock: Clock) -> None:
    from omnicron_core import Registry, get_plugin_manager
    from omnicron_core.metrics import MetricsPlugin

    plugin = MetricsPlugin()
    registry = Registry(get_plugin_manager(plugins=[plugin]))
    gate = Gate()
    gate.fail_first, gate.fail_only = 1, "c"
    s = Scheduler(
        SchedulerConfig(
            store=Store(StoreConfig(url="memory://")),
            handler=gate,
            clock=clock,
            location="UTC",
            registry=registry,
        )
    )
    retry = RetryPolicy(attempts=1, backoff=Duration("1ms"))
    await s.add_job(
        job(
            "c", policy=Policy(overlap="cancel_other", catch_up_window=Duration("90s"), retry=retry)
        )
    )
    await s.add_job(job("k"))
    clock.set(m(3) + timedelta(seconds=1))  # c: 1:00 missed, 2:00 coalesced, 3:00 runs
    await s.run_due()
    await settle()
    clock.set(m(4))
    await s.run_due()  # c: 4:00 cancels 3:00; k: still running, so its 4:00 is claimed later
    await settle()
    gate.release_all()
    await s.wait_idle()
    get = plugin.registry.get_sample_value
    assert get("omnicron_job_missed_fires_total", {"trigger": "catch_up"}) == 1.0
    assert (
        get("omnicron_job_skipped_fires_total", {"reason": "coalesced"}) == 3.0
    )  # c 2:00, k 1:00 2:00
    assert get("omnicron_job_skipped_fires_total", {"reason": "overlap"}) == 1.0  # k 4:00
    assert get("omnicron_job_cancelled_runs_total") == 1.0
    assert get("omnicron_job_retries_total") == 1.0  # c 4:00 failed once, retried
    await s.stop()


# -- audit: retry backoff, backfill overlap, catch-up cap, bad update -------------------------


async def test_retry_backoff_doubles_is_capped_and_jitters_deterministically(
    make: Make, clock: Clock
) -> None:
    gate = Gate(block=False)
    gate.fail_first = 3
    s = make(gate)
    retry = RetryPolicy(
        attempts=3, backoff=Duration("4ms"), max_backoff=Duration("10ms"), jitter=0.5
    )
    await s.add_job(job(policy=Policy(retry=retry)))
    clock.set(m(1))  # the clock stands still: each attempt is due at m(1) + its delay
    await s.run_due()
    await s.wait_idle()
    records = list(reversed(await s.history("j")))
    assert [(r.attempt, str(r.outcome)) for r in records] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "succeeded"),
    ]
    for record, base_ms in zip(records[1:], (4, 8, 10), strict=True):  # doubled, then capped
        base = timedelta(milliseconds=base_ms)
        extra = deterministic_jitter("j", m(1), base * 0.5, salt=str(record.attempt - 1))
        assert record.due_at == m(1) + base + extra
        assert timedelta(0) <= extra < base * 0.5
    # each attempt's due times differ (the jitter depends on the attempt), recomputable
    assert len({r.due_at for r in records[1:]}) == 3


async def test_backfill_overlap_skip_and_allow_all(make: Make, clock: Clock) -> None:
    gate = Gate()
    s = make(gate)
    await s.add_job(job(created=m(-10), policy=Policy(concurrency=2)))
    clock.set(m(-1) + timedelta(seconds=30))
    task = asyncio.ensure_future(s.backfill("j", m(-9), m(-7), overlap="skip", rate=1000))
    while not gate.started:
        await asyncio.sleep(0.001)
    while not task.done() and len(await s.history("j", outcome="skipped")) < 2:
        await asyncio.sleep(0.001)
    gate.release_all()
    skipped = await task
    assert (skipped.fires, skipped.started, skipped.skipped) == (3, 1, 2)
    assert [(o[0], o[2]) for o in await outcomes(s)] == [
        ("succeeded", m(-9)),
        ("skipped", m(-8)),
        ("skipped", m(-7)),
    ]
    # allow_all: up to the job's concurrency at once
    gate2 = Gate()
    s2 = make(gate2, url="memory://")
    await s2.add_job(job(created=m(-10), policy=Policy(concurrency=2)))
    task2 = asyncio.ensure_future(s2.backfill("j", m(-9), m(-6), overlap="allow_all", rate=1000))
    while len(gate2.started) < 2:
        await asyncio.sleep(0.001)
    for _ in range(20):
        await settle()
        await asyncio.sleep(0.002)
    assert len(gate2.started) == 2  # the third waits for a slot
    gate2.release_all()
    both = await task2
    assert (both.fires, both.started, both.skipped) == (4, 4, 0)
    with pytest.raises(ValueError, match="overlap must be"):
        await s.backfill("j", m(-9), m(-7), overlap="cancel_other")


async def test_catch_up_all_is_capped_by_the_buffer_limit(make: Make, clock: Clock) -> None:
    gate = Gate(block=False)
    s = make(gate)
    await s.add_job(
        job(policy=Policy(catch_up_window=Duration("1h"), catch_up="all", buffer_limit=2))
    )
    clock.set(m(6) + timedelta(seconds=5))  # fires 1..6 due at once
    await s.run_due()
    await s.wait_idle()
    got = await outcomes(s)
    ran = [o[2] for o in got if o[0] == "succeeded"]
    full = [o[2] for o in got if o[0] == "skipped"]
    assert ran == [m(1), m(2), m(3)]  # one runs, two wait (the cap), in order
    assert sorted(full) == [m(4), m(5), m(6)]
    assert len(got) == 6 and len(gate.started) == 3


async def test_bad_policy_on_update_is_located_and_nothing_is_saved(make: Make) -> None:
    s = make(Gate())
    await s.add_job(job(policy=Policy(max_runs=5)))
    bad = job(policy=Policy(start_at=m(10), end_at=m(5)))
    with pytest.raises(JobValidationError) as info:
        await s.update_job(bad)
    assert info.value.field == "policy.end_at"
    stored = await s.get_job("j")
    assert stored.policy == Policy(max_runs=5)
    neg = job(policy=Policy(timeout=Duration(0)))
    with pytest.raises(JobValidationError) as info:
        await s.update_job(neg)
    assert info.value.field == "policy.timeout"
    assert (await s.get_job("j")).policy == Policy(max_runs=5)


async def test_retention_prunes_in_the_background(make: Make, clock: Clock) -> None:
    s = make(Gate(block=False), history_keep=2, history_prune_interval=timedelta(milliseconds=5))
    await s.add_job(job())
    for minute in range(1, 6):
        clock.set(m(minute))
        await s.run_due()
        await s.wait_idle()
    assert await s.store.count_runs("j") == 5
    await s.start()  # nothing else is due at the standing clock; the prune task runs
    async with asyncio.timeout(10):
        while await s.store.count_runs("j") > 2:
            await asyncio.sleep(0.005)
    assert [r.scheduled_at for r in await s.history("j")] == [m(5), m(4)]
    assert (await s.get_job("j")).counts == RunCounts(started=5, succeeded=5)


async def test_records_keep_a_bounded_excerpt_of_output_and_error(make: Make, clock: Clock) -> None:
    async def loud(j: Job) -> ExecutionResult:
        if j.id == "out":
            return ExecutionResult.ok({"text": "é" * 10_000})
        return ExecutionResult.failed("x" * 10_000)

    s = make(loud)
    await s.add_job(job("out"))
    await s.add_job(job("err"))
    clock.set(m(1))
    await s.run_due()
    await s.wait_idle()
    (out,) = await s.history("out")
    (err,) = await s.history("err")
    assert 0 < len(out.output.encode()) <= OUTPUT_EXCERPT_BYTES
    assert out.output.startswith('{"text":"éé')
    assert 0 < len(err.error) <= ERROR_EXCERPT_CHARS and err.error.startswith("xxx")
