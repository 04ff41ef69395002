"""omnicron executor plugin: the ``call_tool`` action and its tool registry.

Registered through the ``omnicron`` entry point ``tool``; its settings are the
``[plugins.tool]`` config section (see :class:`ToolSettings`). It adds the hook
``omnicron_tools`` (see :mod:`omnicron_tool.hookspecs`) through which plugins and host
applications provide :class:`Tool` objects, and provides the built-in tools ``echo`` and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pluggy

from omnicron_core.plugin import ActionExecutor, PluginContext, hookimpl

from . import hookspecs
from ._builtins import BUILTIN_TOOLS
from ._executor import ToolExecutor, ToolParams, is_builtin
from ._settings import ALLOW_ALL, ToolSettings, load_settings
from ._tool import FORMAT_CHECKER, ParamsError, Tool, get_tools

__all__ = [
    "ALLOW_ALL",
    "BUILTIN_TOOLS",
    "FORMAT_CHECKER",
    "ParamsError",
    "Tool",
    "ToolExecutor",
    "ToolParams",
    "ToolSettings",
    "get_tools",
    "hookspecs",
    "is_builtin",
    "load_settings",
]

SETTINGS_SECTION = "tool"


@hookimpl
def omnicron_add_hookspecs(plugin_manager: pluggy.PluginManager) -> None:
    """Add ``omnicron_tools`` (once, even if another plugin added it already)."""
    caller = getattr(plugin_manager.hook, "omnicron_tools", None)
    if caller is None or caller.spec is None:
        plugin_manager.add_hookspecs(hookspecs)


@hookimpl
def omnicron_tools() -> Iterable[Tool]:
    """The built-in tools ``echo`` and ``now``."""
    return BUILTIN_TOOLS


@hookimpl
def omnicron_action_executors(context: PluginContext) -> list[ActionExecutor[Any]]:
    """The ``call_tool`` executor, configured from ``[plugins.tool]``."""
    settings = load_settings(context.settings_for(SETTINGS_SECTION))
    return [ToolExecutor(settings, context.plugin_manager)]
