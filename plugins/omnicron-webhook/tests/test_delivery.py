"""What a real HTTP server on 127.0.0.1 receives from the executor, and what the run reports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from omnicron_webhook import WebhookExecutor

Make = Callable[..., Any]


async def test_post_by_default_with_json_body(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    job = make_job(server.url + "/hook?x=1", body='{"hello": "world"}', headers={"X-Custom": "yes"})
    result = await executor.execute(job, run_info())
    assert result.success, result.error
    assert result.output == {"status_code": 200, "body": "ok"}
    assert result.error == ""
    [req] = server.requests
    assert req.method == "POST"
    assert req.path == "/hook?x=1"
    assert req.body == b'{"hello": "world"}'
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-custom"] == "yes"
    assert req.headers["user-agent"].startswith("omnicron-webhook/")


@pytest.mark.parametrize(
    ("method", "body", "headers", "expected"),
    [
        ("POST", "{}", {}, "application/json"),
        ("put", "{}", {}, "application/json"),
        ("PATCH", "{}", {}, "application/json"),
        ("POST", "", {}, None),
        ("GET", "", {}, None),
        ("DELETE", "{}", {}, None),
        (
            "POST",
            "a=1",
            {"content-type": "application/x-www-form-urlencoded"},
            "application/x-www-form-urlencoded",
        ),
    ],
)
async def test_content_type_rules(
    server: Any,
    executor: WebhookExecutor,
    make_job: Make,
    run_info: Make,
    method: str,
    body: str,
    headers: dict[str, str],
    expected: str | None,
) -> None:
    result = await executor.execute(
        make_job(server.url, method=method, body=body, headers=headers), run_info()
    )
    assert result.success, result.error
    [req] = server.requests
    assert req.method == method.upper()
    assert req.headers.get("content-type") == expected
    assert req.body == body.encode()


async def test_head_and_options_methods(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    for method in ("HEAD", "options"):
        result = await executor.execute(make_job(server.url, method=method), run_info())
        assert result.success, result.error
    assert [r.method for r in server.requests] == ["HEAD", "OPTIONS"]
    assert server.requests[0].body == b""


async def test_env_secret_in_header_is_resolved_at_send_time(
    server: Any,
    executor: WebhookExecutor,
    make_job: Make,
    run_info: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNICRON_TEST_TOKEN", "s3cret-value")
    job = make_job(server.url, headers={"Authorization": "Bearer ${env:OMNICRON_TEST_TOKEN}"})
    result = await executor.execute(job, run_info())
    assert result.success, result.error
    assert server.requests[0].headers["authorization"] == "Bearer s3cret-value"
    # The stored job keeps the reference, not the secret.
    assert job.action.params["webhook_headers"] == {
        "Authorization": "Bearer ${env:OMNICRON_TEST_TOKEN}"
    }


async def test_missing_env_secret_fails_without_sending(
    server: Any,
    executor: WebhookExecutor,
    make_job: Make,
    run_info: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMNICRON_TEST_MISSING", raising=False)
    job = make_job(server.url, headers={"X-Token": "${env:OMNICRON_TEST_MISSING}"})
    result = await executor.execute(job, run_info())
    assert not result.success
    assert result.error.startswith("create request failed: ")
    assert "OMNICRON_TEST_MISSING" in result.error
    assert server.requests == []


def _verify_standard_webhook(key: bytes, headers: Any, body: bytes) -> None:
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    versions = dict(part.split(",", 1) for part in headers["webhook-signature"].split(" "))
    assert hmac.compare_digest(versions["v1"], expected)


async def test_standard_webhooks_signature_whsec(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    key = b"0123456789abcdef0123456789abcdef"
    executor = make_executor(signing_secret="whsec_" + base64.b64encode(key).decode())
    result = await executor.execute(make_job(server.url, body='{"n": 1}'), run_info())
    assert result.success, result.error
    [req] = server.requests
    _verify_standard_webhook(key, req.headers, req.body)
    assert req.headers["webhook-id"] == req.headers["idempotency-key"]
    # A tampered body must not verify.
    with pytest.raises(AssertionError):
        _verify_standard_webhook(key, req.headers, b'{"n": 2}')


async def test_signing_secret_from_env(
    server: Any,
    make_executor: Make,
    make_job: Make,
    run_info: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNICRON_TEST_SIGNING", "plain-text-secret")
    executor = make_executor(signing_secret="${env:OMNICRON_TEST_SIGNING}")
    result = await executor.execute(make_job(server.url, method="GET"), run_info())
    assert result.success, result.error
    _verify_standard_webhook(b"plain-text-secret", server.requests[0].headers, b"")


async def test_retries_503_then_succeeds_with_stable_idempotency_key(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    server.script({"status": 503, "body": b"busy"}, {"status": 503, "body": b"busy"})
    with structlog.testing.capture_logs() as logs:
        result = await executor.execute(make_job(server.url, body="{}"), run_info())
    assert result.success, result.error
    assert len(server.requests) == 3
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert len(keys) == 1 and keys != {""}
    attempts = [e for e in logs if e["event"] == "webhook.attempt"]
    assert [e["attempt"] for e in attempts] == [1, 2, 3]
    assert [e["outcome"] for e in attempts] == ["retry", "retry", "success"]
    assert all(e["job_id"] == "job-1" for e in attempts)
    assert [e.get("status") for e in attempts] == [503, 503, 200]
    assert attempts[0]["delay"] is not None and 0 <= attempts[0]["delay"] <= 0.05
    assert "webhook returned status 503: busy" in attempts[0]["error"]


async def test_retries_exhausted_reports_last_status(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    server.always(status=502, body=b"bad gateway")
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error == "webhook returned status 502: bad gateway"
    assert result.output == {"status_code": 502, "body": "bad gateway"}
    assert len(server.requests) == 3


async def test_429_retry_after_is_honoured(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(backoff_max=3)
    server.script({"status": 429, "body": b"slow down", "headers": {"Retry-After": "1"}})
    result = await executor.execute(make_job(server.url), run_info())
    assert result.success, result.error
    first, second = server.requests
    assert second.at - first.at >= 0.9
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_retry_after_is_capped_by_backoff_max(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(backoff_max=0.2)
    server.script({"status": 503, "headers": {"Retry-After": "120"}})
    result = await executor.execute(make_job(server.url), run_info())
    assert result.success, result.error
    first, second = server.requests
    assert 0.15 <= second.at - first.at < 2


async def test_400_is_not_retried(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    server.always(status=400, body=b"bad request")
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error == "webhook returned status 400: bad request"
    assert result.output == {"status_code": 400, "body": "bad request"}
    assert len(server.requests) == 1


async def test_connect_error_is_retried_then_reported(
    make_executor: Make, make_job: Make, run_info: Make, server: Any
) -> None:
    # A port nothing listens on: take the server's and close it.
    url = server.url
    server.httpd.shutdown()
    server.httpd.server_close()
    executor = make_executor(max_attempts=2)
    with structlog.testing.capture_logs() as logs:
        result = await executor.execute(make_job(url), run_info())
    assert not result.success
    assert result.error.startswith("webhook request failed: ")
    assert result.output is None
    assert [e["attempt"] for e in logs if e["event"] == "webhook.attempt"] == [1, 2]


async def test_idempotency_key_differs_per_run_and_header_is_configurable(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    first_fire = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    executor = make_executor(idempotency_header="X-Delivery-Key")
    job = make_job(server.url)
    for run in (
        run_info("run-a", first_fire),
        run_info("run-b", first_fire),  # another claim of the same fire time: same key
        run_info("run-c", first_fire + timedelta(hours=1)),
        run_info("manual-1", None),
        run_info("manual-2", None),
    ):
        assert (await executor.execute(job, run)).success
    keys = [r.headers.get("x-delivery-key") for r in server.requests]
    assert all(keys) and "idempotency-key" not in server.requests[0].headers
    assert keys[0] == keys[1]
    assert len({keys[0], keys[2], keys[3], keys[4]}) == 4


async def test_idempotency_header_can_be_disabled(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(idempotency_header="")
    assert (await executor.execute(make_job(server.url), run_info())).success
    assert "idempotency-key" not in server.requests[0].headers


async def test_response_body_read_is_capped_at_1_mib(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    one_gib = 1024**3
    server.always(stream_bytes=one_gib)
    started = time.monotonic()
    result = await executor.execute(make_job(server.url), run_info())
    assert result.success, result.error
    assert result.output["status_code"] == 200
    assert len(result.output["body"]) == 1024 * 1024
    # The client stopped reading: the server could not push the whole gibibyte.
    assert server.streamed < one_gib // 4
    assert time.monotonic() - started < 10


async def test_timeout_gives_failed_result(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(max_attempts=1)
    server.always(delay=3)
    started = time.monotonic()
    result = await executor.execute(
        make_job(server.url, metadata={"webhook_timeout": 0.3}), run_info()
    )
    assert not result.success
    assert result.error == "webhook request failed: timed out after 0.3s"
    assert time.monotonic() - started < 2


async def test_job_timeout_is_capped_by_max_timeout(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(max_attempts=1, timeout=0.2, max_timeout=0.4)
    server.always(delay=3)
    result = await executor.execute(
        make_job(server.url, metadata={"webhook_timeout": "1h"}), run_info()
    )
    assert result.error == "webhook request failed: timed out after 0.4s"


async def test_bad_job_timeout_is_reported(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    result = await executor.execute(
        make_job(server.url, metadata={"webhook_timeout": "soon"}), run_info()
    )
    assert not result.success
    assert result.error.startswith("create request failed: invalid webhook_timeout 'soon'")
    assert server.requests == []


async def test_non_2xx_message_truncates_long_body(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(max_attempts=1)
    server.always(status=500, body=b"E" * 5000)
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error.startswith("webhook returned status 500: EEE")
    assert result.error.endswith("... (truncated)")
    assert len(result.error) < 600
    assert result.output == {"status_code": 500, "body": "E" * 5000}


async def test_redirect_is_not_followed_by_default(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    server.always(status=302, body=b"moved", headers={"Location": "/elsewhere"})
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error == "webhook returned status 302: moved"
    assert result.output == {"status_code": 302, "body": "moved"}
    assert len(server.requests) == 1


async def test_redirect_followed_when_enabled(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(follow_redirects=True)
    server.script({"status": 302, "headers": {"Location": "/next"}})
    result = await executor.execute(make_job(server.url + "/first", body="{}"), run_info())
    assert result.success, result.error
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/first")
    # 302 after POST continues as GET without the body, as browsers and httpx do.
    assert (second.method, second.path, second.body) == ("GET", "/next", b"")
    assert "content-type" not in second.headers


async def test_cross_origin_redirect_drops_credentials(
    server: Any,
    make_executor: Make,
    make_job: Make,
    run_info: Make,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNICRON_TEST_TOKEN", "tok")
    executor = make_executor(follow_redirects=True, allow_networks=["127.0.0.0/8", "::1/128"])
    # Same server, other origin (host name differs), 307 keeps method and body.
    server.script({"status": 307, "headers": {"Location": f"http://localhost:{server.port}/b"}})
    job = make_job(
        server.url + "/a",
        body="{}",
        headers={
            "Authorization": "Bearer x",
            "X-Key": "${env:OMNICRON_TEST_TOKEN}",
            "X-Plain": "1",
        },
    )
    result = await executor.execute(job, run_info())
    assert result.success, result.error
    first, second = server.requests
    assert first.headers["authorization"] == "Bearer x" and first.headers["x-key"] == "tok"
    assert second.method == "POST" and second.body == b"{}"
    assert "authorization" not in second.headers and "x-key" not in second.headers
    assert second.headers["x-plain"] == "1"


async def test_too_many_redirects(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(follow_redirects=True, max_redirects=2)
    server.always(status=302, headers={"Location": "/again"})
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error == "webhook request failed: refused: too many redirects (more than 2)"
    assert len(server.requests) == 3


async def test_one_pooled_client_closed_on_aclose(
    server: Any, executor: WebhookExecutor, make_job: Make, run_info: Make
) -> None:
    await executor.execute(make_job(server.url), run_info())
    client = executor._client
    assert client is not None
    await executor.execute(make_job(server.url), run_info())
    assert executor._client is client
    await executor.aclose()
    assert client.is_closed and executor._client is None
    # Usable again after close: a new client is made lazily.
    assert (await executor.execute(make_job(server.url), run_info())).success
    assert len(server.requests) == 3
