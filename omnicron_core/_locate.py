"""The one translation of msgspec's validation errors into located :class:`ConfigError` s.

msgspec says ``Expected `str`, got `int` - at `$.jobs[0].action.webhook_url```; omnicron says
``jobs[0].action.webhook_url: expected str, got int`` everywhere: the config file, plugin
settings, the skill's settings, the CLI's JSON input.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import msgspec

from ._errors import ConfigError, SettingError

__all__ = ["join_path", "locate"]

_AT = re.compile(r"^(?P<msg>.*?) - at `\$(?P<path>[^`]*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[[^\]]*\]")


def join_path(prefix: str, path: str) -> str:
    """``jobs[2]`` + ``.schedule.cron`` -> ``jobs[2].schedule.cron`` (either may be empty)."""
    if not path:
        return prefix
    if not prefix:
        return path.lstrip(".")
    return prefix + path if path.startswith("[") else f"{prefix}.{path.lstrip('.')}"


def _struct_at(root: type | None, path: str) -> type[msgspec.Struct] | None:
    """The Struct type found at ``path`` (``.jobs[0].schedule``) inside ``root``, if any."""
    current: Any = root
    for match in _SEGMENT.finditer(path):
        current = _unwrap(current)
        if current is None:
            return None
        name = match.group(1)
        if name is None:  # [index] or [key]: the element type
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
        elif isinstance(current, type) and issubclass(current, msgspec.Struct):
            current = typing.get_type_hints(current, include_extras=False).get(name)
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, msgspec.Struct) else None


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``; ``Annotated[X, ...]`` -> ``X``."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp


def _plain(message: str) -> str:
    """msgspec's ``Expected `int` >= 1`` -> ``expected int >= 1``."""
    text = message.replace("`", "")
    return text[:1].lower() + text[1:]


def locate(
    exc: msgspec.ValidationError, prefix: str = "", *, root: type | None = None
) -> ConfigError:
    """A :class:`ConfigError` at ``prefix`` + the place msgspec names.

    ``root`` is the type that was decoded: with it an unknown key's error lists the keys its
    table allows. A :class:`SettingError` raised by a Struct's ``__post_init__`` is located at
    its own key.
    """
    cause = exc.__cause__
    text = str(exc)
    match = _AT.match(text)
    message, path = (match["msg"], match["path"]) if match else (text, "")
    if isinstance(cause, SettingError):
        return ConfigError(cause.message, field=join_path(prefix, join_path(path, cause.key)))
    unknown = _UNKNOWN.match(message)
    if unknown:
        name = unknown["name"]
        struct = _struct_at(root, path)
        allowed = f"; allowed keys: {', '.join(struct.__struct_fields__)}" if struct else ""
        return ConfigError(
            f"unknown key {name!r} (check its spelling){allowed}",
            field=join_path(prefix, f"{path}.{name}") or None,
        )
    missing = _MISSING.match(message)
    if missing:
        field = join_path(prefix, f"{path}.{missing['name']}")
        return ConfigError("required key is missing", field=field or None)
    return ConfigError(_plain(message), field=join_path(prefix, path) or None)
