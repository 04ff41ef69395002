"""Runs the Scheduler starts from its finish path (a retry's next attempt, a buffered fire's
turn) hold a fire row and a lease like claimed runs: a node killed (kill -9) during them has
them taken back by another node under the job's policy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import psycopg
from omnicron_postgres import PostgresBackend

from omnicron_core import Job, JobStatus

CHILD = """
import asyncio, json, sys
from datetime import UTC, datetime, timedelta
from omnicron_core import ExecutionResult, Scheduler, SchedulerConfig, Store, StoreConfig
from omnicron_core import decode_job

URL = {url!r}
calls = {{}}

async def handler(job):
    n = calls[job.id] = calls.get(job.id, 0) + 1
    if job.id == "retry" and n == 1:
        return ExecutionResult.failed("first attempt fails")
    if job.id == "buf" and n == 1:
        await asyncio.sleep(2.5)  # the next fires come due meanwhile: one is buffered
        return ExecutionResult.ok()
    print(job.id, n, flush=True)  # a run the finish path started: hang until killed
    await asyncio.sleep(3600)
    return ExecutionResult.ok()

async def main():
    store = Store(StoreConfig(url=URL, options={{"node_id": "doomed", "lease": 60}}))
    sched = Scheduler(SchedulerConfig(store=store, handler=handler, location="UTC",
                                      owner="doomed"))
    await sched.start()
    soon = (datetime.now(UTC) + timedelta(milliseconds=500)).isoformat()
    action = {{"type": "send_message", "session_id": "s", "message": "m"}}
    await sched.add_job(decode_job(json.dumps({{
        "id": "retry", "name": "retry", "schedule": {{"once": soon}}, "action": action,
        "policy": {{"retry": {{"attempts": 3, "backoff": "100ms", "jitter": 0}}}}}})))
    await sched.add_job(decode_job(json.dumps({{
        "id": "buf", "name": "buf", "schedule": {{"cron": "* * * * * *"}}, "action": action,
        "policy": {{"overlap": "buffer_one"}}}})))
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start(job: Job) -> Job:
    job.status = JobStatus.RUNNING
    return job


def sql(url: str, query: str, params: Any = None) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


async def test_runs_started_by_the_finish_are_leased_and_taken_back_after_kill_9(
    pg_url: str,
) -> None:
    child = subprocess.Popen(  # noqa: ASYNC220 - a real node process
        [sys.executable, "-c", textwrap.dedent(CHILD.format(url=pg_url))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        seen: set[str] = set()
        while seen != {"retry 2", "buf 2"}:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
            assert line, child.stderr.read() if child.stderr else ""
            seen.add(line.strip())
        # both runs hold a leased fire row: the retry as attempt 2 of its fire
        held = sql(
            pg_url,
            "SELECT job_id, attempt, lease_owner FROM omnicron_fires "
            "WHERE state = 'running' ORDER BY job_id",
        )
        assert ("retry", 2, "doomed") in held
        assert any(job_id == "buf" and owner == "doomed" for job_id, _, owner in held)
        retry_fire = sql(pg_url, "SELECT scheduled_for FROM omnicron_fires WHERE job_id = 'retry'")
        child.kill()  # kill -9
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)

    survivor = PostgresBackend.from_url(pg_url, {"heartbeat": 0.5, "lease": 60})
    await survivor.open()
    try:
        await survivor.recover_running(owner="survivor")  # starts its node: heartbeat, reaper
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while sql(pg_url, "SELECT 1 FROM omnicron_fires WHERE lease_owner = 'doomed'"):
            assert loop.time() - t0 < 30, "not taken back (the lease is 60 s)"
            await asyncio.sleep(0.2)
        # the retry's fire waits for its next attempt (its policy asks for retries) ...
        states = dict(sql(pg_url, "SELECT job_id, state FROM omnicron_fires WHERE job_id='retry'"))
        assert states == {"retry": "retrying"}
        retry = await survivor.get("retry")
        assert retry is not None and retry.status == JobStatus.ENABLED
        assert retry.next_run_at == retry_fire[0][0] and not retry.in_flight
        assert retry.last_error == "interrupted: node doomed is gone"
        # ... and any node's claim runs it again with a new fencing token
        claimed = await survivor.claim_due(await survivor.now(), 10, start, owner="survivor")
        assert "retry" in [j.id for j in claimed]
        assert sql(pg_url, "SELECT state, attempt FROM omnicron_fires WHERE job_id = 'retry'") == [
            ("running", 3)
        ]
        # the buffered run was interrupted and freed its slot: the job is not stuck busy
        buf = await survivor.get("buf")
        assert buf is not None and not buf.in_flight
        assert "interrupted" in (buf.last_error or "")
        interrupted = sql(
            pg_url,
            "SELECT count(*) FROM omnicron_fires WHERE job_id = 'buf' AND state = 'interrupted'",
        )
        assert interrupted[0][0] >= 1
        assert json.loads(json.dumps(survivor.stats()))["reaped_runs_total"] >= 2
    finally:
        await survivor.close()
