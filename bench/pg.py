"""omnicron on PostgreSQL (omnicron-postgres), several nodes, side by side with APScheduler
4.0.0a6's cluster: ``.venv/bin/python bench/pg.py [--quick] [--no-aps4]``.

Starts a throwaway PostgreSQL 15 (default settings, fsync and synchronous_commit on), a fresh
database per measurement, and real node processes (``bench/_pg_node.py``; APScheduler 4 nodes
run ``bench/_aps4.py`` in its own virtualenv under ``bench/.cache/aps4``, installed with pip on
first use, since the workspace pins APScheduler 3.11). Scenarios:

- ``burst``: 10,000 one-shot jobs due at one instant, drained by 1 and by 3 nodes.
- ``adds``: adds per second, one job per call (sequential, and 16 callers at once) and bulk.
- ``steady``: 1,000 fires/s spread over the second, three nodes, for a minute: lateness
  percentiles and duplicates.
- ``action``: each action waits 50 ms on a local HTTP server; 1 vs 3 nodes at the same
  per-node concurrency.

Prints a table and writes ``--json`` if asked. See docs/performance.md for the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
APS4_VENV = CACHE / "aps4"
APS4_REQS = ["apscheduler==4.0.0a6", "anyio<4.10", "greenlet", "sniffio", "sqlalchemy", "asyncpg"]

sys.path.insert(0, str(ROOT / "plugins" / "omnicron-postgres"))

import logging  # noqa: E402

import structlog  # noqa: E402

# the bench is an application: it configures logging (the library never does)
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
logging.basicConfig(level=logging.WARNING)

from omnicron_postgres.testing import TempPostgres  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- nodes ------------------------------------------------------------------------------------


class Node:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def ready(self, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"node did not start: {line!r}")

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.read()
        self.proc.wait(60)
        lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"node gave no result: {out[-500:]!r}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def omnicron_node(url: str, **params: Any) -> Node:
    return Node([sys.executable, str(BENCH / "_pg_node.py"), json.dumps({"url": url, **params})])


def aps4_python() -> Path:
    python = APS4_VENV / "bin" / "python"
    if not python.exists():
        log("installing APScheduler 4.0.0a6 into bench/.cache/aps4 (pip)")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(APS4_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *APS4_REQS], check=True, timeout=600
        )
    return python


def aps4_node(url: str, **params: Any) -> Node:
    return Node([str(aps4_python()), str(BENCH / "_aps4.py"), json.dumps({"url": url, **params})])


# -- helpers ----------------------------------------------------------------------------------


def sql(url: str, query: str, params: Any = None) -> list[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def open_store(url: str) -> Any:
    from omnicron_core import Scheduler, SchedulerConfig, Store, StoreConfig

    async def handler(job: Any) -> Any:
        raise AssertionError("not run here")

    store = Store(StoreConfig(url=url))
    return Scheduler(SchedulerConfig(store=store, handler=handler, location="UTC")), store


def make_jobs(
    n: int, *, once: datetime | None = None, every: str = "", prefix: str = "j"
) -> list[Any]:
    from omnicron_core import Action, Duration, Job, Schedule, parse_go_duration

    out = []
    base = datetime.now(UTC)
    for i in range(n):
        if once is not None:
            sched = Schedule(once=once)
            created = base
        else:
            sched = Schedule(interval=Duration(parse_go_duration(every)))
            # spread the fires evenly over the interval
            created = base + timedelta(seconds=parse_go_duration(every) / 1e9 * i / n)
        out.append(
            Job(
                id=f"{prefix}{i:06}",
                name="bench",
                schedule=sched,
                action=Action(type="send_message", session_id="s", message="m"),
                created_at=created,
                updated_at=created,
            )
        )
    return out


async def add_all(url: str, jobs: list[Any], chunk: int = 5000) -> float:
    sched, store = open_store(url)
    t0 = time.perf_counter()
    for i in range(0, len(jobs), chunk):
        await sched.add_jobs(jobs[i : i + chunk])
    took = time.perf_counter() - t0
    await store.close()
    return took


def wait_drained(url: str, n: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        left = sql(
            url,
            "SELECT count(*) FROM omnicron_jobs WHERE status <> 'disabled' AND id NOT LIKE 'warm%'",
        )[0][0]
        if left == 0:
            return True
        time.sleep(0.1)
    return False


# -- scenarios --------------------------------------------------------------------------------


def burst_omnicron(pg: TempPostgres, n: int, nodes: int) -> dict[str, Any]:
    url = pg.create_database("burst")
    asyncio.run(
        add_all(url, make_jobs(1, once=datetime.now(UTC) + timedelta(days=1), prefix="warm"))
    )
    procs = [omnicron_node(url) for _ in range(nodes)]
    for p in procs:
        p.ready()
    due = datetime.now(UTC) + timedelta(seconds=4)
    add_s = asyncio.run(add_all(url, make_jobs(n, once=due)))
    if datetime.now(UTC) > due:
        log(f"warning: adding took {add_s:.1f}s, past the due instant")
    ok = wait_drained(url, n, 180)
    results = [p.stop() for p in procs]
    runs = sum(r["runs"] for r in results)
    last = max(r["last"] for r in results if r["last"])
    fires = sql(
        url, "SELECT count(*), count(DISTINCT (job_id, scheduled_for)) FROM omnicron_fires"
    )[0]
    return {
        "fires_per_s": n / (last - due.timestamp()),
        "runs": runs,
        "duplicates": runs - n + (fires[0] - fires[1]),
        "drained": ok,
        "per_node": [r["runs"] for r in results],
    }


def burst_aps4(pg: TempPostgres, n: int, nodes: int) -> dict[str, Any]:
    url = pg.create_database("aps4burst")
    asyncio_url = url.replace("postgresql://", "postgresql+asyncpg://")
    setup = subprocess.run(
        [
            str(aps4_python()),
            str(BENCH / "_aps4.py"),
            json.dumps({"url": asyncio_url, "setup": True}),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if setup.returncode != 0:
        raise RuntimeError(setup.stderr[-800:])
    procs = [aps4_node(asyncio_url) for _ in range(nodes)]
    for p in procs:
        p.ready()
    due = datetime.now(UTC) + timedelta(seconds=8)
    adder = subprocess.run(
        [
            str(aps4_python()),
            str(BENCH / "_aps4.py"),
            json.dumps({"url": asyncio_url, "add": n, "due": due.timestamp()}),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    if adder.returncode != 0:
        raise RuntimeError(adder.stderr[-800:])
    added = json.loads(adder.stdout.strip().splitlines()[-1])
    start_wait = max(0.0, due.timestamp() - time.time())
    deadline = time.time() + start_wait + 300
    total = 0
    while time.time() < deadline:
        total = sql(url, "SELECT count(*) FROM bench_runs")[0][0]
        if total >= n:
            break
        time.sleep(0.2)
    results = [p.stop() for p in procs]
    rows = sql(url, "SELECT count(*), count(DISTINCT key), max(at) FROM bench_runs")[0]
    last = float(rows[2]) if rows[2] is not None else time.time()
    return {
        "fires_per_s": rows[0] / max(1e-9, (last - max(due.timestamp(), added["done"]))),
        "runs": rows[0],
        "duplicates": rows[0] - rows[1],
        "drained": rows[0] >= n,
        "adds_per_s": added["adds_per_s"],
        "per_node": [r.get("runs") for r in results],
    }


async def adds_omnicron(url: str, n: int, bulk_n: int) -> dict[str, Any]:
    sched, store = open_store(url)
    await store.open()
    jobs = make_jobs(n, once=datetime.now(UTC) + timedelta(days=1), prefix="s")
    t0 = time.perf_counter()
    for job in jobs:
        await sched.add_job(job)
    single = n / (time.perf_counter() - t0)
    jobs = make_jobs(n, once=datetime.now(UTC) + timedelta(days=1), prefix="c")
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(16)

    async def one(job: Any) -> None:
        async with sem:
            await sched.add_job(job)

    await asyncio.gather(*(one(job) for job in jobs))
    concurrent = n / (time.perf_counter() - t0)
    jobs = make_jobs(bulk_n, once=datetime.now(UTC) + timedelta(days=1), prefix="b")
    t0 = time.perf_counter()
    for i in range(0, bulk_n, 1000):
        await sched.add_jobs(jobs[i : i + 1000])
    bulk = bulk_n / (time.perf_counter() - t0)
    await store.close()
    return {"single_per_s": single, "single_16_callers_per_s": concurrent, "bulk_per_s": bulk}


def steady_omnicron(pg: TempPostgres, rate: int, seconds: float, nodes: int) -> dict[str, Any]:
    url = pg.create_database("steady")
    asyncio.run(
        add_all(url, make_jobs(1, once=datetime.now(UTC) + timedelta(days=1), prefix="warm"))
    )
    procs = [omnicron_node(url, ids=True) for _ in range(nodes)]
    for p in procs:
        p.ready()
    asyncio.run(add_all(url, make_jobs(rate, every="1s")))
    time.sleep(seconds)
    results = [p.stop() for p in procs]
    ids = [i for r in results for i in r["run_ids"]]
    p99 = max(r["lateness_ms"]["p99"] or 0 for r in results)
    p50 = max(r["lateness_ms"]["p50"] or 0 for r in results)
    return {
        "fires_per_s": len(ids) / seconds,
        "lateness_p50_ms_worst_node": p50,
        "lateness_p99_ms_worst_node": p99,
        "lateness_max_ms": max(r["lateness_ms"]["max"] or 0 for r in results),
        "duplicates": len(ids) - len(set(ids)),
        "per_node": [r["runs"] for r in results],
    }


HTTP_SERVER = r"""
import asyncio, sys
async def serve(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def action_omnicron(pg: TempPostgres, n: int, nodes: int, concurrency: int) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-c", HTTP_SERVER], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    port = int(server.stdout.readline())
    try:
        url = pg.create_database("action")
        asyncio.run(
            add_all(url, make_jobs(1, once=datetime.now(UTC) + timedelta(days=1), prefix="warm"))
        )
        procs = [
            omnicron_node(url, mode="http", http_port=port, concurrency=concurrency)
            for _ in range(nodes)
        ]
        for p in procs:
            p.ready()
        due = datetime.now(UTC) + timedelta(seconds=3)
        asyncio.run(add_all(url, make_jobs(n, once=due)))
        wait_drained(url, n, 300)
        results = [p.stop() for p in procs]
    finally:
        server.kill()
    last = max(r["last"] for r in results if r["last"]) + 0.05
    return {
        "fires_per_s": n / (last - due.timestamp()),
        "runs": sum(r["runs"] for r in results),
        "per_node": [r["runs"] for r in results],
    }


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter steady run (20 s)")
    ap.add_argument("--no-aps4", action="store_true", help="skip the APScheduler 4 anchor")
    ap.add_argument("--only", action="append", default=[], help="burst, adds, steady, action")
    ap.add_argument("--reps", type=int, default=3, help="burst repetitions (median)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    only = set(args.only) or {"burst", "adds", "steady", "action"}
    env = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
    }
    log(f"environment: {env}")
    out: dict[str, Any] = {"env": env}
    with TempPostgres(fsync=True) as pg:
        out["env"]["postgres"] = sql(pg.url, "SHOW server_version")[0][0]
        if "burst" in only:
            reps: dict[int, list[dict[str, Any]]] = {1: [], 3: []}
            for _ in range(args.reps):  # interleaved, so load from elsewhere hits both
                for nodes in (1, 3):
                    r = burst_omnicron(pg, 10_000, nodes)
                    log(f"burst omnicron {nodes} node(s): {r}")
                    reps[nodes].append(r)
            for nodes, runs in reps.items():
                rates = sorted(r["fires_per_s"] for r in runs)
                out[f"burst_omnicron_{nodes}"] = {
                    "fires_per_s_median": statistics.median(rates),
                    "fires_per_s_all": rates,
                    "duplicates": sum(r["duplicates"] for r in runs),
                    "drained": all(r["drained"] for r in runs),
                }
            if not args.no_aps4:
                for nodes in (1, 3):
                    try:
                        r = burst_aps4(pg, 2_000, nodes)
                    except Exception as exc:  # the anchor must not hide our numbers
                        r = {"error": f"{type(exc).__name__}: {exc}"}
                    log(f"burst apscheduler4 {nodes} node(s): {r}")
                    out[f"burst_aps4_{nodes}"] = r
        if "adds" in only:
            url = pg.create_database("adds")
            r = asyncio.run(adds_omnicron(url, 5_000, 50_000))
            log(f"adds omnicron: {r}")
            out["adds_omnicron"] = r
        if "steady" in only:
            r = steady_omnicron(pg, 1000, 20 if args.quick else 60, 3)
            log(f"steady omnicron 3 nodes: {r}")
            out["steady_omnicron_3"] = r
        if "action" in only:
            for nodes in (1, 3):
                r = action_omnicron(pg, 1500 * nodes, nodes, 10)
                log(f"action-bound omnicron {nodes} node(s): {r}")
                out[f"action_omnicron_{nodes}"] = r
    print(json.dumps(out, indent=2, default=str))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
