"""One scenario for one scheduler, in its own process: ``_worker.py SCENARIO IMPL JSON_PARAMS``.

Prints one JSON object (the measurements) as the last line of stdout. ``bench/run.py`` starts
these processes; run one by hand to debug a scenario.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog


def configure_logging(mode: str) -> None:
    """The bench is an application: it configures logging (the library never does).

    ``filtered`` (the default): structlog and the stdlib filtered at WARNING. ``defaults``:
    nothing configured, the library's own behaviour when embedded (silent).
    """
    if mode == "defaults":
        return
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"


# -- helpers ---------------------------------------------------------------------------------


def rss_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def dt_at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


_TMP_DIRS: list[Path] = []


def tmp_db(tag: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"omnicron-bench-{tag}-"))
    _TMP_DIRS.append(d)
    return d / "jobs.db"


async def wait_until(pred: Any, limit: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + limit
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


class Profiler:
    """cProfile around the measured phase when ``params['profile']`` names an output file."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.path = params.get("profile")
        self.prof: Any = None

    def __enter__(self) -> Profiler:
        if self.path:
            import cProfile

            self.prof = cProfile.Profile()
            self.prof.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.prof is not None:
            self.prof.disable()
            self.prof.dump_stats(self.path)


# -- omnicron ----------------------------------------------------------------------------------


def om_imports() -> Any:
    import omnicron_core as oc

    return oc


def om_action(oc: Any) -> Any:
    return oc.Action(type="send_message", session_id="s", message="m")


def om_scheduler(oc: Any, url: str, handler: Any, **kw: Any) -> Any:
    store = oc.Store(oc.StoreConfig(url=url))
    if os.environ.get("OMNICRON_BENCH_NO_HISTORY"):  # measure the fire path without history
        type(store.backend).keeps_history = False
    return oc.Scheduler(oc.SchedulerConfig(store=store, handler=handler, location="UTC", **kw))


def om_count_ran(oc: Any, sched: Any) -> dict[str, Any]:
    """Register an ``omnicron_job_ran`` hook: counts runs whose state was written back."""
    box: dict[str, Any] = {"n": 0, "last": 0.0}

    class Counter:
        @oc.hookimpl
        def omnicron_job_ran(self, job: Any, result: Any) -> None:
            box["n"] += 1
            box["last"] = time.time()

    sched.registry.plugin_manager.register(Counter())
    return box


# -- apscheduler -------------------------------------------------------------------------------


def ap_scheduler(url: str | None, **kw: Any) -> Any:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    jobstores: dict[str, Any] = {}
    if url is None:
        from apscheduler.jobstores.memory import MemoryJobStore

        jobstores["default"] = MemoryJobStore()
    else:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        jobstores["default"] = SQLAlchemyJobStore(url=url)
    # misfire_grace_time=None: run every fire however late (omnicron's default); coalesce as
    # omnicron does; the job functions are coroutines, so they run on the event loop (the
    # AsyncIOExecutor), as omnicron's async handler does.
    return AsyncIOScheduler(
        jobstores=jobstores,
        job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        timezone="UTC",
        **kw,
    )


def ap_count_events(sched: Any) -> dict[str, Any]:
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

    box: dict[str, Any] = {"n": 0, "last": 0.0, "errors": 0, "missed": 0}

    def listener(event: Any) -> None:
        if event.code == EVENT_JOB_EXECUTED:
            box["n"] += 1
            box["last"] = time.time()
        elif event.code == EVENT_JOB_ERROR:
            box["errors"] += 1
            box["n"] += 1
        elif event.code == EVENT_JOB_MISSED:
            box["missed"] += 1

    sched.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return box


# Job functions for APScheduler must be importable by reference for the SQLAlchemy store.
_STARTS: list[float] = []
_LATE: list[tuple[str, float]] = []


async def ap_burst_job() -> None:
    _STARTS.append(time.time())


# -- scenario: burst / persistent fires ----------------------------------------------------------


async def fires(impl: str, params: dict[str, Any]) -> dict[str, Any]:
    """N one-shot jobs due at one instant; fires/s from that instant to the last start and
    to the last recorded completion."""
    n = params["n"]
    persistent = params["store"] == "sqlite"
    lead = params.get("lead", 2.0)
    for _attempt in range(4):
        out = await _fires_once(impl, n, persistent, lead, params)
        if out.get("started_late") is None:
            return out
        lead = out["started_late"] + lead * 2  # setup took longer than the lead: retry
    return out


async def _fires_once(
    impl: str, n: int, persistent: bool, lead: float, params: dict[str, Any]
) -> dict[str, Any]:
    _STARTS.clear()
    due_ts = time.time() + lead
    due = dt_at(due_ts)
    path = tmp_db(impl) if persistent else None
    t0 = time.perf_counter()
    if impl == "omnicron":
        oc = om_imports()
        starts = _STARTS
        if params.get("eager") is False:  # Python >= 3.12: measure without eager runs
            import omnicron_core._scheduler

            omnicron_core._scheduler._EAGER_TASK = None

        async def handler(job: Any) -> Any:
            starts.append(time.time())
            return oc.ExecutionResult.ok()

        url = f"sqlite:///{path}" if persistent else "memory://"
        tuning = {k: params[k] for k in ("max_concurrency", "claim_batch") if k in params}
        s = om_scheduler(oc, url, handler, **tuning)
        if params.get("hook", True):
            box = om_count_ran(oc, s)
        else:  # count handler starts only (no omnicron_job_ran hook: its cost is not in the run)
            box = {"n": 0, "last": 0.0}

            async def handler(job: Any) -> Any:
                starts.append(time.time())
                box["n"] += 1
                box["last"] = starts[-1]
                return oc.ExecutionResult.ok()

            s.set_handler(handler)
        jobs = [
            oc.new_job(f"j{i:06d}", "burst", oc.Schedule(once=due), om_action(oc)) for i in range(n)
        ]
        await s.add_jobs(jobs)
        await s.start()
    else:
        s = ap_scheduler(f"sqlite:///{path}" if persistent else None)
        box = ap_count_events(s)
        for i in range(n):
            s.add_job(ap_burst_job, "date", run_date=due, id=f"j{i:06d}")
        s.start()
        await asyncio.sleep(0)
    setup_s = time.perf_counter() - t0
    gc.collect()
    now = time.time()
    if now > due_ts - 0.1:
        if impl == "omnicron":
            await s.stop()
        else:
            s.shutdown(wait=False)
        return {"started_late": now - due_ts + 0.5}
    cpu0 = time.process_time()
    with Profiler(params):
        ok = await wait_until(lambda: box["n"] >= n, limit=params.get("timeout", 120))
    # CPU the process spent from just before the due instant to the last completion: unlike
    # the wall-clock rates, barely moved by other processes on a shared machine
    cpu_s = time.process_time() - cpu0
    if impl == "omnicron":
        await s.stop()
    else:
        s.shutdown(wait=False)
    last_start = max(_STARTS) if _STARTS else float("nan")
    first_start = min(_STARTS) if _STARTS else float("nan")
    drain_start = last_start - due_ts
    drain_done = box["last"] - due_ts
    return {
        "n": n,
        "completed": box["n"],
        "runs": len(_STARTS),
        "timed_out": not ok,
        "setup_s": setup_s,
        "first_start_after_due_s": first_start - due_ts,
        "drain_to_last_start_s": drain_start,
        "drain_to_last_done_s": drain_done,
        "fires_per_s_start": n / drain_start if drain_start > 0 else float("nan"),
        "fires_per_s_done": n / drain_done if drain_done > 0 else float("nan"),
        "cpu_s": cpu_s,
        "fires_per_cpu_s": n / cpu_s if cpu_s > 0 else float("nan"),
        "cpu_us_per_fire": cpu_s / n * 1e6,
        "rss_peak_mb": rss_peak_mb(),
    }


# -- scenario: persistent adds ------------------------------------------------------------------


async def adds(impl: str, params: dict[str, Any]) -> dict[str, Any]:
    """add_job calls into a started scheduler on a SQLite file; each add is its own 'request'
    (the loop gets a turn after each), as an API server would do."""
    n = params["n"]
    path = tmp_db(impl)
    out: dict[str, Any] = {"n": n}
    if impl == "omnicron":
        oc = om_imports()

        async def handler(job: Any) -> Any:
            return oc.ExecutionResult.ok()

        s = om_scheduler(oc, f"sqlite:///{path}", handler)
        await s.start()
        sched = oc.Schedule(interval=oc.Duration(3600 * 10**9))
        jobs = [oc.new_job(f"a{i:07d}", "add", sched, om_action(oc)) for i in range(n)]
        with Profiler(params):
            t0 = time.perf_counter()
            for job in jobs:
                await s.add_job(job)
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            dt = time.perf_counter() - t0
        out["single_adds_per_s"] = n / dt
        bn = params.get("bulk_n", n)
        chunk = params.get("chunk", 1000)
        bjobs = [oc.new_job(f"b{i:07d}", "add", sched, om_action(oc)) for i in range(bn)]
        t0 = time.perf_counter()
        for start in range(0, bn, chunk):
            await s.add_jobs(bjobs[start : start + chunk])
            await asyncio.sleep(0)
        dt = time.perf_counter() - t0
        out["bulk_n"] = bn
        out["bulk_chunk"] = chunk
        out["bulk_adds_per_s"] = bn / dt
        count = await s.store.count()
        await s.stop()
    else:
        from apscheduler.triggers.interval import IntervalTrigger

        s = ap_scheduler(f"sqlite:///{path}")
        s.start()
        await asyncio.sleep(0)
        trig = IntervalTrigger(hours=1)
        with Profiler(params):
            t0 = time.perf_counter()
            for i in range(n):
                s.add_job(ap_burst_job, trig, id=f"a{i:07d}")
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            dt = time.perf_counter() - t0
        out["single_adds_per_s"] = n / dt
        count = len(s.get_jobs())
        s.shutdown(wait=False)
    out["stored"] = count
    return out


# -- scenario: lateness -------------------------------------------------------------------------


async def lateness(impl: str, params: dict[str, Any]) -> dict[str, Any]:
    """``n`` jobs firing every second for ``seconds``; lateness = wall time when the job
    function starts minus the scheduled instant (computed here from the known anchors).

    mode "spread": job i's fires are at base + i/n s + k s; mode "same": all at whole seconds.
    """
    n, seconds, mode = params["n"], params["seconds"], params["mode"]
    base = float(int(time.time()) + 3)  # a whole second, in the future
    offsets = [i / n if mode == "spread" else 0.0 for i in range(n)]
    # Fires counted: scheduled in [window_start, window_end).
    window_start = base + 2.0
    window_end = window_start + seconds
    late: list[float] = []
    fired_ids: list[int] = []

    def record(i: int) -> None:
        now = time.time()
        off = offsets[i]
        # nearest scheduled instant at or before now (allowing 0.25 s of "early")
        k = int((now - base - off + 0.25) // 1.0)
        sched_at = base + off + k
        if window_start <= sched_at < window_end:
            late.append(now - sched_at)
            fired_ids.append(i)

    if impl == "omnicron":
        oc = om_imports()
        s = om_scheduler(oc, "memory://", None)
        # ids carry their index so the handler can find the offset cheaply
        index = {f"l{i:05d}": i for i in range(n)}

        async def handler(job: Any) -> Any:
            record(index[job.id])
            return oc.ExecutionResult.ok()

        s.set_handler(handler)
        jobs = []
        for i in range(n):
            if mode == "spread":
                job = oc.new_job(
                    f"l{i:05d}", "late", oc.Schedule(interval=oc.Duration(10**9)), om_action(oc)
                )
                job.created_at = dt_at(base + offsets[i])  # the interval's anchor
            else:
                job = oc.new_job(
                    f"l{i:05d}", "late", oc.Schedule(cron="* * * * * *"), om_action(oc)
                )
            jobs.append(job)
        await s.add_jobs(jobs)
        await s.start()
    else:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        s = ap_scheduler(None)

        def make(i: int) -> Any:
            async def fn() -> None:
                record(i)

            return fn

        for i in range(n):
            if mode == "spread":
                trig = IntervalTrigger(
                    seconds=1, start_date=dt_at(base + offsets[i]), timezone="UTC"
                )
            else:
                trig = CronTrigger(second="*", timezone="UTC")
            s.add_job(make(i), trig, id=f"l{i:05d}")
        s.start()
    gc.collect()
    with Profiler(params):
        await asyncio.sleep(max(0.0, window_end + 0.9 - time.time()))
    if impl == "omnicron":
        await s.stop()
    else:
        s.shutdown(wait=False)
    expected = n * seconds
    ms = [x * 1000 for x in late]
    return {
        "n": n,
        "seconds": seconds,
        "mode": mode,
        "expected_fires": expected,
        "fires": len(ms),
        "missed_fires": expected - len(ms),
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
    }


# -- scenario: scale ----------------------------------------------------------------------------


async def build_scale_db(n: int, path: Path) -> dict[str, Any]:
    """Fill a SQLite store with n jobs through omnicron's bulk path (cron, interval, once mixed,
    all due in the far future so starting does not fire anything)."""
    oc = om_imports()
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    s = om_scheduler(oc, f"sqlite:///{tmp}", lambda job: oc.ExecutionResult.ok())
    kinds = [
        oc.Schedule(cron="0 3 1 1 *"),
        oc.Schedule(interval=oc.Duration(8760 * 3600 * 10**9)),
        oc.Schedule(once=datetime(2100, 1, 1, tzinfo=UTC)),
    ]
    action = om_action(oc)
    chunk = 10_000
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        batch = [
            oc.new_job(f"s{i:08d}", f"job {i}", kinds[i % 3], action)
            for i in range(start, min(n, start + chunk))
        ]
        await s.add_jobs(batch)
    dt = time.perf_counter() - t0
    await s.store.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return {"build_s": dt, "build_adds_per_s": n / dt}


async def scale(impl: str, params: dict[str, Any]) -> dict[str, Any]:
    n = params["n"]
    path = Path(params["db"])
    t_import = time.perf_counter()
    oc = om_imports()
    import_s = time.perf_counter() - t_import
    base_rss = rss_now_mb()
    t0 = time.perf_counter()
    with Profiler(params):
        s = om_scheduler(oc, f"sqlite:///{path}", lambda job: oc.ExecutionResult.ok())
        await s.start()
        # "ready": the loop's first pass (claim + next_due_at) has run
        for _ in range(3):
            await asyncio.sleep(0)
    startup = time.perf_counter() - t0
    rss_after = rss_now_mb()
    count = await s.store.count()
    # What one pass of the scheduler loop costs at this size: the due query and the claim
    # (nothing is due, so the claim takes nothing), both run on the event loop's thread.
    t1 = time.perf_counter()
    for _ in range(3):
        next_due = await s.store.next_due_at()
    next_due_ms = (time.perf_counter() - t1) / 3 * 1000
    t1 = time.perf_counter()
    for _ in range(3):
        await s.store.claim_due(oc._models.utcnow(), 512, lambda j: j)
    claim_ms = (time.perf_counter() - t1) / 3 * 1000
    # add_job into the big store, each add a separate request (loop gets a turn)
    n_adds = params.get("adds", 20)
    sched = oc.Schedule(interval=oc.Duration(3600 * 10**9))
    extra = [oc.new_job(f"x{i:05d}", "x", sched, om_action(oc)) for i in range(n_adds)]
    t1 = time.perf_counter()
    for job in extra:
        await s.add_job(job)
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    adds_per_s = n_adds / (time.perf_counter() - t1)
    await s.remove_job("x")  # nothing; keeps the API exercised
    for job in extra:
        await s.remove_job(job.id)
    await s.stop()
    return {
        "n": n,
        "stored": count,
        "import_s": import_s,
        "startup_s": startup,
        "rss_base_mb": base_rss,
        "rss_after_start_mb": rss_after,
        "rss_peak_mb": rss_peak_mb(),
        "next_due_at_ms": next_due_ms,
        "claim_due_ms": claim_ms,
        "add_job_per_s_at_n": adds_per_s,
        "next_due": next_due.isoformat() if next_due else None,
    }


async def build(impl: str, params: dict[str, Any]) -> dict[str, Any]:
    return await build_scale_db(params["n"], Path(params["db"]))


async def history(impl: str, params: dict[str, Any]) -> dict[str, Any]:
    """Retention under load: ``n`` interval jobs firing every ``every`` on a SQLite file for
    ``seconds``, with ``keep`` records per job and a pruning pass every ``prune`` seconds.
    Samples the size of the history table once a second; omnicron only."""
    if impl != "omnicron":
        return {"skipped": "omnicron only"}
    oc = om_imports()
    n, keep, seconds = params["n"], params["keep"], params["seconds"]
    db = tmp_db("history")

    async def handler(job: Any) -> Any:
        return oc.ExecutionResult.ok()

    sched = om_scheduler(
        oc,
        f"sqlite:///{db}",
        handler,
        history_keep=keep,
        history_max_age=None,
        history_prune_interval=params["prune"],
    )
    box = om_count_ran(oc, sched)
    created = datetime.now(UTC)
    jobs = []
    for i in range(n):
        job = oc.new_job(
            f"h{i:05d}", "h", oc.Schedule(interval=oc.Duration(params["every"])), om_action(oc)
        )
        job.created_at = created
        jobs.append(job)
    await sched.add_jobs(jobs)
    await sched.start()
    sizes: list[int] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await asyncio.sleep(1.0)
        sizes.append(await sched.store.count_runs())
    await sched.stop()
    await sched.prune_history()
    final = await sched.store.count_runs()
    written = 0
    for job in await sched.store.list():
        c = job.counts
        if c is not None:
            written += c.started + c.skipped + c.missed + c.retried
    await sched.store.close()
    half = len(sizes) // 2
    return {
        "n": n,
        "keep": keep,
        "runs": box["n"],
        "records_written": written,
        "sizes": sizes,
        "max_records": max(sizes, default=0),
        "after_prune": final,
        # no upward trend: the second half of the run peaks no higher than the first (+25 %)
        "bounded": max(sizes[half:], default=0) <= 1.25 * max(sizes[:half], default=0),
    }


SCENARIOS = {
    "fires": fires,
    "adds": adds,
    "lateness": lateness,
    "scale": scale,
    "build": build,
    "history": history,
}


def main() -> None:
    scenario, impl, raw = sys.argv[1], sys.argv[2], sys.argv[3]
    params = json.loads(raw)
    configure_logging(params.get("logging", "filtered"))
    try:
        result = asyncio.run(SCENARIOS[scenario](impl, params))
    finally:
        for d in _TMP_DIRS:
            shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
