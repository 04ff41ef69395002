"""omnicron executor plugin: the ``call_webhook`` action.

Registered through the ``omnicron`` entry point ``webhook``; its settings are the
``[plugins.webhook]`` config section (see :class:`WebhookSettings`).
"""

from __future__ import annotations

from typing import Any

from omnicron_core.plugin import ActionExecutor, PluginContext, hookimpl

from ._executor import METHODS, WebhookExecutor, WebhookParams
from ._secrets import MissingEnvVarError, resolve_env_refs
from ._settings import WebhookSettings, load_settings
from ._ssrf import RequestRefusedError

__all__ = [
    "METHODS",
    "MissingEnvVarError",
    "RequestRefusedError",
    "WebhookExecutor",
    "WebhookParams",
    "WebhookSettings",
    "load_settings",
    "resolve_env_refs",
]


@hookimpl
def omnicron_action_executors(context: PluginContext) -> list[ActionExecutor[Any]]:
    """The ``call_webhook`` executor, configured from ``[plugins.webhook]``."""
    return [WebhookExecutor(load_settings(context.settings_for("webhook")))]
