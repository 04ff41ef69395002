from __future__ import annotations

import importlib.metadata
import inspect
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pluggy
import pytest
from structlog.testing import capture_logs

from omnicron_core import (
    Action,
    ActionExecutor,
    ExecutionResult,
    Job,
    JobValidationError,
    PluginError,
    Registry,
    RunInfo,
    get_plugin_manager,
    hookimpl,
    hookspecs,
)


class EchoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    message: str = ""


class EchoExecutor(ActionExecutor[EchoParams]):
    action_type = "echo_action"
    params_type = EchoParams

    def validate(self, params: EchoParams) -> None:
        if not params.message:
            raise JobValidationError("message is required for echo_action", field="message")

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        return ExecutionResult.ok({"echo": self.check(job.action).message})


class FakeEntryPoint:
    def __init__(self, name: str, target: object) -> None:
        self.name = name
        self.group = "omnicron"
        self._target = target

    def load(self) -> object:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class FakeDist:
    def __init__(self, name: str, eps: list[FakeEntryPoint]) -> None:
        self.metadata = {"name": name}
        self.entry_points = eps


@pytest.fixture
def fake_distributions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeDist]]:
    """Replace installed distributions with a list the test fills in (nothing is installed)."""
    dists: list[FakeDist] = []
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(dists))
    yield dists


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(mod, key, value)
    return mod


def test_entry_point_plugin_is_loaded(fake_distributions: list[FakeDist]) -> None:
    @hookimpl
    def omnicron_action_executors(context: Any) -> list[ActionExecutor]:
        return [EchoExecutor()]

    fake_distributions.append(
        FakeDist(
            "omnicron-echo",
            [
                FakeEntryPoint(
                    "echo",
                    _module("echo_plugin", omnicron_action_executors=omnicron_action_executors),
                )
            ],
        )
    )
    pm = get_plugin_manager()
    assert pm.has_plugin("echo")
    assert "echo_action" in Registry(pm).executors


def test_broken_plugin_is_logged_and_skipped(fake_distributions: list[FakeDist]) -> None:
    fake_distributions.append(
        FakeDist(
            "omnicron-broken", [FakeEntryPoint("broken", ImportError("no module named 'lxml'"))]
        )
    )
    with capture_logs() as logs:
        pm = get_plugin_manager()
    assert not pm.has_plugin("broken")
    assert pm.load_failures[0].name == "broken"
    assert "lxml" in pm.load_failures[0].error
    assert any(e["event"] == "plugin.load_failed" and e["plugin"] == "broken" for e in logs)


def test_strict_mode_makes_a_broken_plugin_fatal(fake_distributions: list[FakeDist]) -> None:
    fake_distributions.append(
        FakeDist("omnicron-broken", [FakeEntryPoint("broken", RuntimeError("bad init"))])
    )
    with pytest.raises(
        PluginError,
        match="plugin 'broken' from omnicron-broken failed to load: RuntimeError: bad init",
    ):
        get_plugin_manager(strict=True)


def test_misspelled_hookimpl_is_refused(fake_distributions: list[FakeDist]) -> None:
    @hookimpl
    def omnicron_action_executor(context: Any) -> list[Any]:  # missing "s"
        return []

    fake_distributions.append(
        FakeDist(
            "omnicron-typo",
            [
                FakeEntryPoint(
                    "typo", _module("typo", omnicron_action_executor=omnicron_action_executor)
                )
            ],
        )
    )
    pm = get_plugin_manager()
    assert not pm.has_plugin("typo")
    assert "omnicron_action_executor" in pm.load_failures[0].error
    with pytest.raises(PluginError):
        get_plugin_manager(strict=True)


def test_a_hook_another_plugin_adds_is_known_whatever_the_load_order(
    fake_distributions: list[FakeDist],
) -> None:
    """A tools provider whose distribution comes before the tool plugin's (which adds the
    ``omnicron_tools`` hook) loads; neither it nor a plugin in between is blamed."""
    import omnicron_tool

    @hookimpl
    def omnicron_tools() -> list[Any]:
        return []

    @hookimpl
    def omnicron_action_executors(context: Any) -> list[ActionExecutor]:
        return [EchoExecutor()]

    fake_distributions.extend(
        [
            FakeDist(
                "aaa-tools", [FakeEntryPoint("aaa", _module("aaa", omnicron_tools=omnicron_tools))]
            ),
            FakeDist(
                "omnicron-echo",
                [
                    FakeEntryPoint(
                        "echo",
                        _module("echo_plugin", omnicron_action_executors=omnicron_action_executors),
                    )
                ],
            ),
            FakeDist("omnicron-tool", [FakeEntryPoint("tool", omnicron_tool)]),
        ]
    )
    pm = get_plugin_manager()
    assert pm.load_failures == []
    assert pm.has_plugin("aaa") and pm.has_plugin("echo") and pm.has_plugin("tool")
    assert set(Registry(pm).executors) == {"echo_action", "call_tool"}


def test_a_host_plugin_of_a_plugin_added_hook_breaks_no_entry_point_plugin() -> None:
    """``get_plugin_manager(plugins=[host])`` registers the host before the entry points:
    its ``omnicron_tools`` is checked once the tool plugin has added that hook, and is not
    blamed on whichever plugin loads next."""

    class HostTools:
        @hookimpl
        def omnicron_tools(self) -> list[Any]:
            return []

    pm = get_plugin_manager(plugins=[HostTools()])
    assert pm.load_failures == []
    assert {"call_tool", "call_webhook", "send_message"} <= set(Registry(pm).executors)


def test_disable_list_from_environment(
    fake_distributions: list[FakeDist], monkeypatch: pytest.MonkeyPatch
) -> None:
    @hookimpl
    def omnicron_action_executors() -> list[ActionExecutor]:
        return [EchoExecutor()]

    fake_distributions.append(
        FakeDist(
            "omnicron-echo",
            [
                FakeEntryPoint(
                    "echo", _module("echo2", omnicron_action_executors=omnicron_action_executors)
                )
            ],
        )
    )
    monkeypatch.setenv("OMNICRON_DISABLE_PLUGINS", "other, echo")
    pm = get_plugin_manager()
    assert not pm.has_plugin("echo") and pm.is_blocked("echo")
    assert "echo_action" not in Registry(pm).executors


def test_two_executors_for_one_type_are_refused() -> None:
    class One:
        @hookimpl
        def omnicron_action_executors(self) -> list[ActionExecutor]:
            return [EchoExecutor()]

    class Two(One):
        pass

    pm = get_plugin_manager(load_entrypoints=False, plugins=[One(), Two()])
    with pytest.raises(PluginError, match="action type 'echo_action' is provided by both"):
        _ = Registry(pm).executors


def test_missing_type_lists_what_is_installed() -> None:
    registry = Registry(get_plugin_manager(load_entrypoints=False))
    with pytest.raises(
        JobValidationError,
        match=r"invalid action type: call_webhook; installed action types: none \(install",
    ):
        registry.validate_action(Action(type="call_webhook", webhook_url="https://example.com"))
    with pytest.raises(
        JobValidationError, match=r"invalid action type: nope; installed action types: none"
    ):
        registry.validate_action(Action(type="nope"))


def test_executor_validation_is_prefixed_and_located() -> None:
    class P:
        @hookimpl
        def omnicron_action_executors(self) -> list[ActionExecutor]:
            return [EchoExecutor()]

    registry = Registry(get_plugin_manager(load_entrypoints=False, plugins=[P()]))
    with pytest.raises(JobValidationError) as info:
        registry.validate_action(Action(type="echo_action"))
    assert str(info.value) == "invalid action: message is required for echo_action"
    assert info.value.field == "action.message"


def test_builtin_backends_are_registered() -> None:
    backends = Registry(get_plugin_manager(load_entrypoints=False)).backends
    assert {"memory", "sqlite"} <= set(backends)


def test_installed_executor_plugins_are_discovered(registry: Registry) -> None:
    assert {"send_message", "call_webhook", "call_tool"} <= set(registry.executors)


def test_every_hook_is_named_and_documented() -> None:
    specs = [
        (name, fn)
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "omnicron_spec")
    ]
    assert len(specs) >= 5
    docs = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text() + (
        Path(__file__).parent.parent / "docs" / "hooks.md"
    ).read_text()
    for name, fn in specs:
        assert name.startswith("omnicron_")
        doc = inspect.getdoc(fn) or ""
        assert ":return:" in doc and "Example" in doc, name
        for param in inspect.signature(fn).parameters:
            assert f":param {param}:" in doc, (name, param)
        assert name in docs, f"{name} is not in docs/hooks.md or docs/plugins.md"


def test_core_does_not_import_executor_plugins() -> None:
    import ast

    core = Path(__file__).parent.parent / "omnicron_core"
    offenders = []
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in {"omnicron_send_message", "omnicron_webhook", "omnicron_tool"}
            ]
    assert offenders == []


def test_pluggy_marker_is_named_after_the_host() -> None:
    assert isinstance(hookimpl, pluggy.HookimplMarker) and hookimpl.project_name == "omnicron"


def test_plugin_settings_loader_locates_errors() -> None:
    import msgspec

    from omnicron_core import ConfigError
    from omnicron_core.settings import SettingError, load_plugin_settings

    class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
        mode: str = "a"
        path: str = ""

        def __post_init__(self) -> None:
            if self.mode == "file" and not self.path:
                raise SettingError("mode 'file' needs a path", "path")

    assert load_plugin_settings({"mode": "file", "path": "x"}, Settings, "demo").path == "x"
    assert load_plugin_settings(None, Settings, "demo") == Settings()
    cases = [
        ({"mode": 3}, "plugins.demo.mode", "expected str"),
        ({"mdoe": "a"}, "plugins.demo.mdoe", "allowed keys: mode, path"),
        ({"mode": "file"}, "plugins.demo.path", "needs a path"),
    ]
    for data, field, fragment in cases:
        with pytest.raises(ConfigError) as info:
            load_plugin_settings(data, Settings, "demo")
        assert info.value.field == field and fragment in info.value.message
    with pytest.raises(ConfigError, match="expected a table"):
        load_plugin_settings(["x"], Settings, "demo")  # type: ignore[arg-type]


def test_env_secret_references(monkeypatch: pytest.MonkeyPatch) -> None:
    from omnicron_core.secrets import MissingEnvVarError, malformed_env_ref, resolve_env_refs

    monkeypatch.setenv("OMNI_TOKEN", "s3cret")
    assert resolve_env_refs("Bearer ${env:OMNI_TOKEN}") == "Bearer s3cret"
    with pytest.raises(MissingEnvVarError, match="OMNI_MISSING is not set"):
        resolve_env_refs("${env:OMNI_MISSING}")
    assert malformed_env_ref("x ${env:bad-name}") == "${env:bad-name}"
    assert malformed_env_ref("${env:OK}") is None
