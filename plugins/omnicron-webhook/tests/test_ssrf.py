"""SSRF protection: refused targets, connect-time checks, redirects and DNS rebinding.

Nothing here connects anywhere but 127.0.0.1: ``connect_spy`` records (and fails) any other
connection the real network backend is asked to make.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from omnicron_webhook import WebhookExecutor, _ssrf

from omnicron_core import Action, JobValidationError

Make = Callable[..., Any]


def _action(url: str) -> Action:
    return Action(type="call_webhook", webhook_url=url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://100.100.100.200/", "cloud metadata"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.10:8080/", "private"),
        ("http://[fc00::1]/", "private"),
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://100.64.0.1/", "shared"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://localhost/", "loopback"),
    ],
)
def test_validate_refuses_non_public_targets(url: str, reason: str) -> None:
    executor = WebhookExecutor()
    with pytest.raises(JobValidationError) as info:
        executor.check(_action(url))
    assert info.value.field == "action.webhook_url"
    assert info.value.message.startswith("invalid action: webhook_url refused: ")
    assert f"a {reason} address" in info.value.message
    assert "plugins.webhook.allow_networks" in info.value.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://h/"])
def test_validate_refuses_other_schemes(url: str) -> None:
    with pytest.raises(JobValidationError) as info:
        WebhookExecutor().check(_action(url))
    assert info.value.message.startswith("invalid action: webhook_url scheme must be http or https")
    assert info.value.field == "action.webhook_url"


def test_validate_accepts_public_literal_and_allow_listed_network() -> None:
    WebhookExecutor().check(_action("https://93.184.215.14/hook"))
    allowing = WebhookExecutor(_settings(allow_networks=("127.0.0.0/8",)))
    allowing.check(_action("http://127.0.0.1:9/hook"))
    allowing.check(_action("http://[::ffff:127.0.0.1]:9/hook"))  # mapped address unwrapped
    with pytest.raises(JobValidationError):
        allowing.check(_action("http://10.0.0.1/"))


def _settings(**kw: Any) -> Any:
    from omnicron_webhook import WebhookSettings

    return WebhookSettings(**kw)


async def test_loopback_server_refused_when_not_allow_listed(
    server: Any, make_job: Make, run_info: Make, connect_spy: Any
) -> None:
    executor = WebhookExecutor()  # default settings: nothing allow-listed
    try:
        for url in (server.url, f"http://localhost:{server.port}/"):
            result = await executor.execute(make_job(url), run_info())
            assert not result.success
            assert "loopback address" in result.error
    finally:
        await executor.aclose()
    assert server.requests == []
    assert connect_spy.hosts == []


async def test_private_target_refused_before_connecting(
    executor: WebhookExecutor, make_job: Make, run_info: Make, connect_spy: Any
) -> None:
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://[::1]:1/"):
        result = await executor.execute(make_job(url), run_info())
        assert not result.success
        assert result.error.startswith("invalid action: webhook_url refused: ")
    assert connect_spy.hosts == []


async def test_redirect_to_private_address_refused_at_the_hop(
    server: Any, make_executor: Make, make_job: Make, run_info: Make, connect_spy: Any
) -> None:
    executor = make_executor(follow_redirects=True)
    server.always(status=302, headers={"Location": "http://10.0.0.1/internal"})
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert result.error == (
        "webhook request failed: refused: 10.0.0.1 is a private address "
        "(allowed only if its network is in plugins.webhook.allow_networks)"
    )
    assert len(server.requests) == 1
    assert connect_spy.hosts == ["127.0.0.1"]


async def test_redirect_to_other_scheme_refused(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(follow_redirects=True)
    server.always(status=301, headers={"Location": "file:///etc/passwd"})
    result = await executor.execute(make_job(server.url), run_info())
    assert not result.success
    assert "refused" in result.error and "scheme" in result.error


async def test_dns_rebinding_is_caught_at_connect_time(
    server: Any,
    make_job: Make,
    run_info: Make,
    connect_spy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At add time the name looks public; when the run connects it answers loopback.
    public = [ipaddress.ip_address("93.184.215.14")]
    loopback = [ipaddress.ip_address("127.0.0.1")]
    monkeypatch.setattr(_ssrf, "resolve_host_sync", lambda host, port, timeout: public)

    async def rebound(host: str, port: int) -> list[Any]:
        return loopback

    monkeypatch.setattr(_ssrf, "resolve_host", rebound)
    executor = WebhookExecutor()
    try:
        action = _action(f"http://rebind.example:{server.port}/hook")
        executor.check(action)  # passes: the add-time answer is public
        result = await executor.execute(make_job(action.params["webhook_url"]), run_info())
    finally:
        await executor.aclose()
    assert not result.success
    assert result.error == (
        "webhook request failed: refused: rebind.example resolves to 127.0.0.1, a loopback "
        "address (allowed only if its network is in plugins.webhook.allow_networks)"
    )
    assert server.requests == []
    assert connect_spy.hosts == []


async def test_connects_to_checked_address_keeping_host_header(
    server: Any,
    executor: WebhookExecutor,
    make_job: Make,
    run_info: Make,
    connect_spy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[Any]:
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(_ssrf, "resolve_host", resolve)
    result = await executor.execute(make_job(f"http://hooks.example:{server.port}/x"), run_info())
    assert result.success, result.error
    assert calls == ["hooks.example"]
    assert connect_spy.hosts == ["127.0.0.1"]
    assert server.requests[0].headers["host"] == f"hooks.example:{server.port}"


async def test_any_refused_address_refuses_the_host(
    server: Any,
    executor: WebhookExecutor,
    make_job: Make,
    run_info: Make,
    connect_spy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")]

    monkeypatch.setattr(_ssrf, "resolve_host", resolve)
    result = await executor.execute(make_job(f"http://mixed.example:{server.port}/"), run_info())
    assert not result.success
    assert "10.1.2.3, a private address" in result.error
    assert connect_spy.hosts == []


async def test_ssrf_protection_can_be_turned_off(
    server: Any, make_job: Make, run_info: Make
) -> None:
    executor = WebhookExecutor(_settings(ssrf_protection=False))
    try:
        executor.check(_action(server.url))
        result = await executor.execute(make_job(server.url), run_info())
    finally:
        await executor.aclose()
    assert result.success, result.error
    assert len(server.requests) == 1


async def test_allow_hosts_limits_targets(
    server: Any, make_executor: Make, make_job: Make, run_info: Make
) -> None:
    executor = make_executor(allow_hosts=["127.0.0.1", "*.example.com"], follow_redirects=True)
    executor.check(_action("https://api.example.com/hook"))
    with pytest.raises(JobValidationError) as info:
        executor.check(_action("https://example.org/hook"))
    assert (
        info.value.message
        == "invalid action: webhook_url host 'example.org' is not in plugins.webhook.allow_hosts"
    )
    # A redirect hop to a host off the list is refused before connecting.
    server.always(status=302, headers={"Location": f"http://localhost:{server.port}/"})
    result = await executor.execute(make_job(server.url), run_info())
    assert result.error == (
        "webhook request failed: refused: host 'localhost' is not in plugins.webhook.allow_hosts"
    )
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("127.0.0.2", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("fd00:ec2::254", "cloud metadata"),
        ("100.127.255.254", "shared"),
        ("198.18.0.1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
    ],
)
def test_classify(address: str, reason: str | None) -> None:
    assert _ssrf.classify(ipaddress.ip_address(address)) == reason


def test_allow_networks_exempts_only_their_network() -> None:
    policy = _ssrf.AddressPolicy(["10.1.0.0/16", "fd00::/8"])
    assert policy.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.1.2.3")) is None
    assert policy.refusal(ipaddress.ip_address("fd12::1")) is None
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


@pytest.fixture
def tls_server(server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The recording server behind TLS with a self-signed certificate for ``hooks.example``."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=hooks.example",
            "-addext",
            "subjectAltName=DNS:hooks.example",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    # The executor's client trusts this certificate through httpx's SSL_CERT_FILE support.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    async def resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(_ssrf, "resolve_host", resolve)
    return server


async def test_tls_verifies_the_original_host_name_while_connecting_to_the_ip(
    tls_server: Any, make_executor: Make, make_job: Make, run_info: Make, connect_spy: Any
) -> None:
    executor = make_executor()
    ok = await executor.execute(make_job(f"https://hooks.example:{tls_server.port}/t"), run_info())
    assert ok.success, ok.error
    assert tls_server.requests[0].headers["host"] == f"hooks.example:{tls_server.port}"
    # The same IP under another name fails verification: SNI/checks use the URL's host.
    bad = await executor.execute(make_job(f"https://other.example:{tls_server.port}/t"), run_info())
    assert not bad.success
    assert bad.error.startswith("webhook request failed: ")
    assert "certificate" in bad.error.lower() or "hostname" in bad.error.lower()
    # A certificate failure is not retried: one connection each.
    assert connect_spy.hosts == ["127.0.0.1", "127.0.0.1"]
    assert len(tls_server.requests) == 1


async def test_add_time_check_resolves_without_blocking_and_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """validate_async (what the Scheduler awaits) resolves names asynchronously."""
    from omnicron_webhook import _executor

    async def fake_resolve(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("10.1.2.3")]

    monkeypatch.setattr(_executor, "resolve_host", fake_resolve)
    executor = WebhookExecutor()
    with pytest.raises(JobValidationError, match="refused"):
        await executor.check_async(
            Action(type="call_webhook", webhook_url="http://internal.example/x")
        )
