"""Run history in PostgreSQL: a Scheduler on the store records each run; records are keyed by
(job, run id), read newest first, pruned, and a reaped run's record says interrupted. (The
kit's history cases run in test_contract.py, with the rest of the store contract.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from omnicron_postgres import PostgresBackend

from omnicron_core import (
    Action,
    ExecutionResult,
    Job,
    JobStatus,
    RunOutcome,
    RunRecord,
    RunTrigger,
    RunWrites,
    Schedule,
    Scheduler,
    SchedulerConfig,
    Store,
    StoreConfig,
    new_job,
)


def record(job_id: str, at: datetime, outcome: RunOutcome, **kw: Any) -> RunRecord:
    return RunRecord(
        run_id=f"{job_id}@{at.isoformat()}",
        job_id=job_id,
        trigger=RunTrigger.SCHEDULE,
        outcome=outcome,
        scheduled_at=at,
        recorded_at=kw.pop("recorded_at", datetime.now(UTC)),
        owner=kw.pop("owner", "n1"),
        **kw,
    )


async def until(cond: Callable[[], Any], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not await cond():
        assert loop.time() - t0 < within, "condition not reached"
        await asyncio.sleep(0.1)


async def test_history_reads_writes_rejects_and_prunes(pg_url: str) -> None:
    b = PostgresBackend.from_url(pg_url, {})
    await b.open()
    try:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        writes = RunWrites(
            insert=[record("j", t0 + timedelta(seconds=i), RunOutcome.SUCCEEDED) for i in range(5)]
        )
        await b.write_runs(writes)
        assert writes.rejected == set()
        again = RunWrites(insert=[record("j", t0, RunOutcome.FAILED)])
        await b.write_runs(again)
        assert again.rejected == {f"j@{t0.isoformat()}"}  # one record per (job, fire)
        newest = await b.history("j", limit=2)
        assert [r.scheduled_at for r in newest] == [
            t0 + timedelta(seconds=4),
            t0 + timedelta(seconds=3),
        ]
        older = await b.history("j", limit=10, before=newest[-1].seq)
        assert len(older) == 3 and all(r.seq < newest[-1].seq for r in older)
        got = await b.get_run(f"j@{t0.isoformat()}")
        assert got is not None and got.outcome == RunOutcome.SUCCEEDED
        await b.write_runs(RunWrites(update=[record("j", t0, RunOutcome.FAILED, error="x")]))
        got = await b.get_run(f"j@{t0.isoformat()}")
        assert got is not None and got.outcome == RunOutcome.FAILED and got.error == "x"
        assert await b.count_runs("j") == 5 and await b.count_runs() == 5
        assert len(await b.history("j", outcome=RunOutcome.FAILED)) == 1
        assert await b.prune_runs(job_ids=["j"], keep_last=2) == 3
        assert await b.count_runs("j") == 2
    finally:
        await b.close()


async def test_a_scheduler_on_postgres_keeps_history(pg_url: str) -> None:
    ran: list[str] = []

    async def handler(job: Job) -> ExecutionResult:
        ran.append(job.id)
        return ExecutionResult.ok()

    store = Store(StoreConfig(url=pg_url))
    sched = Scheduler(SchedulerConfig(store=store, handler=handler, location="UTC"))
    await sched.start()
    try:
        await sched.add_job(
            new_job(
                "h",
                "h",
                Schedule(once=datetime.now(UTC) + timedelta(milliseconds=200)),
                Action(type="send_message", session_id="s", message="m"),
            )
        )

        async def recorded() -> bool:
            runs = await store.history("h")
            return bool(runs) and runs[0].outcome == RunOutcome.SUCCEEDED

        await until(recorded)
        assert ran == ["h"]
    finally:
        await sched.stop()
        await store.close()


async def test_a_reaped_run_is_recorded_interrupted(pg_url: str) -> None:
    a = PostgresBackend.from_url(pg_url, {"lease": 30})
    b = PostgresBackend.from_url(pg_url, {"lease": 30})
    await a.open()
    await b.open()
    try:
        j = new_job(
            "r", "r", Schedule(cron="*/5 * * * * *"), Action(type="send_message", session_id="s")
        )
        j.next_run_at = datetime.now(UTC) - timedelta(seconds=1)
        await a.save(j)
        fire = j.next_run_at
        writes = RunWrites()

        def mark(job: Job) -> Job:
            writes.insert.append(record(job.id, fire, RunOutcome.RUNNING, owner="node-a"))
            job.status = JobStatus.RUNNING
            return job

        assert len(await a.claim_due(await a.now(), 10, mark, owner="node-a", runs=writes)) == 1
        a._stop.set()  # a stalls
        if a._maint is not None:
            await asyncio.to_thread(a._maint.join, 10)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE omnicron_fires SET lease_until = now() - interval '1s'")
        await b.recover_running(owner="node-b")

        async def interrupted() -> bool:
            got = await b.get_run(f"r@{fire.isoformat()}")
            return got is not None and got.outcome == RunOutcome.INTERRUPTED

        await until(interrupted)
        got = await b.get_run(f"r@{fire.isoformat()}")
        assert got is not None and "lease expired on node node-a" in got.error
    finally:
        await a.close()
        await b.close()
