"""omnicron embedded in a host: silent by default, heard once the host configures logging."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# A host program: adds a few jobs (one failing, one whose schedule fails, one bad add), fires
# them, triggers one by hand, stops. ``SETUP`` is the host's own logging configuration.
_HOST = textwrap.dedent(
    """
    import asyncio
    from datetime import UTC, datetime, timedelta

    SETUP

    from omnicron_core import (
        Action, ExecutionResult, JobValidationError, Schedule, Scheduler, SchedulerConfig,
        Store, StoreConfig, new_job,
    )

    async def handler(job):
        if job.id == "bad":
            return ExecutionResult.failed("it broke")
        return ExecutionResult.ok("done")

    async def main(db):
        sched = Scheduler(SchedulerConfig(
            handler=handler, store=Store(StoreConfig(url=f"sqlite:///{db}"))
        ))
        await sched.start()
        due = datetime.now(UTC) + timedelta(milliseconds=100)
        action = Action(type="send_message", session_id="s", message="hi")
        await sched.add_job(new_job("good", "good", Schedule(once=due), action))
        await sched.add_job(new_job("bad", "bad", Schedule(once=due), action))
        try:
            await sched.add_job(new_job("x", "x", Schedule(cron="99 * * * *"), action))
        except JobValidationError:
            pass
        while sum(1 for j in await sched.list_jobs() if j.run_count) < 2:
            await asyncio.sleep(0.02)
        await sched.trigger_job("good")
        await sched.remove_job("bad")
        await sched.stop()

    import sys
    asyncio.run(main(sys.argv[1]))
    """
)


def _run_host(setup: str, tmp_path: object) -> subprocess.CompletedProcess[str]:
    code = _HOST.replace("SETUP", textwrap.dedent(setup))
    return subprocess.run(
        [sys.executable, "-c", code, f"{tmp_path}/jobs.db"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_embedded_scheduler_writes_nothing_to_stdout_or_stderr(tmp_path: object) -> None:
    proc = _run_host("", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""


def test_a_host_with_stdlib_logging_gets_the_events_with_iso_times(tmp_path: object) -> None:
    proc = _run_host(
        """
        import logging
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(levelname)s|%(message)s")
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    added = [line for line in lines if "|job.added " in line]
    assert len(added) == 2
    assert added[0].startswith("omnicron.scheduler|INFO|job.added job_id=good")
    ran = [line for line in lines if "|job.run " in line]
    assert len(ran) == 3  # two scheduled runs and one trigger
    scheduled = next(line for line in ran if "job_id=bad" in line)
    assert "outcome=failure" in scheduled and "error='it broke'" in scheduled
    # times are ISO strings, not datetime reprs
    assert "scheduled_at=20" in scheduled and "+00:00" in scheduled
    assert "datetime.datetime" not in proc.stderr


def test_a_host_level_filters_the_events(tmp_path: object) -> None:
    proc = _run_host(
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("omnicron").setLevel(logging.WARNING)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "job." not in proc.stderr


def test_a_host_with_structlog_gets_the_events_through_its_processors(tmp_path: object) -> None:
    proc = _run_host(
        """
        import structlog
        structlog.configure(processors=[
            structlog.processors.add_log_level, structlog.processors.JSONRenderer()
        ])
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    runs = [e for e in events if e["event"] == "job.run"]
    assert {e["job_id"] for e in runs} == {"good", "bad"}
    assert all(isinstance(e["scheduled_at"], str) for e in runs if e.get("scheduled_at"))
    assert any(e["event"] == "job.removed" for e in events)


def test_a_host_with_structlog_on_the_stdlib_gets_the_events_by_logger_name(
    tmp_path: object,
) -> None:
    proc = _run_host(
        """
        import logging, structlog
        handler = logging.StreamHandler()
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        ))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("omnicron.runtime").setLevel(logging.ERROR)
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    runs = [e for e in events if e["event"] == "job.run"]
    assert len(runs) == 3
    assert {e["logger"] for e in runs} == {"omnicron.scheduler"}


def test_a_host_with_dictconfig_controls_the_omnicron_loggers(tmp_path: object) -> None:
    proc = _run_host(
        """
        import logging.config
        logging.config.dictConfig({
            "version": 1,
            "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
            "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "loggers": {
                "omnicron": {"level": "INFO", "handlers": ["out"]},
                "omnicron.runtime": {"level": "ERROR"},
            },
        })
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert sum(line.startswith("omnicron.scheduler INFO job.run ") for line in lines) == 3
    assert any(line.startswith("omnicron.scheduler INFO scheduler.started ") for line in lines)
