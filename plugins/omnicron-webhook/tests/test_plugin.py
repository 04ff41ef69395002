"""Discovery, settings, validation messages and the small helpers."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import omnicron_webhook
import pytest
from omnicron_webhook import (
    MissingEnvVarError,
    WebhookExecutor,
    WebhookSettings,
    load_settings,
    resolve_env_refs,
)
from omnicron_webhook._retry import backoff_delay, parse_retry_after

from omnicron_core import (
    Action,
    ConfigError,
    Job,
    JobValidationError,
    Registry,
    RunInfo,
    get_plugin_manager,
)


def test_public_names() -> None:
    assert sorted(omnicron_webhook.__all__) == [
        "METHODS",
        "MissingEnvVarError",
        "RequestRefusedError",
        "WebhookExecutor",
        "WebhookParams",
        "WebhookSettings",
        "load_settings",
        "resolve_env_refs",
    ]


async def test_discovered_through_the_plugin_manager() -> None:
    registry = Registry(
        get_plugin_manager(), settings={"webhook": {"timeout": 12, "max_attempts": 1}}
    )
    try:
        executor = registry.executors["call_webhook"]
        assert isinstance(executor, WebhookExecutor)
        assert executor.settings.timeout == 12
        assert executor.settings.max_attempts == 1
        assert registry.plugin_manager.get_plugin("webhook") is omnicron_webhook
    finally:
        await registry.aclose()


def test_bad_settings_through_the_registry_raise_config_error() -> None:
    registry = Registry(get_plugin_manager(), settings={"webhook": {"retries": 3}})
    with pytest.raises(ConfigError) as info:
        _ = registry.executors
    assert info.value.field == "plugins.webhook.retries"
    assert "allowed keys: timeout, max_timeout, max_attempts, backoff_initial" in info.value.message


def test_default_settings() -> None:
    s = load_settings({})
    assert (s.timeout, s.max_timeout, s.max_attempts) == (30.0, 300.0, 3)
    assert (s.backoff_initial, s.backoff_max) == (1.0, 30.0)
    assert (s.follow_redirects, s.max_redirects) == (False, 5)
    assert s.max_response_bytes == 1024 * 1024
    assert s.ssrf_protection is True
    assert s.allow_networks == () and s.allow_hosts == ()
    assert s.idempotency_header == "Idempotency-Key"
    assert s.signing_secret == ""
    assert load_settings(None) == s


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"timeout": 0}, "plugins.webhook.timeout", "> 0"),
        ({"timeout": "soon"}, "plugins.webhook.timeout", "expected float, got str"),
        ({"max_attempts": 0}, "plugins.webhook.max_attempts", ">= 1"),
        ({"timeout": 60, "max_timeout": 10}, "plugins.webhook.max_timeout", "at least timeout"),
        ({"backoff_initial": 5, "backoff_max": 1}, "plugins.webhook.backoff_max", "at least"),
        (
            {"allow_networks": ["10.0.0.0/8", "intranet"]},
            "plugins.webhook.allow_networks[1]",
            "CIDR",
        ),
        ({"allow_hosts": ["bad host"]}, "plugins.webhook.allow_hosts[0]", "host name"),
        ({"idempotency_header": "Bad Header"}, "plugins.webhook.idempotency_header", "header name"),
        ({"signing_secret": "whsec_!!!"}, "plugins.webhook.signing_secret", "base64"),
        ({"signing_secret": "${env:}"}, "plugins.webhook.signing_secret", "malformed"),
        ({"follow_redirect": True}, "plugins.webhook.follow_redirect", "unknown key"),
    ],
)
def test_bad_settings(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(info.value).startswith(field + ": ")


def test_settings_struct_checks_via_msgspec_too() -> None:
    # A CLI ``validate`` command may convert with msgspec directly.
    with pytest.raises(msgspec.ValidationError, match="max_timeout"):
        msgspec.convert({"timeout": 60, "max_timeout": 10}, WebhookSettings)
    ok = msgspec.convert({"allow_networks": ["127.0.0.0/8"]}, WebhookSettings)
    assert ok.allow_networks == ("127.0.0.0/8",)


def _validate(action: Action) -> None:
    Registry(get_plugin_manager()).validate_action(action)


@pytest.mark.parametrize(
    ("action", "message", "field"),
    [
        (
            Action(type="call_webhook"),
            "invalid action: webhook_url is required for call_webhook action",
            "action.webhook_url",
        ),
        (
            Action(
                type="call_webhook", webhook_url="https://93.184.215.14/", webhook_method="FETCH"
            ),
            "invalid action: webhook_method must be one of GET, POST, PUT, PATCH, DELETE, HEAD, "
            "OPTIONS (got 'FETCH')",
            "action.webhook_method",
        ),
        (
            Action(type="call_webhook", webhook_url="example.com/hook"),
            "invalid action: webhook_url scheme must be http or https (got none)",
            "action.webhook_url",
        ),
        (
            Action(type="call_webhook", webhook_url="http:///nohost"),
            "invalid action: webhook_url must include a host",
            "action.webhook_url",
        ),
        (
            Action(
                type="call_webhook",
                webhook_url="https://93.184.215.14/",
                webhook_headers={"X-A": "one\r\nX-Injected: two"},
            ),
            "invalid action: webhook header 'X-A' must be printable ASCII without CR or LF",
            "action.webhook_headers",
        ),
        (
            Action(
                type="call_webhook",
                webhook_url="https://93.184.215.14/",
                webhook_headers={"Bad Name": "v"},
            ),
            "invalid action: invalid webhook header name 'Bad Name'",
            "action.webhook_headers",
        ),
        (
            Action(
                type="call_webhook",
                webhook_url="https://93.184.215.14/",
                webhook_headers={"Host": "internal"},
            ),
            "invalid action: webhook header 'Host' is set by the HTTP client and cannot be given",
            "action.webhook_headers",
        ),
        (
            Action(
                type="call_webhook",
                webhook_url="https://93.184.215.14/",
                webhook_headers={"X-Token": "${env:lower-case}"},
            ),
            "invalid action: webhook header 'X-Token' has a malformed secret reference "
            "'${env:lower-case}' (write ${env:NAME})",
            "action.webhook_headers",
        ),
    ],
)
def test_validation_messages(action: Action, message: str, field: str) -> None:
    with pytest.raises(JobValidationError) as info:
        _validate(action)
    assert info.value.message == message
    assert info.value.field == field


def test_valid_action_passes() -> None:
    _validate(
        Action(
            type="call_webhook",
            webhook_url="https://93.184.215.14:8443/hook?a=b",
            webhook_method="patch",
            webhook_headers={"Authorization": "Bearer ${env:HOOK_TOKEN}", "X-Trace": "1"},
            webhook_body='{"x": 1}',
        )
    )


async def test_execute_revalidates_and_never_raises() -> None:
    executor = WebhookExecutor()
    job = Job(id="j", name="n", action=Action(type="call_webhook"))
    result = await executor.execute(job, RunInfo(run_id="r"))
    assert not result.success
    assert result.error == "invalid action: webhook_url is required for call_webhook action"


async def test_injected_transport_is_used() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, text="created")

    key = b"k" * 24
    settings = WebhookSettings(signing_secret="whsec_" + base64.b64encode(key).decode())
    executor = WebhookExecutor(settings, transport=httpx.MockTransport(handler))
    job = Job(
        id="j",
        name="n",
        action=Action(
            type="call_webhook", webhook_url="https://93.184.215.14/h", webhook_body="{}"
        ),
    )
    run = RunInfo(run_id="r", scheduled_at=datetime(2026, 1, 1, tzinfo=UTC))
    try:
        result = await executor.execute(job, run)
    finally:
        await executor.aclose()
    assert result.success and result.output == {"status_code": 201, "body": "created"}
    [request] = seen
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["idempotency-key"] == request.headers["webhook-id"]


def test_resolve_env_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICRON_A", "alpha")
    assert resolve_env_refs("x-${env:OMNICRON_A}-${env:OMNICRON_A}") == "x-alpha-alpha"
    assert resolve_env_refs("no refs $HOME {env:X}") == "no refs $HOME {env:X}"
    assert resolve_env_refs("${env:B}", {"B": "beta"}) == "beta"
    with pytest.raises(MissingEnvVarError) as info:
        resolve_env_refs("${env:OMNICRON_UNSET_VAR}", {})
    assert str(info.value) == "environment variable OMNICRON_UNSET_VAR is not set"


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert [backoff_delay(n, 1.0, 30.0, rand=lambda: 1.0) for n in (1, 2, 3, 6)] == [
        1.0,
        2.0,
        4.0,
        30.0,
    ]
    assert backoff_delay(3, 1.0, 30.0, rand=lambda: 0.0) == 0.0
    assert 0 <= backoff_delay(2, 1.0, 30.0) <= 2.0
