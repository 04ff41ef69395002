"""Loading a plugin's ``[plugins.<name>]`` section into its own msgspec Struct."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from ._errors import ConfigError

__all__ = ["SettingError", "load_plugin_settings"]

S = TypeVar("S", bound=msgspec.Struct)

_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_PATH = re.compile(r"^(.*) - at `\$\.?(.*)`$", re.S)


class SettingError(ValueError):
    """Raise from a settings Struct's ``__post_init__`` to name the offending key
    (``SettingError("needs a path", "path")``); :func:`load_plugin_settings` locates it."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def load_plugin_settings(data: Mapping[str, Any] | None, settings_type: type[S], plugin: str) -> S:
    """Convert a plugin's config section to ``settings_type`` (a Struct that forbids unknown
    fields). Raises :class:`ConfigError` whose ``field`` is ``plugins.<plugin>.<key>`` and whose
    message says what is allowed."""
    prefix = f"plugins.{plugin}"
    if data is None:
        return settings_type()
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table of settings, got {type(data).__name__}", field=prefix)
    try:
        return msgspec.convert(dict(data), settings_type, strict=False)
    except msgspec.ValidationError as exc:
        cause = exc.__cause__
        if isinstance(cause, SettingError):
            raise ConfigError(str(cause), field=f"{prefix}.{cause.key}") from None
        text = str(exc)
        unknown = _UNKNOWN.search(text)
        if unknown:
            allowed = ", ".join(settings_type.__struct_fields__)
            raise ConfigError(
                f"unknown setting {unknown.group(1)!r}; allowed settings: {allowed}",
                field=f"{prefix}.{unknown.group(1)}",
            ) from None
        located = _PATH.match(text)
        if located:
            message, path = located.groups()
            raise ConfigError(message, field=f"{prefix}.{path}") from None
        raise ConfigError(text, field=prefix) from None
