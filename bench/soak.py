"""Soak: a big SQLite store firing steadily for minutes; is memory flat and lateness stable?

    .venv/bin/python bench/soak.py                      # 100,000 jobs, 1,000 fires/s, 10 minutes
    .venv/bin/python bench/soak.py --minutes 3 --sample 10 --json bench/results/soak.json

Every one of the ``--jobs`` jobs fires: job i is a fixed-rate interval job of ``jobs / rate``
seconds (100 s by default) anchored at ``start + i / rate``, so together they fire ``--rate``
times a second, evenly spread, on a real SQLite file (WAL, omnicron's defaults), each run's
state written back. Every ``--sample`` seconds it prints the process RSS, the fires in the
interval (and how many short of the rate), lateness p50/p99/max (wall time when the handler starts minus the
scheduled instant computed here from the anchors) and the store's file sizes. Not part of the
test suite; the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
logging.basicConfig(level=logging.WARNING)

import omnicron_core as oc  # noqa: E402 - after logging is configured


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def file_mb(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.exists() else 0.0


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    n, rate = args.jobs, args.rate
    period = n / rate  # seconds between two fires of one job
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="omnicron-soak-")) / "s.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    first_fire = time.time() + args.warmup + 10  # after the build and the warm-up
    # job i fires at anchor_i + k * period (k >= 1); anchor_i = first_fire - period + i / rate
    anchors = [first_fire - period + i / rate for i in range(n)]
    index: dict[str, int] = {}
    late: list[float] = []

    async def handler(job: Any) -> Any:
        now = time.time()
        i = index[job.id]
        k = round((now - anchors[i]) / period)
        late.append(now - (anchors[i] + k * period))
        return oc.ExecutionResult.ok()

    store = oc.Store(oc.StoreConfig(url=f"sqlite:///{db}"))
    sched = oc.Scheduler(oc.SchedulerConfig(store=store, handler=handler, location="UTC"))
    action = oc.Action(type="send_message", session_id="s", message="m")
    t0 = time.perf_counter()
    chunk = 10_000
    for start in range(0, n, chunk):
        batch = []
        for i in range(start, min(n, start + chunk)):
            job_id = f"soak{i:07d}"
            index[job_id] = i
            job = oc.new_job(
                job_id, f"soak {i}", oc.Schedule(interval=oc.Duration(round(period * 1e9))), action
            )
            job.created_at = datetime.fromtimestamp(anchors[i], UTC)
            batch.append(job)
        await sched.add_jobs(batch)
    build_s = time.perf_counter() - t0
    await sched.start()
    gc.collect()
    print(
        f"{n} jobs built in {build_s:.1f} s; {rate}/s for {args.minutes} min on {db}",
        file=sys.stderr,
    )
    # wait for the first fire, then sample
    await asyncio.sleep(max(0.0, first_fire - time.time() + 1.0))
    late.clear()
    samples: list[dict[str, Any]] = []
    begin = time.time()
    end = begin + args.minutes * 60
    header = f"{'t (s)':>6} {'RSS MB':>7} {'fires':>7} {'short':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'db MB':>6} {'wal MB':>6}"
    print(header, file=sys.stderr)
    while time.time() < end:
        mark = time.time()
        await asyncio.sleep(min(args.sample, end - mark))
        span = time.time() - mark
        batch_ms = [x * 1000 for x in late]
        late.clear()
        expected = round(span * rate)
        sample = {
            "t_s": round(time.time() - begin, 1),
            "rss_mb": round(rss_mb(), 1),
            "fires": len(batch_ms),
            # fewer than expected: late fires that landed in the next interval, or lost ones
            "short": max(0, expected - len(batch_ms)),
            "p50_ms": round(pct(batch_ms, 50), 2),
            "p99_ms": round(pct(batch_ms, 99), 2),
            "max_ms": round(max(batch_ms), 2) if batch_ms else float("nan"),
            "db_mb": round(file_mb(db), 1),
            "wal_mb": round(file_mb(Path(f"{db}-wal")), 1),
        }
        samples.append(sample)
        print(
            f"{sample['t_s']:>6} {sample['rss_mb']:>7} {sample['fires']:>7} {sample['short']:>6} "
            f"{sample['p50_ms']:>7} {sample['p99_ms']:>7} {sample['max_ms']:>7} "
            f"{sample['db_mb']:>6} {sample['wal_mb']:>6}",
            file=sys.stderr,
        )
    await sched.stop()
    total = await store.count()
    await store.close()
    runs = sum(s["fires"] for s in samples)
    steady = samples[1:] or samples  # the first interval includes the ramp-up
    return {
        "jobs": n,
        "jobs_after": total,
        "rate": rate,
        "minutes": args.minutes,
        "build_s": round(build_s, 1),
        "fires": runs,
        "fires_per_s": round(runs / max(1e-9, samples[-1]["t_s"] if samples else 0), 1),
        # fires due in the sampled time that never ran (a fire due in the last milliseconds
        # may still be running at the end: at most a few)
        "missed": max(0, round((samples[-1]["t_s"] if samples else 0) * rate) - runs),
        "rss_first_mb": samples[0]["rss_mb"] if samples else None,
        "rss_last_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_steady_min_mb": min(s["rss_mb"] for s in steady) if steady else None,
        "rss_steady_max_mb": max(s["rss_mb"] for s in steady) if steady else None,
        "p99_ms_min": min(s["p99_ms"] for s in steady) if steady else None,
        "p99_ms_max": max(s["p99_ms"] for s in steady) if steady else None,
        "samples": samples,
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="fires per second, in total")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds per sample")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--db", default=None, help="SQLite file (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write the result here too")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    text = json.dumps(result, indent=1)
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
