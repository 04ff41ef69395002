"""A real HTTP server on 127.0.0.1 that records what it receives and replies from a script."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest
from omnicron_webhook import WebhookExecutor, load_settings

from omnicron_core import Action, Job, RunInfo


@dataclass
class Received:
    method: str
    path: str
    headers: httpx.Headers
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Send this many bytes of body (in 64 KiB chunks) instead of ``body``.
    stream_bytes: int = 0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing a kept-alive connection is normal here; anything else is shown.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.streamed = 0
        self._lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.recorder = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def script(self, *replies: dict[str, Any]) -> None:
        """Queue the next replies (``Reply`` fields as keywords), then the default ``200 ok``."""
        self.replies.extend(Reply(**r) for r in replies)

    def always(self, **reply: Any) -> None:
        self.default = Reply(**reply)

    def next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self.replies.popleft() if self.replies else self.default


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        recorder: RecordingServer = self.server.recorder  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = Received(
            self.command,
            self.path,
            httpx.Headers(list(self.headers.items())),
            body,
            time.monotonic(),
        )
        reply = recorder.next_reply(received)
        if reply.delay:
            time.sleep(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.stream_bytes:
            self.send_header("Content-Length", str(reply.stream_bytes))
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while recorder.streamed < reply.stream_bytes:
                    self.wfile.write(chunk)
                    recorder.streamed += len(chunk)
            except OSError:
                pass
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


# Loopback is allow-listed for the test server; fast backoff keeps retry tests short.
TEST_SETTINGS: dict[str, Any] = {
    "allow_networks": ["127.0.0.0/8"],
    "backoff_initial": 0.01,
    "backoff_max": 0.05,
    "timeout": 5,
}


@pytest.fixture
async def make_executor() -> AsyncIterator[Callable[..., WebhookExecutor]]:
    """Executors built from TEST_SETTINGS plus overrides, closed after the test."""
    made: list[WebhookExecutor] = []

    def make(**overrides: Any) -> WebhookExecutor:
        executor = WebhookExecutor(load_settings({**TEST_SETTINGS, **overrides}))
        made.append(executor)
        return executor

    try:
        yield make
    finally:
        for executor in made:
            await executor.aclose()


@pytest.fixture
def executor(make_executor: Callable[..., WebhookExecutor]) -> WebhookExecutor:
    return make_executor()


def _make_job(
    url: str,
    *,
    method: str = "",
    headers: dict[str, str] | None = None,
    body: str = "",
    metadata: dict[str, Any] | None = None,
    job_id: str = "job-1",
) -> Job:
    return Job(
        id=job_id,
        name="webhook test",
        action=Action(
            type="call_webhook",
            webhook_url=url,
            webhook_method=method,
            webhook_headers=headers,
            webhook_body=body,
        ),
        metadata=metadata,
    )


FIRE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _run_info(run_id: str = "run-1", scheduled_at: datetime | None = FIRE) -> RunInfo:
    return RunInfo(run_id=run_id, scheduled_at=scheduled_at, manual=scheduled_at is None)


class ConnectSpy:
    """Records every address the real network backend is asked to connect to."""

    def __init__(self) -> None:
        self.hosts: list[str] = []


@pytest.fixture
def connect_spy(monkeypatch: pytest.MonkeyPatch) -> ConnectSpy:
    spy = ConnectSpy()
    original = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(self: Any, host: str, port: int, **kwargs: Any) -> Any:
        spy.hosts.append(host)
        if not host.startswith("127.") and host != "::1":
            raise AssertionError(f"test tried to connect to non-loopback {host}")
        return await original(self, host, port, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return spy


@pytest.fixture
def make_job() -> Callable[..., Job]:
    return _make_job


@pytest.fixture
def run_info() -> Callable[..., RunInfo]:
    return _run_info
