"""The ``[plugins.tool]`` settings and their conversion from config."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from omnicron_core import ConfigError

__all__ = ["ALLOW_ALL", "ToolSettings", "load_settings"]

#: An ``allow`` entry that allows every registered tool.
ALLOW_ALL = "*"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


class _SettingError(ValueError):
    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


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


_FIELDS = tuple(ToolSettings.__struct_fields__)
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_PATH = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.S)
_PREFIX = "plugins.tool"


def load_settings(data: Mapping[str, Any] | None) -> ToolSettings:
    """Convert the ``[plugins.tool]`` section to :class:`ToolSettings`.

    Raises :class:`~omnicron_core.ConfigError` whose ``field`` is ``plugins.tool.<key>``.
    """
    if data is None:
        return ToolSettings()
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table of settings, got {type(data).__name__}", field=_PREFIX)
    try:
        return msgspec.convert(dict(data), ToolSettings, strict=False)
    except msgspec.ValidationError as exc:
        cause = exc.__cause__
        if isinstance(cause, _SettingError):
            raise ConfigError(str(cause), field=f"{_PREFIX}.{cause.key}") from None
        text = str(exc)
        unknown = _UNKNOWN.search(text)
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown.group(1)!r}; allowed settings: {', '.join(_FIELDS)}",
                field=f"{_PREFIX}.{unknown.group(1)}",
            ) from None
        located = _PATH.match(text)
        if located:
            message, path = located.groups()
            raise ConfigError(message, field=f"{_PREFIX}.{path}") from None
        raise ConfigError(text, field=_PREFIX) from None
