"""A real HTTP gateway on 127.0.0.1 that records what it receives and answers from a script."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class Gateway:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.gateway = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/deliver"

    def script(self, **reply: object) -> None:
        """Queue the next reply (``Reply`` fields as keywords); then ``{"response": "ok"}``."""
        self.replies.append(Reply(**reply))  # type: ignore[arg-type]

    def take(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self.replies.popleft() if self.replies else Reply(body=b'{"response": "ok"}')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        gateway: Gateway = self.server.gateway  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        reply = gateway.take(
            Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    thread = threading.Thread(target=gw.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield gw
    finally:
        gw.httpd.shutdown()
        gw.httpd.server_close()
        thread.join(5)
