"""``jobs add/update`` derive their action flags from executors built with the config's plugin
settings (not the defaults): a plugin that needs a setting to build still gets its flags."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from omnicron_core import get_plugin_manager
from omnicron_core.cli import _jobs
from omnicron_core.cli import main as cli_main
from omnicron_core.plugin import (
    ActionExecutor,
    ExecutionResult,
    Job,
    ParamFlag,
    PluginContext,
    RunInfo,
    SettingError,
    hookimpl,
)


class GreetParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    word: str


class GreetExecutor(ActionExecutor[GreetParams]):
    action_type = "greet"
    description = "Greet"
    params_type = GreetParams

    def __init__(self, flag: str) -> None:
        self.cli_flags = (ParamFlag("word", flag, "The word."),)

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        return ExecutionResult.ok()


class Greet:
    """Builds only with ``[plugins.greet] flag = "--..."`` (no usable default)."""

    @hookimpl
    def omnicron_action_executors(self, context: PluginContext) -> list[ActionExecutor[Any]]:
        flag = context.settings_for("greet").get("flag")
        if not isinstance(flag, str):
            raise SettingError("flag is required", "flag")
        return [GreetExecutor(flag)]


@pytest.fixture
def with_greet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setattr(
        _jobs, "get_plugin_manager", functools.partial(get_plugin_manager, plugins=[Greet()])
    )
    _jobs._executors_for.cache_clear()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMNICRON_CONFIG", raising=False)
    path = tmp_path / "greet.toml"
    path.write_text(
        f'[scheduler]\nstore = "sqlite:///{tmp_path / "j.db"}"\n\n'
        '[plugins.greet]\nflag = "--greeting"\n'
    )
    yield path
    _jobs._executors_for.cache_clear()


@pytest.mark.parametrize("form", ["-c", "--config", "--config=", "env", "default file"])
def test_flags_come_from_executors_built_with_the_configs_settings(
    with_greet: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    args: list[str]
    if form == "env":
        monkeypatch.setenv("OMNICRON_CONFIG", str(with_greet))
        args = []
    elif form == "default file":
        with_greet.rename(with_greet.parent / "omnicron.toml")
        args = []
    elif form == "--config=":
        args = [f"--config={with_greet}"]
    else:
        args = [form, str(with_greet)]
    out = CliRunner().invoke(cli_main, ["jobs", "add", *args, "--help"])
    assert out.exit_code == 0, out.output
    assert "--greeting" in out.output and "The word. (greet)" in out.output


def test_without_the_config_the_plugin_has_no_flags(with_greet: Path) -> None:
    out = CliRunner().invoke(cli_main, ["jobs", "add", "--help"])
    assert out.exit_code == 0, out.output
    assert "--greeting" not in out.output
    # the flag is refused as unknown, not silently taken
    bad = CliRunner().invoke(cli_main, ["jobs", "add", "--name", "g", "--greeting", "hi"])
    assert bad.exit_code != 0 and "No such option '--greeting'" in bad.output
