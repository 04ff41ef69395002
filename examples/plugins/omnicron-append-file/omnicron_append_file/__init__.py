"""An example third-party executor plugin for omnicron: the ``append_file`` action.

It uses only the public plugin API (``omnicron_core.plugin``): a params Struct, settings
loaded with ``load_plugin_settings``, add-time validation with located errors, CLI flags,
and an async ``execute`` that does its file I/O in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from omnicron_core.plugin import (
    ActionExecutor,
    ExecutionResult,
    Job,
    JobValidationError,
    ParamFlag,
    PluginContext,
    RunInfo,
    SettingError,
    hookimpl,
    load_plugin_settings,
)

__all__ = ["AppendFileExecutor", "AppendFileParams", "AppendFileSettings", "load_settings"]

SETTINGS_SECTION = "append_file"


class AppendFileParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The parameters of an append_file action."""

    path: Annotated[
        str, msgspec.Meta(min_length=1, description="File to append to, relative to the root")
    ]
    text: Annotated[str, msgspec.Meta(description="Text to append")]
    newline: Annotated[bool, msgspec.Meta(description="End the text with a newline")] = True


class AppendFileSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The ``[plugins.append_file]`` settings."""

    #: The directory every ``path`` lives under (default: the current directory).
    root: str = ""
    #: The longest ``text`` accepted, in UTF-8 bytes.
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = 65536

    def __post_init__(self) -> None:
        if self.root and not Path(self.root).expanduser().is_absolute():
            raise SettingError("root must be an absolute directory", "root")


def load_settings(data: Mapping[str, Any] | None) -> AppendFileSettings:
    """Located errors: ``plugins.append_file.<key>: ...``."""
    return load_plugin_settings(data, AppendFileSettings, SETTINGS_SECTION)


class AppendFileExecutor(ActionExecutor[AppendFileParams]):
    """Appends ``text`` to ``root/path``. Output: ``{path, bytes}``."""

    action_type = "append_file"
    description = "Append text to a file under the configured root directory"
    params_type = AppendFileParams
    cli_flags = (
        ParamFlag("path", "--file", "File to append to, relative to the root."),
        ParamFlag("text", "--text", "Text to append."),
    )

    def __init__(self, settings: AppendFileSettings | None = None) -> None:
        self.settings = settings or AppendFileSettings()

    @property
    def root(self) -> Path:
        return Path(self.settings.root or os.getcwd()).expanduser().resolve()

    def target(self, params: AppendFileParams) -> Path:
        """The file ``params`` name, refused unless it lies inside the root."""
        if Path(params.path).is_absolute() or ".." in Path(params.path).parts:
            raise JobValidationError("path must stay inside the root directory", field="path")
        return self.root / params.path

    def validate(self, params: AppendFileParams) -> None:
        self.target(params)
        size = len(params.text.encode("utf-8", errors="surrogatepass"))
        if size > self.settings.max_bytes:
            raise JobValidationError(
                f"text is {size} bytes, over plugins.append_file.max_bytes "
                f"({self.settings.max_bytes})",
                field="text",
            )

    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        try:
            params = self.check(job.action)
        except JobValidationError as exc:
            return ExecutionResult.failed(exc.message)
        target = self.target(params)
        data = params.text + ("\n" if params.newline else "")
        try:
            await asyncio.to_thread(_append, target, data)
        except OSError as exc:
            return ExecutionResult.failed(f"append failed: {exc}")
        return ExecutionResult.ok({"path": str(target), "bytes": len(data.encode())})


def _append(target: Path, data: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as fh:
        fh.write(data)


@hookimpl
def omnicron_action_executors(context: PluginContext) -> list[ActionExecutor[Any]]:
    """The ``append_file`` executor, configured from ``[plugins.append_file]``."""
    return [AppendFileExecutor(load_settings(context.settings_for(SETTINGS_SECTION)))]
