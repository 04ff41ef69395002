"""The ``[plugins.webhook]`` settings and their conversion from config."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from omnicron_core.plugin import SettingError as _SettingError
from omnicron_core.plugin import load_plugin_settings

from ._secrets import find_env_refs, malformed_env_ref

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "WebhookSettings", "load_settings", "signing_key"]

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HOST = re.compile(r"^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")


class WebhookSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Settings of the ``call_webhook`` executor (the ``[plugins.webhook]`` config section).

    Durations are seconds. Convert untrusted data with :func:`load_settings` (or
    ``msgspec.convert``), never the constructor, so that every value is checked.
    """

    #: Default time limit of one attempt (connect, send and read the response).
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: Upper bound of a job's own ``metadata["webhook_timeout"]``.
    max_timeout: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: Attempts per run, the first included (1 = no retries).
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    #: Backoff ceiling of the first retry; doubles each retry (full jitter).
    backoff_initial: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    #: Largest delay between attempts, also the cap of a ``Retry-After`` header.
    backoff_max: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: Follow 3xx redirects (each hop re-checked); off by default.
    follow_redirects: bool = False
    #: Redirect hops followed at most, when ``follow_redirects`` is on.
    max_redirects: Annotated[int, msgspec.Meta(ge=0, le=20)] = 5
    #: Bytes of response body read at most; the rest is never read.
    max_response_bytes: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_RESPONSE_BYTES
    #: Refuse non-public addresses (loopback, private, link-local, metadata...).
    ssrf_protection: bool = True
    #: CIDR networks exempt from the SSRF rule, e.g. ``["10.1.0.0/16"]``.
    allow_networks: tuple[str, ...] = ()
    #: If not empty, the only hosts webhooks may call: ``"api.example.com"``, ``"*.example.com"``.
    allow_hosts: tuple[str, ...] = ()
    #: Header carrying the per-run idempotency key; ``""`` sends none.
    idempotency_header: str = "Idempotency-Key"
    #: Standard Webhooks signing secret (``whsec_<base64>``, raw text, or ``${env:NAME}``).
    signing_secret: str = ""
    #: Also sign the requests of jobs an agent made (``origin = "agent"``). Off by default:
    #: a model that picks the URL and body would get the operator's signature on any body.
    sign_agent_jobs: bool = False

    def __post_init__(self) -> None:
        if self.max_timeout < self.timeout:
            raise _SettingError(
                f"max_timeout ({self.max_timeout:g}) must be at least timeout ({self.timeout:g})",
                "max_timeout",
            )
        if self.backoff_max < self.backoff_initial:
            raise _SettingError(
                f"backoff_max ({self.backoff_max:g}) must be at least backoff_initial "
                f"({self.backoff_initial:g})",
                "backoff_max",
            )
        for i, net in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise _SettingError(
                    f"{net!r} is not a network in CIDR form (e.g. '10.1.0.0/16', 'fd00::/8')",
                    f"allow_networks[{i}]",
                ) from None
        for i, host in enumerate(self.allow_hosts):
            if not _HOST.match(host) and not _is_ip(host):
                raise _SettingError(
                    f"{host!r} is not a host name, IP address or '*.domain' pattern",
                    f"allow_hosts[{i}]",
                )
        if self.idempotency_header and not _TOKEN.match(self.idempotency_header):
            raise _SettingError(
                f"{self.idempotency_header!r} is not a valid header name (or '' to send none)",
                "idempotency_header",
            )
        bad = malformed_env_ref(self.signing_secret)
        if bad:
            raise _SettingError(
                f"malformed reference {bad!r}; write ${{env:NAME}}", "signing_secret"
            )
        if self.signing_secret and not find_env_refs(self.signing_secret):
            try:
                signing_key(self.signing_secret)
            except ValueError as exc:
                raise _SettingError(str(exc), "signing_secret") from None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def signing_key(secret: str) -> bytes:
    """The HMAC key of a signing secret: ``whsec_`` + base64 is decoded, other text is UTF-8."""
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a 'whsec_' signing secret must be followed by base64") from None
        if not key:
            raise ValueError("the signing secret is empty")
        return key
    return secret.encode()


def load_settings(data: Mapping[str, Any] | None) -> WebhookSettings:
    """Convert the ``[plugins.webhook]`` section to :class:`WebhookSettings`.

    Raises :class:`~omnicron_core.ConfigError` whose ``field`` is ``plugins.webhook.<key>``.
    """
    return load_plugin_settings(data, WebhookSettings, "webhook")
