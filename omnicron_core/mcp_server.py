"""An MCP server offering the ``cron`` skill's tools, with a running Scheduler behind them.

    python -m omnicron_core.mcp_server --store sqlite:////var/lib/omnicron/jobs.db
    python -m omnicron_core.mcp_server --transport http --port 8765

Every client of one server acts as one principal (``--principal``, default ``mcp``): it sees
and manages only the jobs it created, under the limits of ``[skill]`` / ``--skill-setting``.
``--trusted`` makes the client trusted host code that sees every job. Plugin settings come
from ``--config omnicron.toml`` (its ``[plugins.*]`` and ``[scheduler]`` tables, and a
``[skill]`` table read here) and ``--plugin-setting name.key=value``. See ``docs/agents.md``.

Needs the ``mcp`` extra (``pip install 'omnicron-core[mcp]'``).
"""

from __future__ import annotations

import contextlib
import hmac
import importlib.metadata
import ipaddress
import json
import os
import socket
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._errors import ConfigError, OmnicronError
from ._plugins import Registry, get_plugin_manager
from ._schedule import resolve_zone
from ._store import DEFAULT_STORE_URL, Store, StoreConfig
from .skill import Skill, SkillConfig, ToolResult, load_skill_config

if TYPE_CHECKING:
    import mcp_types
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server

__all__ = [
    "TOKEN_ENV",
    "BearerTokenAuth",
    "ServerSettings",
    "allowed_hosts",
    "build_server",
    "load_server_settings",
    "main",
    "mcp_command",
    "serve",
    "to_call_tool_result",
]

DEFAULT_PRINCIPAL = "mcp"
DEFAULT_PORT = 8765
#: The environment variable holding the bearer token of ``--transport http``.
TOKEN_ENV = "OMNICRON_MCP_TOKEN"
MIN_TOKEN_LENGTH = 16
INSTRUCTIONS = (
    "Schedule and manage recurring jobs. Use cron_next to preview a schedule before "
    "cron_create; every job result carries schedule_description and next_fire_times so you "
    "can confirm what you scheduled. Times are RFC 3339."
)


def _version() -> str:
    try:
        return importlib.metadata.version("omnicron-core")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "0"


def to_call_tool_result(result: ToolResult) -> mcp_types.CallToolResult:
    """A skill result as an MCP tool result: the JSON as text, objects also as structured
    content, and ``isError`` for tool errors."""
    import mcp_types

    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(type="text", text=result.text)],
        structured_content=result.content if isinstance(result.content, dict) else None,
        is_error=result.is_error,
    )


def build_server(skill: Skill, *, principal: str | None = DEFAULT_PRINCIPAL) -> Server[Any]:
    """A low-level MCP server whose tools are the skill's, called as ``principal``."""
    import mcp_types
    from mcp.server.lowlevel import Server

    async def list_tools(
        ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        return mcp_types.ListToolsResult(tools=[tool.to_mcp() for tool in skill.tools()])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        result = await skill.call(params.name, params.arguments or {}, principal=principal)
        return to_call_tool_result(result)

    def input_schema(name: str) -> Mapping[str, Any] | None:
        tool = skill.get_tool(name)
        return None if tool is None else tool.parameters

    return Server(
        "omnicron",
        version=_version(),
        title="omnicron job scheduler",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


# -- settings -------------------------------------------------------------------------------


def _value(raw: str) -> Any:
    """A setting's value: JSON when it parses (numbers, booleans, lists), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_plugin_settings(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["send_message.transport=jsonl", ...]`` -> ``{"send_message": {"transport": "jsonl"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        plugin, dot, name = key.strip().partition(".")
        if not sep or not dot or not plugin or not name:
            raise ConfigError(
                f"{item!r} is not NAME.KEY=VALUE (e.g. tool.timeout=10)",
                field="--plugin-setting",
            )
        out.setdefault(plugin, {})[name] = _value(raw)
    return out


def parse_skill_settings(items: Iterable[str]) -> dict[str, Any]:
    """``["min_interval=0", "operators=[\\"user:me\\"]"]`` -> a ``[skill]`` table."""
    text_fields = {
        name
        for name, default in zip(
            SkillConfig.__struct_fields__, SkillConfig.__struct_defaults__, strict=False
        )
        if isinstance(default, str)
    }
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"{item!r} is not KEY=VALUE (e.g. min_interval=5m)", field="--skill-setting"
            )
        out[key] = raw if key in text_fields else _value(raw)
    return out


class ServerSettings:
    """Everything the server needs, resolved from the file, the environment and the flags."""

    def __init__(
        self,
        *,
        store: str,
        timezone: str,
        plugins: dict[str, dict[str, Any]],
        skill: SkillConfig,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.timezone = timezone
        self.plugins = plugins
        self.skill = skill
        self.store_options = dict(store_options or {})


def load_server_settings(
    config_path: Path | None = None,
    *,
    store: str | None = None,
    timezone: str | None = None,
    plugin_settings: Iterable[str] = (),
    skill_settings: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> ServerSettings:
    """Merge (lowest first) defaults, the config file, the environment
    (:func:`omnicron_core.config.load_effective_config`, as ``omnicron run``), and the flags."""
    from .config import load_effective_config

    config = load_effective_config(config_path, store=store, env=env)
    plugins = {name: dict(section) for name, section in config.plugins.items()}
    for name, section in parse_plugin_settings(plugin_settings).items():
        plugins.setdefault(name, {}).update(section)
    skill_table = {**config.skill, **parse_skill_settings(skill_settings)}
    return ServerSettings(
        store=config.scheduler.store,
        timezone=timezone if timezone is not None else config.scheduler.timezone,
        plugins=plugins,
        skill=load_skill_config(skill_table),
        store_options=config.scheduler.store_options,
    )


def build_skill(settings: ServerSettings, *, start_scheduler: bool = True) -> Skill:
    """The skill (and its scheduler, store and plugins) for ``settings``.

    Raises :class:`ConfigError` for a bad zone or plugin settings.
    """
    from ._errors import JobValidationError

    try:
        location = resolve_zone(settings.timezone or None, field="timezone")
    except JobValidationError as exc:
        raise ConfigError(exc.message, field="scheduler.timezone") from None
    registry = Registry(get_plugin_manager(), settings=settings.plugins, location=location)
    registry.executors  # noqa: B018 - build them now, so bad plugin settings fail at start
    store = Store(
        StoreConfig(url=settings.store, options=settings.store_options), registry=registry
    )
    return Skill(
        settings.skill,
        store=store,
        registry=registry,
        location=location,
        start_scheduler=start_scheduler,
    )


# -- HTTP security ----------------------------------------------------------------------------


class BearerTokenAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (compared in
    constant time); anything else is answered 401 before it reaches the MCP transport."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = b""
            for name, value in scope.get("headers", ()):
                if name.lower() == b"authorization":
                    given = value
                    break
            scheme, _, credentials = given.partition(b" ")
            if not (
                scheme.lower() == b"bearer"
                and hmac.compare_digest(b"Bearer " + credentials.strip(), self._expected)
            ):
                body = b'{"error":"unauthorized","error_description":"a valid bearer token is required"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b'Bearer realm="omnicron"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_pattern(host: str) -> str:
    bare = host.strip("[]")
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(bare).version == 6:
            return f"[{bare}]"
    return bare


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The ``Host`` header values the HTTP server accepts (DNS-rebinding protection): the
    loopback names, the bound address (for a wildcard bind, this machine's names), and
    ``extra`` (``--allowed-host``: a name with or without ``:port``). Each without a port
    matches any port."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    bare = host.strip("[]")
    if bare in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    elif not is_loopback(host):
        names.append(_host_pattern(host))
    out: list[str] = []
    for name in [*names, *extra]:
        name = name.strip()
        has_port = name.rsplit(":", 1)[-1].isdigit() and (not name.startswith("[") or "]:" in name)
        for pattern in [name] if has_port else [f"{name}:*", name]:
            if name and pattern not in out:
                out.append(pattern)
    return out


def read_token(token_file: Path | None, env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token: ``--token-file`` (first line), else ``$OMNICRON_MCP_TOKEN``, else
    ``None``. Raises :class:`ConfigError` for an unreadable file or a short token."""
    env = os.environ if env is None else env
    if token_file is not None:
        where = "--token-file"
        try:
            text = token_file.read_text(encoding="utf-8")
            mode = token_file.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read {token_file}: {reason}", field=where) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(
                f"warning: token file {token_file} can be read by other users (chmod 600 it)",
                file=sys.stderr,
            )
        token = (text.splitlines() or [""])[0].strip()
    elif env.get(TOKEN_ENV):
        where, token = TOKEN_ENV, env[TOKEN_ENV].strip()
    else:
        return None
    if len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise ConfigError(
            f"the token must be at least {MIN_TOKEN_LENGTH} printable characters without spaces "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            field=where,
        )
    return token


# -- serving --------------------------------------------------------------------------------


async def serve(
    skill: Skill,
    *,
    transport: str = "stdio",
    principal: str | None = DEFAULT_PRINCIPAL,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    extra_allowed_hosts: Iterable[str] = (),
) -> None:
    """Start the skill's scheduler and serve its tools until the client goes away (stdio) or
    the process is interrupted (http).

    Over http, ``token`` (when given) is required as ``Authorization: Bearer`` on every
    request, and the ``Host``/``Origin`` headers are checked against :func:`allowed_hosts`
    whatever the bound address (DNS-rebinding protection)."""
    server = build_server(skill, principal=principal)
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        # stdio_server points fd 1 at stderr while it serves, so stray prints (the console
        # transport of send_message) cannot corrupt the protocol stream.
        async with stdio_server() as (read_stream, write_stream), skill:
            await server.run(read_stream, write_stream, server.create_initialization_options())
    elif transport == "http":
        import uvicorn
        from mcp.server.transport_security import TransportSecuritySettings

        hosts = allowed_hosts(host, extra_allowed_hosts)
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts,
            allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")],
        )
        app: Any = server.streamable_http_app(host=host, transport_security=security)
        if token is not None:
            app = BearerTokenAuth(app, token)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        async with skill:
            await uvicorn.Server(config).serve()
    else:
        raise ValueError(f"unknown transport {transport!r}; use stdio or http")


@click.command("mcp", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="omnicron.toml: its [scheduler] store/timezone, [plugins.*] and [skill] tables.",
)
@click.option(
    "--store", help=f"Store URL (default: the config's, $OMNICRON_STORE, {DEFAULT_STORE_URL})."
)
@click.option(
    "--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address (http).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port (http).")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"File whose first line is the bearer token clients must send (http). Default: "
    f"${TOKEN_ENV}. Never on the command line.",
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Serve http without a token on a non-loopback address (anyone who can reach it "
    "controls the jobs).",
)
@click.option(
    "--allowed-host",
    "allowed_host",
    multiple=True,
    metavar="NAME[:PORT]",
    help="Another Host header to accept (http; the name clients use, e.g. behind a proxy).",
)
@click.option(
    "--principal",
    default=DEFAULT_PRINCIPAL,
    show_default=True,
    help="Who the client is: it sees and manages only the jobs it created.",
)
@click.option("--trusted", is_flag=True, help="Treat the client as host code: it sees every job.")
@click.option("--timezone", help="IANA zone for cron expressions without their own.")
@click.option(
    "--plugin-setting",
    "plugin_settings",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="A plugin setting, e.g. tool.timeout=10 (repeatable; JSON values parse).",
)
@click.option(
    "--skill-setting",
    "skill_settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A [skill] limit, e.g. min_interval=5m or max_jobs_per_owner=20 (repeatable).",
)
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="Manage jobs only; another process (omnicron run) fires them.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Log events go to stderr.",
)
def mcp_command(
    config_path: Path | None,
    store: str | None,
    transport: str,
    host: str,
    port: int,
    token_file: Path | None,
    allow_unauthenticated: bool,
    allowed_host: tuple[str, ...],
    principal: str,
    trusted: bool,
    timezone: str | None,
    plugin_settings: tuple[str, ...],
    skill_settings: tuple[str, ...],
    no_scheduler: bool,
    log_level: str,
) -> None:
    """Serve the cron tools over MCP (stdio or streamable HTTP), with a running scheduler."""
    try:
        import anyio
        import mcp  # noqa: F401 - fail early with a hint, not mid-start
    except ImportError:
        raise click.ClickException(
            "the MCP server needs the mcp extra: pip install 'omnicron-core[mcp]'"
        ) from None

    from .cli._common import fail, fail_config, say
    from .logging import configure_logging

    configure_logging(log_level, "auto", stream=sys.stderr)
    token: str | None = None
    if transport == "http":
        try:
            token = read_token(token_file)
        except ConfigError as exc:
            fail_config(exc)
        if token is None and not is_loopback(host):
            if not allow_unauthenticated:
                raise click.UsageError(
                    f"--host {host} is not a loopback address and no token is set: anyone who "
                    f"can reach it could create jobs. Set ${TOKEN_ENV} or --token-file (clients "
                    "send Authorization: Bearer TOKEN), or pass --allow-unauthenticated"
                )
            say(
                ("warning:", "bold yellow"),
                f" serving MCP over http on {host} without authentication "
                "(--allow-unauthenticated): anyone who can reach it controls the jobs",
                err=True,
            )
    elif token_file is not None:
        raise click.UsageError("--token-file applies to --transport http only")
    try:
        settings = load_server_settings(
            config_path,
            store=store,
            timezone=timezone,
            plugin_settings=plugin_settings,
            skill_settings=skill_settings,
        )
        skill = build_skill(settings, start_scheduler=not no_scheduler)
    except ConfigError as exc:
        fail_config(exc)
    except OmnicronError as exc:
        fail(str(exc))

    async def run() -> None:
        await serve(
            skill,
            transport=transport,
            principal=None if trusted else principal,
            host=host,
            port=port,
            token=token,
            extra_allowed_hosts=allowed_host,
        )

    try:
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(run)
    except (OmnicronError, BaseExceptionGroup) as exc:
        # the store opens inside the server's task group: a bad store (or a plugin's refusal)
        # arrives wrapped; show omnicron's own errors as error lines, leave the rest to the
        # command line's safety net
        errors = _leaves(exc)
        if not errors or not all(isinstance(e, OmnicronError) for e in errors):
            raise
        for error in errors[:-1]:
            say(("error:", "bold red"), " ", str(error), err=True)
        fail(str(errors[-1]))


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def main() -> None:
    from .cli._common import run_guarded

    run_guarded(mcp_command)


if __name__ == "__main__":
    main()
