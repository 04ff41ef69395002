"""Issue 9 against a real server on 127.0.0.1: decompression bombs, timeouts above httpx's 5 s
default, a redirect without ``Location``, and secrets in a job an agent made."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from omnicron_webhook import WebhookExecutor

from omnicron_core.bodies import BodyReader, UndecodableBodyError

Make = Callable[..., Any]

MIB = 1024 * 1024
#: Decoded size of the bombs: big enough that decoding it whole would show, small to build.
BOMB_DECODED = 64 * MIB


def _gzip_zeros(size: int) -> bytes:
    """gzip of ``size`` zero bytes, built a mebibyte at a time (never ``size`` in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MIB)
    out = bytearray()
    for _ in range(size // MIB):
        out += packer.compress(block)
    out += packer.flush()
    return bytes(out)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    single = _gzip_zeros(BOMB_DECODED)
    return {"single": single, "double": gzip.compress(single, 9)}


async def _peak_during(coro: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await coro
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


async def test_double_gzip_bomb_is_refused_without_decoding(
    server: Any, make_executor: Make, make_job: Make, run_info: Make, bombs: dict[str, bytes]
) -> None:
    assert len(bombs["double"]) < 4096  # a few hundred bytes that would grow to 64 MiB
    server.always(body=bombs["double"], headers={"Content-Encoding": "gzip, gzip"})
    executor = make_executor(max_attempts=1)
    result, peak = await _peak_during(executor.execute(make_job(server.url), run_info()))
    assert not result.success
    assert "2 content encodings" in result.error and "'gzip, gzip'" in result.error
    assert result.error.startswith("read response failed: ")
    assert peak < 8 * MIB, peak


async def test_single_gzip_bomb_is_decoded_only_up_to_the_cap(
    server: Any, make_executor: Make, make_job: Make, run_info: Make, bombs: dict[str, bytes]
) -> None:
    server.always(body=bombs["single"], headers={"Content-Encoding": "gzip"})
    executor = make_executor(max_attempts=1)
    result, peak = await _peak_during(executor.execute(make_job(server.url), run_info()))
    assert result.success, result.error
    assert len(result.output["body"]) == MIB  # max_response_bytes, decoded
    assert peak < 16 * MIB, peak  # not the 64 MiB the body decodes to


async def test_compressed_bodies_within_the_cap_are_decoded(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(max_attempts=1)
    text = b'{"ok": true}' * 100
    for encoding, body in (
        ("gzip", gzip.compress(text)),
        ("deflate", zlib.compress(text)),
        ("deflate", zlib.compress(text)[2:-4]),  # raw deflate, as some servers send it
        ("identity", text),
        ("gzip", gzip.compress(text[:600]) + gzip.compress(text[600:])),  # two members
    ):
        server.always(body=body, headers={"Content-Encoding": encoding})
        result = await executor.execute(make_job(server.url), run_info())
        assert result.success, (encoding, result.error)
        assert result.output["body"] == text.decode(), encoding


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
async def test_encodings_not_decoded_are_refused(
    server: Any, make_executor: Make, make_job: Make, run_info: Make, encoding: str
) -> None:
    server.always(body=b"\x00" * 100, headers={"Content-Encoding": encoding})
    result = await make_executor(max_attempts=1).execute(make_job(server.url), run_info())
    assert not result.success
    assert "content encoding" in result.error
    assert result.output == {"status_code": 200, "body": ""}


def test_body_reader_bounds_and_corrupt_input() -> None:
    reader = BodyReader("gzip", 10)
    assert reader.feed(gzip.compress(b"x" * 1000)) is True
    assert reader.body == b"x" * 10 and reader.truncated
    with pytest.raises(UndecodableBodyError, match="not valid gzip"):
        BodyReader("gzip", 10).feed(b"not gzip at all")
    with pytest.raises(UndecodableBodyError):
        BodyReader("gzip, deflate", 10)
    plain = BodyReader(None, 4)
    assert plain.feed(b"ab") is False and plain.feed(b"cdef") is True
    assert plain.body == b"abcd"


# -- 8: timeouts above httpx's 5 s default are honoured --------------------------------------


async def test_configured_timeout_reaches_httpx(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    seen: list[Any] = []
    executor: WebhookExecutor = make_executor(max_attempts=1, timeout=1.5)

    async def record(request: httpx.Request) -> None:
        seen.append(request.extensions["timeout"])

    executor._get_client().event_hooks["request"].append(record)
    server.always(delay=1.2)  # slower than nothing, faster than the 1.5 s asked for
    result = await executor.execute(make_job(server.url), run_info())
    assert result.success, result.error
    job = make_job(server.url, metadata={"webhook_timeout": "12s"})
    server.always()
    assert (await executor.execute(job, run_info())).success
    # httpx's own default (5 s for each phase) never applies: each request has the job's
    assert seen == [
        {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5},
        {"connect": 12.0, "read": 12.0, "write": 12.0, "pool": 12.0},
    ]


async def test_timeout_message_states_the_real_timeout(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    server.always(delay=1.2)
    result = await make_executor(max_attempts=1, timeout=0.4).execute(
        make_job(server.url), run_info()
    )
    assert result.error == "webhook request failed: timed out after 0.4s"


# -- 9: a redirect without Location says so -----------------------------------------------------


async def test_redirect_without_location(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(max_attempts=1, follow_redirects=True)
    server.always(status=302, body=b"")
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error == "webhook returned 302 without a Location header"
    assert result.output["status_code"] == 302
    server.always(status=301, body=b"", headers={"Location": "http://[::1"})
    result = await executor.execute(make_job(server.url), run_info())
    assert "invalid url in location header" in result.error.lower()


# -- 1: a job an agent made never resolves ${env:} ------------------------------------------------


async def test_agent_job_never_resolves_env_secrets(
    server: Any,
    make_executor: Make,
    make_job: Make,
    run_info: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNICRON_TEST_SECRET", "s3cret")
    executor = make_executor(max_attempts=1)
    job = make_job(server.url, headers={"X-Leak": "${env:OMNICRON_TEST_SECRET}"})
    job.origin = "agent"  # e.g. written straight into the store, past validation
    result = await executor.execute(job, run_info())
    assert not result.success
    assert "do not resolve in a job made by an agent" in result.error
    assert server.requests == []
    # a job the tools saved before the origin mark existed: it has an owner
    job.origin, job.owner_principal = "", "session:alice"
    assert not (await executor.execute(job, run_info())).success
    assert server.requests == []
    job.owner_principal = ""
    assert (await executor.execute(job, run_info())).success
    assert server.requests[0].headers["x-leak"] == "s3cret"


async def test_agent_jobs_are_not_signed_unless_allowed(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="
    job = make_job(server.url, body='{"n": 1}')
    job.origin = "agent"
    assert (await make_executor(signing_secret=secret).execute(job, run_info())).success
    assert "webhook-signature" not in server.requests[-1].headers
    allowed = make_executor(signing_secret=secret, sign_agent_jobs=True)
    assert (await allowed.execute(job, run_info())).success
    assert "webhook-signature" in server.requests[-1].headers
    job.origin = ""
    assert (await make_executor(signing_secret=secret).execute(job, run_info())).success
    assert "webhook-signature" in server.requests[-1].headers
