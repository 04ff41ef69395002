"""Size limits on everything a job carries, checked before anything is parsed.

Jobs may come from a model (the ``cron`` skill, the MCP server), so every field that outside
input can fill has a bound: text fields by length, the action and the metadata as a whole
(their JSON) and per string inside them, and how deeply they nest. The action is walked
generically, whatever its type and fields, so a plugin's parameters are bounded without the
core naming them. The same walk finds ``${env:}`` references in a job an agent made.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Final, Literal

import msgspec

from ._errors import JobValidationError
from ._text import CONTROL_CHARS

__all__ = [
    "AGENT_ORIGIN",
    "MAX_NOTE_LENGTH",
    "JobLimits",
    "check_env_free",
    "check_job_limits",
    "check_pause_note",
    "check_text",
    "is_agent_job",
    "quote",
    "walk_strings",
]

#: ``Job.origin`` of a job created or changed through the agent tools (skill or MCP).
AGENT_ORIGIN: Final[Literal["agent"]] = "agent"

_ENV_MARK = "${env:"
#: Characters of a pause note's ``note`` and ``by`` (the agent tools allow fewer).
MAX_NOTE_LENGTH: Final = 4096
_QUOTE_CHARS = 80
#: JSON punctuation counted per value when sizing a structure (quotes, comma, colon).
_OVERHEAD = 4
# Control characters (Unicode category Cc: C0, DEL, C1), line/paragraph separators, and the
# bidirectional overrides/isolates that can make a name display as something else.
_BAD_CHARS = re.compile(f"[{CONTROL_CHARS}]")
_BAD_CHARS_MULTILINE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


class JobLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Bounds on the size of a job (the ``[scheduler.limits]`` config table).

    They apply at every entry point (API, config file, CLI, import, agent tools); the agent
    skill applies its own, tighter ones on top (``SkillConfig``).
    """

    #: Characters of the job name.
    max_name_length: Annotated[int, msgspec.Meta(ge=1)] = 1024
    #: Characters of the description.
    max_description_length: Annotated[int, msgspec.Meta(ge=0)] = 16_384
    #: Characters of a cron expression (a long list of values still fits in 1024).
    max_cron_length: Annotated[int, msgspec.Meta(ge=9, le=4096)] = 1024
    #: Characters of a schedule's time zone name.
    max_timezone_length: Annotated[int, msgspec.Meta(ge=1)] = 64
    #: Size of the action as JSON (all its parameters, headers and body together).
    max_action_bytes: Annotated[int, msgspec.Meta(ge=64)] = 1024 * 1024
    #: Characters of any one string (or key) inside the action.
    max_action_string_length: Annotated[int, msgspec.Meta(ge=1)] = 256 * 1024
    #: Size of the job's metadata as JSON.
    max_metadata_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024
    #: Nesting depth of the action's and the metadata's objects and arrays.
    max_depth: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 32


def quote(text: str, limit: int = _QUOTE_CHARS) -> str:
    """``text`` quoted for an error message: at most ``limit`` characters of it, then how long
    it was, so a huge or hostile input is never echoed back whole."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _bad_char(text: str, *, allow_newlines: bool) -> str | None:
    found = (_BAD_CHARS_MULTILINE if allow_newlines else _BAD_CHARS).search(text)
    return found.group(0) if found else None


def check_text(
    value: str, *, field: str, label: str, limit: int, allow_newlines: bool = False
) -> None:
    """Refuse a text field that is too long or holds control characters (checked by length
    first, so a huge value costs nothing more)."""
    if len(value) > limit:
        raise JobValidationError(
            f"{label} is too long ({len(value)} characters); the maximum is {limit}", field=field
        )
    bad = _bad_char(value, allow_newlines=allow_newlines)
    if bad is not None:
        raise JobValidationError(
            f"{label} must not contain control characters (found U+{ord(bad):04X})", field=field
        )


def _key(path: str, key: object) -> str:
    text = str(key)
    if len(text) > _QUOTE_CHARS:
        text = text[:_QUOTE_CHARS] + "..."
    return f"{path}.{text}" if path else text


def _children(value: Any) -> Iterator[tuple[object, Any]] | None:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, list | tuple):
        return iter(enumerate(value))
    if isinstance(value, msgspec.Struct):
        fields = value.__struct_fields__
        return ((name, getattr(value, name)) for name in fields)
    names = getattr(type(value), "__record_fields__", None)
    if names is not None:  # an Action (which this module cannot import: _models imports it)
        return ((name, getattr(value, name)) for name in names)
    return None


def _is_record(value: Any) -> bool:
    """A Struct or an Action: its field names are not data (no depth, no key strings)."""
    return isinstance(value, msgspec.Struct) or hasattr(type(value), "__record_fields__")


def walk_strings(value: Any, path: str) -> Iterator[tuple[str, str, int]]:
    """Every string in ``value`` (keys included) as ``(path, string, depth)``, iteratively, so
    a deeply nested value cannot exhaust the stack. Struct fields named ``params`` (the
    action's parameters) are flattened into their parent's path, as in the action's JSON."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        if isinstance(item, str):
            yield where, item, depth
            continue
        children = _children(item)
        if children is None:
            continue
        struct = _is_record(item)
        for key, child in children:
            if isinstance(key, str) and not struct:
                yield where, key, depth + 1
            inner = where if struct and key == "params" else _key(where, key)
            stack.append((inner, child, depth if struct else depth + 1))


def _check_tree(value: Any, field: str, *, max_bytes: int, max_string: int, depth: int) -> None:
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    # Sizes and depth first (an iterative walk: no recursion, no encoding of a huge value).
    while stack:
        item, level = stack.pop()
        if level > depth:
            raise JobValidationError(
                f"{field} is nested too deeply (more than {depth} levels)", field=field
            )
        if isinstance(item, str):
            size += len(item) + _OVERHEAD
        elif isinstance(item, bytes):
            size += len(item) * 2 + _OVERHEAD
        else:
            children = _children(item)
            if children is None:
                size += 24  # a number, bool or null
            else:
                struct = _is_record(item)
                for key, child in children:
                    if isinstance(key, str):
                        size += len(key) + _OVERHEAD
                    stack.append((child, level if struct else level + 1))
        if size > max_bytes:
            raise JobValidationError(
                f"{field} is too large (more than {max_bytes} bytes as JSON)", field=field
            )
    for where, text, _ in walk_strings(value, field):
        if len(text) > max_string:
            raise JobValidationError(
                f"{where} is too long ({len(text)} characters); the maximum is {max_string}",
                field=where,
            )


def check_pause_note(note: str, by: str) -> None:
    """Refuse a pause note (``pause.note`` / ``pause.by``) that is too long or holds control
    characters (the note may hold line breaks)."""
    check_text(
        note, field="pause.note", label="pause note", limit=MAX_NOTE_LENGTH, allow_newlines=True
    )
    check_text(by, field="pause.by", label="paused-by name", limit=MAX_NOTE_LENGTH)


def check_job_limits(job: Any, limits: JobLimits) -> None:
    """Raise :class:`JobValidationError` for the first field of ``job`` beyond ``limits``.

    Only lengths and sizes are looked at, so this runs before any parsing."""
    check_text(job.name, field="name", label="job name", limit=limits.max_name_length)
    check_text(
        job.description,
        field="description",
        label="job description",
        limit=limits.max_description_length,
        allow_newlines=True,
    )
    schedule = job.schedule
    if len(schedule.cron) > limits.max_cron_length:
        raise JobValidationError(
            f"cron expression is too long ({len(schedule.cron)} characters); the maximum is "
            f"{limits.max_cron_length}",
            field="schedule.cron",
        )
    if len(schedule.timezone) > limits.max_timezone_length:
        raise JobValidationError(
            f"time zone {quote(schedule.timezone)} is too long; the maximum is "
            f"{limits.max_timezone_length} characters",
            field="schedule.timezone",
        )
    _check_tree(
        job.action,
        "action",
        max_bytes=limits.max_action_bytes,
        max_string=limits.max_action_string_length,
        depth=limits.max_depth,
    )
    if job.metadata:
        _check_tree(
            job.metadata,
            "metadata",
            max_bytes=limits.max_metadata_bytes,
            max_string=limits.max_metadata_bytes,
            depth=limits.max_depth,
        )
    pause = getattr(job, "pause", None)
    if pause is not None:
        check_pause_note(pause.note, pause.by)


def is_agent_job(job: Any) -> bool:
    """Whether a model made (or changed) ``job``: marked ``origin="agent"``, or owned by a
    principal (only the agent tools set an owner; this also covers jobs they saved before the
    mark existed)."""
    return bool(job.origin or job.owner_principal)


def check_env_free(job: Any) -> None:
    """Refuse a ``${env:}`` reference anywhere in the action or metadata of a job an agent
    made: secrets resolve only in operators' jobs, so a model cannot read the environment."""
    for root, value in (("action", job.action), ("metadata", job.metadata)):
        if not value:
            continue
        for where, text, _ in walk_strings(value, root):
            if _ENV_MARK in text:
                raise JobValidationError(
                    f"{where} holds a ${{env:}} reference; secrets from the environment are "
                    "for operators' jobs only and never resolve in a job made by an agent",
                    field=where,
                )
