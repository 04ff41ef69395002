"""omnicron executor plugin: the ``send_message`` action.

Registered through the ``omnicron`` entry point ``send_message``; its settings are the
``[plugins.send_message]`` config section (see :class:`SendMessageSettings`). It adds the hook
``omnicron_deliver_message`` (see :mod:`omnicron_send_message.hookspecs`) through which a host
application delivers messages to its agent sessions.
"""

from __future__ import annotations

from typing import Any

import pluggy

from omnicron_core.plugin import ActionExecutor, PluginContext, hookimpl

from . import hookspecs
from ._executor import SendMessageExecutor, SendMessageParams
from ._secrets import MissingEnvVarError, resolve_env_refs
from ._settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    TRANSPORTS,
    SendMessageSettings,
    load_settings,
)
from ._transports import ConsoleTransport, HttpTransport, JsonlTransport, Transport

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "TRANSPORTS",
    "ConsoleTransport",
    "HttpTransport",
    "JsonlTransport",
    "MissingEnvVarError",
    "SendMessageExecutor",
    "SendMessageParams",
    "SendMessageSettings",
    "Transport",
    "hookspecs",
    "load_settings",
    "resolve_env_refs",
]

SETTINGS_SECTION = "send_message"


@hookimpl
def omnicron_add_hookspecs(plugin_manager: pluggy.PluginManager) -> None:
    """Add ``omnicron_deliver_message`` (once, even if another plugin added it already)."""
    caller = getattr(plugin_manager.hook, "omnicron_deliver_message", None)
    if caller is None or caller.spec is None:
        plugin_manager.add_hookspecs(hookspecs)


@hookimpl
def omnicron_action_executors(context: PluginContext) -> list[ActionExecutor[Any]]:
    """The ``send_message`` executor, configured from ``[plugins.send_message]``."""
    settings = load_settings(context.settings_for(SETTINGS_SECTION))
    return [SendMessageExecutor(settings, context.plugin_manager)]
