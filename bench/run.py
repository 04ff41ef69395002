"""omnicron vs APScheduler 3.11, side by side: ``.venv/bin/python bench/run.py [--quick]``.

Every scenario runs in a fresh subprocess per scheduler (``bench/_worker.py``), the two
schedulers interleaved (alternating which goes first), so load from other processes on the
machine hits both alike; the table reports medians over the repetitions and their ratio.
See ``bench/README.md`` and ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WORKER = BENCH / "_worker.py"
CACHE = BENCH / ".cache"
IMPLS = ("omnicron", "apscheduler")


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "reps": 2,
            "burst_n": 10_000,
            "adds_n": 2_000,
            "adds_bulk_n": 20_000,
            "ap_adds_n": 1_000,
            "pfires_n": 1_000,
            "late_n": 1_000,
            "late_s": 8,
            "late_reps": 1,
            "scale_n": 100_000,
            "history_reps": 3,
            "history_n": 500,
            "history_s": 10,
        }
    return {
        "reps": 3,
        "burst_n": 10_000,
        "adds_n": 5_000,
        "adds_bulk_n": 100_000,
        "ap_adds_n": 2_000,
        "pfires_n": 5_000,
        "late_n": 1_000,
        "late_s": 30,
        "late_reps": 1,
        "scale_n": 1_000_000,
        "history_reps": 5,
        "history_n": 1_000,
        "history_s": 30,
    }


def run_worker(
    scenario: str,
    impl: str,
    params: dict[str, Any],
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    cmd = [sys.executable, str(WORKER), scenario, impl, json.dumps(params)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=BENCH.parent,
            env={**os.environ, **env} if env else None,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f}s"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON result: " + proc.stdout[-300:]}
    out["wall_s"] = wall
    return out


def interleaved(
    scenario: str, params: dict[str, dict[str, Any]], reps: int, timeout: float, log: Any
) -> dict[str, list[dict[str, Any]]]:
    """Run each impl ``reps`` times, alternating which goes first."""
    results: dict[str, list[dict[str, Any]]] = {impl: [] for impl in params}
    order = list(params)
    for rep in range(reps):
        for impl in order if rep % 2 == 0 else order[::-1]:
            r = run_worker(scenario, impl, params[impl], timeout)
            log(f"  {scenario:<10} {impl:<12} rep {rep + 1}/{reps}: " + short(r))
            results[impl].append(r)
    return results


def short(r: dict[str, Any]) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    keys = [k for k in r if k.endswith(("_per_s", "_per_s_start", "_ms", "_s", "_mb"))]
    return ", ".join(f"{k}={fmt(r[k])}" for k in keys[:6])


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def med(rs: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in rs if "error" not in r and key in r and r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        scenario: str,
        metric: str,
        om: float,
        ap: float | None,
        *,
        higher_better: bool,
        target: str,
        passed: bool | None,
    ) -> None:
        ratio = None
        if ap is not None and ap == ap and om == om and ap and om:
            ratio = om / ap if higher_better else ap / om  # >1 means omnicron is better
        self.rows.append(
            {
                "scenario": scenario,
                "metric": metric,
                "omnicron": om,
                "apscheduler": ap,
                "ratio": ratio,
                "target": target,
                "pass": passed,
            }
        )

    def render(self) -> str:
        head = ("scenario", "metric", "omnicron", "APScheduler", "ratio*", "target", "result")
        lines = [head]
        for r in self.rows:
            lines.append(
                (
                    r["scenario"],
                    r["metric"],
                    fmt(r["omnicron"]),
                    "-" if r["apscheduler"] is None else fmt(r["apscheduler"]),
                    "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
                    r["target"],
                    {True: "PASS", False: "FAIL", None: "info"}[r["pass"]],
                )
            )
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        out = []
        for n, line in enumerate(lines):
            out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        out.append("* ratio > 1 means omnicron is better (rate: om/ap; latency: ap/om)")
        return "\n".join(out)


def environment() -> dict[str, Any]:
    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "apscheduler": ver("apscheduler"),
        "sqlalchemy": ver("sqlalchemy"),
        "omnicron-core": ver("omnicron-core"),
        "sqlite": __import__("sqlite3").sqlite_version,
    }


# -- scenarios ---------------------------------------------------------------------------------


def sc_burst(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    n = cfg["burst_n"]
    p = {"n": n, "store": "memory", "lead": 2.0}
    res = interleaved("fires", {"omnicron": p, "apscheduler": p}, cfg["reps"], 180, log)
    raw["burst"] = res
    for key, label in (
        ("fires_per_s_start", "fires/s (last start)"),
        ("fires_per_s_done", "fires/s (last done)"),
    ):
        om, ap = med(res["omnicron"], key), med(res["apscheduler"], key)
        table.add(
            f"1 burst {n:,} memory",
            label,
            om,
            ap,
            higher_better=True,
            target=">= 1.5x",
            passed=bool(om >= 1.5 * ap) if key == "fires_per_s_start" else None,
        )


def sc_logging(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    """The burst with the library's logging defaults (nothing configured: silent) against
    logging filtered at WARNING by the application; omnicron only, interleaved."""
    n = cfg["burst_n"]
    runs: dict[str, list[dict[str, Any]]] = {"defaults": [], "filtered": []}
    order = list(runs)
    reps = cfg["reps"] + 2  # one scheduler, two settings: cheap enough for more repetitions
    for rep in range(reps):
        for mode in order if rep % 2 == 0 else order[::-1]:
            p = {"n": n, "store": "memory", "lead": 2.0, "logging": mode}
            r = run_worker("fires", "omnicron", p, 180)
            log(f"  fires      omnicron/{mode:<9} rep {rep + 1}/{reps}: " + short(r))
            runs[mode].append(r)
    raw["logging"] = runs
    for key, label in (
        ("fires_per_s_start", "fires/s (last start)"),
        ("fires_per_s_done", "fires/s (last done)"),
        ("fires_per_cpu_s", "fires per CPU-second"),
    ):
        defaults, filtered = med(runs["defaults"], key), med(runs["filtered"], key)
        table.add(
            f"1L burst {n:,}: defaults vs filtered",
            label,
            defaults,
            filtered,
            higher_better=True,
            target="defaults >= 0.95x filtered",
            passed=bool(defaults >= 0.95 * filtered) if key == "fires_per_s_start" else None,
        )


def sc_adds(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    params = {
        "omnicron": {"n": cfg["adds_n"], "bulk_n": cfg["adds_bulk_n"], "chunk": 1000},
        "apscheduler": {"n": cfg["ap_adds_n"]},
    }
    res = interleaved("adds", params, cfg["reps"], 300, log)
    raw["adds"] = res
    ap = med(res["apscheduler"], "single_adds_per_s")
    om = med(res["omnicron"], "single_adds_per_s")
    bulk = med(res["omnicron"], "bulk_adds_per_s")
    table.add(
        "2 adds sqlite",
        "add_job adds/s",
        om,
        ap,
        higher_better=True,
        target=">= 20x",
        passed=bool(om >= 20 * ap),
    )
    table.add(
        "2 adds sqlite",
        "add_jobs (bulk 1000) adds/s",
        bulk,
        ap,
        higher_better=True,
        target=">= 20x",
        passed=bool(bulk >= 20 * ap),
    )


def sc_pfires(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    n = cfg["pfires_n"]
    params = {
        "omnicron": {"n": n, "store": "sqlite", "lead": 2.0},
        # APScheduler's adds (done by start()) are slow on SQLite: give it a longer lead
        "apscheduler": {"n": n, "store": "sqlite", "lead": 2.0 + n / 400},
    }
    res = interleaved("fires", params, cfg["reps"], 600, log)
    raw["persistent_fires"] = res
    for key, label in (
        ("fires_per_s_start", "fires/s (last start)"),
        ("fires_per_s_done", "fires/s (state persisted)"),
    ):
        om, ap = med(res["omnicron"], key), med(res["apscheduler"], key)
        table.add(
            f"3 fires {n:,} sqlite",
            label,
            om,
            ap,
            higher_better=True,
            target=">= 20x",
            passed=bool(om >= 20 * ap) if key == "fires_per_s_done" else None,
        )


def sc_lateness(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    for mode, scen, factor, target in (
        ("spread", "4a lateness spread", 1.0, "p99 <= ap"),
        ("same", "4b lateness same-instant", 2.0, "p99 <= ap/2"),
    ):
        p = {"n": cfg["late_n"], "seconds": cfg["late_s"], "mode": mode}
        res = interleaved(
            "lateness",
            {"omnicron": p, "apscheduler": p},
            cfg["late_reps"],
            cfg["late_s"] + 120,
            log,
        )
        raw[f"lateness_{mode}"] = res
        label = f"{scen} {cfg['late_n']}x{cfg['late_s']}s"
        for key in ("p50_ms", "p99_ms", "max_ms"):
            om, ap = med(res["omnicron"], key), med(res["apscheduler"], key)
            passed = bool(om * factor <= ap) if key == "p99_ms" else None
            table.add(
                label,
                f"lateness {key[:-3]} (ms)",
                om,
                ap,
                higher_better=False,
                target=target if key == "p99_ms" else "",
                passed=passed,
            )
        om, ap = med(res["omnicron"], "missed_fires"), med(res["apscheduler"], "missed_fires")
        table.add(
            label, "missed fires", om, ap, higher_better=False, target="0", passed=bool(om == 0)
        )


def sc_scale(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    n = cfg["scale_n"]
    db = CACHE / f"scale-{n}.db"
    if not db.exists():
        log(f"  building {db} ({n:,} jobs, omnicron bulk add_jobs, chunks of 10,000)...")
        b = run_worker("build", "omnicron", {"n": n, "db": str(db)}, 1800)
        log("  build: " + short(b))
        raw["scale_build"] = b
        if "error" not in b:
            table.add(
                f"5 scale {n:,} sqlite",
                "build adds/s (bulk, info)",
                b["build_adds_per_s"],
                None,
                higher_better=True,
                target="",
                passed=None,
            )
    else:
        log(f"  using cached {db}")
    reps = cfg["reps"]
    res = [run_worker("scale", "omnicron", {"n": n, "db": str(db)}, 300) for _ in range(reps)]
    for r in res:
        log("  scale omnicron: " + short(r))
    raw["scale"] = res
    startup, rss = med(res, "startup_s"), med(res, "rss_peak_mb")
    table.add(
        f"5 scale {n:,} sqlite",
        "startup (s)",
        startup,
        None,
        higher_better=False,
        target="< 10 s",
        passed=bool(startup < 10),
    )
    table.add(
        f"5 scale {n:,} sqlite",
        "peak RSS (MB)",
        rss,
        None,
        higher_better=False,
        target="< 600 MB",
        passed=bool(rss < 600),
    )
    for key, label in (
        ("next_due_at_ms", "next_due_at query (ms, info)"),
        ("claim_due_ms", "claim_due, nothing due (ms, info)"),
        ("add_job_per_s_at_n", "add_job adds/s into this store (info)"),
    ):
        table.add(
            f"5 scale {n:,} sqlite",
            label,
            med(res, key),
            None,
            higher_better=False,
            target="",
            passed=None,
        )


def sc_history(cfg: dict[str, Any], table: Table, raw: dict[str, Any], log: Any) -> None:
    """Run history (issue 10): what writing it costs the persistent fire path, and whether
    retention keeps the table bounded under load. omnicron only."""
    n = cfg["pfires_n"]
    params = {"n": n, "store": "sqlite", "lead": 2.0}
    with_h: list[dict[str, Any]] = []
    without: list[dict[str, Any]] = []
    for rep in range(cfg["history_reps"]):
        runs = [("with", None), ("without", {"OMNICRON_BENCH_NO_HISTORY": "1"})]
        for label, env in runs if rep % 2 == 0 else runs[::-1]:
            r = run_worker("fires", "omnicron", params, 300, env)
            log(f"  history    {label:<12} rep {rep + 1}: " + short(r))
            (with_h if env is None else without).append(r)
    raw["history_cost"] = {"with": with_h, "without": without}
    a, b = med(with_h, "fires_per_s_done"), med(without, "fires_per_s_done")
    table.add(
        f"6 history, fires {n:,} sqlite",
        "fires/s with history writes / without",
        a,
        b,
        higher_better=True,
        target=">= 0.75x",
        passed=bool(a >= 0.75 * b),
    )
    soak = {
        "n": cfg["history_n"],
        "keep": 5,
        "seconds": cfg["history_s"],
        "every": "100ms",
        "prune": 1.0,
    }
    r = run_worker("history", "omnicron", soak, 120 + soak["seconds"] * 4)
    log("  retention: " + short(r))
    raw["history_retention"] = r
    table.add(
        f"6 history retention, {soak['n']:,} jobs x 10/s, keep 5",
        "max records in the table (info: keep x jobs = "
        f"{soak['n'] * 5:,}, plus one prune interval of writes)",
        r.get("max_records", 0),
        None,
        higher_better=False,
        target="no upward trend",
        passed=bool(r.get("bounded")),
    )


SCENARIOS = {
    "burst": sc_burst,
    "logging": sc_logging,
    "adds": sc_adds,
    "pfires": sc_pfires,
    "lateness": sc_lateness,
    "scale": sc_scale,
    "history": sc_history,
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes; finishes in < 3 min")
    ap.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable)",
    )
    ap.add_argument("--json", type=Path, help="write environment, table and raw results here")
    args = ap.parse_args()
    cfg = sizes(args.quick)
    env = environment()
    print("environment:")
    for k, v in env.items():
        print(f"  {k}: {v}")
    print(f"sizes: {cfg}")
    sys.stdout.flush()

    def log(msg: str) -> None:
        print(msg, flush=True)

    table = Table()
    raw: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name, fn in SCENARIOS.items():
        if args.only and name not in args.only:
            continue
        log(f"[{name}]")
        fn(cfg, table, raw, log)
    total = time.perf_counter() - t0
    print()
    print(table.render())
    print(f"total {total:.0f}s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "environment": env,
                    "sizes": cfg,
                    "quick": args.quick,
                    "total_s": total,
                    "table": table.rows,
                    "raw": raw,
                },
                indent=2,
                default=str,
            )
        )
    return 1 if any(r["pass"] is False for r in table.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
