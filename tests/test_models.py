from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

import omnicron_core
from omnicron_core import (
    Action,
    Duration,
    ExecutionResult,
    Job,
    JobNotFoundError,
    JobStatus,
    JobValidationError,
    Schedule,
    decode_job,
    encode_job,
    format_go_duration,
    new_job,
    parse_go_duration,
)

# A job as the Go original's json.Marshal writes it (nanosecond times, Go duration string).
GO_JOB = (
    '{"id":"j1","name":"Health check","description":"ping","schedule":{"interval":"1h30m0s"},'
    '"action":{"type":"call_webhook","webhook_url":"https://example.com/hook",'
    '"webhook_method":"POST","webhook_headers":{"X-A":"b"},"webhook_body":"{}"},'
    '"status":"enabled","created_at":"2026-04-25T14:30:00.123456789Z",'
    '"updated_at":"2026-04-25T16:30:00+02:00","last_run_at":"2026-04-25T15:00:00Z",'
    '"next_run_at":"2026-04-25T16:30:00Z","run_count":3,"last_error":"boom",'
    '"metadata":{"k":1}}'
)


def test_go_job_loads_with_every_field() -> None:
    job = decode_job(GO_JOB)
    assert job.id == "j1" and job.name == "Health check" and job.description == "ping"
    assert job.schedule.interval == Duration(90 * 60 * 10**9)
    assert job.action.params["webhook_headers"] == {"X-A": "b"}
    assert job.status is JobStatus.ENABLED
    assert job.created_at == datetime(2026, 4, 25, 14, 30, 0, 123457, tzinfo=UTC)
    assert job.updated_at is not None and job.updated_at.utcoffset() == timedelta(hours=2)
    assert job.run_count == 3 and job.last_error == "boom" and job.metadata == {"k": 1}


def test_encoding_keeps_go_field_names_order_and_omits_empty() -> None:
    job = decode_job(GO_JOB)
    out = json.loads(encode_job(job))
    assert list(out) == [
        "id",
        "name",
        "description",
        "schedule",
        "action",
        "status",
        "created_at",
        "updated_at",
        "last_run_at",
        "next_run_at",
        "run_count",
        "last_error",
        "metadata",
    ]
    assert out["schedule"] == {"interval": "1h30m0s"}
    # a fresh job: empty optional fields are omitted, the always-present ones are kept
    fresh = json.loads(
        encode_job(
            new_job("a", "n", Schedule(cron="0 9 * * *"), Action(type="call_tool", tool_name="t"))
        )
    )
    assert fresh["run_count"] == 0 and fresh["status"] == "enabled"
    for absent in ("description", "last_run_at", "next_run_at", "last_error", "metadata"):
        assert absent not in fresh
    assert fresh["action"] == {"type": "call_tool", "tool_name": "t"}


def test_round_trip_is_stable() -> None:
    job = decode_job(GO_JOB)
    assert decode_job(encode_job(job)) == job


def test_interval_accepts_integer_nanoseconds_and_go_strings() -> None:
    for raw, ns in (
        (5_400_000_000_000, 5_400_000_000_000),
        ('"90m"', 90 * 60 * 10**9),
        ('"1h2m3.5s"', 3723_500_000_000),
        ('"300ms"', 300_000_000),
        ('"2us"', 2000),
    ):
        job = decode_job(
            f'{{"id":"x","name":"y","schedule":{{"interval":{raw}}},"action":{{"type":"t"}}}}'
        )
        assert job.schedule.interval == Duration(ns)


def test_bad_interval_names_the_path() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"schedule\.interval"):
        decode_job(
            '{"id":"x","name":"y","schedule":{"interval":"5 parsecs"},"action":{"type":"t"}}'
        )


def test_naive_times_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"once"):
        decode_job(
            '{"id":"x","name":"y","schedule":{"once":"2026-01-01T00:00:00"},"action":{"type":"t"}}'
        )


def test_unknown_fields_are_an_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="scheduel"):
        decode_job('{"id":"x","name":"y","scheduel":{},"action":{"type":"t"}}')


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5\u00b5s"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90 * 60 * 10**9, "1h30m0s"),
        (3723_500_000_000, "1h2m3.5s"),
        (-1_000_000_000, "-1s"),
        (60 * 10**9, "1m0s"),
        (26 * 3600 * 10**9, "26h0m0s"),
    ],
)
def test_go_duration_string_matches_go(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("bad", ["", "1", "1x", "h", "1h 2m", "--1s", "1.s.", "9999999999h"])
def test_go_duration_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(bad)


def test_days_only_when_asked() -> None:
    assert parse_go_duration("2d", allow_days=True) == 2 * 86400 * 10**9
    with pytest.raises(ValueError, match="unknown unit 'd'"):
        parse_go_duration("2d")


def test_new_job_matches_the_original() -> None:
    job = new_job("id1", "name", Schedule(interval=Duration("1h")), Action(type="send_message"))
    assert job.status is JobStatus.ENABLED
    assert job.created_at == job.updated_at and job.created_at is not None
    assert job.created_at.tzinfo is not None
    assert job.metadata == {}
    assert job.is_recurring()
    assert not new_job("x", "n", Schedule(once=datetime.now(UTC)), Action(type="t")).is_recurring()
    assert new_job("x", "n", Schedule(cron="* * * * *"), Action(type="t")).is_recurring()
    assert new_job(None, "n", Schedule(cron="* * * * *"), Action(type="t")).id != ""


def test_copy_shares_nothing() -> None:
    job = decode_job(GO_JOB)
    clone = job.copy()
    assert clone == job
    assert clone.metadata is not None and clone.action.params["webhook_headers"] is not None
    clone.metadata["k"] = 2
    clone.action.params["webhook_headers"]["X-A"] = "changed"
    assert job.metadata == {"k": 1} and job.action.params["webhook_headers"] == {"X-A": "b"}


def test_execution_result_json_has_go_shape() -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    result = ExecutionResult(
        success=True, output={"a": 1}, duration=1_200_000, started_at=started, finished_at=started
    )
    out = result.to_builtins()
    assert out["duration"] == 1_200_000 and out["success"] is True
    assert result.duration_str == "1.2ms"
    failed = ExecutionResult.failed("boom").to_builtins()
    assert failed["error"] == "boom" and failed["duration"] == 0 and "output" not in failed


def test_job_not_found_is_a_lookup_error() -> None:
    err = JobNotFoundError("x")
    assert isinstance(err, LookupError) and str(err) == "job not found"


def test_public_names_are_the_intended_ones() -> None:
    expected = {
        "Job",
        "Schedule",
        "Action",
        "JobStatus",
        "ExecutionResult",
        "Duration",
        "JobNotFoundError",
        "new_job",
        "Store",
        "StoreConfig",
        "Scheduler",
        "SchedulerConfig",
        "next_fire_times",
        "hookimpl",
        "get_plugin_manager",
        "ActionExecutor",
        "StoreBackend",
        # issue 10: policies and run history
        "Policy",
        "RetryPolicy",
        "Overlap",
        "CatchUp",
        "RunRecord",
        "RunOutcome",
        "RunTrigger",
        "RunWrites",
        "JobDescription",
        "BackfillResult",
    }
    assert expected <= set(omnicron_core.__all__)
    for name in omnicron_core.__all__:
        assert hasattr(omnicron_core, name), name
    assert not [n for n in omnicron_core.__all__ if n.startswith("_")]


def test_job_is_a_msgspec_struct_with_unknown_fields_forbidden() -> None:
    assert Job.__struct_config__.forbid_unknown_fields


@pytest.mark.parametrize("value", ["2s", timedelta(seconds=2), 2_000_000_000, Duration("2s")])
def test_schedule_interval_takes_what_a_duration_takes(value: object) -> None:
    schedule = Schedule(interval=value)  # type: ignore[arg-type]
    assert schedule.interval == Duration("2s")
    assert schedule.kinds() == ["interval"]
    assert encode_job(new_job("a", "a", schedule, Action(type="x"))).count(b'"interval":"2s"') == 1


@pytest.mark.parametrize(
    ("value", "words"), [("soon", "invalid duration 'soon'"), (2.5, "cannot be a float")]
)
def test_a_bad_interval_is_located(value: object, words: str) -> None:
    with pytest.raises(JobValidationError) as info:
        Schedule(interval=value)  # type: ignore[arg-type]
    assert info.value.field == "schedule.interval"
    assert words in info.value.message


def test_jobs_and_run_records_are_not_gc_tracked_but_their_containers_are() -> None:
    """Job and RunRecord are gc=False (no cycle can run through them: see their docstrings);
    the dicts and lists a job holds stay tracked, so the collector still sees them."""
    import gc

    from omnicron_core._runs import PendingFire, RunOutcome, RunRecord, RunTrigger

    now = datetime.now(UTC)
    job = Job(id="j", action=Action("send_message", session_id="s", message="m"))
    job.metadata = {"tags": ["a"]}
    job.in_flight = [PendingFire(at=now)]
    record = RunRecord(
        run_id="j@x",
        job_id="j",
        trigger=RunTrigger.SCHEDULE,
        outcome=RunOutcome.SUCCEEDED,
        scheduled_at=now,
        recorded_at=now,
    )
    assert not gc.is_tracked(job) and not gc.is_tracked(job.copy())
    assert not gc.is_tracked(record)
    assert gc.is_tracked(job.metadata) and gc.is_tracked(job.in_flight)
