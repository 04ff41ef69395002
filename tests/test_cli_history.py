"""``omnicron jobs history|describe|pause|resume|backfill`` as real processes on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_commands import omnicron

JOB = {
    "id": "report",
    "name": "report",
    "schedule": {"interval": "1h"},
    "action": {"type": "send_message", "session_id": "s1", "message": "hi"},
    "created_at": "2026-01-01T00:00:00Z",
    "policy": {"overlap": "buffer_one", "catch_up_window": "10m", "max_runs": 1000},
}


def ok(*args: str, cwd: Path, stdin: str | None = None) -> str:
    proc = omnicron(*args, cwd=cwd, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_pause_trigger_history_describe_resume_backfill(project: Path) -> None:
    ok("jobs", "add", "-", cwd=project, stdin=json.dumps(JOB))
    shown = json.loads(ok("jobs", "show", "report", "--json", cwd=project))
    assert shown["policy"] == dict(JOB["policy"], catch_up_window="10m0s")  # Go duration text

    paused = json.loads(
        ok(
            "jobs",
            "pause",
            "report",
            "--note",
            "vendor outage",
            "--by",
            "ops",
            "--json",
            cwd=project,
        )
    )
    assert paused["status"] == "disabled"
    assert paused["pause"]["note"] == "vendor outage" and paused["pause"]["by"] == "ops"

    ok("jobs", "trigger", "report", cwd=project)  # a paused job still runs by hand
    records = json.loads(ok("jobs", "history", "report", "--json", cwd=project))
    assert [(r["trigger"], r["outcome"]) for r in records] == [("manual", "succeeded")]
    assert records[0]["job_id"] == "report" and records[0]["seq"] >= 1

    described = json.loads(ok("jobs", "describe", "report", "--json", cwd=project))
    assert described["job"]["pause"]["note"] == "vendor outage"
    assert described["next_fires"] == []  # paused: nothing upcoming
    assert len(described["recent_runs"]) == 1
    text = ok("jobs", "describe", "report", cwd=project)
    assert "vendor outage" in text and "buffer_one" in text

    resumed = json.loads(ok("jobs", "resume", "report", "--json", cwd=project))
    assert resumed["status"] == "enabled" and resumed["next_run_at"]

    args = ["jobs", "backfill", "report", "--from", "2026-01-01T01:00:00Z", "--to",
            "2026-01-01T03:00:00Z", "--rate", "100", "--json"]  # fmt: skip
    first = json.loads(ok(*args, cwd=project))
    assert (first["fires"], first["started"], first["already_recorded"]) == (3, 3, 0)
    again = json.loads(ok(*args, cwd=project))
    assert (again["fires"], again["started"], again["already_recorded"]) == (3, 0, 3)
    backfilled = json.loads(ok("jobs", "history", "report", "--json", "--limit", "2", cwd=project))
    assert [r["trigger"] for r in backfilled] == ["backfill", "backfill"]
    older = json.loads(
        ok("jobs", "history", "report", "--json", "--before", str(backfilled[-1]["seq"]),
           cwd=project)
    )  # fmt: skip
    assert [r["trigger"] for r in older] == ["backfill", "manual"]
    messages = (project / "messages.jsonl").read_text().splitlines()
    assert len(messages) == 4  # one manual run and three backfilled, none twice

    table = ok("jobs", "history", "report", cwd=project)
    assert "backfill" in table and "manual" in table


def test_history_errors_name_the_problem(project: Path) -> None:
    proc = omnicron("jobs", "history", "nope", cwd=project)
    assert proc.returncode == 1 and "does not exist" in proc.stderr  # a read creates no store
    bad = dict(JOB, policy={"overlap": "sometimes"})
    proc = omnicron("jobs", "add", "-", cwd=project, stdin=json.dumps(bad))
    assert proc.returncode == 1 and "policy.overlap" in proc.stderr
    ok("jobs", "add", "-", cwd=project, stdin=json.dumps(JOB))
    proc = omnicron("jobs", "history", "nope", cwd=project)
    assert proc.returncode == 1 and "job not found" in proc.stderr
    proc = omnicron("jobs", "backfill", "report", "--from", "yesterday", "--to", "now", cwd=project)
    assert proc.returncode == 1 and "--from" in proc.stderr
    proc = omnicron(
        "jobs", "backfill", "report", "--from", "2026-01-02T00:00:00Z", "--to",
        "2026-01-01T00:00:00Z", cwd=project,
    )  # fmt: skip
    assert proc.returncode == 1 and "before its start" in proc.stderr


def test_show_and_describe_preview_within_the_bounds(project: Path) -> None:
    bounded = dict(
        JOB,
        policy={"start_at": "2030-01-01T00:00:00Z", "end_at": "2030-01-01T01:00:00Z"},
    )
    ok("jobs", "add", "-", cwd=project, stdin=json.dumps(bounded))
    described = json.loads(ok("jobs", "describe", "report", "--json", cwd=project))
    assert described["next_fires"] == ["2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z"]
    shown = ok("jobs", "show", "report", cwd=project)
    block = shown.split("next runs:")[1].split("last run:")[0]
    assert block.count("2030-01-01") == 2, shown  # not three hourly times from now
    # bad policy on update: located, and the job is unchanged
    proc = omnicron(
        "jobs", "update", "report", "-", cwd=project,
        stdin=json.dumps({"policy": {"start_at": "2030-01-01T00:00:00Z",
                                     "end_at": "2029-01-01T00:00:00Z"}}),
    )  # fmt: skip
    assert proc.returncode == 1 and "policy.end_at" in proc.stderr
    after = json.loads(ok("jobs", "show", "report", "--json", cwd=project))
    assert after["policy"] == bounded["policy"]


def test_resume_with_catch_up_starts_from_the_first_fire_after_the_pause(project: Path) -> None:
    import time
    from datetime import UTC, datetime

    every_second = dict(JOB, schedule={"interval": "1s"}, policy={"catch_up_window": "10m"})
    ok("jobs", "add", "-", cwd=project, stdin=json.dumps(every_second))
    ok("jobs", "pause", "report", "--note", "n", cwd=project)
    time.sleep(2.5)  # fires come and go while it is paused
    before = datetime.now(UTC)
    caught = json.loads(ok("jobs", "resume", "report", "--catch-up", "--json", cwd=project))
    assert caught["status"] == "enabled"
    # the first fire after the pause: already past, so the catch-up window decides at claim
    assert datetime.fromisoformat(caught["next_run_at"]) < before
    ok("jobs", "pause", "report", cwd=project)
    before = datetime.now(UTC)
    fresh = json.loads(ok("jobs", "resume", "report", "--json", cwd=project))
    assert datetime.fromisoformat(fresh["next_run_at"]) > before  # from now: nothing missed runs


def _records(project: Path) -> list[object]:
    return json.loads(ok("jobs", "history", "report", "--json", cwd=project))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "is in the future"),
        ("0001-01-01T00:00:00Z", "now", "backfill start 0001-01-01T00:00:00+00:00 is outside"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59+00:00 is outside"),
        ("0001-01-01T00:00:00+14:00", "now", "is outside the supported range"),
    ],
)
def test_backfill_range_beyond_the_past_or_now_is_refused(
    project: Path, start: str, end: str, message: str
) -> None:
    # a range reaching into the future would run fires now that are not due; one near the
    # ends of time overflowed (OverflowError reached the safety net); nothing is run or recorded
    ok("jobs", "add", "-", cwd=project, stdin=json.dumps(JOB))
    proc = omnicron("jobs", "backfill", "report", "--from", start, "--to", end, cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: backfill ") and message in proc.stderr, proc.stderr
    assert "unexpected" not in proc.stderr and "Traceback" not in proc.stderr
    assert _records(project) == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--note", "a\x1b]0;pwn\x07"], "error: pause.note: pause note must not contain control"),
        (["--note", "x" * 5000], "error: pause.note: pause note is too long (5000 characters)"),
        (["--by", "me\x1b[2J"], "error: pause.by: paused-by name must not contain control"),
    ],
)
def test_hostile_pause_note_is_refused_and_the_job_stays_as_it_was(
    project: Path, flags: list[str], message: str
) -> None:
    ok("jobs", "add", "-", cwd=project, stdin=json.dumps(JOB))
    proc = omnicron("jobs", "pause", "report", *flags, cwd=project)
    assert proc.returncode == 1 and proc.stderr.startswith(message), proc.stderr
    job = json.loads(ok("jobs", "show", "report", "--json", cwd=project))
    assert job["status"] == "enabled" and "pause" not in job
    # a note over several lines is fine, shown as indented lines
    ok("jobs", "pause", "report", "--note", "line 1\nline 2", cwd=project)
    assert "line 1\n             line 2\n" in ok("jobs", "describe", "report", cwd=project)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"start_at": "0001-01-01T00:00:00+14:00"}, "error: policy.start_at: start_at 0001-01-01"),
        ({"end_at": "9999-12-31T23:59:59-14:00"}, "error: policy.end_at: end_at 9999-12-31"),
        ({"max_runs": 10**30}, "error: policy.max_runs: max_runs must be at most 1000000000000"),
    ],
)
def test_policy_times_beyond_the_horizon_and_huge_counts_are_refused(
    project: Path, policy: dict[str, object], message: str
) -> None:
    proc = omnicron("jobs", "add", "-", cwd=project, stdin=json.dumps(dict(JOB, policy=policy)))
    assert proc.returncode == 1 and proc.stderr.startswith(message), proc.stderr
    assert json.loads(ok("jobs", "list", "--json", cwd=project)) == []
