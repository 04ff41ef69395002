"""APScheduler 4.0.0a6's cluster (SQLAlchemy data store + asyncpg event broker on
PostgreSQL), the anchor of ``bench/pg.py``. Runs in its own virtualenv (bench/.cache/aps4).

``_aps4.py '{"url": ..., "setup": true}'``: create the tables (and ``bench_runs``).
``_aps4.py '{"url": ..., "add": N, "due": EPOCH}'``: add N one-shot schedules due at EPOCH;
prints ``{"adds_per_s": ..., "done": EPOCH}``.
``_aps4.py '{"url": ...}'``: a scheduler node; prints ``ready``, runs until a line arrives on
stdin, prints ``{"runs": ...}``. Each run records (schedule id, fire time, epoch) into
``bench_runs`` (batched every 200 ms, so recording costs little).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

logging.basicConfig(level=logging.WARNING)

RUNS: list[tuple[str, float]] = []


async def record() -> None:
    from apscheduler import current_job

    job = current_job.get()
    fire = job.scheduled_fire_time.isoformat() if job.scheduled_fire_time else "manual"
    RUNS.append((f"{job.schedule_id}@{fire}", time.time()))


def plain_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def setup(url: str) -> None:
    import asyncpg
    from apscheduler import AsyncScheduler
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with AsyncScheduler(
        SQLAlchemyDataStore(engine), AsyncpgEventBroker.from_async_sqla_engine(engine)
    ):
        pass
    conn = await asyncpg.connect(plain_url(url))
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_runs (key text, at double precision)")
    await conn.close()


async def add(url: str, n: int, due: float) -> None:
    from apscheduler import AsyncScheduler
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker
    from apscheduler.triggers.date import DateTrigger
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    when = datetime.fromtimestamp(due, UTC)
    async with AsyncScheduler(
        SQLAlchemyDataStore(engine), AsyncpgEventBroker.from_async_sqla_engine(engine)
    ) as scheduler:
        t0 = time.perf_counter()
        for i in range(n):
            await scheduler.add_schedule(record, DateTrigger(when), id=f"s{i:06}")
        took = time.perf_counter() - t0
    print(json.dumps({"adds_per_s": n / took, "done": time.time()}), flush=True)


async def node(url: str) -> None:
    import asyncpg
    from apscheduler import AsyncScheduler
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    conn = await asyncpg.connect(plain_url(url))
    sent = 0

    async def flush() -> None:
        nonlocal sent
        while True:
            batch = RUNS[sent:]
            if batch:
                await conn.executemany("INSERT INTO bench_runs VALUES ($1, $2)", batch)
                sent += len(batch)
            await asyncio.sleep(0.2)

    async with AsyncScheduler(
        SQLAlchemyDataStore(engine), AsyncpgEventBroker.from_async_sqla_engine(engine)
    ) as scheduler:
        await scheduler.start_in_background()
        flusher = asyncio.ensure_future(flush())
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await scheduler.stop()
        flusher.cancel()
    batch = RUNS[sent:]
    if batch:
        await conn.executemany("INSERT INTO bench_runs VALUES ($1, $2)", batch)
    await conn.close()
    print(json.dumps({"runs": len(RUNS)}), flush=True)


def main() -> None:
    params: dict[str, Any] = json.loads(sys.argv[1])
    if params.get("setup"):
        asyncio.run(setup(params["url"]))
    elif "add" in params:
        asyncio.run(add(params["url"], int(params["add"]), float(params["due"])))
    else:
        asyncio.run(node(params["url"]))


if __name__ == "__main__":
    main()
