"""Checking a tool call's arguments against the tool's JSON Schema, with messages a model can act on.

Only the subset of JSON Schema the ``cron_*`` tools use is interpreted: ``type`` (string,
integer, boolean, object), ``enum``, ``required``, ``additionalProperties: false``,
``maxLength``, ``minimum``/``maximum`` and ``additionalProperties`` of a nested object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._errors import ArgumentError
from .._limits import quote

__all__ = ["ArgumentError", "check_arguments", "decode_arguments", "json_type_name"]


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def decode_arguments(
    arguments: Mapping[str, Any] | str | bytes | None, *, max_bytes: int | None = None
) -> dict[str, Any]:
    """The arguments as a dict: a mapping as is, a JSON text decoded (``None``/``""`` is ``{}``).

    A text longer than ``max_bytes`` is refused before it is decoded."""
    if arguments is None:
        return {}
    if isinstance(arguments, str | bytes | bytearray):
        if max_bytes is not None and len(arguments) > max_bytes:
            raise ArgumentError(
                f"arguments are too large ({len(arguments)} characters); the maximum is {max_bytes}"
            )
        try:
            text = arguments.decode() if isinstance(arguments, bytes | bytearray) else arguments
        except UnicodeDecodeError as exc:
            raise ArgumentError(
                f"arguments are not UTF-8 text (byte {exc.start}); send a JSON object"
            ) from None
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArgumentError(
                f"arguments are not valid JSON ({exc.msg} at line {exc.lineno} column "
                f'{exc.colno}); send a JSON object such as {{"id": "..."}}'
            ) from None
        except (ValueError, RecursionError) as exc:  # a number past 4300 digits, deep nesting
            raise ArgumentError(
                f"arguments are not acceptable JSON ({type(exc).__name__}: {quote(str(exc))})"
            ) from None
        arguments = value
    if not isinstance(arguments, Mapping):
        raise ArgumentError(f"arguments must be a JSON object, got {json_type_name(arguments)}")
    return dict(arguments)


def _scalar(value: Any) -> str:
    """A number or other non-string value for a message, never long (a huge integer cannot
    even be turned into text past 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a number too large to show"
    if isinstance(value, int | float | bool) or value is None:
        return repr(value)
    return json_type_name(value)


def _type_ok(value: Any, expected: str) -> bool:
    actual = json_type_name(value)
    if expected == "number":
        return actual in ("integer", "number")
    return actual == expected


def check_arguments(
    tool: str,
    schema: Mapping[str, Any],
    args: dict[str, Any],
    *,
    withheld: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check ``args`` against ``schema``; return them without ``null`` optional values.

    ``withheld`` maps parameter names this skill knows but does not offer to the reason
    (so ``webhook_headers`` gets "not allowed: ..." instead of "unknown parameter").
    """
    props: Mapping[str, Any] = schema.get("properties", {})
    required: list[str] = list(schema.get("required", []))
    for name in args:
        if name not in props:
            if withheld and name in withheld:
                raise ArgumentError(f"parameter '{name}' is not allowed: {withheld[name]}")
            allowed = ", ".join(props) or "none"
            raise ArgumentError(
                f"unknown parameter {quote(name)} for {tool}; allowed parameters: {allowed}"
            )
    out: dict[str, Any] = {}
    for name, spec in props.items():
        value = args.get(name)
        if value is None:
            if name in required:
                raise ArgumentError(f"{name} is required")
            continue  # an explicit null means "not given"
        _check_value(name, spec, value, required=name in required)
        out[name] = value
    return out


def _check_value(name: str, spec: Mapping[str, Any], value: Any, *, required: bool) -> None:
    expected = spec.get("type")
    if isinstance(expected, str) and not _type_ok(value, expected):
        article = "an" if expected[0] in "aeiou" else "a"
        raise ArgumentError(
            f"parameter '{name}' must be {article} {expected}, got {json_type_name(value)}"
            + (
                f" ({_scalar(value)})"
                if json_type_name(value) in ("integer", "number", "boolean")
                else ""
            )
        )
    enum = spec.get("enum")
    limit = spec.get("maxLength")
    if isinstance(value, str) and limit is not None and len(value) > limit:
        # before any other look at the value: nothing long is compared, parsed or echoed
        raise ArgumentError(
            f"parameter '{name}' is too long ({len(value)} characters); the maximum is {limit}"
        )
    if enum is not None and value not in enum:
        shown = quote(value) if isinstance(value, str) else _scalar(value)
        raise ArgumentError(
            f"parameter '{name}' must be one of {', '.join(map(str, enum))}; got {shown}"
        )
    if isinstance(value, str) and required and value == "":
        raise ArgumentError(f"{name} is required")
    if expected == "integer":
        lo, hi = spec.get("minimum"), spec.get("maximum")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None:
                bound = f"at least {lo}"
            elif lo is None:
                bound = f"at most {hi}"
            else:
                bound = f"between {lo} and {hi}"
            raise ArgumentError(f"parameter '{name}' must be {bound}, got {value}")
    if expected == "object" and isinstance(value, Mapping):
        extra = spec.get("additionalProperties")
        if isinstance(extra, Mapping) and isinstance(extra.get("type"), str):
            for key, item in value.items():
                if not _type_ok(item, extra["type"]):
                    raise ArgumentError(
                        f"parameter '{name}.{quote(str(key))[1:-1]}' must be a "
                        f"{extra['type']}, got {json_type_name(item)}"
                    )
