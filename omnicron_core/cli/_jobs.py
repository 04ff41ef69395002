"""``omnicron jobs ...``: manage the jobs of the configured store."""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import msgspec

from .._errors import ConfigError, JobNotFoundError, JobValidationError, StoreError
from .._files import write_private
from .._models import (
    Job,
    JobStatus,
    decode_jobs,
    encode_job,
    encode_jobs,
    job_from_builtins,
    job_to_builtins,
    utcnow,
)
from .._plugins import ActionExecutor, ParamFlag, Registry, get_plugin_manager
from .._policy import FireTimes
from .._runs import RunOutcome, RunRecord, record_to_builtins
from ..config import Config, load_effective_config
from ..runtime import Runtime, is_declared
from ._common import (
    config_option,
    echo_json,
    echo_raw_json,
    fail,
    fail_config,
    fmt_time,
    json_option,
    load,
    parse_time,
    plain_lines,
    print_table,
    resolve_config_path,
    run_async,
    safe_json,
    say,
    setup_logging,
    store_option,
    store_source,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def jobs() -> None:
    """Manage the jobs of the configured store (list, add, update, remove, ...).

    Works while `omnicron run` is running on the same store (SQLite, PostgreSQL); the service
    picks up changes made here within about a second (scheduler external_check). A store
    whose backend cannot take a second writer (memory://) is refused for changes. Reading
    commands never create a store.
    """


def _common(fn: F) -> F:
    return config_option(store_option(cast(F, click.pass_context(fn))))


def _with_runtime(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    work: Callable[[Runtime], Awaitable[T]],
    *,
    writes: bool = True,
) -> T:
    """Run ``work`` against the configured store. A read (``writes=False``) never creates
    the store; a write is refused on a backend that declares no other writers."""
    config: Config = load(config_path, store_url=store_url)
    setup_logging(ctx, config)
    try:
        runtime = Runtime(config)
    except ConfigError as exc:
        fail_config(exc)

    async def go() -> T:
        try:
            backend = runtime.store.backend
            url = config.scheduler.store
            if not writes and not await backend.exists():
                fail(
                    f"store {url} ({store_source(config, store_url)}) does not exist; "
                    "nothing to read (it is created by `omnicron run` or `omnicron jobs add`; "
                    "pass --store or -c to use another)"
                )
            if writes and not backend.external_writers:
                fail(
                    f"store {url} does not accept changes from another process (its backend "
                    "declares no other writers), so a change made here could be lost or "
                    "never seen by `omnicron run`; declare the job in the config's [[jobs]] "
                    "or change it through the running scheduler (agent tools, API)"
                )
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return run_async(go())
    except JobNotFoundError as exc:
        fail(f"job not found: {exc.job_id}")
    except JobValidationError as exc:
        fail(f"{exc.field}: {exc.message}" if exc.field else exc.message)
    except ConfigError as exc:
        fail_config(exc)
    except StoreError as exc:
        fail(str(exc))


def _schedule_text(job: Job) -> str:
    s = job.schedule
    zone = f" ({s.timezone})" if s.timezone else ""
    if s.cron:
        return s.cron + zone
    if s.interval is not None:
        return f"every {s.interval}"
    if s.once is not None:
        return f"once {s.once.isoformat(sep=' ')}"
    return "-"


def _row(job: Job, runtime: Runtime) -> list[str]:
    return [
        job.id,
        job.name,
        str(job.status),
        _schedule_text(job),
        fmt_time(job.next_run_at, runtime.location),
        fmt_time(job.last_run_at, runtime.location),
        str(job.run_count),
        (job.last_error[:60] + "…") if len(job.last_error) > 61 else (job.last_error or "-"),
    ]


# -- reading ------------------------------------------------------------------------------


@jobs.command("list")
@_common
@click.option(
    "--status",
    type=click.Choice([s.value for s in JobStatus]),
    default=None,
    help="Only jobs with this status.",
)
@json_option
def list_(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """List jobs: status, schedule, next and last run, run count, last error."""

    async def work(rt: Runtime) -> tuple[list[Job], Runtime]:
        return await (rt.store.list_by_status(status) if status else rt.store.list()), rt

    found, rt = _with_runtime(ctx, config_path, store_url, work, writes=False)
    if as_json:
        echo_raw_json(encode_jobs(found))
        return
    if not found:
        say("no jobs", err=True)
        return
    print_table(
        ["ID", "NAME", "STATUS", "SCHEDULE", "NEXT RUN", "LAST RUN", "RUNS", "LAST ERROR"],
        [_row(job, rt) for job in found],
    )


@jobs.command()
@_common
@click.argument("job_id")
@json_option
def show(
    ctx: click.Context, config_path: Path | None, store_url: str | None, job_id: str, as_json: bool
) -> None:
    """Show one job in full, with its next fire times."""

    async def work(rt: Runtime) -> tuple[Job, Runtime]:
        return await rt.store.get(job_id), rt

    job, rt = _with_runtime(ctx, config_path, store_url, work, writes=False)
    if as_json:
        echo_raw_json(encode_job(job))
        return
    upcoming: list[str] = []
    try:
        for at in FireTimes(rt.location).upcoming(job, 3):
            upcoming.append(fmt_time(at, rt.location))
    except (JobValidationError, OverflowError, ValueError) as exc:
        # a stored job this scheduler cannot read: show it anyway, and why
        reason = exc.message if isinstance(exc, JobValidationError) else str(exc)
        upcoming.append(f"(no further times: {reason})")
    data = job_to_builtins(job)
    action = {k: v for k, v in data.get("action", {}).items() if v not in ("", None, {})}
    rows = [
        ("id", job.id),
        ("name", job.name),
        ("description", job.description or "-"),
        ("status", str(job.status)),
        ("source", "config" if is_declared(job) else "runtime"),
        ("schedule", _schedule_text(job)),
        ("action", msgspec.json.encode(action).decode()),
        ("next runs", "\n".join(upcoming) or "-"),
        ("last run", fmt_time(job.last_run_at, rt.location)),
        ("run count", str(job.run_count)),
        ("last error", job.last_error or "-"),
        ("created", fmt_time(job.created_at, rt.location, rel=False)),
        ("updated", fmt_time(job.updated_at, rt.location, rel=False)),
        ("metadata", msgspec.json.encode(job.metadata).decode() if job.metadata else "-"),
    ]
    for key, value in rows:
        lines = plain_lines(value)
        say(f"{key + ':':<13}{lines[0]}")
        for line in lines[1:]:
            say(f"{'':<13}{line}")


# -- writing ------------------------------------------------------------------------------


def _job_options(fn: F) -> F:
    options = [
        click.argument("job_json", required=False, metavar="[JOB_JSON]"),
        click.option("--id", "job_id_opt", default=None, help="Job id (add: default a UUID)."),
        click.option("--name", default=None),
        click.option("--description", default=None),
        click.option("--cron", default=None, help="Cron expression (5 or 6 fields, @daily...)."),
        click.option("--every", default=None, help="Interval as a Go duration (30s, 1h30m)."),
        click.option("--at", "at", default=None, help="One-time fire time (RFC 3339)."),
        click.option("--timezone", default=None, help="IANA zone of the cron expression."),
        click.option(
            "--action-type",
            "--type",
            "action_type",
            default=None,
            help="The action type (see 'omnicron plugins'); inferred from a plugin's own "
            "flags when omitted.",
        ),
        click.option(
            "--param",
            "params_kv",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set one action parameter (repeat). VALUE is parsed as JSON when it parses "
            "(and the parameter is not a string), else taken as text.",
        ),
        click.option(
            "--params",
            "params_json",
            default=None,
            metavar="JSON",
            help="All action parameters as a JSON object (replaces the current ones).",
        ),
        click.option("--metadata", "metadata_json", default=None, help="A JSON object."),
        click.option(
            "--enabled/--disabled", "enabled", default=None, help="Initial or new status."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _read_json(source: str) -> Any:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        fail(f"{source}: {exc.strerror}")
    return _decode_json(data, "stdin" if source == "-" else source)


def _decode_json(data: bytes | str, where: str) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        fail(f"{where}: invalid JSON: {exc}")
    except RecursionError:
        fail(f"{where}: JSON nested too deeply")


def _json_object(text: str, flag: str) -> dict[str, Any]:
    value = _decode_json(text, flag)
    if not isinstance(value, dict):
        fail(f"{flag}: expected a JSON object")
    return value


def _overlay(base: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """``base`` (job builtins) with the flags applied; a schedule flag replaces the schedule."""
    data = dict(base)
    for key, flag in (("id", "job_id_opt"), ("name", "name"), ("description", "description")):
        if opts[flag] is not None:
            data[key] = opts[flag]
    kinds = {k: opts[k] for k in ("cron", "every", "at") if opts[k] is not None}
    if kinds:
        schedule: dict[str, Any] = {}
        if "cron" in kinds:
            schedule["cron"] = kinds["cron"]
        if "every" in kinds:
            schedule["interval"] = kinds["every"]
        if "at" in kinds:
            schedule["once"] = kinds["at"]
        data["schedule"] = schedule
    if opts["timezone"] is not None:
        data["schedule"] = {**data.get("schedule", {}), "timezone": opts["timezone"]}
    action = _action_overlay(dict(data.get("action") or {}), opts)
    if action:
        data["action"] = action
    if opts["metadata_json"] is not None:
        data["metadata"] = _json_object(opts["metadata_json"], "--metadata")
    if opts["enabled"] is not None:
        data["status"] = "enabled" if opts["enabled"] else "disabled"
    return data


# -- action flags derived from the installed executors -------------------------------------


_EXECUTORS_KEY = "omnicron.cli.executors"


def _installed_executors() -> dict[str, ActionExecutor[Any]]:
    """The installed executors built with the plugin settings of the command's config (its
    ``-c``, else ``OMNICRON_CONFIG``, else ``./omnicron.toml``): their flags and parameter
    types. Default settings when there is no config or it does not load (the command reports
    that itself)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _EXECUTORS_KEY in ctx.meta:
        return cast(dict[str, ActionExecutor[Any]], ctx.meta[_EXECUTORS_KEY])
    return _executors_for(None)


@functools.cache
def _executors_for(path: Path | None) -> dict[str, ActionExecutor[Any]]:
    settings: dict[str, Any] = {}
    if path is not None:
        try:
            settings = dict(load_effective_config(path).plugins)
        except (ConfigError, OSError):
            settings = {}
    return Registry(get_plugin_manager(), settings=settings).executors_built()


def _config_arg(args: list[str]) -> Path | None:
    """The config file a ``jobs add/update`` command line names, as ``-c`` resolves it."""
    given: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("-c", "--config") and i + 1 < len(args):
            given = args[i + 1]
        elif arg.startswith("--config="):
            given = arg.partition("=")[2]
        elif arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            given = arg[2:]
    if given is None:
        given = os.environ.get("OMNICRON_CONFIG") or None
    return resolve_config_path(Path(given) if given else None)


def _flag_dest(flag: ParamFlag) -> str:
    return "pflag_" + flag.flag.lstrip("-").replace("-", "_")


def _plugin_flags() -> dict[str, tuple[str, ParamFlag]]:
    """Option destination -> (action type, flag) for every flag an executor declares."""
    out: dict[str, tuple[str, ParamFlag]] = {}
    for kind, executor in sorted(_installed_executors().items()):
        for flag in executor.cli_flags:
            out.setdefault(_flag_dest(flag), (kind, flag))
    return out


class _JobCommand(click.Command):
    """``jobs add/update``: the core's options plus the flags the installed executors declare
    (built with the config's plugin settings)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_EXECUTORS_KEY] = _executors_for(_config_arg(args))
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        taken = {opt for p in params for opt in (*p.opts, *p.secondary_opts)}
        taken |= {p.name for p in params if p.name}
        extra: list[click.Parameter] = []
        for dest, (kind, flag) in _plugin_flags().items():
            if flag.flag in taken or dest in taken:
                continue  # a core option or another plugin's flag wins; --param still works
            help_text = f"{flag.help} ({kind})" if flag.help else f"({kind})"
            extra.append(
                click.Option(
                    [flag.flag, dest], default=None, multiple=flag.kind == "pairs", help=help_text
                )
            )
        return params[:-1] + extra + params[-1:]  # --help stays last


def _field_is_text(kind: str, key: str) -> bool:
    """Whether parameter ``key`` of action type ``kind`` is declared as a string."""
    executor = _installed_executors().get(kind)
    if executor is None:
        return False
    info = msgspec.inspect.type_info(executor.params_type)
    if not isinstance(info, msgspec.inspect.StructType):
        return False
    for f in info.fields:
        if f.encode_name == key:
            kind_info = f.type
            while isinstance(kind_info, msgspec.inspect.Metadata):
                kind_info = kind_info.type
            types = (
                kind_info.types
                if isinstance(kind_info, msgspec.inspect.UnionType)
                else (kind_info,)
            )
            return any(
                isinstance(
                    t.type if isinstance(t, msgspec.inspect.Metadata) else t,
                    msgspec.inspect.StrType,
                )
                for t in types
            )
    return False


def _param_value(kind: str, key: str, text: str) -> Any:
    if _field_is_text(kind, key):
        return text
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    except RecursionError:
        fail(f"--param {key}: JSON nested too deeply")


def _action_overlay(action: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """The action (flat builtins) with ``--type``, ``--params``, ``--param`` and the plugins'
    flags applied. A new type drops the parameters of the old one."""
    flags = _plugin_flags()
    given = {dest: opts[dest] for dest in flags if opts.get(dest) not in (None, ())}
    old_type = action.get("type", "")
    kind: str = opts["action_type"] or ""
    if not kind:
        implied = sorted({flags[d][0] for d in given if flags[d][1].implies_type})
        if len(implied) > 1:
            fail(
                f"flags of several action types given ({', '.join(implied)}); choose one "
                "with --type"
            )
        kind = implied[0] if implied and implied[0] != old_type else old_type
    if not kind and not (opts["params_kv"] or opts["params_json"] or given):
        return action
    if kind != old_type:
        action = {}
    nested = action.pop("params", None)
    if isinstance(nested, dict):
        action.update(nested)
    action["type"] = kind
    if opts["params_json"] is not None:
        action = {"type": kind, **_json_object(opts["params_json"], "--params")}
        if "type" in action and action["type"] != kind:
            fail("--params: give the type with --type, not inside the parameters")
    for item in opts["params_kv"]:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--param {item!r}: expected KEY=VALUE")
        if key in ("type", "params"):
            fail(f"--param {item!r}: {key!r} is not a parameter (use --type / --params)")
        action[key] = _param_value(kind, key, text)
    for dest, value in given.items():
        flag_kind, flag = flags[dest]
        if flag_kind != kind:
            fail(f"{flag.flag} belongs to the {flag_kind} action type, not {kind or 'none'}")
        action[flag.param] = _flag_value(flag, value, action.get(flag.param))
    return action


def _flag_value(flag: ParamFlag, value: Any, current: Any) -> Any:
    if flag.kind == "json":
        return _decode_json(value, flag.flag)
    if flag.kind == "pairs":
        pairs = dict(current) if isinstance(current, dict) else {}
        for item in value:
            name, sep, text = item.partition(":")
            if not sep:
                fail(f"{flag.flag} {item!r}: expected NAME:VALUE")
            pairs[name.strip()] = text.strip()
        return pairs
    return value


def _to_job(data: Any, source: str) -> Job:
    if not isinstance(data, dict):
        fail(f"{source}: expected a JSON object (one job)")
    try:
        return job_from_builtins(data)
    except msgspec.ValidationError as exc:
        from ..config import located

        fail(str(located(exc)))


def _print_job_line(verb: str, job: Job, rt: Runtime, as_json: bool) -> None:
    if as_json:
        echo_raw_json(encode_job(job))
        return
    say(
        f"{verb} {job.id} ({job.name}): {job.status}, next run {fmt_time(job.next_run_at, rt.location)}"
    )


@jobs.command(cls=_JobCommand)
@_common
@_job_options
@json_option
def add(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_json: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Add a job from JSON (a file, or - for stdin) and/or flags.

    \b
    omnicron jobs add --name ping --every 30s --session-id ops --message ping
    omnicron jobs add --name note --every 1h --type append_file --param path=/tmp/n --param text=hi
    omnicron jobs add job.json
    echo '{"name": "x", ...}' | omnicron jobs add -
    """
    base = _read_json(job_json) if job_json else {}
    if not isinstance(base, dict):
        fail(f"{job_json}: expected a JSON object (one job)")
    data = _overlay(base, opts)
    data.setdefault("id", str(uuid.uuid4()))
    job = _to_job(data, job_json or "flags")
    if not job.created_at:
        job.created_at = utcnow()

    async def work(rt: Runtime) -> tuple[Job, Runtime]:
        try:
            await rt.store.get(job.id)
        except JobNotFoundError:
            return await rt.scheduler.add_job(job), rt
        raise JobValidationError(
            f"a job with id {job.id!r} exists; use 'omnicron jobs update {job.id}'", field="id"
        )

    saved, rt = _with_runtime(ctx, config_path, store_url, work)
    _print_job_line("added", saved, rt, as_json)


@jobs.command(cls=_JobCommand)
@_common
@click.argument("job_id")
@_job_options
@json_option
def update(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_id: str,
    job_json: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Change a job: JSON fields (a file, or - for stdin) and/or flags replace the current ones.

    Run state (run count, last run, last error) is kept; an unchanged schedule keeps its next
    fire time.
    """
    patch = _read_json(job_json) if job_json else {}
    if not isinstance(patch, dict):
        fail(f"{job_json}: expected a JSON object (one job)")
    if patch.get("id", job_id) != job_id or (opts["job_id_opt"] or job_id) != job_id:
        fail("the job id cannot be changed (add a new job and remove this one)")

    async def work(rt: Runtime) -> tuple[Job, Runtime, bool]:
        current = await rt.store.get(job_id)
        base = job_to_builtins(current)
        data = _overlay({**base, **patch}, opts)
        job = _to_job(data, job_json or "flags")
        return await rt.scheduler.update_job(job), rt, is_declared(current)

    saved, rt, declared = _with_runtime(ctx, config_path, store_url, work)
    if declared:
        say(
            f"note: {job_id} is declared in a config file; the next start overwrites it if its "
            "[[jobs]] entry changed",
            err=True,
        )
    _print_job_line("updated", saved, rt, as_json)


@jobs.command()
@_common
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@json_option
def remove(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """Remove jobs (an unknown id is an error, after the known ones are removed)."""

    async def work(rt: Runtime) -> tuple[list[str], list[str], list[str]]:
        removed: list[str] = []
        missing: list[str] = []
        declared: list[str] = []
        for job_id in job_ids:
            try:
                job = await rt.store.get(job_id)
            except JobNotFoundError:
                missing.append(job_id)
                continue
            await rt.scheduler.remove_job(job_id)
            removed.append(job_id)
            if is_declared(job):
                declared.append(job_id)
        return removed, missing, declared

    removed, missing, declared = _with_runtime(ctx, config_path, store_url, work)
    if as_json:
        echo_json([{"deleted": True, "id": i} for i in removed])
    else:
        for job_id in removed:
            say(f"removed {job_id}")
    for job_id in declared:
        say(
            f"note: {job_id} is declared in a config file; it comes back at the next start "
            "unless its [[jobs]] entry is removed",
            err=True,
        )
    if missing:
        fail("job not found: " + ", ".join(missing))


def _toggle(enable: bool) -> Callable[..., None]:
    def command(
        ctx: click.Context,
        config_path: Path | None,
        store_url: str | None,
        job_id: str,
        as_json: bool,
    ) -> None:
        async def work(rt: Runtime) -> tuple[Job, Runtime]:
            sched = rt.scheduler
            job = await (sched.enable_job(job_id) if enable else sched.disable_job(job_id))
            return job, rt

        job, rt = _with_runtime(ctx, config_path, store_url, work)
        if as_json:
            out: dict[str, Any] = {"id": job.id, "status": str(job.status)}
            if enable:
                out["next_run_at"] = job.next_run_at.isoformat() if job.next_run_at else None
            echo_json(out)
            return
        _print_job_line("enabled" if enable else "disabled", job, rt, False)

    return command


for _name, _enable, _help in (
    ("enable", True, "Enable a job and compute its next fire time."),
    ("disable", False, "Disable a job (a run in flight finishes)."),
):
    jobs.command(_name, help=_help)(
        _common(click.argument("job_id")(json_option(_toggle(_enable))))
    )


@jobs.command()
@_common
@click.argument("job_id")
@json_option
def trigger(
    ctx: click.Context, config_path: Path | None, store_url: str | None, job_id: str, as_json: bool
) -> None:
    """Run a job now, in this process, and print its result (exit 1 if the run failed)."""

    async def work(rt: Runtime) -> Any:
        return await rt.scheduler.trigger_job(job_id)

    result = _with_runtime(ctx, config_path, store_url, work)
    if as_json:
        echo_json(
            {
                "id": job_id,
                "success": result.success,
                "output": result.output,
                "error": result.error,
                "duration": result.duration_str,
            }
        )
    else:
        state = "succeeded" if result.success else "failed"
        say(f"{job_id}: {state} in {result.duration_str}")
        if result.output is not None:
            echo_json(result.output)
        if result.error:
            say(("error:", "bold red"), " ", result.error, err=True)
    if not result.success:
        raise SystemExit(1)


@jobs.command("export")
@_common
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export_(
    ctx: click.Context, config_path: Path | None, store_url: str | None, output: Path | None
) -> None:
    """Write every job as a JSON array (the Go original's format) to stdout or a file."""

    async def work(rt: Runtime) -> list[Job]:
        return await rt.store.list()

    found = _with_runtime(ctx, config_path, store_url, work, writes=False)
    data = encode_jobs(found)
    if output is None:
        echo_raw_json(data)
    else:
        try:
            write_private(output, safe_json(data) + b"\n")
        except OSError as exc:
            fail(f"{output}: {exc.strerror}")
        say(f"exported {len(found)} jobs to {output}", err=True)


@jobs.command("import")
@_common
@click.argument("source", metavar="FILE")
@json_option
def import_(
    ctx: click.Context, config_path: Path | None, store_url: str | None, source: str, as_json: bool
) -> None:
    """Add or replace jobs from a JSON array (FILE, or - for stdin), all or nothing.

    Run state in the file (run count, last run) is kept; next fire times are recomputed.
    """
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        fail(f"{source}: {exc.strerror}")
    try:
        imported = decode_jobs(raw)
    except msgspec.ValidationError as exc:
        from ..config import located

        fail(f"{source}: {located(exc)}")
    except msgspec.DecodeError as exc:
        fail(f"{source}: invalid JSON: {exc}")
    except RecursionError:
        fail(f"{source}: JSON nested too deeply")

    async def work(rt: Runtime) -> list[Job]:
        return await rt.scheduler.add_jobs(imported)

    saved = _with_runtime(ctx, config_path, store_url, work)
    if as_json:
        echo_raw_json(encode_jobs(saved))
    else:
        say(f"imported {len(saved)} jobs")


# -- policies and history -------------------------------------------------------------------


def _record_row(record: RunRecord, rt: Runtime) -> list[str]:
    lateness = "-" if record.lateness is None else f"{record.lateness / 1e9:.3f}s"
    took = "-"
    if record.started_at is not None and record.finished_at is not None:
        took = f"{(record.finished_at - record.started_at).total_seconds():.3f}s"
    error = record.error
    return [
        fmt_time(record.scheduled_at, rt.location, rel=False),
        str(record.trigger),
        str(record.outcome),
        str(record.attempt),
        lateness,
        took,
        (error[:60] + "…") if len(error) > 61 else (error or "-"),
    ]


_RECORD_HEADERS = ["FIRE TIME", "TRIGGER", "OUTCOME", "ATTEMPT", "LATENESS", "TOOK", "ERROR"]


@jobs.command()
@_common
@click.argument("job_id")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option(
    "--before",
    type=click.IntRange(1),
    default=None,
    help="Only records older than this seq (page with the last seq shown by --json).",
)
@click.option(
    "--outcome",
    type=click.Choice([o.value for o in RunOutcome]),
    default=None,
    help="Only records with this outcome.",
)
@json_option
def history(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_id: str,
    limit: int,
    before: int | None,
    outcome: str | None,
    as_json: bool,
) -> None:
    """Show a job's run history, newest first: runs, skipped and missed fires."""

    async def work(rt: Runtime) -> tuple[list[RunRecord], Runtime]:
        records = await rt.scheduler.history(job_id, limit=limit, before=before, outcome=outcome)
        if not records:
            await rt.store.get(job_id)  # "job not found" rather than an empty history
        return records, rt

    records, rt = _with_runtime(ctx, config_path, store_url, work, writes=False)
    if as_json:
        echo_json([record_to_builtins(r) for r in records])
        return
    if not records:
        say(f"no history for {job_id}", err=True)
        return
    print_table(_RECORD_HEADERS, [_record_row(r, rt) for r in records])


@jobs.command()
@_common
@click.argument("job_id")
@click.option("--fires", type=click.IntRange(0, 1000), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(0, 1000), default=10, show_default=True)
@json_option
def describe(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_id: str,
    fires: int,
    runs: int,
    as_json: bool,
) -> None:
    """Describe a job: its definition and policies, its next fire times and its last runs."""

    async def work(rt: Runtime) -> Any:
        return await rt.scheduler.describe(job_id, fires=fires, runs=max(runs, 1)), rt

    described, rt = _with_runtime(ctx, config_path, store_url, work, writes=False)
    recent = described.recent_runs[:runs]
    if as_json:
        echo_json(
            {
                "job": job_to_builtins(described.job),
                "next_fires": msgspec.to_builtins(described.next_fires),  # as the job's times
                "recent_runs": [record_to_builtins(r) for r in recent],
            }
        )
        return
    job = described.job
    data = job_to_builtins(job)
    counts = data.get("counts") or {}
    rows = [
        ("id", job.id),
        ("name", job.name),
        ("status", str(job.status)),
        ("schedule", _schedule_text(job)),
        ("policy", msgspec.json.encode(data["policy"]).decode() if "policy" in data else "-"),
        (
            "paused",
            f"{fmt_time(job.pause.at, rt.location)} by {job.pause.by or '-'}: {job.pause.note or '-'}"
            if job.pause is not None
            else "-",
        ),
        ("finished", job.finished or "-"),
        ("next fires", "\n".join(fmt_time(t, rt.location) for t in described.next_fires) or "-"),
        ("run count", str(job.run_count)),
        ("totals", " ".join(f"{k}={v}" for k, v in counts.items()) or "-"),
        ("last error", job.last_error or "-"),
    ]
    for key, value in rows:
        lines = plain_lines(value)
        say(f"{key + ':':<13}{lines[0]}")
        for line in lines[1:]:
            say(f"{'':<13}{line}")
    if recent:
        say("")
        print_table(_RECORD_HEADERS, [_record_row(r, rt) for r in recent], title="last runs")


def _default_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return ""


@jobs.command()
@_common
@click.argument("job_id")
@click.option("--note", default="", help="Why the job is paused (kept on the job).")
@click.option("--by", default=None, help="Who pauses it (default: the OS user).")
@json_option
def pause(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_id: str,
    note: str,
    by: str | None,
    as_json: bool,
) -> None:
    """Pause a job with a note (who, when, why); `trigger` still runs it by hand."""
    who = _default_user() if by is None else by

    async def work(rt: Runtime) -> tuple[Job, Runtime]:
        return await rt.scheduler.pause_job(job_id, note=note, by=who), rt

    job, rt = _with_runtime(ctx, config_path, store_url, work)
    if as_json:
        echo_json(
            {"id": job.id, "status": str(job.status), "pause": job_to_builtins(job).get("pause")}
        )
        return
    _print_job_line("paused", job, rt, False)


@jobs.command()
@_common
@click.argument("job_id")
@click.option(
    "--catch-up",
    is_flag=True,
    help="Apply the job's catch-up window to the fires missed while paused "
    "(default: resume from now, nothing missed runs).",
)
@json_option
def resume(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_id: str,
    catch_up: bool,
    as_json: bool,
) -> None:
    """Resume a paused job from now, or with --catch-up."""

    async def work(rt: Runtime) -> tuple[Job, Runtime]:
        return await rt.scheduler.resume_job(job_id, catch_up=catch_up), rt

    job, rt = _with_runtime(ctx, config_path, store_url, work)
    if as_json:
        echo_json(
            {
                "id": job.id,
                "status": str(job.status),
                "next_run_at": job.next_run_at.isoformat() if job.next_run_at else None,
            }
        )
        return
    _print_job_line("resumed", job, rt, False)


@jobs.command()
@_common
@click.argument("job_id")
@click.option("--from", "start", required=True, help="Start of the range (RFC 3339).")
@click.option("--to", "end", required=True, help="End of the range, inclusive (RFC 3339, or now).")
@click.option(
    "--overlap",
    type=click.Choice(["buffer_all", "allow_all", "skip"]),
    default="buffer_all",
    show_default=True,
    help="buffer_all: one after another; allow_all: up to the job's concurrency at once; "
    "skip: a fire whose turn comes during another run of the job is recorded skipped.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.001),
    default=10.0,
    show_default=True,
    help="Most runs started per second.",
)
@json_option
def backfill(
    ctx: click.Context,
    config_path: Path | None,
    store_url: str | None,
    job_id: str,
    start: str,
    end: str,
    overlap: str,
    rate: float,
    as_json: bool,
) -> None:
    """Run a job's fires of a past time range, in this process. Idempotent: a fire that
    already has a history record (run on schedule or by an earlier backfill) is not run again."""

    async def work(rt: Runtime) -> Any:
        try:
            since = parse_time(start, rt.location)
            until = parse_time(end, rt.location)
        except click.BadParameter as exc:
            fail(f"--from/--to: {exc.message}")
        try:
            return await rt.scheduler.backfill(job_id, since, until, overlap=overlap, rate=rate)
        except ValueError as exc:
            fail(str(exc))

    result = _with_runtime(ctx, config_path, store_url, work)
    if as_json:
        echo_json(msgspec.to_builtins(result))
    else:
        say(
            f"{job_id}: {result.fires} fires in range, {result.started} run, "
            f"{result.already_recorded} already recorded, {result.skipped} skipped, "
            f"{result.failed} failed"
        )
    if result.failed:
        raise SystemExit(1)
