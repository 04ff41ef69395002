"""The ``[plugins.tool]`` settings and their conversion from config."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from omnicron_core.plugin import SettingError as _SettingError
from omnicron_core.plugin import load_plugin_settings

__all__ = ["ALLOW_ALL", "ToolSettings", "load_settings"]

#: An ``allow`` entry that allows every registered tool.
ALLOW_ALL = "*"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


class ToolSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Settings of the ``call_tool`` executor (the ``[plugins.tool]`` config section).

    Convert untrusted data with :func:`load_settings` (or ``msgspec.convert``), never the
    constructor, so that every value is checked.
    """

    #: Tools that jobs may call besides the built-ins; ``["*"]`` allows every registered tool.
    allow: tuple[str, ...] = ()
    #: Whether the built-in tools (``echo``, ``now``) may be called without being listed.
    allow_builtins: bool = True
    #: Seconds a tool may run, unless the tool sets its own ``timeout``.
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0

    def __post_init__(self) -> None:
        for i, name in enumerate(self.allow):
            if name != ALLOW_ALL and not _NAME.match(name):
                raise _SettingError(
                    f"{name!r} is not a tool name (letters, digits, '_', '.', '-'), nor '*' for "
                    "every registered tool",
                    f"allow[{i}]",
                )

    @property
    def allows_all(self) -> bool:
        return ALLOW_ALL in self.allow


def load_settings(data: Mapping[str, Any] | None) -> ToolSettings:
    """Convert the ``[plugins.tool]`` section to :class:`ToolSettings`.

    Raises :class:`~omnicron_core.ConfigError` whose ``field`` is ``plugins.tool.<key>``.
    """
    return load_plugin_settings(data, ToolSettings, "tool")
