"""One omnicron node on a PostgreSQL store, for ``bench/pg.py``: ``_pg_node.py JSON_PARAMS``.

Prints ``ready`` once its Scheduler runs, then runs until a line arrives on stdin, stops, and
prints one JSON object: how many runs it started, the first and last start (epoch seconds),
lateness percentiles (ms) and the run ids it started (for the duplicate check).

Modes: ``noop`` (the action returns at once), ``http`` (the action makes one GET to
``http_port`` on 127.0.0.1, which answers after 50 ms; a minimal keep-alive client, so the
client's own CPU cost stays small).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
logging.basicConfig(level=logging.WARNING)


class HttpPool:
    """Keep-alive HTTP/1.1 GETs over a few connections to one local port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self) -> None:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        self.idle.append((reader, writer))


async def main(params: dict[str, Any]) -> None:
    from omnicron_core import (
        ExecutionResult,
        Job,
        Registry,
        Scheduler,
        SchedulerConfig,
        Store,
        StoreConfig,
        get_plugin_manager,
        hookimpl,
    )

    starts: list[float] = []
    lateness: list[float] = []
    run_ids: list[str] = []
    mode = params.get("mode", "noop")
    pool = HttpPool(params["http_port"]) if mode == "http" else None

    class Recorder:
        @hookimpl
        def omnicron_job_ran(self, job: Job, result: ExecutionResult) -> None:
            if result.lateness is not None:
                lateness.append(result.lateness / 1e6)
            if result.scheduled_at is not None:
                run_ids.append(f"{job.id}@{result.scheduled_at.isoformat()}")

    async def handler(job: Job) -> ExecutionResult:
        starts.append(time.time())
        if pool is not None:
            await pool.get()
        return ExecutionResult.ok()

    registry = Registry(get_plugin_manager(plugins=[Recorder()]))
    store = Store(
        StoreConfig(url=params["url"], options=params.get("options", {})), registry=registry
    )
    sched = Scheduler(
        SchedulerConfig(
            store=store,
            handler=handler,
            registry=registry,
            max_concurrency=params.get("concurrency", 1024),
            claim_batch=params.get("claim_batch", 1000),
            location="UTC",
        )
    )
    await sched.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await sched.stop()
    await store.close()
    lat = sorted(lateness)

    def pct(q: float) -> float | None:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    print(
        json.dumps(
            {
                "runs": len(starts),
                "first": min(starts) if starts else None,
                "last": max(starts) if starts else None,
                "lateness_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] if lat else None},
                "run_ids": run_ids if params.get("ids") else [],
                "stats": dict(store.backend.stats()),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
