"""Shared pieces of the command line: config resolution, output, errors, time formatting."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._errors import ConfigError
from .._text import plain
from ..config import (
    DEFAULT_CONFIG_FILE,
    Config,
    ConfigErrors,
    load_effective_config,
)
from ..logging import LEVELS, configure_logging

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


#: Set to 1 to see the traceback of an unexpected error (same as ``omnicron --debug``).
DEBUG_ENV = "OMNICRON_DEBUG"


def debug_wanted(flag: bool = False) -> bool:
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def report_unexpected(exc: BaseException, *, debug: bool) -> NoReturn:
    """The last line of defence: an exception nothing anticipated becomes an ``error:`` line
    with a hint (the traceback only when asked for), and exit status 1."""
    if debug:
        traceback.print_exception(exc)
    message = str(exc) or "(no message)"
    fail(
        f"unexpected {type(exc).__name__}: {message[:500]}",
        hint=""
        if debug
        else f"this is a bug in omnicron or a plugin; run again with --debug (or {DEBUG_ENV}=1) "
        "to see the traceback, and report it",
    )


def run_guarded(fn: Callable[[], T], *, debug: bool = False) -> T:
    """``fn()``, with :func:`report_unexpected` for anything but click's own exits."""
    try:
        return fn()
    except (
        click.ClickException,
        click.exceptions.Exit,
        click.Abort,
        SystemExit,
        KeyboardInterrupt,
    ):
        raise
    except Exception as exc:
        report_unexpected(exc, debug=debug_wanted(debug))


class GuardedGroup(click.Group):
    """A click group whose commands never end in a traceback (see :func:`run_guarded`)."""

    def invoke(self, ctx: click.Context) -> Any:
        return run_guarded(
            lambda: super(GuardedGroup, self).invoke(ctx), debug=bool(ctx.params.get("debug"))
        )


class State:
    """Options of the ``omnicron`` group, shared with the subcommands."""

    def __init__(self, log_level: str | None, log_format: str | None) -> None:
        self.log_level = log_level
        self.log_format = log_format


# -- output: user data is plain text -------------------------------------------------------
#
# Job names, descriptions, errors, config keys and paths can come from a model, a webhook
# response or a hostile file. They are never interpreted: no rich markup (``[/]`` would crash,
# ``[link=...]`` would become a live hyperlink), no emoji codes, and every control character is
# shown escaped (``\x1b``), so ESC sequences (set title, clear screen, OSC 8 links) cannot reach
# the terminal, on a tty or piped. omnicron's own styling is applied to its own words only.

_C1_IN_JSON = re.compile(rb"\xc2([\x80-\x9f])")


def plain_lines(text: object) -> list[str]:
    """``text`` split at its newlines, each line made :func:`plain`."""
    return [plain(line) for line in str(text).split("\n")]


def _console(*, err: bool) -> Console:
    return Console(stderr=err, soft_wrap=True, markup=False, emoji=False, highlight=False)


def stdout() -> Console:
    """The console for results: no markup, emoji or highlighting of what is printed."""
    return _console(err=False)


def stderr() -> Console:
    """The console for messages (see :func:`stdout`)."""
    return _console(err=True)


Part = str | tuple[str, str]


def say(*parts: Part, err: bool = False) -> None:
    """Print one line. A ``str`` part is data, shown as :func:`plain` text; a ``(text, style)``
    part is omnicron's own words in a rich style (``("error:", "bold red")``)."""
    line = Text()
    for part in parts:
        if isinstance(part, tuple):
            line.append(part[0], style=part[1])
        else:
            line.append(plain(part))
    _console(err=err).print(line)


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
        echo_json(
            {"valid": False, "errors": [{"field": e.field, "message": e.message} for e in errors]}
        )
        return
    for line in error_lines(errors):
        say(("error:", "bold red"), " ", line, err=True)


def fail_config(exc: ConfigError, *, as_json: bool = False) -> NoReturn:
    print_errors(errors_of(exc), as_json=as_json)
    raise SystemExit(1)


def fail(message: str, *, hint: str = "") -> NoReturn:
    """Print ``error: MESSAGE`` (and a hint line) to stderr and exit 1."""
    say(("error:", "bold red"), " ", message, err=True)
    if hint:
        say(("hint:", "bold"), " ", hint, err=True)
    raise SystemExit(1)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def safe_json(data: bytes) -> bytes:
    """JSON bytes with C1 control characters written as ``\\u0080``..``\\u009f`` escapes
    (msgspec escapes C0 controls but writes C1 ones as UTF-8, which some terminals obey)."""
    return _C1_IN_JSON.sub(lambda m: b"\\u00%02x" % m.group(1)[0], data)


def echo_json(data: Any) -> None:
    echo_raw_json(msgspec.json.encode(data))


def echo_raw_json(data: bytes) -> None:
    click.echo(safe_json(data).decode())


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
    rows = [[plain(cell) for cell in row] for row in rows]
    if out.is_terminal:
        table = Table(title=title or None, header_style="bold", show_lines=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
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
