from __future__ import annotations

import asyncio
import json
import os
import stat
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import omnicron_send_message
import pytest
from omnicron_send_message import SendMessageExecutor, SendMessageSettings, load_settings

from omnicron_core import (
    Action,
    ConfigError,
    Job,
    JobValidationError,
    Registry,
    RunInfo,
    get_plugin_manager,
    hookimpl,
)

if TYPE_CHECKING:
    from conftest import Gateway

FIRE = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
RUN = RunInfo(run_id="run-1", scheduled_at=FIRE)


def job(session_id: str = "ops", message: str = "Good morning", **kw: Any) -> Job:
    return Job(
        id="j1",
        name="morning",
        action=Action(type="send_message", session_id=session_id, message=message),
        **kw,
    )


def registry(settings: dict[str, Any] | None = None, plugins: list[object] = ()) -> Registry:  # type: ignore[assignment]
    pm = get_plugin_manager(plugins=[*plugins])
    return Registry(pm, settings={"send_message": settings or {}})


# --- discovery and the host hook -------------------------------------------------------------


def test_entry_point_plugin_provides_the_executor() -> None:
    executor = Registry(get_plugin_manager()).executors["send_message"]
    assert isinstance(executor, SendMessageExecutor)
    assert executor.action_type == "send_message"
    assert executor.settings == SendMessageSettings()


def test_plugin_works_without_installing_it() -> None:
    pm = get_plugin_manager(plugins=[omnicron_send_message], load_entrypoints=False)
    assert pm.hook.omnicron_deliver_message.spec.opts["firstresult"] is True
    assert "send_message" in Registry(pm).executors


class SyncHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []

    @hookimpl
    def omnicron_deliver_message(
        self, session_id: str, message: str, job: Job, run: RunInfo
    ) -> str:
        self.calls.append((session_id, message, job.id, run.run_id))
        return f"ack: {message}"


class AsyncHost:
    @hookimpl
    def omnicron_deliver_message(self, session_id: str, message: str) -> Any:
        async def reply() -> str:
            await asyncio.sleep(0)
            return f"{session_id} says hi back"

        return reply()


class DecliningHost:
    @hookimpl
    def omnicron_deliver_message(self, session_id: str) -> None:
        return None


class FailingHost:
    @hookimpl
    def omnicron_deliver_message(self) -> str:
        raise RuntimeError("session ops is closed")


async def test_host_sync_reply_lands_in_output(capsys: pytest.CaptureFixture[str]) -> None:
    host = SyncHost()
    executor = registry(plugins=[host]).executors["send_message"]
    result = await executor.execute(job(), RUN)
    assert result.success, result.error
    assert result.output == {
        "session_id": "ops",
        "message": "Good morning",
        "response": "ack: Good morning",
    }
    assert host.calls == [("ops", "Good morning", "j1", "run-1")]
    assert capsys.readouterr().out == ""  # the host took it: the console transport was not used


async def test_host_async_reply_is_awaited() -> None:
    executor = registry(plugins=[AsyncHost()]).executors["send_message"]
    result = await executor.execute(job(), RUN)
    assert result.success, result.error
    assert result.output["response"] == "ops says hi back"


async def test_declining_host_falls_back_to_the_transport(
    capsys: pytest.CaptureFixture[str],
) -> None:
    executor = registry({"transport": "console"}, plugins=[DecliningHost()]).executors[
        "send_message"
    ]
    result = await executor.execute(job(), RUN)
    assert result.success and result.output["response"] == ""
    assert "session 'ops': Good morning" in capsys.readouterr().out


async def test_host_exception_fails_the_run() -> None:
    executor = registry(plugins=[FailingHost()]).executors["send_message"]
    result = await executor.execute(job(), RUN)
    assert not result.success
    assert result.error == "send message failed: session ops is closed"


@pytest.mark.parametrize("settings", [{}, {"transport": "host"}])
async def test_no_host_and_no_transport_fails_the_run_naming_the_hook_and_the_setting(
    settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    executor = registry(settings, plugins=[DecliningHost()]).executors["send_message"]
    result = await executor.execute(job(), RUN)
    assert not result.success
    assert result.error.startswith("agent not configured for send_message action: ")
    assert "omnicron_deliver_message" in result.error
    assert "transport in [plugins.send_message]" in result.error
    assert capsys.readouterr() == ("", "")  # nothing printed instead


# --- transports ------------------------------------------------------------------------------


async def test_console_transport_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    executor = SendMessageExecutor(SendMessageSettings(transport="console"))
    result = await executor.execute(job(message="Good morning\nand coffee"), RUN)
    assert result.success
    assert capsys.readouterr().out == (
        "[2026-11-29 09:00:00+00:00] send_message -> session 'ops': Good morning\\nand coffee\n"
    )


async def test_jsonl_transport_appends_records(tmp_path: Path) -> None:
    path = tmp_path / "out" / "messages.jsonl"
    executor = registry({"transport": "jsonl", "path": str(path)}).executors["send_message"]
    first = await executor.execute(job(), RUN)
    second = await executor.execute(job(message="über"), RunInfo(run_id="r2", manual=True))
    assert first.success and second.success
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2
    assert {k: v for k, v in records[0].items() if k != "sent_at"} == {
        "session_id": "ops",
        "message": "Good morning",
        "job_id": "j1",
        "job_name": "morning",
        "scheduled_for": "2026-11-29T09:00:00+00:00",
    }
    assert datetime.fromisoformat(records[0]["sent_at"]).tzinfo is not None
    assert records[1]["message"] == "über" and records[1]["scheduled_for"] is None


async def test_jsonl_file_and_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "messages.jsonl"
    executor = registry({"transport": "jsonl", "path": str(path)}).executors["send_message"]
    old = os.umask(0)
    try:
        assert (await executor.execute(job(), RUN)).success
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_jsonl_unwritable_path_fails_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    executor = SendMessageExecutor(
        load_settings({"transport": "jsonl", "path": str(blocker / "m")})
    )
    result = await executor.execute(job(), RUN)
    assert not result.success and result.error.startswith("send message failed: ")


async def test_http_transport_posts_and_takes_the_reply(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TOKEN", "s3cret")
    gateway.script(body=b'{"response": "on it", "other": 1}')
    settings = {
        "transport": "http",
        "url": gateway.url,
        "headers": {"Authorization": "Bearer ${env:GATEWAY_TOKEN}", "X-Source": "omnicron"},
        "timeout": 5,
    }
    executor = registry(settings).executors["send_message"]
    try:
        result = await executor.execute(job(), RUN)
    finally:
        await executor.aclose()
    assert result.success, result.error
    assert result.output == {"session_id": "ops", "message": "Good morning", "response": "on it"}
    [received] = gateway.requests
    assert received.path == "/deliver"
    assert json.loads(received.body) == {
        "session_id": "ops",
        "message": "Good morning",
        "job_id": "j1",
        "scheduled_for": "2026-11-29T09:00:00+00:00",
    }
    assert received.headers["authorization"] == "Bearer s3cret"
    assert received.headers["x-source"] == "omnicron"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["idempotency-key"] == "run-1"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"body": b'{"reply": "from reply"}'}, "from reply"),
        ({"body": b"plain words", "content_type": "text/plain"}, "plain words"),
        ({"body": b'{"status": "queued"}'}, '{"status": "queued"}'),
        ({"body": b'{"response": null}'}, ""),
    ],
)
async def test_http_reply_fallbacks(gateway: Gateway, reply: dict[str, Any], expected: str) -> None:
    gateway.script(**reply)
    executor = SendMessageExecutor(load_settings({"transport": "http", "url": gateway.url}))
    try:
        result = await executor.execute(job(), RUN)
    finally:
        await executor.aclose()
    assert result.success and result.output["response"] == expected


async def test_http_non_2xx_fails(gateway: Gateway) -> None:
    gateway.script(status=503, body=b"agent busy", content_type="text/plain")
    executor = SendMessageExecutor(load_settings({"transport": "http", "url": gateway.url}))
    try:
        result = await executor.execute(job(), RUN)
    finally:
        await executor.aclose()
    assert not result.success
    assert result.error == "send message failed: gateway returned status 503: agent busy"


async def test_http_missing_secret_sends_nothing(gateway: Gateway) -> None:
    settings = load_settings(
        {"transport": "http", "url": gateway.url, "headers": {"X-Key": "${env:OMNI_UNSET_9}"}}
    )
    executor = SendMessageExecutor(settings)
    try:
        result = await executor.execute(job(), RUN)
    finally:
        await executor.aclose()
    assert not result.success
    assert "environment variable OMNI_UNSET_9 is not set" in result.error
    assert gateway.requests == []


async def test_http_connection_refused_fails(gateway: Gateway) -> None:
    url = gateway.url
    gateway.httpd.server_close()  # nothing listens on the port any more
    executor = SendMessageExecutor(load_settings({"transport": "http", "url": url, "timeout": 2}))
    try:
        result = await executor.execute(job(), RUN)
    finally:
        await executor.aclose()
    assert not result.success
    assert result.error.startswith("send message failed: gateway request failed")


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "field", "message"),
    [
        (
            Action(type="send_message", message="hi"),
            "action.session_id",
            "invalid action: session_id is required for send_message action",
        ),
        (
            Action(type="send_message", session_id="ops"),
            "action.message",
            "invalid action: message is required for send_message action",
        ),
        (
            Action(type="send_message", session_id="ops", message="   "),
            "action.message",
            "invalid action: message is required for send_message action",
        ),
        (
            Action(type="send_message", session_id="o\nps", message="hi"),
            "action.session_id",
            "invalid action: session_id must be at most 1024 characters with no control characters",
        ),
    ],
)
def test_validation_messages(action: Action, field: str, message: str) -> None:
    with pytest.raises(JobValidationError) as info:
        registry().validate_action(action)
    assert str(info.value) == message
    assert info.value.field == field


def test_message_size_limit_counts_utf8_bytes() -> None:
    reg = registry({"max_message_bytes": 10})
    reg.validate_action(Action(type="send_message", session_id="s", message="ééééé"))  # 10 bytes
    with pytest.raises(JobValidationError) as info:
        reg.validate_action(Action(type="send_message", session_id="s", message="éééééé"))
    assert str(info.value) == (
        "invalid action: message is 12 bytes (UTF-8), over the limit of 10 bytes "
        "(plugins.send_message.max_message_bytes)"
    )
    assert info.value.field == "action.message"


def test_default_size_limit_is_64_kib() -> None:
    executor = SendMessageExecutor()
    executor.check(Action(type="send_message", session_id="s", message="x" * 65536))
    with pytest.raises(JobValidationError, match="65537 bytes"):
        executor.check(Action(type="send_message", session_id="s", message="x" * 65537))


async def test_execute_revalidates_and_does_not_raise(capsys: pytest.CaptureFixture[str]) -> None:
    result = await SendMessageExecutor().execute(job(session_id=""), RUN)
    assert not result.success
    assert result.error == "invalid action: session_id is required for send_message action"
    assert capsys.readouterr().out == ""


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"transport": "smtp"}, "plugins.send_message.transport", "console, jsonl, http, host"),
        ({"transport": "jsonl"}, "plugins.send_message.path", "needs a path"),
        ({"transport": "http"}, "plugins.send_message.url", "needs a url"),
        ({"transport": "http", "url": "ftp://x/y"}, "plugins.send_message.url", "http or https"),
        ({"url": "http:///nohost"}, "plugins.send_message.url", "no host"),
        ({"timeout": 0}, "plugins.send_message.timeout", "> 0"),
        ({"max_message_bytes": "big"}, "plugins.send_message.max_message_bytes", "int"),
        ({"colour": "red"}, "plugins.send_message.colour", "allowed keys: transport"),
        ({"headers": {"Bad Name": "x"}}, "plugins.send_message.headers.Bad Name", "header name"),
        ({"headers": {"X-A": "a\r\nb"}}, "plugins.send_message.headers.X-A", "control"),
        ({"headers": {"X-A": "${env:1x}"}}, "plugins.send_message.headers.X-A", "malformed"),
        ({"headers": {"Host": "x"}}, "plugins.send_message.headers.Host", "HTTP client"),
    ],
)
def test_settings_errors_name_the_field(data: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(data)
    assert info.value.field == field
    assert fragment in info.value.message


def test_registry_surfaces_settings_errors() -> None:
    with pytest.raises(ConfigError) as info:
        _ = registry({"transport": "pigeon"}).executors
    assert info.value.field == "plugins.send_message.transport"


def test_settings_defaults_and_struct_options() -> None:
    s = load_settings({})
    assert (s.transport, s.timeout, s.max_message_bytes) == ("", 30.0, 65536)
    assert SendMessageSettings.__struct_config__.forbid_unknown_fields
    with pytest.raises(TypeError):
        SendMessageSettings("console")  # type: ignore[misc]  # keyword-only


def test_public_names() -> None:
    assert set(omnicron_send_message.__all__) == {
        "DEFAULT_MAX_MESSAGE_BYTES",
        "DEFAULT_MAX_RESPONSE_BYTES",
        "TRANSPORTS",
        "ConsoleTransport",
        "HttpTransport",
        "JsonlTransport",
        "MissingEnvVarError",
        "SendMessageExecutor",
        "SendMessageParams",
        "SendMessageSettings",
        "Transport",
        "hookspecs",
        "load_settings",
        "resolve_env_refs",
    }
    for name in omnicron_send_message.__all__:
        assert hasattr(omnicron_send_message, name)


async def test_http_compressed_reply_is_capped_after_decoding(gateway: Gateway) -> None:
    """Issue 9: the reply cap applies to the decoded body (no decompression bomb)."""
    import gzip
    import tracemalloc

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(packer.compress(bytes(1 << 20)) for _ in range(32)) + packer.flush()
    gateway.script(body=bomb, content_type="text/plain", headers={"Content-Encoding": "gzip"})
    gateway.script(body=gzip.compress(bomb), headers={"Content-Encoding": "gzip, gzip"})
    executor = SendMessageExecutor(
        load_settings({"transport": "http", "url": gateway.url, "max_response_bytes": 1000})
    )
    tracemalloc.start()
    try:
        capped = await executor.execute(job(), RUN)
        refused = await executor.execute(job(), RUN)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await executor.aclose()
    assert capped.success and capped.output["response"] == "\x00" * 1000
    assert not refused.success and "2 content encodings" in refused.error
    assert peak < 8 << 20, peak
