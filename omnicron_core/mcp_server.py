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
import importlib.metadata
import json
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
    "ServerSettings",
    "build_server",
    "load_server_settings",
    "main",
    "mcp_command",
    "serve",
    "to_call_tool_result",
]

DEFAULT_PRINCIPAL = "mcp"
DEFAULT_PORT = 8765
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


# -- serving --------------------------------------------------------------------------------


async def serve(
    skill: Skill,
    *,
    transport: str = "stdio",
    principal: str | None = DEFAULT_PRINCIPAL,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> None:
    """Start the skill's scheduler and serve its tools until the client goes away (stdio) or
    the process is interrupted (http)."""
    server = build_server(skill, principal=principal)
    if transport == "stdio":
        from mcp.server.stdio import stdio_server

        # stdio_server points fd 1 at stderr while it serves, so stray prints (the console
        # transport of send_message) cannot corrupt the protocol stream.
        async with stdio_server() as (read_stream, write_stream), skill:
            await server.run(read_stream, write_stream, server.create_initialization_options())
    elif transport == "http":
        import uvicorn

        app = server.streamable_http_app(host=host)
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

    from .logging import configure_logging

    configure_logging(log_level, "auto", stream=sys.stderr)
    try:
        settings = load_server_settings(
            config_path,
            store=store,
            timezone=timezone,
            plugin_settings=plugin_settings,
            skill_settings=skill_settings,
        )
        skill = build_skill(settings, start_scheduler=not no_scheduler)
    except (ConfigError, OmnicronError) as exc:
        raise click.ClickException(str(exc)) from None

    async def run() -> None:
        await serve(
            skill,
            transport=transport,
            principal=None if trusted else principal,
            host=host,
            port=port,
        )

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)


def main() -> None:
    mcp_command()


if __name__ == "__main__":
    main()
