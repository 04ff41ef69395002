"""The ``omnicron`` command line: run the service from a config file, validate configs, preview
schedules, manage the jobs of a store, and list plugins. See ``docs/cli.md``."""

from __future__ import annotations

import importlib.metadata
import itertools
from datetime import UTC, datetime
from pathlib import Path

import click

from .._errors import ConfigError, JobValidationError, StoreError
from .._schedule import local_zone, resolve_zone
from .._text import plain
from ..config import ConfigErrors
from ..mcp_server import mcp_command
from ..runtime import ReconcileReport, RunOptions, Runtime, plugin_infos, serve
from ._common import (
    GuardedGroup,
    Part,
    State,
    check,
    config_option,
    echo_json,
    fail,
    fail_config,
    json_option,
    load,
    log_options,
    parse_time,
    print_errors,
    print_table,
    relative,
    run_async,
    say,
    setup_logging,
    store_option,
)

__all__ = ["main"]


def _version() -> str:
    try:
        return importlib.metadata.version("omnicron-core")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


@click.group(cls=GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="omnicron")
@log_options
@click.option(
    "--debug",
    is_flag=True,
    help="Show the traceback of an unexpected error (a bug). Env: OMNICRON_DEBUG=1.",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None, log_format: str | None, debug: bool) -> None:
    """omnicron: a job scheduler for agent platforms."""
    ctx.obj = State(log_level, log_format)


# -- run ----------------------------------------------------------------------------------


def _banner(
    config_source: str, runtime: Runtime, report: ReconcileReport, metrics_url: str | None
) -> None:
    infos = [i for i in plugin_infos(runtime.plugin_manager, runtime.config.plugins)]
    plugins = ", ".join(
        f"{i.name} ({i.distribution} {i.version})".replace(" ()", "")
        for i in infos
        if i.status == "loaded" and not i.name.startswith("omnicron.")
    )
    failed = [i for i in infos if i.status != "loaded"]
    lines: list[tuple[Part, ...]] = [
        (
            (f"omnicron {_version()}", "bold"),
            f" running (config: {config_source or 'none, defaults'})",
        ),
        (f"  store:        {runtime.config.scheduler.store}",),
        (f"  timezone:     {runtime.location}",),
        (f"  plugins:      {plugins or 'none'}",),
        (f"  action types: {', '.join(sorted(runtime.registry.executors)) or 'none'}",),
        (f"  jobs:         {len(runtime.config.jobs)} declared ({report.summary()})",),
    ]
    for info in failed:
        lines.append(
            (
                "  ",
                (f"plugin {plain(info.name)} {info.status}", "yellow"),
                f": {info.error}" if info.error else "",
            )
        )
    if metrics_url:
        lines.append((f"  metrics:      {metrics_url} (liveness: /healthz)",))
    lines.append(("Stop with Ctrl-C (SIGINT) or SIGTERM.",))
    for line in lines:
        say(*line, err=True)


@main.command()
@config_option
@store_option
@click.option(
    "--for",
    "run_for",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Stop by itself after SECONDS (demos, tests).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics and /healthz on this port (0: a free one).",
)
@log_options
@click.pass_context
def run(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    run_for: float | None,
    metrics_port: int | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run the scheduler from a config file until SIGINT/SIGTERM.

    Syncs the config's [[jobs]] into the store (added, updated, removed by id; run state
    kept), then fires jobs. On a signal it takes no new fires, waits for running actions up to
    scheduler.shutdown_grace and saves their state: exit 0 when every write succeeded, 1 when
    some could not be saved (those jobs are recovered at the next start). A store error that
    does not heal within scheduler.store_error_window (read-only, damaged, full) stops it
    with exit 1.
    """
    try:
        config, errors = check(config_path, store_url=store_url)
    except ConfigError as exc:
        fail_config(exc)
    if errors:
        print_errors(errors)
        raise SystemExit(1)
    setup_logging(ctx, config, level=log_level, fmt=log_format, quiet_default=False)
    runtime = Runtime(config)

    def started(rt: Runtime, report: ReconcileReport, metrics_url: str | None) -> None:
        _banner(config.source, rt, report, metrics_url)

    try:
        run_async(
            serve(
                runtime,
                RunOptions(run_for=run_for, metrics_port=metrics_port, on_started=started),
            )
        )
    except ConfigErrors as exc:
        fail_config(exc)
    except (StoreError, OSError) as exc:
        fail(f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        raise SystemExit(130) from None
    if not runtime.scheduler.state_saved:
        fail(
            "omnicron stopped, but the run state of some finished runs could not be saved "
            "(see store.write_failed above); those jobs stay `running` in the store and are "
            "recovered at the next start"
        )
    say("omnicron stopped; state saved.", err=True)


# -- validate -----------------------------------------------------------------------------


@main.command()
@config_option
@store_option
@json_option
@click.pass_context
def validate(
    ctx: click.Context, config_path: Path | None, store_url: str | None, as_json: bool
) -> None:
    """Check the config and every declared job without starting anything.

    Every error names its place (jobs[2].schedule.cron: ...); exit status 1 on error.
    """
    try:
        config, errors = check(config_path, store_url=store_url)
    except ConfigError as exc:
        fail_config(exc, as_json=as_json)
    if not errors:
        setup_logging(ctx, config)
    if errors:
        print_errors(errors, as_json=as_json)
        raise SystemExit(1)
    if as_json:
        echo_json({"valid": True, "errors": [], "jobs": len(config.jobs)})
    else:
        say(
            f"{config.source or 'default config'}: OK "
            f"({len(config.jobs)} job{'s' if len(config.jobs) != 1 else ''}, "
            f"store {config.scheduler.store})"
        )


# -- next ---------------------------------------------------------------------------------


@main.command("next")
@click.argument("expr", nargs=-1, required=True)
@click.option("--tz", "zone_name", default=None, help="IANA zone (default: the machine's).")
@click.option("--after", default=None, help="Start from this time (RFC 3339; default: now).")
@click.option("-n", "count", type=click.IntRange(1, 1000), default=5, show_default=True)
@json_option
def next_(
    expr: tuple[str, ...], zone_name: str | None, after: str | None, count: int, as_json: bool
) -> None:
    """Show the next fire times of a cron expression and what it means in plain English.

    EXPR may be quoted or not: omnicron next 0 9 '*' '*' MON-FRI.
    """
    from .._models import Schedule
    from .._schedule import iter_fire_times
    from ..cron import parse_cron
    from ..describe import describe_cron

    text = " ".join(expr).strip()
    try:
        zone = resolve_zone(zone_name, field="--tz") if zone_name else local_zone()
    except JobValidationError as exc:
        fail(f"--tz: {exc.message}")
    start = parse_time(after, zone) if after else datetime.now(zone)
    try:
        compiled = parse_cron(text, zone)
        description = describe_cron(text)
        fires = iter_fire_times(Schedule(cron=text), start, location=zone)
        times = list(itertools.islice(fires, count))
    except JobValidationError as exc:
        fail(f"{text}: {exc.message}")
    zone_label = str(getattr(compiled, "timezone", zone))
    if as_json:
        echo_json(
            {
                "expression": text,
                "timezone": zone_label,
                "description": description,
                "after": start.isoformat(),
                "next": [t.isoformat() for t in times],
            }
        )
        return
    say((plain(description), "bold"), f" ({zone_label})")
    now = datetime.now(UTC)
    for t in times:
        say(f"  {t.isoformat(sep=' ')}  {relative(t, now)}")


# -- plugins ------------------------------------------------------------------------------


@main.command()
@config_option
@json_option
@click.pass_context
def plugins(ctx: click.Context, config_path: Path | None, as_json: bool) -> None:
    """List installed plugins, their versions, action types and store schemes, and any plugin
    that failed to load (with its error); then each action type's description and parameters.

    With --json, each plugin's "actions" lists its action types with their description and
    the JSON Schema of their parameters."""
    from .._plugins import get_plugin_manager

    config = load(config_path)
    setup_logging(ctx, config)
    infos = plugin_infos(get_plugin_manager(), config.plugins)
    if as_json:
        echo_json([i.to_builtins() for i in infos])
        return
    rows = [
        [
            i.name,
            i.distribution or "-",
            i.version or "-",
            ", ".join(i.action_types) or "-",
            ", ".join(f"{s}://" for s in i.store_schemes) or "-",
            i.status + (f": {i.error}" if i.error else ""),
        ]
        for i in infos
    ]
    print_table(["PLUGIN", "DISTRIBUTION", "VERSION", "ACTION TYPES", "STORES", "STATUS"], rows)
    actions = [
        [
            a["type"],
            i.name,
            a["description"] or "-",
            ", ".join(a["parameters"].get("properties", {})),
        ]
        for i in infos
        for a in i.actions
    ]
    if actions:
        say()
        print_table(["ACTION TYPE", "PLUGIN", "DESCRIPTION", "PARAMETERS"], sorted(actions))


# -- store --------------------------------------------------------------------------------


@main.group()
def store() -> None:
    """Inspect the configured store."""


@store.command("check")
@config_option
@store_option
@json_option
@click.pass_context
def store_check(
    ctx: click.Context, config_path: Path | None, store_url: str | None, as_json: bool
) -> None:
    """Check the store's integrity without changing it (SQLite: PRAGMA integrity_check and a
    decode of every job) and say what to do next. Exit status 1 when something is wrong."""
    from .._store import make_backend
    from ._common import load, store_source

    config = load(config_path, store_url=store_url)
    setup_logging(ctx, config)
    url = config.scheduler.store
    try:
        backend = make_backend(url, config.scheduler.store_options)
    except StoreError as exc:
        fail(str(exc))

    async def go() -> list[str] | None:
        if not await backend.exists():
            return None
        try:
            return await backend.check()
        except StoreError as exc:
            return [exc.message]
        finally:
            await backend.close()

    problems = run_async(go())
    if problems is None:
        fail(f"store {url} ({store_source(config, store_url)}) does not exist")
    advice = _check_advice(url) if problems else []
    if as_json:
        echo_json({"store": url, "ok": not problems, "problems": problems, "advice": advice})
    elif not problems:
        say(f"store {url}: OK")
    else:
        say((f"store {plain(url)}: {len(problems)} problem(s)", "bold red"), err=True)
        for line in problems:
            say("  ", line, err=True)
        say("What to do next (omnicron has not changed the store):", err=True)
        for line in advice:
            say("  - ", line, err=True)
    if problems:
        raise SystemExit(1)


def _check_advice(url: str) -> list[str]:
    advice = [
        "stop `omnicron run` and any other process using the store",
        "keep a copy of the damaged store before trying anything",
        "restore the store from a backup if you have one",
    ]
    if url.lower().startswith("sqlite:"):
        advice += [
            "or recover what SQLite can still read into a new file: "
            "sqlite3 DAMAGED.db .recover | sqlite3 RECOVERED.db, run `omnicron store check "
            "--store sqlite:///RECOVERED.db`, then point scheduler.store at it",
            "the -wal and -shm files beside the store belong to it: copy them together",
        ]
    advice.append(
        "or export the jobs that still read (omnicron jobs export -o jobs.json) and import "
        "them into a new store (omnicron jobs import --store NEW_URL jobs.json)"
    )
    return advice


from ._jobs import jobs  # noqa: E402 - registers the group on main

main.add_command(jobs)
main.add_command(mcp_command)
