"""Shared pieces of the command line: config resolution, output, errors, time formatting."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._errors import ConfigError
from ..config import (
    DEFAULT_CONFIG_FILE,
    Config,
    ConfigErrors,
    load_effective_config,
)
from ..logging import LEVELS, configure_logging

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Options of the ``omnicron`` group, shared with the subcommands."""

    def __init__(self, log_level: str | None, log_format: str | None) -> None:
        self.log_level = log_level
        self.log_format = log_format


def stdout() -> Console:
    return Console(soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def config_option(fn: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="OMNICRON_CONFIG",
        default=None,
        help=f"Config file (TOML). Default: ./{DEFAULT_CONFIG_FILE} if it exists, else none "
        "(embedded SQLite store ./omnicron.db, no declared jobs). Env: OMNICRON_CONFIG.",
    )(fn)


def store_option(fn: F) -> F:
    return click.option(
        "--store",
        "store_url",
        default=None,
        metavar="URL",
        help="Store URL; overrides the config and OMNICRON_STORE.",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def log_options(fn: F) -> F:
    fn = click.option(
        "--log-format",
        type=click.Choice(["auto", "console", "json"]),
        default=None,
        help="Log format (default: console on a terminal, JSON lines otherwise). "
        "Env: OMNICRON_LOG_FORMAT.",
    )(fn)
    fn = click.option(
        "--log-level",
        type=click.Choice(LEVELS, case_sensitive=False),
        default=None,
        help="Log level. Env: OMNICRON_LOG_LEVEL.",
    )(fn)
    return fn


def resolve_config_path(path: Path | None) -> Path | None:
    if path is not None:
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load(path: Path | None, *, store_url: str | None = None) -> Config:
    """The config for a command: file (or defaults), environment, then ``--store``."""
    try:
        return load_effective_config(resolve_config_path(path), store=store_url)
    except ConfigError as exc:
        fail_config(exc)


def store_source(config: Config, store_url: str | None) -> str:
    """Where the store URL of ``config`` came from, for messages."""
    if store_url:
        return "from --store"
    if os.environ.get("OMNICRON_STORE"):
        return "from OMNICRON_STORE"
    if config.source:
        return f"from {config.source}"
    return "the default: no config file, no --store, no OMNICRON_STORE"


def check(path: Path | None, *, store_url: str | None = None) -> tuple[Config, list[ConfigError]]:
    """The config and every problem found in it without starting anything (as many as can be
    found at once: a section that fails to decode is checked no further, the others are)."""
    from ..runtime import Runtime

    errors: list[ConfigError] = []
    config = load_effective_config(resolve_config_path(path), store=store_url, errors=errors)
    try:
        errors += Runtime(config).check()
    except ConfigErrors as exc:
        errors += exc.errors
    return config, errors


def setup_logging(
    ctx: click.Context,
    config: Config,
    *,
    level: str | None = None,
    fmt: str | None = None,
    quiet_default: bool = True,
) -> None:
    """Configure logging: command option, then group option, then env/config.

    Commands other than ``run`` log only warnings unless a level is asked for explicitly.
    """
    state = ctx.find_object(State)
    level = level or (state.log_level if state else None)
    fmt = fmt or (state.log_format if state else None)
    if level is None:
        explicit = os.environ.get("OMNICRON_LOG_LEVEL")
        level = config.log.level if (explicit or not quiet_default) else "warning"
    configure_logging(level.lower(), fmt or config.log.format)


def errors_of(exc: ConfigError) -> list[ConfigError]:
    return exc.errors if isinstance(exc, ConfigErrors) else [exc]


def error_lines(errors: Sequence[ConfigError]) -> list[str]:
    return [str(e) for e in errors]


def print_errors(errors: Sequence[ConfigError], *, as_json: bool = False) -> None:
    if as_json:
        click.echo(
            msgspec.json.encode(
                {
                    "valid": False,
                    "errors": [{"field": e.field, "message": e.message} for e in errors],
                }
            ).decode()
        )
        return
    err = stderr()
    for line in error_lines(errors):
        err.print(f"[bold red]error:[/] {line}", highlight=False, markup=True)


def fail_config(exc: ConfigError, *, as_json: bool = False) -> NoReturn:
    print_errors(errors_of(exc), as_json=as_json)
    raise SystemExit(1)


def fail(message: str) -> NoReturn:
    # the message is plain text (it may quote user data or `[[jobs]]`), only the prefix is markup
    stderr().print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True
    )
    raise SystemExit(1)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def echo_json(data: Any) -> None:
    click.echo(msgspec.json.encode(data).decode())


def echo_raw_json(data: bytes) -> None:
    click.echo(data.decode())


# -- time ---------------------------------------------------------------------------------


def relative(at: datetime, now: datetime | None = None) -> str:
    """``in 5m 3s`` / ``2h 10m ago`` (two largest units)."""
    now = now or datetime.now(UTC)
    seconds = round((at - now).total_seconds())
    future = seconds >= 0
    seconds = abs(seconds)
    if seconds < 1:
        return "now"
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    text = " ".join(parts)
    return f"in {text}" if future else f"{text} ago"


def fmt_time(at: datetime | None, zone: tzinfo | None = None, *, rel: bool = True) -> str:
    if at is None:
        return "-"
    try:
        local = at.astimezone(zone) if zone is not None else at
    except (OverflowError, ValueError):  # a stored time this zone cannot show (year 9999)
        local = at.astimezone(UTC)
    text = local.isoformat(sep=" ", timespec="seconds")
    return f"{text} ({relative(at)})" if rel else text


def parse_time(text: str, zone: tzinfo) -> datetime:
    """RFC 3339 / ISO 8601; a time without an offset is in ``zone``; ``now`` is now."""
    if text.strip().lower() == "now":
        return datetime.now(zone)
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time; use RFC 3339 such as 2026-01-31T09:00:00+01:00"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


# -- tables -------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> None:
    """A rich table on a terminal; plain aligned columns when piped."""
    out = stdout()
    if out.is_terminal:
        table = Table(title=title or None, header_style="bold", show_lines=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*row)
        out.print(table)
        return
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    for line in lines:
        sys.stdout.write(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n"
        )
    sys.stdout.flush()
