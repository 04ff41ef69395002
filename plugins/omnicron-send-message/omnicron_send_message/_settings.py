"""The ``[plugins.send_message]`` settings and their conversion from config."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from omnicron_core.plugin import SettingError as _SettingError
from omnicron_core.plugin import load_plugin_settings

from ._secrets import malformed_env_ref

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "TRANSPORTS",
    "SendMessageSettings",
    "load_settings",
]

DEFAULT_MAX_MESSAGE_BYTES = 65536
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: Where a message goes when no host implementation of ``omnicron_deliver_message`` answers.
TRANSPORTS = ("console", "jsonl", "http", "host")
#: The transports that deliver a message themselves (``host`` and unset deliver nowhere).
FALLBACK_TRANSPORTS = ("console", "jsonl", "http")

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class SendMessageSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Settings of the ``send_message`` executor (the ``[plugins.send_message]`` section).

    Convert untrusted data with :func:`load_settings` (or ``msgspec.convert``), never the
    constructor, so that every value is checked.
    """

    #: Where a message goes when no host implementation of ``omnicron_deliver_message``
    #: answers: ``console``, ``jsonl`` or ``http``. Unset (``""``) or ``host``: nowhere; the
    #: run fails with an error naming the hook and this setting.
    transport: str = ""
    #: File the ``jsonl`` transport appends to (required for it; ``~`` is expanded).
    path: str = ""
    #: Gateway the ``http`` transport POSTs to (required for it; ``http``/``https`` only).
    url: str = ""
    #: Extra request headers of the ``http`` transport; values may hold ``${env:NAME}``.
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Seconds the ``http`` transport waits for the gateway (connect, send and read).
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: Largest message accepted, in UTF-8 bytes; longer ones are refused when the job is added.
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_MESSAGE_BYTES
    #: Bytes of the gateway's response read at most (the ``http`` transport).
    max_response_bytes: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        if self.transport and self.transport not in TRANSPORTS:
            raise _SettingError(
                f"unknown transport {self.transport!r}; allowed transports: {', '.join(TRANSPORTS)}",
                "transport",
            )
        if self.transport == "jsonl" and not self.path:
            raise _SettingError("the jsonl transport needs a path (a file to append to)", "path")
        if self.transport == "http" and not self.url:
            raise _SettingError("the http transport needs a url (the gateway)", "url")
        if self.url:
            problem = url_problem(self.url)
            if problem:
                raise _SettingError(problem, "url")
        for name, value in self.headers.items():
            if not _TOKEN.match(name):
                raise _SettingError(f"{name!r} is not a valid header name", f"headers.{name}")
            if name.lower() in _CLIENT_HEADERS:
                raise _SettingError(
                    f"header {name!r} is set by the HTTP client and cannot be configured",
                    f"headers.{name}",
                )
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise _SettingError(
                    "header values must not contain control characters (CR, LF...)",
                    f"headers.{name}",
                )
            bad = malformed_env_ref(value)
            if bad:
                raise _SettingError(
                    f"malformed reference {bad!r}; write ${{env:NAME}}", f"headers.{name}"
                )


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a gateway URL (http/https with a host), or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"{url!r} is not a valid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"{url!r} must use http or https (got {parts.scheme or 'no scheme'!r})"
    if not parts.hostname:
        return f"{url!r} has no host"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return f"{url!r} must not contain spaces or control characters"
    return None


def load_settings(data: Mapping[str, Any] | None) -> SendMessageSettings:
    """Convert the ``[plugins.send_message]`` section to :class:`SendMessageSettings`.

    Raises :class:`~omnicron_core.ConfigError` whose ``field`` is ``plugins.send_message.<key>``.
    """
    return load_plugin_settings(data, SendMessageSettings, "send_message")
