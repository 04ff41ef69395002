"""Loading a plugin's ``[plugins.<name>]`` section into its own msgspec Struct."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from ._errors import ConfigError, SettingError
from ._locate import locate

__all__ = ["SettingError", "load_plugin_settings"]

S = TypeVar("S", bound=msgspec.Struct)


def load_plugin_settings(data: Mapping[str, Any] | None, settings_type: type[S], plugin: str) -> S:
    """Convert a plugin's config section to ``settings_type`` (a Struct that forbids unknown
    fields). Raises :class:`ConfigError` whose ``field`` is ``plugins.<plugin>.<key>`` and whose
    message says what is allowed (``unknown key 'colour' (check its spelling); allowed keys:
    transport, path, ...``). Raise :class:`SettingError` in the Struct's ``__post_init__`` to
    name a key yourself."""
    prefix = f"plugins.{plugin}"
    if data is None:
        return settings_type()
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table of settings, got {type(data).__name__}", field=prefix)
    try:
        return msgspec.convert(dict(data), settings_type, strict=False)
    except msgspec.ValidationError as exc:
        raise locate(exc, prefix, root=settings_type) from None
