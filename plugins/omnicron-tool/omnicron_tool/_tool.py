"""The ``Tool`` descriptor, JSON Schema checks of its parameters, and the tool registry."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema  # type: ignore[import-untyped]
import pluggy
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

from omnicron_core.plugin import call_each_plugin, get_logger

__all__ = ["FORMAT_CHECKER", "ParamsError", "Tool", "ToolProblem", "find_tools", "get_tools"]

_log = get_logger("omnicron.tool")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")

#: The format checker of every tool schema: Draft 2020-12's formats plus
#: ``"iana-time-zone"`` (a name ``zoneinfo`` knows, such as ``"Europe/Paris"``).
FORMAT_CHECKER = FormatChecker()
for _name, _check in Draft202012Validator.FORMAT_CHECKER.checkers.items():
    FORMAT_CHECKER.checks(_name, raises=_check[1])(_check[0])


def _is_time_zone(value: object) -> bool:
    if not isinstance(value, str):
        return True  # "type" is the keyword that refuses non-strings
    if not value or value.startswith("/") or ".." in value:
        return False
    ZoneInfo(value)
    return True


FORMAT_CHECKER.checks("iana-time-zone", raises=(ValueError, KeyError, OSError))(_is_time_zone)


class ParamsError(ValueError):
    """``tool_params`` do not match the tool's schema; ``path`` is the JSON path inside them."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True)
class Tool:
    """A callable a ``call_tool`` job can run, with a JSON Schema for its parameters.

    ``func`` is called with the job's ``tool_params`` as keyword arguments
    (``func(**params)``); a tool that wants the whole object declares ``**params``. It may be a
    plain function (run in a worker thread) or an ``async def`` (run on the event loop); its
    return value must be JSON-serialisable (otherwise ``str()`` of it is recorded).

    ``parameters`` is the JSON Schema (Draft 2020-12) of the params object; it is checked when
    the tool is built and copied, so later changes to the dict do not affect the tool.
    ``timeout`` (seconds) overrides the ``[plugins.tool] timeout`` setting for this tool.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    func: Callable[..., Any]
    timeout: float | None = None
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"tool name {self.name!r} must start with a letter or '_' and hold only letters, "
                "digits, '_', '.' and '-' (at most 128 characters)"
            )
        if not callable(self.func):
            raise TypeError(f"tool {self.name!r}: func must be callable")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not self.timeout > 0
        ):
            raise ValueError(f"tool {self.name!r}: timeout must be a positive number of seconds")
        schema = copy.deepcopy(dict(self.parameters))
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = _json_path("parameters", exc.absolute_path)
            raise ValueError(
                f"tool {self.name!r} has an invalid parameters schema at {where}: {exc.message}"
            ) from None
        object.__setattr__(self, "parameters", schema)
        object.__setattr__(
            self, "_validator", Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
        )

    def check_params(self, params: Mapping[str, Any] | None) -> None:
        """Raise :class:`ParamsError` if ``params`` do not match the schema.

        The message is ``tool_params.<path>: <schema error>``, for the most relevant error.
        """
        error = best_match(self._validator.iter_errors(dict(params or {})))
        if error is not None:
            where = _json_path("tool_params", error.absolute_path)
            raise ParamsError(f"{where}: {error.message}", where)


def _json_path(root: str, parts: Any) -> str:
    out = root
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _plugin_label(impl: pluggy.HookImpl) -> str:
    name = impl.plugin_name
    if name.isdigit():  # an object registered without a name: say what it is
        return f"{type(impl.plugin).__qualname__} (plugin {name})"
    return name


def get_tools(plugin_manager: pluggy.PluginManager) -> dict[str, Tool]:
    """Every tool the plugins provide through ``omnicron_tools``, by name.

    A provider that raises or returns something other than a ``Tool`` is left out (logged as
    ``tool.provider_failed`` with the plugin's name): the other plugins' tools still work. A
    name two plugins provide is left out too (``tool.name_conflict``, naming both plugins).
    Returns ``{}`` when the tool plugin's hook is not present.
    """
    tools, problems = find_tools(plugin_manager)
    for problem in problems.values():
        _log.error(problem.event, plugin=problem.plugin, error=problem.message)
    return tools


@dataclass(frozen=True, slots=True)
class ToolProblem:
    """Why a plugin's tools (or one tool name) are left out of the registry."""

    event: str
    plugin: str
    message: str


def find_tools(
    plugin_manager: pluggy.PluginManager,
) -> tuple[dict[str, Tool], dict[str, ToolProblem]]:
    """The tools by name, and what was left out: by plugin name for a broken provider, by
    tool name for a name two plugins provide. Logs nothing (see :func:`get_tools`)."""
    found: dict[str, Tool] = {}
    owners: dict[str, str] = {}
    problems: dict[str, ToolProblem] = {}
    conflicts: set[str] = set()
    labels = {impl.plugin_name: _plugin_label(impl) for impl in _impls(plugin_manager)}
    # Registration order (not pluggy's LIFO call order) so that messages read naturally.
    for res in call_each_plugin(plugin_manager, "omnicron_tools"):
        owner = labels.get(res.plugin_name, res.plugin_name)
        if res.error is not None:
            problems[res.plugin_name] = ToolProblem(
                "tool.provider_failed",
                owner,
                f"plugin {owner!r} failed in omnicron_tools: {type(res.error).__name__}: "
                f"{res.error}",
            )
            continue
        wrong = [t for t in res.items if not isinstance(t, Tool)]
        if wrong:
            problems[res.plugin_name] = ToolProblem(
                "tool.provider_failed",
                owner,
                f"plugin {owner!r} returned {type(wrong[0]).__name__} from omnicron_tools; "
                "expected omnicron_tool.Tool",
            )
            continue
        for tool in res.items:
            if tool.name in conflicts:
                continue
            if tool.name in found:
                problems[tool.name] = ToolProblem(
                    "tool.name_conflict",
                    owner,
                    f"tool {tool.name!r} is provided by both {owners[tool.name]!r} and {owner!r}",
                )
                conflicts.add(tool.name)
                del found[tool.name]
                continue
            found[tool.name] = tool
            owners[tool.name] = owner
    return found, problems


def _impls(plugin_manager: pluggy.PluginManager) -> list[pluggy.HookImpl]:
    caller = getattr(plugin_manager.hook, "omnicron_tools", None)
    return [] if caller is None else list(caller.get_hookimpls())
