"""Scheduler behaviour against real timers and real SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from omnicron_core import (
    Action,
    ActionExecutor,
    Duration,
    ExecutionResult,
    Job,
    JobNotFoundError,
    JobStatus,
    JobValidationError,
    Registry,
    RunInfo,
    Schedule,
    Scheduler,
    SchedulerAlreadyRunningError,
    SchedulerConfig,
    Store,
    StoreConfig,
    get_plugin_manager,
    hookimpl,
    new_job,
)


def msg_job(job_id: str, schedule: Schedule, **kw: Any) -> Job:
    return new_job(
        job_id,
        f"job {job_id}",
        schedule,
        Action(type="send_message", session_id="s", message="hello"),
        **kw,
    )


def soon(ms: int) -> datetime:
    return datetime.now(UTC) + timedelta(milliseconds=ms)


class Recorder:
    """A handler that records runs; optionally slow or failing."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.runs: list[tuple[str, datetime]] = []
        self.delay = delay
        self.fail = fail
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, job: Job) -> ExecutionResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.runs.append((job.id, datetime.now(UTC)))
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return ExecutionResult.failed("it broke") if self.fail else ExecutionResult.ok("done")
        finally:
            self.in_flight -= 1

    def count(self, job_id: str) -> int:
        return sum(1 for j, _ in self.runs if j == job_id)


async def wait_for(predicate: Callable[[], Any], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def stored_when(s: Scheduler, job_id: str, predicate: Callable[[Job], bool]) -> Job:
    """Poll the store until the job's saved state satisfies ``predicate`` (5 s at most)."""
    async with asyncio.timeout(5):
        while not predicate(job := await s.get_job(job_id)):
            await asyncio.sleep(0.01)
    return job


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/jobs.db"


@pytest.fixture
async def make(db_url: str) -> AsyncIterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def factory(handler: Any = None, url: str | None = None, **kw: Any) -> Scheduler:
        store = Store(StoreConfig(url=url or db_url))
        s = Scheduler(SchedulerConfig(store=store, handler=handler, location="UTC", **kw))
        made.append(s)
        return s

    yield factory
    for s in made:
        await s.stop()
        await s.store.close()


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda j: setattr(j, "id", ""), "job ID is required"),
        (lambda j: setattr(j, "name", ""), "job name is required"),
        (
            lambda j: setattr(j, "schedule", Schedule()),
            "schedule is required (cron, once, or interval)",
        ),
        (
            lambda j: setattr(j, "schedule", Schedule(cron="* * * * *", interval=Duration("1m"))),
            "only one schedule type allowed (cron, once, or interval)",
        ),
        (
            lambda j: j.action.params.__setitem__("session_id", ""),
            "invalid action: session_id is required for send_message action",
        ),
        (
            lambda j: j.action.params.__setitem__("message", ""),
            "invalid action: message is required for send_message action",
        ),
    ],
)
async def test_validation_messages_of_the_original(
    make: Callable[..., Scheduler], mutate: Callable[[Job], None], message: str
) -> None:
    s = make()
    job = msg_job("a", Schedule(interval=Duration("1m")))
    mutate(job)
    with pytest.raises(JobValidationError) as info:
        await s.add_job(job)
    assert str(info.value) == message
    assert await s.store.count() == 0


@pytest.mark.parametrize(
    ("schedule", "field", "fragment"),
    [
        (Schedule(cron="0 25 * * *"), "schedule.cron", "hour"),
        (Schedule(cron="not a cron"), "schedule.cron", "not a cron"),
        (Schedule(cron="0 0 30 2 *"), "schedule.cron", "never"),
        (Schedule(interval=Duration(5)), "schedule.interval", "too short"),
        (Schedule(cron="0 9 * * *", timezone="Mars/Olympus"), "schedule.timezone", "Mars/Olympus"),
    ],
)
async def test_bad_schedules_are_refused_before_saving(
    make: Callable[..., Scheduler], schedule: Schedule, field: str, fragment: str
) -> None:
    s = make()
    await s.add_job(msg_job("keep", Schedule(interval=Duration("1m"))))
    with pytest.raises(JobValidationError) as info:
        await s.add_job(msg_job("bad", schedule))
    assert info.value.field == field and fragment in str(info.value)
    assert [j.id for j in await s.list_jobs()] == ["keep"]


async def test_unknown_action_type_lists_installed_types(make: Callable[..., Scheduler]) -> None:
    s = make()
    job = new_job("x", "x", Schedule(interval=Duration("1m")), Action(type="fax"))
    with pytest.raises(
        JobValidationError,
        match=r"invalid action type: fax; installed action types: .*call_tool.*send_message",
    ):
        await s.add_job(job)
    assert await s.store.count() == 0


async def test_bulk_add_is_all_or_nothing(make: Callable[..., Scheduler]) -> None:
    s = make()
    good = [msg_job(f"g{i}", Schedule(interval=Duration("1m"))) for i in range(3)]
    bad = msg_job("bad", Schedule(cron="99 * * * *"))
    with pytest.raises(JobValidationError) as info:
        await s.add_jobs([*good, bad])
    assert info.value.field is not None and info.value.field.startswith("[3]")
    assert await s.store.count() == 0
    added = await s.add_jobs(good)
    assert len(added) == 3 and all(j.next_run_at is not None for j in added)
    assert await s.store.count() == 3


# -- next_run_at ------------------------------------------------------------------------


async def test_next_run_at_is_real_for_every_kind_and_never_zero(
    make: Callable[..., Scheduler],
) -> None:
    s = make()
    cron = await s.add_job(msg_job("cron", Schedule(cron="0 9 * * *")))
    assert cron.next_run_at is not None and cron.next_run_at > datetime.now(UTC)
    assert cron.next_run_at.astimezone(UTC).hour == 9 and cron.next_run_at.minute == 0
    interval = await s.add_job(msg_job("iv", Schedule(interval=Duration("90m"))))
    assert interval.created_at is not None
    assert interval.next_run_at == interval.created_at + timedelta(minutes=90)
    at = soon(60_000)
    once = await s.add_job(msg_job("once", Schedule(once=at)))
    assert once.next_run_at == at
    await s.start()
    for job in await s.list_jobs():
        assert job.next_run_at is not None and job.next_run_at.year > 2000


async def test_job_timezone_overrides_scheduler_location(make: Callable[..., Scheduler]) -> None:
    s = make()
    job = await s.add_job(msg_job("tz", Schedule(cron="0 9 * * *", timezone="Asia/Kolkata")))
    assert job.next_run_at is not None
    local = job.next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata"))
    assert (local.hour, local.minute) == (9, 0)


# -- running ----------------------------------------------------------------------------


async def test_one_time_job_runs_once_and_ends_disabled(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec)
    await s.add_job(msg_job("once", Schedule(once=soon(100))))
    await s.start()
    await wait_for(lambda: rec.count("once") == 1)
    await asyncio.sleep(0.4)
    assert rec.count("once") == 1
    job = await s.get_job("once")
    assert job.status is JobStatus.DISABLED and job.next_run_at is None and job.run_count == 1


async def test_interval_first_run_is_one_interval_after_creation(
    make: Callable[..., Scheduler],
) -> None:
    rec = Recorder()
    s = make(rec)
    job = await s.add_job(msg_job("iv", Schedule(interval=Duration("300ms"))))
    assert job.created_at is not None
    await s.start()
    await wait_for(lambda: rec.count("iv") >= 3)
    first = rec.runs[0][1]
    assert first >= job.created_at + timedelta(milliseconds=300)
    stored = await s.get_job("iv")
    assert stored.status is JobStatus.ENABLED and stored.run_count >= 3


async def test_failure_keeps_job_enabled_and_success_clears_error(
    make: Callable[..., Scheduler],
) -> None:
    rec = Recorder(fail=True)
    s = make(rec)
    await s.add_job(msg_job("iv", Schedule(interval=Duration("150ms"))))
    await s.start()
    job = await stored_when(s, "iv", lambda j: j.run_count >= 1 and j.status is JobStatus.ENABLED)
    assert job.last_error == "it broke"
    rec.fail = False
    n = rec.count("iv")
    job = await stored_when(s, "iv", lambda j: j.run_count >= n + 2)
    assert job.last_error == ""


async def test_a_run_in_progress_makes_the_next_tick_skip(make: Callable[..., Scheduler]) -> None:
    rec = Recorder(delay=0.35)
    s = make(rec)
    await s.add_job(msg_job("slow", Schedule(interval=Duration("100ms"))))
    await s.start()
    await asyncio.sleep(1.3)
    await s.stop()
    assert rec.max_in_flight == 1
    # ~1.2 s of firing at 100 ms with 350 ms runs: at most 4 runs, not 12
    assert 2 <= rec.count("slow") <= 4


async def test_status_is_running_during_a_run(make: Callable[..., Scheduler]) -> None:
    rec = Recorder(delay=0.3)
    s = make(rec)
    await s.add_job(msg_job("once", Schedule(once=soon(50))))
    await s.start()
    await wait_for(lambda: rec.in_flight == 1)
    assert (await s.get_job("once")).status is JobStatus.RUNNING
    assert [j.id for j in await s.store.list_by_status("running")] == ["once"]


async def test_trigger_runs_now_without_start_even_disabled(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec)
    added = await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
    await s.disable_job("a")
    result = await s.trigger_job("a")
    assert result.success and result.output == "done"
    assert result.started_at is not None and result.finished_at is not None
    assert result.duration >= 0 and result.scheduled_at is None
    job = await s.get_job("a")
    assert job.run_count == 1 and job.last_run_at == result.finished_at
    assert job.status is JobStatus.DISABLED and job.next_run_at is None
    assert not s.is_running()
    rec.fail = True
    failed = await s.trigger_job("a")
    assert not failed.success and (await s.get_job("a")).last_error == "it broke"
    with pytest.raises(JobNotFoundError):
        await s.trigger_job("ghost")
    assert added.id == "a"


async def test_trigger_does_not_move_next_run_at(make: Callable[..., Scheduler]) -> None:
    s = make(Recorder())
    added = await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
    await s.trigger_job("a")
    assert (await s.get_job("a")).next_run_at == added.next_run_at


async def test_remove_unknown_is_fine_and_removed_job_stops(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec)
    await s.remove_job("never-existed")
    await s.add_job(msg_job("iv", Schedule(interval=Duration("100ms"))))
    await s.start()
    await wait_for(lambda: rec.count("iv") >= 1)
    await s.remove_job("iv")
    n = rec.count("iv")
    await asyncio.sleep(0.35)
    assert rec.count("iv") <= n + 1  # at most a run already claimed
    with pytest.raises(JobNotFoundError):
        await s.get_job("iv")


async def test_enable_disable(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec)
    await s.add_job(msg_job("iv", Schedule(interval=Duration("100ms"))))
    await s.start()
    disabled = await s.disable_job("iv")
    assert disabled.status is JobStatus.DISABLED and disabled.next_run_at is None
    assert (await s.disable_job("iv")).status is JobStatus.DISABLED  # no-op
    await asyncio.sleep(0.3)
    assert rec.count("iv") == 0
    enabled = await s.enable_job("iv")
    assert enabled.status is JobStatus.ENABLED and enabled.next_run_at is not None
    await wait_for(lambda: rec.count("iv") >= 1)
    with pytest.raises(JobNotFoundError):
        await s.enable_job("ghost")
    with pytest.raises(JobNotFoundError):
        await s.disable_job("ghost")


async def test_update_keeps_run_state_and_position(make: Callable[..., Scheduler]) -> None:
    s = make(Recorder())
    added = await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
    await s.trigger_job("a")
    job = await s.get_job("a")
    job.name = "renamed"
    job.run_count = 999  # run state is the scheduler's, not the caller's
    updated = await s.update_job(job)
    assert updated.name == "renamed" and updated.run_count == 1
    assert updated.next_run_at == added.next_run_at
    assert updated.updated_at is not None and added.updated_at is not None
    assert updated.updated_at > added.updated_at
    job.schedule = Schedule(cron="30 10 * * *")
    moved = await s.update_job(job)
    assert moved.next_run_at is not None and (moved.next_run_at.hour, moved.next_run_at.minute) == (
        10,
        30,
    )
    job.schedule = Schedule(cron="61 * * * *")
    with pytest.raises(JobValidationError):
        await s.update_job(job)
    assert (await s.get_job("a")).schedule.cron == "30 10 * * *"
    with pytest.raises(JobNotFoundError):
        await s.update_job(msg_job("ghost", Schedule(cron="0 9 * * *")))


@pytest.mark.parametrize("url", ["memory://", None])
async def test_no_polling_an_added_job_wakes_the_sleeping_loop(
    make: Callable[..., Scheduler], url: str | None
) -> None:
    rec = Recorder()
    # no re-check could fire the job in time: an hour between external checks (SQLite), and
    # the loop's own clock re-check is 60 s away; only the wake-up from add_job can
    s = make(rec, url=url, external_check=3600)
    await s.start()  # empty store: the loop sleeps until woken
    await wait_for(lambda: s._wake_at is not None)
    assert s._wake_at is not None
    assert (s._wake_at - datetime.now(UTC)).total_seconds() > 30  # asleep for long
    await s.add_job(msg_job("once", Schedule(once=soon(50))))
    await wait_for(lambda: rec.count("once") == 1, within=10.0)


async def test_stop_then_start_fires_again(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec)
    await s.add_job(msg_job("iv", Schedule(interval=Duration("100ms"))))
    await s.start()
    with pytest.raises(SchedulerAlreadyRunningError, match="scheduler already running"):
        await s.start()
    await wait_for(lambda: rec.count("iv") >= 1)
    await s.stop()
    assert not s.is_running()
    n = rec.count("iv")
    await asyncio.sleep(0.3)
    assert rec.count("iv") == n
    await s.start()
    await wait_for(lambda: rec.count("iv") >= n + 2)


async def test_handler_set_before_or_after_start_is_used(make: Callable[..., Scheduler]) -> None:
    first, second = Recorder(), Recorder()
    s = make()
    s.set_handler(first)
    await s.add_job(msg_job("iv", Schedule(interval=Duration("100ms"))))
    await s.start()
    await wait_for(lambda: first.count("iv") >= 1)
    s.set_handler(second)
    await wait_for(lambda: second.count("iv") >= 1)


async def test_sync_handler_is_accepted(make: Callable[..., Scheduler]) -> None:
    s = make(lambda job: ExecutionResult.ok(job.id))
    await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
    assert (await s.trigger_job("a")).output == "a"


async def test_handler_exception_becomes_failed_result(make: Callable[..., Scheduler]) -> None:
    def boom(job: Job) -> ExecutionResult:
        raise RuntimeError("kaput")

    s = make(boom)
    await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
    result = await s.trigger_job("a")
    assert not result.success and result.error == "kaput"
    assert (await s.get_job("a")).last_error == "kaput"


class SlowParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message: str = ""


class SlowExecutor(ActionExecutor[SlowParams]):
    action_type = "slow"
    params_type = SlowParams

    def __init__(self) -> None:
        self.started: list[tuple[str, RunInfo]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def validate(self, params: SlowParams) -> None:
        if not params.message:
            raise JobValidationError("message is required for slow action", field="message")

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        self.started.append((job.id, run))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(float(self.check(job.action).message))
        finally:
            self.in_flight -= 1
        return ExecutionResult.ok({"slept": job.action.params["message"]})


@pytest.fixture
def slow_registry() -> tuple[Registry, SlowExecutor]:
    executor = SlowExecutor()

    class Plugin:
        @hookimpl
        def omnicron_action_executors(self) -> list[ActionExecutor]:
            return [executor]

    return Registry(get_plugin_manager(plugins=[Plugin()])), executor


async def test_without_handler_runs_go_to_the_executor_plugin(
    make: Callable[..., Scheduler], slow_registry: tuple[Registry, SlowExecutor]
) -> None:
    registry, executor = slow_registry
    s = make(registry=registry)
    job = new_job("x", "x", Schedule(once=soon(50)), Action(type="slow", message="0.01"))
    await s.add_job(job)
    await s.start()
    await wait_for(lambda: len(executor.started) == 1)
    job_id, run = executor.started[0]
    assert job_id == "x" and run.scheduled_at is not None and not run.manual
    result = await s.trigger_job("x")
    assert result.output == {"slept": "0.01"}
    assert executor.started[1][1].manual


async def test_bounded_concurrency_and_slow_actions_do_not_delay_others(
    make: Callable[..., Scheduler], slow_registry: tuple[Registry, SlowExecutor]
) -> None:
    registry, executor = slow_registry
    s = make(registry=registry, max_concurrency=3)
    at = soon(100)
    for i in range(6):
        await s.add_job(
            new_job(f"slow{i}", "s", Schedule(once=at), Action(type="slow", message="0.3"))
        )
    await s.start()
    await wait_for(lambda: len(executor.started) == 6, within=5)
    assert executor.max_in_flight == 3

    s2 = make(registry=registry, url="memory://", max_concurrency=10)
    await s2.add_job(
        new_job("hog", "h", Schedule(once=soon(20)), Action(type="slow", message="1.5"))
    )
    await s2.add_job(
        new_job(
            "quick", "q", Schedule(interval=Duration("100ms")), Action(type="slow", message="0")
        )
    )
    await s2.start()
    await wait_for(lambda: any(j == "hog" for j, _ in executor.started))
    before = sum(1 for j, _ in executor.started if j == "quick")
    await asyncio.sleep(0.6)
    assert sum(1 for j, _ in executor.started if j == "quick") >= before + 3


async def test_recurring_job_missed_during_downtime_runs_once_with_lateness(
    make: Callable[..., Scheduler],
) -> None:
    ran: list[ExecutionResult] = []

    class Hook:
        @hookimpl
        def omnicron_job_ran(self, job: Job, result: ExecutionResult) -> None:
            ran.append(result)

    registry = Registry(get_plugin_manager(plugins=[Hook()]))
    s = make(Recorder(), registry=registry)
    job = msg_job("iv", Schedule(interval=Duration("1m")))
    job.created_at = datetime.now(UTC) - timedelta(minutes=30, seconds=10)
    added = await s.add_job(job)
    assert added.next_run_at is not None and added.next_run_at > datetime.now(UTC)
    # simulate downtime: its fire time passed 10 minutes ago while nothing ran
    await s.store.update(
        "iv", lambda j: (setattr(j, "next_run_at", datetime.now(UTC) - timedelta(minutes=10)), j)[1]
    )
    await s.start()
    await wait_for(lambda: len(ran) == 1)
    await asyncio.sleep(0.2)
    assert len(ran) == 1
    # the run answers the latest fire due (catch-up "latest"); the earlier ones are
    # recorded skipped (coalesced), not silently dropped
    assert ran[0].scheduled_at is not None
    assert datetime.now(UTC) - ran[0].scheduled_at < timedelta(minutes=1)
    assert ran[0].lateness is not None and ran[0].lateness > 0
    stored = await s.get_job("iv")
    assert stored.run_count == 1 and stored.next_run_at is not None
    assert stored.next_run_at > datetime.now(UTC)
    records = await s.history("iv", limit=100)
    assert [r.outcome for r in records[:1]] == ["succeeded"]
    assert {r.outcome for r in records[1:]} == {"skipped"} and len(records) == 11
    assert stored.counts is not None and stored.counts.skipped == 10


async def test_misfire_grace_skips_too_late_fires(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec, misfire_grace=timedelta(seconds=30))
    job = msg_job("once", Schedule(once=datetime.now(UTC) - timedelta(minutes=5)))
    await s.add_job(job)
    await s.start()
    stored = await stored_when(s, "once", lambda j: j.status is JobStatus.DISABLED)
    assert rec.count("once") == 0 and stored.run_count == 0
    assert stored.last_error.startswith("missed")


async def test_job_left_running_by_a_crash_is_recovered(
    make: Callable[..., Scheduler], db_url: str
) -> None:
    s = make(Recorder())
    job = await s.add_job(msg_job("iv", Schedule(interval=Duration("100ms"))))
    once = await s.add_job(msg_job("once", Schedule(once=soon(10_000))))
    for j in (job, once):
        j.status = JobStatus.RUNNING
        await s.store.save(j)  # what a crash mid-run leaves behind
    rec = Recorder()
    s2 = make(rec, url=db_url)
    await s2.start()
    await wait_for(lambda: rec.count("iv") >= 1)
    recovered = await s2.get_job("iv")
    assert recovered.status in (JobStatus.ENABLED, JobStatus.RUNNING)
    gone = await s2.get_job("once")
    assert gone.status is JobStatus.DISABLED and "interrupted" in gone.last_error
    assert rec.count("once") == 0


async def test_jobs_saved_without_fire_time_are_scheduled_at_start(
    make: Callable[..., Scheduler],
) -> None:
    rec = Recorder()
    s = make(rec)
    raw = msg_job("raw", Schedule(interval=Duration("100ms")))
    await s.store.save(raw)  # straight into the store, no next_run_at
    broken = msg_job("broken", Schedule(cron="every tuesday"))
    await s.store.save(broken)
    await s.start()
    await wait_for(lambda: rec.count("raw") >= 1)
    parked = await s.get_job("broken")
    assert parked.status is JobStatus.DISABLED and parked.last_error.startswith("cannot schedule")


async def test_events_and_hooks_for_every_change_and_run(make: Callable[..., Scheduler]) -> None:
    changes: list[tuple[str, str]] = []

    class Hook:
        @hookimpl
        def omnicron_job_changed(self, job: Job, change: str) -> None:
            changes.append((job.id, change))

        @hookimpl
        def omnicron_job_ran(self, job: Job, result: ExecutionResult) -> None:
            changes.append((job.id, f"ran:{result.success}:{job.run_count}"))

    s = make(Recorder(), registry=Registry(get_plugin_manager(plugins=[Hook()])))
    with capture_logs() as logs:
        job = await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
        job.name = "b"
        await s.update_job(job)
        await s.disable_job("a")
        await s.enable_job("a")
        await s.trigger_job("a")
        await s.remove_job("a")
    assert changes == [
        ("a", "added"),
        ("a", "updated"),
        ("a", "disabled"),
        ("a", "enabled"),
        ("a", "ran:True:1"),
        ("a", "removed"),
    ]
    events = [e["event"] for e in logs if e["event"].startswith("job.")]
    assert events == [
        "job.added",
        "job.updated",
        "job.disabled",
        "job.enabled",
        "job.run",
        "job.removed",
    ]
    run = next(e for e in logs if e["event"] == "job.run")
    assert (
        run["job_id"] == "a"
        and run["action_type"] == "send_message"
        and run["outcome"] == "success"
    )
    assert run["duration_ms"] >= 0


async def test_a_failing_hook_does_not_break_the_scheduler(make: Callable[..., Scheduler]) -> None:
    class Bad:
        @hookimpl
        def omnicron_job_changed(self, job: Job, change: str) -> None:
            raise RuntimeError("hook bug")

    s = make(Recorder(), registry=Registry(get_plugin_manager(plugins=[Bad()])))
    with capture_logs() as logs:
        await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
    assert (await s.get_job("a")).id == "a"
    assert any(e["event"] == "hook.failed" for e in logs)


async def test_a_failing_hook_does_not_keep_other_plugins_from_hearing(
    make: Callable[..., Scheduler],
) -> None:
    """Notifications go through pluggy one plugin at a time: a plugin that raises (whichever
    pluggy calls first) is logged with its name; the others still get every event."""
    heard: list[str] = []

    class Good:
        @hookimpl
        def omnicron_job_changed(self, job: Job, change: str) -> None:
            heard.append(change)

        @hookimpl
        def omnicron_job_ran(self, job: Job, result: ExecutionResult) -> None:
            heard.append(f"ran:{result.success}")

    class Bad:
        @hookimpl
        def omnicron_job_changed(self, job: Job, change: str) -> None:
            raise RuntimeError("hook bug")

        @hookimpl
        def omnicron_job_ran(self, job: Job, result: ExecutionResult) -> None:
            raise RuntimeError("hook bug")

    wrapped: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def omnicron_job_changed(self, job: Job, change: str) -> Any:
            wrapped.append(change)
            return (yield)

    for plugins in ([Good(), Bad()], [Bad(), Good()]):
        heard.clear()
        wrapped.clear()
        pm = get_plugin_manager(plugins=[])
        for plugin in (*plugins, Wrapper()):
            pm.register(plugin, name=type(plugin).__name__)
        s = make(Recorder(), registry=Registry(pm))
        with capture_logs() as logs:
            await s.add_job(msg_job("a", Schedule(cron="0 9 * * *")))
            await s.trigger_job("a")
            await s.remove_job("a")
        assert heard == ["added", "ran:True", "removed"]
        failed = [e for e in logs if e["event"] == "hook.failed"]
        assert len(failed) == 3 and {e["plugin"] for e in failed} == {"Bad"}
        # a wrapper sees the call of each plugin, and is not called on its own
        assert wrapped == ["added", "added", "removed", "removed"]


async def test_caller_mutation_after_add_does_not_reach_store(
    make: Callable[..., Scheduler],
) -> None:
    s = make()
    job = msg_job("a", Schedule(cron="0 9 * * *"))
    await s.add_job(job)
    job.action.params["message"] = "changed"
    assert (await s.get_job("a")).action.params["message"] == "hello"


async def test_job_added_by_another_process_is_picked_up(
    make: Callable[..., Scheduler], db_url: str
) -> None:
    """A write through another connection (as `omnicron jobs add` makes) cannot wake the
    loop; the store's external-writer check picks it up within `external_check`."""
    rec = Recorder()
    running = make(rec, external_check=0.2)
    await running.start()
    await asyncio.sleep(0.1)  # the loop is asleep with nothing due
    other = make(url=db_url)  # a second connection to the same file, never started
    await other.add_job(msg_job("ext", Schedule(once=soon(50))))
    await wait_for(lambda: rec.count("ext") == 1, within=3.0)

    mem = make(rec, url="memory://")
    assert not mem.store.backend.external_writers
    assert running.store.backend.external_writers


def test_kill_9_during_a_run_is_recovered_at_next_start(tmp_path: Path) -> None:
    """A real process is SIGKILLed while its job runs; the next start recovers the job."""
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
        async def handler(job):
            print("running", flush=True)
            await asyncio.sleep(60)
            return ExecutionResult.ok()
        async def main():
            s = Scheduler(SchedulerConfig(store=Store(StoreConfig(url="sqlite:///{db}")),
                                          handler=handler, location="UTC"))
            await s.add_job(new_job("iv", "iv", Schedule(interval=Duration("200ms")),
                                    Action(type="send_message", session_id="s", message="m")))
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
        assert (await store.get("iv")).status is JobStatus.RUNNING  # what the crash left
        release = asyncio.Event()
        started: list[str] = []

        async def handler(job: Job) -> ExecutionResult:
            started.append(job.id)
            await release.wait()
            return ExecutionResult.ok()

        s = Scheduler(SchedulerConfig(store=store, handler=handler, location="UTC"))
        await s.start()
        try:
            await wait_for(lambda: started == ["iv"])
            during = await s.get_job("iv")  # recovered, then claimed again: runs once more
            assert during.status is JobStatus.RUNNING
            assert during.last_error == "interrupted: the scheduler stopped during the run"
            assert during.run_count == 0
            release.set()
            async with asyncio.timeout(5):
                while (after := await s.get_job("iv")).run_count < 1:
                    await asyncio.sleep(0.02)
            assert after.last_error == ""
        finally:
            await s.stop()
            await store.close()

    asyncio.run(check())


async def test_a_failed_run_state_write_is_retried(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec, url="memory://")
    await s.add_job(msg_job("once", Schedule(once=soon(50))))
    real = s.store.finish_runs
    calls = {"n": 0}

    async def flaky(ids: Any, patch: Any, results: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk hiccup")
        return await real(ids, patch, results, **kw)

    s.store.finish_runs = flaky  # type: ignore[method-assign]
    with capture_logs() as logs:
        await s.start()
        job = await stored_when(s, "once", lambda j: j.status is JobStatus.DISABLED)
    assert job.run_count == 1 and calls["n"] >= 2
    assert any(e["event"] == "store.write_failed" for e in logs)


async def test_the_loop_survives_store_read_errors(make: Callable[..., Scheduler]) -> None:
    rec = Recorder()
    s = make(rec, url="memory://")
    real = s.store.next_due_at
    calls = {"n": 0}

    async def flaky() -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("store unreachable")
        return await real()

    s.store.next_due_at = flaky  # type: ignore[method-assign]
    with capture_logs() as logs:
        await s.start()
        await s.add_job(msg_job("once", Schedule(once=soon(1500))))
        await wait_for(lambda: rec.count("once") == 1, within=5)
    assert sum(e["event"] == "store.read_failed" for e in logs) == 2
