"""Prometheus metrics of the runtime, fed by the ``omnicron_job_ran`` and
``omnicron_job_changed`` hooks, served with a liveness endpoint on one port.

Metrics (all in their own registry, so embedding hosts' metrics are not mixed in):

- ``omnicron_job_runs_total{action_type, outcome, trigger}``: runs; ``outcome`` is
  ``success``, ``failure`` or ``missed``; ``trigger`` is ``scheduled`` (a fire) or ``manual``.
- ``omnicron_job_failures_total{action_type}``: failed or missed runs.
- ``omnicron_job_lateness_seconds{action_type}``: fire time to start, scheduled runs.
- ``omnicron_job_duration_seconds{action_type}``: run durations.
- ``omnicron_job_changes_total{change}``: added, updated, removed, enabled, disabled.
- ``omnicron_job_missed_fires_total{trigger}``: fires recorded missed (older than the job's
  catch-up window when claimed, or waiting when the scheduler stopped).
- ``omnicron_job_skipped_fires_total{reason}``: fires recorded skipped; ``reason`` is
  ``overlap`` (a run was still going, or the buffer was full) or ``coalesced`` (catch-up
  ``latest`` ran a later fire instead), ``other`` otherwise.
- ``omnicron_job_retries_total``: failed runs retried (each further attempt counts once).
- ``omnicron_job_cancelled_runs_total``: runs cancelled (``cancel_other``, or stopped by a
  shutdown).
- ``omnicron_job_interrupted_runs_total``: runs found interrupted at start (the process died).
- ``omnicron_jobs{status}``: jobs in the store by status (refreshed every few seconds and
  soon after a change).
- ``omnicron_store_<name>``: what the store backend reports of this process's use of it
  (``StoreBackend.stats()``; PostgreSQL: claims, claim latency, leases held, lease losses,
  reaped runs, notify lag), read at each scrape.

``GET /metrics`` serves them; ``GET /healthz`` answers 200 while the event loop is responsive
and 503 when it has not ticked for :data:`STALL_AFTER` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pluggy
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ._models import ExecutionResult, Job, JobStatus
from ._runs import RunOutcome, RunRecord, RunTrigger
from ._store import Store
from .hookspecs import hookimpl

__all__ = ["STALL_AFTER", "MetricsPlugin", "MetricsServer"]

#: Seconds without an event-loop tick after which ``/healthz`` reports the process stuck.
STALL_AFTER = 15.0
_TICK = 1.0
_REFRESH = 5.0
_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class MetricsPlugin:
    """A plugin object recording runs and changes; register it with the plugin manager."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            "omnicron_job_runs",
            "Job runs by action type, outcome and trigger.",
            ["action_type", "outcome", "trigger"],
            registry=self.registry,
        )
        self.failures = Counter(
            "omnicron_job_failures",
            "Failed or missed job runs by action type.",
            ["action_type"],
            registry=self.registry,
        )
        self.lateness = Histogram(
            "omnicron_job_lateness_seconds",
            "Seconds between a job's fire time and the start of its run.",
            ["action_type"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "omnicron_job_duration_seconds",
            "Seconds a job run took.",
            ["action_type"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.changes = Counter(
            "omnicron_job_changes",
            "Job definition and status changes.",
            ["change"],
            registry=self.registry,
        )
        self.missed = Counter(
            "omnicron_job_missed_fires",
            "Fires recorded missed (past the catch-up window), by trigger.",
            ["trigger"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "omnicron_job_skipped_fires",
            "Fires recorded skipped, by reason (overlap, coalesced, other).",
            ["reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "omnicron_job_retries",
            "Failed runs retried (one per further attempt).",
            registry=self.registry,
        )
        self.cancelled = Counter(
            "omnicron_job_cancelled_runs", "Runs cancelled.", registry=self.registry
        )
        self.interrupted = Counter(
            "omnicron_job_interrupted_runs",
            "Runs found interrupted at start (the process died during them).",
            registry=self.registry,
        )
        for reason in ("overlap", "coalesced", "other"):
            self.skipped.labels(reason)
        self.jobs = Gauge(
            "omnicron_jobs", "Jobs in the store by status.", ["status"], registry=self.registry
        )
        for status in JobStatus:
            self.jobs.labels(status.value).set(0)
        # Set by the hooks, which the scheduler calls on its event loop.
        self.changed = asyncio.Event()

    @hookimpl
    def omnicron_job_ran(self, job: Job, result: ExecutionResult) -> None:
        kind = job.action.type
        if result.started_at is None:
            outcome = "missed"
        else:
            outcome = "success" if result.success else "failure"
        trigger = "manual" if result.scheduled_at is None else "scheduled"
        self.runs.labels(kind, outcome, trigger).inc()
        if outcome != "success":
            self.failures.labels(kind).inc()
        if result.started_at is not None:
            self.duration.labels(kind).observe(result.duration / 1e9)
        if result.lateness is not None:
            self.lateness.labels(kind).observe(result.lateness / 1e9)

    @hookimpl
    def omnicron_run_recorded(self, job_id: str, record: RunRecord) -> None:
        outcome = record.outcome
        if outcome == RunOutcome.MISSED:
            self.missed.labels(str(record.trigger)).inc()
        elif outcome == RunOutcome.SKIPPED:
            if record.error.startswith("coalesced"):
                reason = "coalesced"
            elif record.error.startswith(("skipped: the previous run", "skipped: the buffer")):
                reason = "overlap"
            else:
                reason = "other"
            self.skipped.labels(reason).inc()
        elif outcome == RunOutcome.CANCELLED:
            self.cancelled.inc()
        elif outcome == RunOutcome.INTERRUPTED:
            self.interrupted.inc()
        if record.trigger == RunTrigger.RETRY:
            self.retries.inc()

    @hookimpl
    def omnicron_job_changed(self, job: Job, change: str) -> None:
        self.changes.labels(change).inc()
        self.changed.set()

    async def refresh_jobs(self, store: Store) -> None:
        """Set ``omnicron_jobs`` from the store's counts."""
        for status in JobStatus:
            self.jobs.labels(status.value).set(await store.count(status))


class StoreStatsCollector:
    """Exports the store backend's ``stats()`` at scrape time (nothing when it has none)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        try:
            stats = dict(self.store.backend.stats())
        except Exception:  # a scrape must not fail because the store is not open
            stats = {}
        for name, value in sorted(stats.items()):
            if name.endswith("_total"):
                yield CounterMetricFamily(
                    f"omnicron_store_{name[: -len('_total')]}", f"store: {name}", value=value
                )
            else:
                yield GaugeMetricFamily(f"omnicron_store_{name}", f"store: {name}", value=value)


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` from a thread; keeps the job gauge fresh."""

    def __init__(
        self,
        plugin_manager: pluggy.PluginManager,
        store: Store,
        *,
        host: str = "127.0.0.1",
        plugin: MetricsPlugin | None = None,
    ) -> None:
        self.plugin_manager = plugin_manager
        self.store = store
        self.host = host
        self.plugin = plugin or MetricsPlugin()
        self.plugin.registry.register(StoreStatsCollector(store))
        self.port: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def healthy(self) -> tuple[bool, str]:
        beat = self._heartbeat
        if beat is None:
            return True, "starting"
        if time.monotonic() - beat > STALL_AFTER:
            return False, "event loop stalled"
        return True, "ok"

    def start(self, port: int) -> None:
        """Register the plugin and listen on ``port`` (``0``: a free one; see :attr:`port`)."""
        server = ThreadingHTTPServer((self.host, port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, name="omnicron-metrics", daemon=True
        )
        self._thread.start()
        self.plugin_manager.register(self.plugin, name="omnicron.metrics")

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the heartbeat and the job-gauge refresh on the runtime's loop."""
        self._heartbeat = time.monotonic()
        self._tasks = [loop.create_task(self._beat()), loop.create_task(self._refresh())]

    async def _beat(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            await asyncio.sleep(_TICK)

    async def _refresh(self) -> None:
        changed = self.plugin.changed
        while True:
            changed.clear()
            with contextlib.suppress(Exception):  # a store hiccup must not end the refresh
                await self.plugin.refresh_jobs(self.store)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), _REFRESH)
            await asyncio.sleep(0.2)  # one count for a burst of changes

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server.server_close()
            self._server = None
        if self.plugin_manager.is_registered(self.plugin):
            self.plugin_manager.unregister(self.plugin)


def _handler_for(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.plugin.registry))
            elif path == "/healthz":
                ok, status = server.healthy()
                body = json.dumps({"status": status}).encode()
                self._send(200 if ok else 503, "application/json", body)
            else:
                self._send(
                    404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n"
                )

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the runtime's own events

    return Handler
