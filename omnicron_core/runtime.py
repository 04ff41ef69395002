"""The config-file runtime: plugins, store and scheduler built from a :class:`Config`, the
all-or-nothing reconcile of declared jobs, and the run loop of ``omnicron run``.

Declared jobs carry ``metadata["omnicron.source"] = "config"`` and
``metadata["omnicron.config_hash"]`` (the hash of their ``[[jobs]]`` entry). On every start the
reconcile compares the file with the store by id:

- a declared id not in the store is added;
- a declared job whose entry changed since the last start is updated (run state kept; its
  next fire time kept when the schedule is unchanged);
- a job marked as declared whose id left the file is removed;
- everything else is untouched: unchanged declared jobs (including a status changed at run
  time) and every job added at run time (API, CLI, agents), which the reconcile never changes.

It validates every declared job first and changes nothing if one is invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

import pluggy

from ._errors import (
    ConfigError,
    JobNotFoundError,
    JobValidationError,
    OmnicronError,
    PluginError,
    StoreError,
)
from ._limits import JobLimits
from ._log import get_logger
from ._models import Job
from ._plugins import (
    ENTRY_POINT_GROUP,
    ActionExecutor,
    PluginContext,
    Registry,
    call_each_plugin,
    describe_executor,
    get_plugin_manager,
)
from ._schedule import resolve_zone
from ._scheduler import Scheduler, SchedulerConfig
from ._store import Store, StoreConfig, backend_spec_for, check_store_url
from ._validation import validate_job

if TYPE_CHECKING:
    from .metrics import MetricsServer

from .config import (
    SOURCE_CONFIG,
    SOURCE_HASH_KEY,
    SOURCE_KEY,
    Config,
    ConfigErrors,
    declared_jobs,
    decode_declared_jobs,
    located,
)

__all__ = [
    "PluginInfo",
    "ReconcileReport",
    "RunOptions",
    "Runtime",
    "check_config",
    "is_declared",
    "plugin_infos",
    "reconcile",
    "serve",
]

_log = get_logger("omnicron.runtime")


def is_declared(job: Job) -> bool:
    """True for a job that a config file declared (the reconcile owns it)."""
    return (job.metadata or {}).get(SOURCE_KEY) == SOURCE_CONFIG


@dataclass
class ReconcileReport:
    """What a reconcile did, by job id."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.unchanged)} unchanged"
        )


def _plugin_names(pm: pluggy.PluginManager) -> set[str]:
    return {name for name, plugin in pm.list_name_plugin() if plugin is not None}


def _check_plugin_sections(config: Config, pm: pluggy.PluginManager) -> list[ConfigError]:
    errors: list[ConfigError] = []
    names = _plugin_names(pm)
    failures = {f.name: f for f in getattr(pm, "load_failures", ())}
    for section in config.plugins:
        if section in names:
            continue
        where = f"plugins.{section}"
        if pm.is_blocked(section):
            errors.append(
                ConfigError(
                    f"plugin {section!r} is disabled (OMNICRON_DISABLE_PLUGINS)", field=where
                )
            )
        elif section in failures:
            errors.append(
                ConfigError(
                    f"plugin {section!r} failed to load: {failures[section].error}", field=where
                )
            )
        else:
            installed = ", ".join(sorted(n for n in names if not n.startswith("omnicron.")))
            errors.append(
                ConfigError(
                    f"no plugin named {section!r} is installed; installed plugins: "
                    f"{installed or 'none'}",
                    field=where,
                )
            )
    return errors


def _check_executors(registry: Registry) -> list[ConfigError]:
    """Every plugin's problem building its executors or backends (each plugin on its own)."""
    try:
        registry.executors  # noqa: B018 - building the executors validates plugin settings
    except ConfigError:
        pass  # also in registry.failures, with every other plugin's
    except PluginError as exc:
        return [ConfigError(str(exc), field="plugins")]
    errors: list[ConfigError] = []
    for name, failure in registry.failures.items():
        if isinstance(failure, ConfigError):
            errors.append(
                failure if failure.field else ConfigError(failure.message, field=f"plugins.{name}")
            )
        else:
            errors.append(
                ConfigError(
                    f"plugin failed to register: {type(failure).__name__}: {failure}",
                    field=f"plugins.{name}",
                )
            )
    return errors


def _blocked_types(registry: Registry) -> set[str]:
    """The action types of the plugins whose settings are bad, as far as their defaults tell
    (each such plugin is asked once more, through pluggy, without its section)."""
    context = registry.context
    out: set[str] = set()
    for name, failure in registry.failures.items():
        if not isinstance(failure, ConfigError):
            continue
        defaults = {k: v for k, v in context.settings.items() if k != name}
        retry = PluginContext(context.plugin_manager, defaults, context.location)
        for res in call_each_plugin(
            context.plugin_manager, "omnicron_action_executors", only=[name], context=retry
        ):
            out.update(e.action_type for e in res.items if isinstance(e, ActionExecutor))
    return out


def _check_store(config: Config, registry: Registry) -> list[ConfigError]:
    url = config.scheduler.store
    try:
        check_store_url(url)
        specs = registry.backends
    except (PluginError, StoreError) as exc:
        return [ConfigError(str(exc), field="scheduler.store")]
    try:
        # Factories parse the URL and options only; the store is opened later.
        backend_spec_for(url, specs).factory(url, dict(config.scheduler.store_options))
    except (StoreError, ValueError) as exc:
        return [ConfigError(str(exc), field="scheduler.store")]
    return []


def _check_metrics(config: Config) -> list[ConfigError]:
    if config.scheduler.metrics_port is None:
        return []
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return [
            ConfigError(
                "metrics need prometheus-client: pip install 'omnicron-core[metrics]'",
                field="scheduler.metrics_port",
            )
        ]
    return []


def _error_order(error: ConfigError) -> tuple[int, int, str]:
    """Sections in file order, jobs by index."""
    where = error.field or ""
    section = next(
        (i for i, s in enumerate(("scheduler", "log", "plugins", "jobs")) if where.startswith(s)),
        -1,
    )
    index = int(m.group(1)) if (m := re.match(r"jobs\[(\d+)\]", where)) else -1
    return section, index, where


def _validate_declared(
    jobs: Iterable[tuple[int, Job]],
    registry: Registry,
    location: tzinfo,
    *,
    plugins_ok: bool,
    limits: JobLimits | None = None,
) -> list[ConfigError]:
    """Each declared job's problems. With a plugin whose settings are bad (already reported
    at ``plugins.<name>.<key>``), the actions of the plugins that did build are still checked
    by their executors; an action of any other type gets its schedule checked only: its
    executor may be the one that failed to build, and "invalid action type" would hide the
    setting that is really wrong; a type no plugin provides is still "invalid action type"."""
    errors: list[ConfigError] = []
    built: dict[str, Any] = {}
    blocked: set[str] = set()
    partial = registry
    if not plugins_ok:
        built = registry.executors_built()
        blocked = _blocked_types(registry)
        partial = Registry(registry.plugin_manager, location=location)
        partial._executors = built
    for index, job in jobs:
        try:
            if job.action.type in blocked - built.keys():
                validate_job(job, None, location, check_action=False, limits=limits)
            else:
                validate_job(job, partial, location, limits=limits)
        except JobValidationError as exc:
            errors.append(located(exc, f"jobs[{index}]"))
    return errors


class Runtime:
    """The plugins, store and scheduler of one config. Building it starts nothing."""

    def __init__(
        self,
        config: Config,
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        plugins: Iterable[object] = (),
    ) -> None:
        self.config = config
        self.plugin_manager = plugin_manager or get_plugin_manager(plugins=plugins)
        sched = config.scheduler
        try:
            self.location: tzinfo = resolve_zone(sched.timezone or None, field="timezone")
        except JobValidationError as exc:
            raise ConfigErrors([located(exc, "scheduler")]) from None
        self.registry = Registry(
            self.plugin_manager, settings=config.plugins, location=self.location
        )
        self.store = Store(
            StoreConfig(url=sched.store, options=dict(sched.store_options)), registry=self.registry
        )
        self.scheduler = Scheduler(
            SchedulerConfig(
                store=self.store,
                location=self.location,
                registry=self.registry,
                **sched.tuning(),
            )
        )

    def check(self) -> list[ConfigError]:
        """Every problem of the config found without opening the store: plugin sections and
        settings, the store URL, the metrics setup, and each declared job (schedule, action).

        Synchronous, for callers without an event loop (``omnicron validate``): an executor's
        check may resolve a host name. On a loop, ``await scheduler.validate(job)`` instead."""
        errors = _check_plugin_sections(self.config, self.plugin_manager)
        plugin_errors = _check_executors(self.registry)
        errors += plugin_errors
        errors += _check_store(self.config, self.registry)
        errors += _check_metrics(self.config)
        if self.config.skill:
            from .skill import load_skill_config

            try:
                load_skill_config(self.config.skill)
            except ConfigError as exc:
                errors.append(exc)
        decoded, job_errors = decode_declared_jobs(self.config)
        errors += _validate_declared(
            [(index, job) for index, _, job in decoded],
            self.registry,
            self.location,
            plugins_ok=not plugin_errors,
            limits=self.config.scheduler.limits,
        )
        errors += job_errors
        return sorted(errors, key=_error_order)

    def declared(self) -> list[Job]:
        return [job for _, job in declared_jobs(self.config)]

    async def reconcile(self) -> ReconcileReport:
        return await reconcile(self.scheduler, self.declared())

    async def close(self) -> None:
        await self.registry.aclose()
        await self.store.close()


def check_config(config: Config, *, plugin_manager: pluggy.PluginManager | None = None) -> None:
    """Raise :class:`ConfigErrors` listing every problem of ``config`` (nothing is started)."""
    runtime = Runtime(config, plugin_manager=plugin_manager)
    errors = runtime.check()
    if errors:
        raise ConfigErrors(errors)


async def reconcile(scheduler: Scheduler, declared: list[Job]) -> ReconcileReport:
    """Make the store's declared jobs match ``declared`` (see the module docstring).

    All or nothing with respect to validation: if a declared job is invalid, or its id is
    taken by a job added at run time, :class:`ConfigErrors` is raised and nothing changes.
    """
    errors: list[ConfigError] = []
    for index, job in enumerate(declared):
        try:
            await scheduler.validate(job)  # executors' I/O (DNS) awaited, off the loop
        except JobValidationError as exc:
            errors.append(located(exc, f"jobs[{index}]"))
    # only the declared jobs are read: a store of a million jobs added at run time costs
    # one filtered query here, not a million decodes
    existing = {
        job.id: job for job in await scheduler.store.list_by_metadata(SOURCE_KEY, SOURCE_CONFIG)
    }
    for index, job in enumerate(declared):
        if job.id in existing:
            continue
        try:
            current: Job | None = await scheduler.get_job(job.id)
        except JobNotFoundError:
            current = None
        if current is not None:
            errors.append(
                ConfigError(
                    f"job id {job.id!r} belongs to a job added at run time, which the config "
                    f"never changes; rename this job or remove that one "
                    f"(omnicron jobs remove {job.id})",
                    field=f"jobs[{index}].id",
                )
            )
    if errors:
        raise ConfigErrors(errors)

    report = ReconcileReport()
    new: list[Job] = []
    changed: list[Job] = []
    for job in declared:
        current = existing.get(job.id)
        if current is None:
            new.append(job)
        elif (current.metadata or {}).get(SOURCE_HASH_KEY) != (job.metadata or {}).get(
            SOURCE_HASH_KEY
        ):
            changed.append(job)
        else:
            report.unchanged.append(job.id)
    wanted = {job.id for job in declared}
    gone = [job_id for job_id, job in existing.items() if is_declared(job) and job_id not in wanted]
    if new:
        await scheduler.add_jobs(new)
        report.added = [job.id for job in new]
    for job in changed:
        await scheduler.update_job(job)
        report.updated.append(job.id)
    for job_id in gone:
        await scheduler.remove_job(job_id)
        report.removed.append(job_id)
    _log.info(
        "config.reconciled",
        added=report.added,
        updated=report.updated,
        removed=report.removed,
        unchanged=len(report.unchanged),
    )
    return report


# -- plugins ------------------------------------------------------------------------------


@dataclass
class PluginInfo:
    """One registered (or failed, or disabled) plugin, for ``omnicron plugins``."""

    name: str
    distribution: str = ""
    version: str = ""
    action_types: list[str] = field(default_factory=list)
    store_schemes: list[str] = field(default_factory=list)
    status: str = "loaded"  # loaded | failed | disabled
    error: str = ""
    #: Per action type: ``{"type", "description", "parameters"}`` (a JSON Schema).
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_builtins(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "action_types": self.action_types,
            "actions": self.actions,
            "store_schemes": self.store_schemes,
            "status": self.status,
            "error": self.error,
        }


def _entry_point_dists() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP and ep.name not in out:
                out[ep.name] = (dist.metadata["name"] or "?", dist.version)
    return out


def plugin_infos(
    pm: pluggy.PluginManager, settings: Mapping[str, Mapping[str, Any]] | None = None
) -> list[PluginInfo]:
    """What each plugin provides, with its distribution; failed and disabled ones included."""
    dists = _entry_point_dists()
    try:
        core_version = importlib.metadata.version("omnicron-core")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        core_version = ""
    infos: dict[str, PluginInfo] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            dist, version = dists.get(name, ("", ""))
            infos[name] = PluginInfo(name, dist, version, status="disabled")
            continue
        dist, version = dists.get(name, ("omnicron-core", core_version))
        if not name.startswith("omnicron.") and name not in dists:
            dist, version = "", ""
        infos[name] = PluginInfo(name, dist, version)
    registry = Registry(pm, settings=settings or {})
    executors: dict[str, ActionExecutor[Any]] = {}
    try:
        executors = registry.executors
    except ConfigError:
        executors = registry.executors_built()
    except PluginError as exc:
        for each in infos.values():
            each.error = each.error or str(exc)
    for kind, owner in sorted(registry.executor_plugins.items()):
        provider = infos.get(owner)
        executor = executors.get(kind)
        if provider is None or executor is None:
            continue
        provider.action_types.append(kind)
        provider.actions.append(describe_executor(executor))
    try:
        registry.backends  # noqa: B018 - fills backend_plugins
    except PluginError as exc:
        for each in infos.values():
            each.error = each.error or str(exc)
    for scheme, owner in sorted(registry.backend_plugins.items()):
        if owner in infos:
            infos[owner].store_schemes.append(scheme)
    for name, failure in registry.failures.items():
        if name in infos:
            infos[name].error = f"{type(failure).__name__}: {failure}"
    for failure in getattr(pm, "load_failures", ()):
        version = dists.get(failure.name, ("", ""))[1]
        infos[failure.name] = PluginInfo(
            failure.name, failure.distribution, version, status="failed", error=failure.error
        )
    return sorted(infos.values(), key=lambda i: (i.name.startswith("omnicron."), i.name))


# -- running ------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """How :func:`serve` runs: ``run_for`` seconds (``None``: until a signal)."""

    run_for: float | None = None
    metrics_port: int | None = None
    install_signals: bool = True
    on_started: Callable[[Runtime, ReconcileReport, str | None], None] | None = None


async def serve(runtime: Runtime, options: RunOptions | None = None) -> ReconcileReport:
    """Reconcile, start, run until SIGINT/SIGTERM (or ``run_for``), then stop gracefully.

    Stopping takes no new fires, waits up to ``shutdown_grace`` for runs in flight, saves the
    run state (``runtime.scheduler.state_saved`` says whether every write succeeded) and closes
    the store. A store that fails for good (see ``SchedulerConfig.store_error_window``) stops
    the run with :class:`StoreError`.
    """
    opts = options or RunOptions()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            _log.warning("runtime.signal_again", signal=sig.name, note="still stopping")
            return
        _log.info("runtime.stopping", signal=sig.name)
        stop.set()

    if opts.install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig)
                signals.append(sig)

    metrics: MetricsServer | None = None
    port = (
        opts.metrics_port
        if opts.metrics_port is not None
        else runtime.config.scheduler.metrics_port
    )
    try:
        report = await runtime.reconcile()
        if port is not None:
            try:
                from .metrics import MetricsServer
            except ImportError as exc:
                raise ConfigErrors(
                    [
                        ConfigError(
                            f"metrics need prometheus-client ({exc}): "
                            "pip install 'omnicron-core[metrics]'",
                            field="scheduler.metrics_port",
                        )
                    ]
                ) from None
            metrics = MetricsServer(
                runtime.plugin_manager, runtime.store, host=runtime.config.scheduler.metrics_host
            )
            metrics.start(port)
        await runtime.scheduler.start()
        if metrics is not None:
            metrics.attach(loop)
        if opts.on_started is not None:
            opts.on_started(runtime, report, metrics.url if metrics else None)
        started = time.monotonic()
        _log.info("runtime.running", store=runtime.config.scheduler.store, run_for=opts.run_for)
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(runtime.scheduler.wait_failure())
        try:
            await asyncio.wait(
                {stopped, failed}, timeout=opts.run_for, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            failed.cancel()
        _log.info("runtime.stop", ran_for_s=round(time.monotonic() - started, 3))
        await runtime.scheduler.stop()
        failure = runtime.scheduler.failure
        if failure is not None:
            raise StoreError(
                f"the store failed and did not recover within "
                f"{runtime.scheduler.config.store_error_window.total_seconds():g}s "
                f"(scheduler.store_error_window), so omnicron stopped: {failure.message}",
                transient=failure.transient,
            )
        problem = runtime.scheduler.store_problem
        if problem is not None:
            raise StoreError(
                f"omnicron stopped while the store was failing: {problem.message}",
                transient=problem.transient,
            )
        return report
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if runtime.scheduler.is_running():
            with contextlib.suppress(OmnicronError):
                await runtime.scheduler.stop()
        if metrics is not None:
            await metrics.stop()
        await runtime.store.close()
