"""``omnicron mcp --transport http``: bearer token, loopback-only without one, Host checks.

The real server runs in a subprocess on 127.0.0.1; requests are made with httpx (and the SDK's
client for a whole MCP session)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("mcp")

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from omnicron_core.mcp_server import TOKEN_ENV, allowed_hosts

TOKEN = "s3cret-token-for-tests-0123456789"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    out.update(extra)
    return out


def mcp_args(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "omnicron_core.cli", "mcp", "--transport", "http",
        "--port", str(port), "--store", f"sqlite:///{tmp_path / 'jobs.db'}", "--no-scheduler",
        *extra,
    ]  # fmt: skip


def wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not listen"
            time.sleep(0.1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """A server on 127.0.0.1 whose token comes from a 0600 file."""
    port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    log = tmp_path / "server.log"
    with log.open("w") as errlog:
        proc = subprocess.Popen(
            mcp_args(tmp_path, port, "--token-file", str(token_file)),
            env=env(),
            stderr=errlog,
        )
    try:
        wait_listening(proc, port, log)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "can be read by other users" not in log.read_text()  # the token file is 0600


def post(port: int, headers: dict[str, str], host: str | None = None) -> httpx.Response:
    all_headers = {**MCP_HEADERS, **headers}
    if host is not None:
        all_headers["Host"] = host
    return httpx.post(f"http://127.0.0.1:{port}/mcp", json=INITIALIZE, headers=all_headers)


def test_no_token_or_a_wrong_one_is_refused(server: int) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        response = post(server, headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
    response = httpx.get(f"http://127.0.0.1:{server}/mcp")
    assert response.status_code == 401


def test_the_right_token_works_and_a_bad_host_is_still_refused(server: int) -> None:
    ok = post(server, {"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert "omnicron" in ok.text
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert post(server, auth, host="evil.example").status_code == 421
    assert post(server, auth, host=f"evil.example:{server}").status_code == 421
    bad_origin = post(server, {**auth, "Origin": "http://evil.example"})
    assert bad_origin.status_code == 403


async def test_a_whole_mcp_session_with_the_token(server: int) -> None:
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    url = f"http://127.0.0.1:{server}/mcp"
    async with (
        client,
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(*streams) as session,
    ):
        await session.initialize()
        tools = (await session.list_tools()).tools
        assert "cron_create" in [t.name for t in tools]


def test_token_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as errlog:
        proc = subprocess.Popen(
            mcp_args(tmp_path, port), env=env(**{TOKEN_ENV: TOKEN}), stderr=errlog
        )
    try:
        wait_listening(proc, port, log)
        assert post(port, {}).status_code == 401
        assert post(port, {"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def run_mcp(tmp_path: Path, *extra: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mcp_args(tmp_path, free_port(), *extra), env=env(**environ), capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip


def test_non_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.com"):
        proc = run_mcp(tmp_path, "--host", host)
        assert proc.returncode == 2, (host, proc.stderr)
        assert "not a loopback address" in proc.stderr and TOKEN_ENV in proc.stderr
        assert "Traceback" not in proc.stderr


def test_bad_tokens_and_token_flags_are_refused(tmp_path: Path) -> None:
    proc = run_mcp(tmp_path, **{TOKEN_ENV: "short"})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {TOKEN_ENV}: the token must be at least 16")
    proc = run_mcp(tmp_path, "--token-file", str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --token-file: cannot read")
    proc = run_mcp(tmp_path, "--token", TOKEN)  # never on the command line
    assert proc.returncode == 2
    assert "No such option '--token'" in proc.stderr


def test_allow_unauthenticated_warns_and_keeps_host_checks(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("w") as errlog:
        proc = subprocess.Popen(
            mcp_args(tmp_path, port, "--host", "0.0.0.0", "--allow-unauthenticated"),
            env=env(),
            stderr=errlog,
        )
    try:
        wait_listening(proc, port, log)
        assert "without authentication" in log.read_text()
        assert post(port, {}, host=f"127.0.0.1:{port}").status_code == 200
        assert post(port, {}, host=f"evil.example:{port}").status_code == 421
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_allowed_hosts() -> None:
    assert allowed_hosts("127.0.0.1") == [
        "127.0.0.1:*", "127.0.0.1", "localhost:*", "localhost", "[::1]:*", "[::1]",
    ]  # fmt: skip
    assert "192.0.2.10:*" in allowed_hosts("192.0.2.10")
    assert "[2001:db8::1]:*" in allowed_hosts("2001:db8::1")
    hosts = allowed_hosts("0.0.0.0", ["sched.example", "proxy.example:8443"])
    assert socket.gethostname() + ":*" in hosts
    assert "sched.example:*" in hosts and "proxy.example:8443" in hosts
    assert "proxy.example:8443:*" not in hosts
