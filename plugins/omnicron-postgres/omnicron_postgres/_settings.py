"""The ``postgresql://`` URL and store options: parsed, checked, password kept out of text."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from omnicron_core.plugin import StoreError

__all__ = ["PgSettings", "parse_settings", "redact"]

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,40}")

#: omnicron's own options (URL query or ``[scheduler] store_options``); every other URL query
#: parameter goes to libpq (``sslmode``, ``sslrootcert``, ``target_session_attrs``...).
OPTIONS = {
    "schema": "database schema holding omnicron's tables (default public)",
    "lease": "seconds a run's lease lasts; renewed every third of it (default 30)",
    "heartbeat": "seconds between node heartbeats and reaper passes (default 2)",
    "node_timeout": "seconds without a heartbeat after which a node is dead (default 15)",
    "node_id": "this node's stable name (default $OMNICRON_NODE_ID, else host:pid)",
    "pool_size": "connections in this node's pool (default 4)",
    "retry_interrupted": "re-run a fire whose node died instead of recording it interrupted",
    "fire_retention": "seconds finished fire rows are kept (default 3600)",
    "connect_timeout": "seconds to wait for a connection (default 5)",
    "password_file": "file holding the password (first line)",
    "password_env": "environment variable holding the password",
}


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = parts.username or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class PgSettings:
    conninfo: str  # libpq URL without password and without omnicron's options
    display: str  # for logs and errors: no password
    password: str | None = field(default=None, repr=False)
    schema: str = "public"
    lease: float = 30.0
    heartbeat: float = 2.0
    node_timeout: float = 15.0
    node_id: str = ""
    pool_size: int = 4
    retry_interrupted: bool = False
    fire_retention: float = 3600.0
    connect_timeout: float = 5.0


def _number(name: str, raw: Any, *, minimum: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise StoreError(f"postgres option {name}={raw!r} is not a number") from None
    if value < minimum:
        raise StoreError(f"postgres option {name}={raw!r} must be >= {minimum:g}")
    return value


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise StoreError(f"postgres option {name}={raw!r} is not a boolean (true/false)")


def _password(opts: Mapping[str, Any], shown: str) -> str | None:
    if "password_file" in opts:
        path = Path(str(opts["password_file"])).expanduser()
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise StoreError(
                f"postgres password_file {str(path)!r} cannot be read: {exc.strerror}"
            ) from None
        return lines[0] if lines else ""
    if "password_env" in opts:
        name = str(opts["password_env"])
        if name not in os.environ:
            raise StoreError(f"postgres password_env: environment variable {name} is not set")
        return os.environ[name]
    return None  # libpq's own PGPASSWORD / PGPASSFILE / ~/.pgpass apply


def parse_settings(url: str, options: Mapping[str, Any]) -> PgSettings:
    """Check a ``postgresql://`` URL and options; nothing is connected."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise StoreError(f"postgres URL {redact(url)!r} is not valid: {exc}") from None
    shown = redact(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise StoreError(f"postgres URL {shown!r} must start with postgresql:// or postgres://")
    if parts.password is not None:
        raise StoreError(
            f"postgres URL {shown!r} carries a password: keep it out of the URL and the config "
            "(set PGPASSWORD, use a password file: PGPASSFILE or ~/.pgpass, or the store "
            "options password_file / password_env)"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    opts: dict[str, Any] = {k: v for k, v in query.items() if k in OPTIONS}
    libpq = {k: v for k, v in query.items() if k not in OPTIONS}
    if "password" in libpq:
        raise StoreError(
            f"postgres URL {shown!r} carries a password parameter: use PGPASSWORD, a password "
            "file or the options password_file / password_env"
        )
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise StoreError(
            f"unknown postgres store option(s) {unknown}; allowed: {', '.join(sorted(OPTIONS))}"
        )
    opts.update(options)
    schema = str(opts.get("schema", "public"))
    if not _IDENT.fullmatch(schema):
        raise StoreError(
            f"postgres option schema={schema!r} must be a lower-case identifier "
            "(letters, digits, underscore)"
        )
    lease = _number("lease", opts.get("lease", 30), minimum=1)
    heartbeat = _number("heartbeat", opts.get("heartbeat", 2), minimum=0.1)
    if heartbeat > lease / 3:
        heartbeat = lease / 3
    node_id = str(opts.get("node_id") or os.environ.get("OMNICRON_NODE_ID") or "")
    conninfo = urlunsplit(
        (
            "postgresql",
            parts.netloc,
            parts.path,
            urlencode(libpq, quote_via=quote),
            "",
        )
    )
    return PgSettings(
        conninfo=conninfo,
        display=redact(urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))),
        password=_password(opts, shown),
        schema=schema,
        lease=lease,
        heartbeat=heartbeat,
        node_timeout=_number("node_timeout", opts.get("node_timeout", 15), minimum=1),
        node_id=node_id,
        pool_size=int(_number("pool_size", opts.get("pool_size", 4), minimum=1)),
        retry_interrupted=_bool("retry_interrupted", opts.get("retry_interrupted", False)),
        fire_retention=_number("fire_retention", opts.get("fire_retention", 3600), minimum=0),
        connect_timeout=_number("connect_timeout", opts.get("connect_timeout", 5), minimum=0.5),
    )


def default_node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
