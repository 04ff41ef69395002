"""Where a message goes when no host answers: the console, a JSON-lines file, an HTTP gateway."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from omnicron_core.plugin import (
    BodyReader,
    Job,
    RunInfo,
    UndecodableBodyError,
    make_private_dirs,
)

from ._secrets import resolve_env_refs
from ._settings import SendMessageSettings

__all__ = ["ConsoleTransport", "GatewayError", "HttpTransport", "JsonlTransport", "Transport"]

# Control characters would break "one line per message"; show them escaped instead.
_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


class GatewayError(Exception):
    """The http transport's gateway answered, but not with a 2xx status."""


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


class Transport:
    """Delivers one message; returns the reply (``""`` when the transport has none)."""

    async def send(self, session_id: str, message: str, job: Job, run: RunInfo) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the transport holds."""


class ConsoleTransport(Transport):
    """Prints one readable line per message to stdout and flushes it."""

    async def send(self, session_id: str, message: str, job: Job, run: RunInfo) -> str:
        at = (run.scheduled_at or _now()).replace(microsecond=0)
        line = (
            f"[{at}] send_message -> session {session_id.translate(_ESCAPES)!r}: "
            f"{message.translate(_ESCAPES)}"
        )
        # sys.stdout is looked up per call so that redirection (and pytest's capsys) applies.
        print(line, file=sys.stdout, flush=True)
        return ""


class JsonlTransport(Transport):
    """Appends one JSON object per message to a file (created with its folders if missing)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()

    async def send(self, session_id: str, message: str, job: Job, run: RunInfo) -> str:
        record = {
            "session_id": session_id,
            "message": message,
            "job_id": job.id,
            "job_name": job.name,
            "scheduled_for": _rfc3339(run.scheduled_at),
            "sent_at": _rfc3339(_now()),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._append, line)
        return ""

    def _append(self, line: str) -> None:
        # One write of a whole line under a lock: concurrent runs never interleave lines.
        # Messages are private like the store: 0700 folders, a 0600 file, whatever the umask.
        with self._lock:
            make_private_dirs(self.path.parent)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)


class HttpTransport(Transport):
    """POSTs ``{session_id, message, job_id, scheduled_for}`` as JSON to a gateway.

    The reply is the response JSON's ``response`` (or ``reply``) field, else the text body.
    One ``httpx.AsyncClient`` per transport lifetime; ``transport`` lets tests inject one.
    """

    def __init__(
        self,
        settings: SendMessageSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.timeout,
                follow_redirects=False,
                transport=self._transport,
            )
        return self._client

    async def send(self, session_id: str, message: str, job: Job, run: RunInfo) -> str:
        headers = {"Idempotency-Key": run.run_id}
        for name, value in self.settings.headers.items():
            try:
                headers[name] = resolve_env_refs(value)
            except KeyError as exc:
                raise ValueError(f"header {name!r}: {exc}") from None
        body = {
            "session_id": session_id,
            "message": message,
            "job_id": job.id,
            "scheduled_for": _rfc3339(run.scheduled_at),
        }
        client = self._get_client()
        try:
            async with client.stream("POST", self.settings.url, json=body, headers=headers) as resp:
                raw = await _read_limited(resp, self.settings.max_response_bytes)
        except httpx.TimeoutException:
            raise GatewayError(
                f"gateway request timed out after {self.settings.timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise GatewayError(f"gateway request failed: {exc or type(exc).__name__}") from None
        text = raw.decode(resp.encoding or "utf-8", errors="replace")
        if not 200 <= resp.status_code < 300:
            raise GatewayError(f"gateway returned status {resp.status_code}: {text[:512]}")
        return _reply_from(text)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


async def _read_limited(resp: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the decoded body: raw bytes decoded with the bound, so a
    compressed reply cannot grow past it (httpx decodes a whole chunk before any cap)."""
    try:
        reader = BodyReader(resp.headers.get("content-encoding"), limit)
        async for chunk in resp.aiter_raw():
            if reader.feed(chunk):
                break
    except httpx.StreamConsumed:  # a response built in memory (httpx.MockTransport)
        reader = BodyReader(None, limit)
        reader.feed(resp.content)
    except UndecodableBodyError as exc:
        raise GatewayError(f"gateway reply unreadable: {exc}") from None
    return reader.body


def _reply_from(text: str) -> str:
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        for key in ("response", "reply"):
            if key in data:
                value = data[key]
                if value is None:
                    return ""
                return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text


def make_transport(
    settings: SendMessageSettings, *, http_transport: httpx.AsyncBaseTransport | None = None
) -> Transport | None:
    """The fallback transport the settings choose; ``None`` when unset or ``host``."""
    if settings.transport == "jsonl":
        return JsonlTransport(settings.path)
    if settings.transport == "http":
        return HttpTransport(settings, transport=http_transport)
    if settings.transport == "console":
        return ConsoleTransport()
    return None
