"""Plugin descriptors and the plugin manager factory."""

from __future__ import annotations

import abc
import contextlib
import importlib.metadata
import os
import re
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec
import pluggy

from . import hookspecs
from ._backend import StoreBackendSpec
from ._errors import ConfigError, JobValidationError, PluginError
from ._locate import locate
from ._log import get_logger
from ._models import RESERVED_ACTION_KEYS, dec_hook

if TYPE_CHECKING:
    from ._models import Action, ExecutionResult, Job

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActionExecutor",
    "HookResult",
    "ParamFlag",
    "PluginContext",
    "PluginLoadFailure",
    "Registry",
    "RunInfo",
    "StoreBackendSpec",
    "call_each_plugin",
    "describe_executor",
    "get_plugin_manager",
    "params_json_schema",
]

ENTRY_POINT_GROUP = "omnicron"

_log = get_logger("omnicron.plugins")


class RunInfo:
    """What an executor knows about the run it performs.

    ``scheduled_at`` is the fire time this run answers (``None`` for a manual trigger);
    ``run_id`` is stable for one run (across an executor's own retries), so receivers can
    de-duplicate with it. For a scheduled run it is ``"<job id>@<fire time>"``, built on
    first use (the fire path does not pay for it when no executor asks).
    """

    __slots__ = ("_run_id", "job_id", "manual", "scheduled_at")

    def __init__(
        self,
        run_id: str = "",
        scheduled_at: datetime | None = None,
        manual: bool = False,
        *,
        job_id: str = "",
    ) -> None:
        self._run_id = run_id
        self.scheduled_at = scheduled_at
        self.manual = manual
        self.job_id = job_id

    @property
    def run_id(self) -> str:
        if not self._run_id:
            when = self.scheduled_at.isoformat() if self.scheduled_at else "manual"
            self._run_id = f"{self.job_id}@{when}"
        return self._run_id

    def __repr__(self) -> str:
        return f"RunInfo(run_id={self.run_id!r}, scheduled_at={self.scheduled_at!r}, manual={self.manual})"


P = TypeVar("P", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class ParamFlag:
    """A command-line flag of ``omnicron jobs add/update`` that sets one parameter.

    ``param`` is the parameter's key; ``flag`` the option (``"--webhook-url"``). ``kind`` says
    how the text becomes a value: ``"str"`` as is, ``"json"`` parsed as JSON, ``"pairs"`` a
    repeatable ``NAME:VALUE`` option collected into an object. ``implies_type``: giving the
    flag without ``--type`` picks this executor's action type.
    """

    param: str
    flag: str
    help: str = ""
    kind: Literal["str", "json", "pairs"] = "str"
    implies_type: bool = True


class ActionExecutor(abc.ABC, Generic[P]):
    """Runs the actions of one type. Subclass it in a plugin and return it from
    ``omnicron_action_executors``.

    Declare the parameters as a msgspec Struct in ``params_type`` (use
    ``kw_only=True, forbid_unknown_fields=True``; its field names are the action's JSON keys).
    When a job is added the core decodes ``action.params`` into it, reporting a located error
    (``action.<field>: ...``), then calls :meth:`validate` (or :meth:`validate_async`) with the
    decoded Struct for the checks a type cannot express. In :meth:`execute`, get the parameters
    with ``self.check(job.action)``.

    ``validate`` raises :class:`~omnicron_core.JobValidationError` (message without the
    ``"invalid action: "`` prefix, which the core adds; ``field`` is the parameter's key,
    ``"path"`` or ``"action.path"``); ``execute`` returns an
    :class:`~omnicron_core.ExecutionResult` and should not raise (the scheduler turns an
    exception into a failed result with its message).
    """

    #: The ``action.type`` this executor handles.
    action_type: str = ""
    #: One line for ``omnicron plugins`` and the agent tools.
    description: str = ""
    #: The Struct of this action type's parameters.
    params_type: type[P]
    #: Extra flags of ``omnicron jobs add/update`` (``--param key=value`` always works).
    cli_flags: Sequence[ParamFlag] = ()
    #: The parameter that names an agent session, if any: the agent tools default it to the
    #: caller's own session (and ``own_session_only`` pins it there).
    agent_session_param: str = ""
    #: Parameters the agent tools do not offer unless the skill config's ``allow_params``
    #: lists them, with the reason a model is told (``{"webhook_body": "..."}``).
    agent_withheld: Mapping[str, str] = {}

    def decode_params(self, action: Action) -> P:
        """``action.params`` as :attr:`params_type`; raises a located ``JobValidationError``."""
        try:
            return msgspec.convert(action.params, self.params_type, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            raise self._params_error(exc) from None

    def validate(self, params: P) -> None:
        """Refuse parameters this executor cannot run (beyond what the Struct's types say).

        Called at add/update time and by :meth:`check` before a run; must not block.
        """

    async def validate_async(self, params: P) -> None:
        """The add-time check, for executors that must do I/O to decide (a DNS lookup).

        The Scheduler awaits this when a job is added or updated; the default calls
        :meth:`validate`. Override it instead of blocking the event loop in ``validate``.
        """
        self.validate(params)

    def check(self, action: Action) -> P:
        """Decode and :meth:`validate` the action's parameters; errors are prefixed
        ``invalid action: `` and located (``field="action.<key>"``)."""
        with _located():
            params = self.decode_params(action)
            self.validate(params)
        return params

    async def check_async(self, action: Action) -> P:
        """:meth:`check` with :meth:`validate_async` awaited (the add-time check)."""
        with _located():
            params = self.decode_params(action)
            await self.validate_async(params)
        return params

    def params_schema(self) -> dict[str, Any]:
        """The JSON Schema of the parameters (from :attr:`params_type`), definitions inlined."""
        return params_json_schema(self.params_type)

    @abc.abstractmethod
    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        """Perform the job's action once."""

    async def aclose(self) -> None:
        """Release what the executor holds (clients, files). Called when the scheduler stops."""

    def _params_error(self, exc: msgspec.ValidationError) -> JobValidationError:
        """msgspec's error as a located action error (the one msgspec locator, worded as the
        original's action errors: ``path is required for append_file action``)."""
        cause = exc.__cause__
        if isinstance(cause, JobValidationError):
            return JobValidationError(cause.message, field=_action_field(cause.field))
        kind = self.action_type
        located = locate(exc, root=self.params_type)
        key = located.field or ""
        if located.message == "required key is missing":
            return JobValidationError(
                f"{key} is required for {kind} action", field=_action_field(key)
            )
        if located.message.startswith("unknown key "):
            allowed = ""
            if "." not in key and "[" not in key:
                names = _param_names(self.params_type)
                allowed = f"; {kind} parameters: {', '.join(names) or 'none'}"
            return JobValidationError(
                f"unknown parameter {key!r} for {kind} action{allowed}", field=_action_field(key)
            )
        message = f"{key}: {located.message}" if key else located.message
        return JobValidationError(message, field=_action_field(key))


def _join(prefix: str | None, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _param_names(params_type: type[msgspec.Struct]) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(params_type)
    if isinstance(info, msgspec.inspect.StructType):
        return tuple(f.encode_name for f in info.fields)
    return ()


def _action_field(field: str | None) -> str:
    """A parameter's location in the job: ``path`` -> ``action.path``."""
    if not field:
        return "action"
    if field == "action" or field.startswith(("action.", "action[")):
        return field
    return f"action.{field}"


def params_json_schema(params_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema of a params Struct with its ``$defs`` inlined (agent tool schemas)."""
    from ._duration import Duration

    def schema_hook(tp: type) -> dict[str, Any]:
        if tp is Duration:
            return {"type": "string", "description": "a Go duration such as '30s' or '1h30m'"}
        raise NotImplementedError

    raw = msgspec.json.schema(params_type, schema_hook=schema_hook)
    defs: dict[str, Any] = raw.pop("$defs", {})

    def inline(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref[len("#/$defs/") :]
                if name in seen:
                    return {"type": "object"}
                target = inline(defs.get(name, {}), seen | {name})
                rest = {k: inline(v, seen) for k, v in node.items() if k != "$ref"}
                return {**target, **rest}
            return {k: inline(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, seen) for v in node]
        return node

    schema: dict[str, Any] = inline(raw, frozenset())
    schema.pop("title", None)
    return schema


@dataclass(slots=True)
class PluginContext:
    """Passed to ``omnicron_action_executors``: the manager, settings and location."""

    plugin_manager: pluggy.PluginManager
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    location: tzinfo | None = None

    def settings_for(self, name: str) -> Mapping[str, Any]:
        """The ``[plugins.<name>]`` section of the config, or an empty mapping."""
        return self.settings.get(name, {})


@dataclass(frozen=True, slots=True)
class PluginLoadFailure:
    name: str
    distribution: str
    error: str


class OmnicronPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers which entry points failed to load."""

    def __init__(self) -> None:
        super().__init__("omnicron")
        self.load_failures: list[PluginLoadFailure] = []
        #: Entry-point name -> distribution, for plugins installed but blocked.
        self.blocked_distributions: dict[str, str] = {}


def _disabled_from_env() -> set[str]:
    raw = os.environ.get("OMNICRON_DISABLE_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def get_plugin_manager(
    *,
    load_entrypoints: bool = True,
    strict: bool = False,
    disabled: Iterable[str] | None = None,
    plugins: Iterable[object] = (),
) -> OmnicronPluginManager:
    """Build a plugin manager: hookspecs, built-ins, then the ``omnicron`` entry points.

    Each entry point is loaded on its own: one that fails to import or register is logged with
    its name and skipped (``strict=True`` raises :class:`PluginError` instead). Names listed in
    ``disabled`` or in ``OMNICRON_DISABLE_PLUGINS`` (comma-separated entry-point names) are
    blocked. ``plugins`` are extra objects to register (tests, host applications).
    """
    from . import builtin_plugins

    pm = OmnicronPluginManager()
    pm.add_hookspecs(hookspecs)
    blocked = set(disabled or ()) | _disabled_from_env()
    for name in blocked:
        pm.set_blocked(name)
    pm.hook.omnicron_add_hookspecs.call_historic(kwargs={"plugin_manager": pm})
    pm.register(builtin_plugins, name="omnicron.builtin")
    for plugin in plugins:
        pm.register(plugin)
    if load_entrypoints:
        _load_entrypoints(pm, strict=strict)
    pm.check_pending()
    return pm


def _load_entrypoints(pm: OmnicronPluginManager, *, strict: bool) -> None:
    """Load and register every entry point, then check each one's hooks: a hook another
    plugin adds (``omnicron_add_hookspecs``) is known once all are registered, whatever order
    the distributions come in. A plugin that fails either step is left out on its own."""
    seen: set[str] = set()
    loaded: list[tuple[str, str]] = []
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["name"] or "?"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                continue
            seen.add(ep.name)
            if pm.is_blocked(ep.name):
                pm.blocked_distributions[ep.name] = dist_name
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not take the host down
                _load_failed(pm, ep.name, dist_name, exc, strict=strict)
            else:
                loaded.append((ep.name, dist_name))
    for name, dist_name in loaded:
        try:
            _check_hooks_of(pm, name)
        except Exception as exc:
            _load_failed(pm, name, dist_name, exc, strict=strict)


def _check_hooks_of(pm: OmnicronPluginManager, name: str) -> None:
    """pluggy's ``check_pending`` for one plugin: its implementations of unknown hooks."""
    plugin = pm.get_plugin(name)
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.spec is not None:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                raise pluggy.PluginValidationError(
                    plugin, f"unknown hook {caller.name!r} in plugin {plugin!r}"
                )


def _load_failed(
    pm: OmnicronPluginManager, name: str, dist_name: str, exc: Exception, *, strict: bool
) -> None:
    if pm.has_plugin(name):
        pm.unregister(name=name)
    failure = PluginLoadFailure(name, dist_name, f"{type(exc).__name__}: {exc}")
    if strict:
        raise PluginError(
            f"plugin {name!r} from {dist_name} failed to load: {failure.error}"
        ) from exc
    pm.load_failures.append(failure)
    _log.warning("plugin.load_failed", plugin=name, distribution=dist_name, error=failure.error)


@contextlib.contextmanager
def _located() -> Iterator[None]:
    """Give an executor's complaint the original's ``invalid action: `` prefix and a field."""
    try:
        yield
    except JobValidationError as exc:
        msg = (
            exc.message
            if exc.message.startswith("invalid action: ")
            else f"invalid action: {exc.message}"
        )
        raise JobValidationError(msg, field=_action_field(exc.field)) from None
    except (ValueError, TypeError) as exc:
        raise JobValidationError(f"invalid action: {exc}", field="action") from None


@dataclass(frozen=True, slots=True)
class HookResult:
    """What one plugin's implementation of a hook returned (``error`` if it raised)."""

    plugin_name: str
    items: list[Any]
    error: BaseException | None = None


def call_each_plugin(
    plugin_manager: pluggy.PluginManager,
    hook_name: str,
    *,
    only: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[HookResult]:
    """Call a registration hook through pluggy once per plugin, so one plugin that raises
    does not stop the others. Each implementation's iterable is turned into a list.

    Results come in registration order. A plugin's exception is caught and returned in its
    :class:`HookResult` (the caller decides whether to log, report or raise it). ``only``
    limits the call to the plugins of those names.
    """
    caller = getattr(plugin_manager.hook, hook_name, None)
    if caller is None:
        return []
    impls = caller.get_hookimpls()
    plugins = [impl.plugin for impl in impls]
    wanted = None if only is None else set(only)
    out: list[HookResult] = []
    for impl in impls:
        if wanted is not None and impl.plugin_name not in wanted:
            continue
        others = [p for p in plugins if p is not impl.plugin]
        one = plugin_manager.subset_hook_caller(hook_name, remove_plugins=others)
        try:
            items: list[Any] = []
            for produced in one(**kwargs):
                items.extend(produced or ())
        except Exception as exc:  # isolate the plugin: the others still register
            out.append(HookResult(impl.plugin_name, [], exc))
        else:
            out.append(HookResult(impl.plugin_name, items))
    return out


_PER_PLUGIN: weakref.WeakKeyDictionary[
    pluggy.PluginManager, dict[str, tuple[list[pluggy.HookImpl], list[tuple[str, Any]]]]
] = weakref.WeakKeyDictionary()


def _per_plugin_callers(pm: pluggy.PluginManager, hook_name: str) -> list[tuple[str, Any]]:
    """One pluggy caller per plugin implementing ``hook_name``, in pluggy's call order
    (built once per set of implementations)."""
    caller = getattr(pm.hook, hook_name, None)
    if caller is None:
        return []
    impls = caller.get_hookimpls()
    cache = _PER_PLUGIN.setdefault(pm, {})
    cached = cache.get(hook_name)
    if cached is not None and cached[0] == impls:
        return cached[1]
    # wrappers (tracing, timing) stay around every call; each plain implementation is called
    # on its own, in pluggy's order (last registered first)
    plain = [impl for impl in impls if not (impl.wrapper or impl.hookwrapper)]
    callers = [
        (
            impl.plugin_name,
            pm.subset_hook_caller(
                hook_name,
                remove_plugins=[o.plugin for o in plain if o.plugin is not impl.plugin],
            ),
        )
        for impl in reversed(plain)
    ]
    cache[hook_name] = (impls, callers)
    return callers


def notify_each_plugin(
    plugin_manager: pluggy.PluginManager, hook_name: str, **kwargs: Any
) -> list[tuple[str, Exception]]:
    """Call a notification hook through pluggy once per plugin, so that one plugin raising
    does not keep the others from hearing it. Returns ``(plugin name, exception)`` for each
    plugin that raised (the caller logs them)."""
    failed: list[tuple[str, Exception]] = []
    for name, one in _per_plugin_callers(plugin_manager, hook_name):
        try:
            one(**kwargs)
        except Exception as exc:  # isolate the plugin: the others are still notified
            failed.append((name, exc))
    return failed


class Registry:
    """The executors and store backends that a plugin manager's plugins provide.

    Builds executors once (``omnicron_action_executors``, called through pluggy one plugin at
    a time) and refuses two plugins claiming the same action type or URL scheme. A plugin that
    raises while registering is left out and recorded in :attr:`failures` (the others work).
    """

    def __init__(
        self,
        plugin_manager: pluggy.PluginManager | None = None,
        *,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        location: tzinfo | None = None,
    ) -> None:
        self.plugin_manager = plugin_manager or get_plugin_manager()
        self.context = PluginContext(self.plugin_manager, settings or {}, location)
        self._executors: dict[str, ActionExecutor[Any]] | None = None
        self._backends: dict[str, StoreBackendSpec] | None = None
        #: Plugin name -> the exception it raised while registering executors or backends.
        self.failures: dict[str, BaseException] = {}
        #: Action type -> the plugin that provides it.
        self.executor_plugins: dict[str, str] = {}
        #: URL scheme -> the plugin that provides it.
        self.backend_plugins: dict[str, str] = {}

    def _failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        self.failures.setdefault(plugin, exc)
        if isinstance(exc, ConfigError):
            return
        _log.warning(
            "plugin.registration_failed",
            plugin=plugin,
            hook=hook,
            error=f"{type(exc).__name__}: {exc}",
        )

    @property
    def executors(self) -> dict[str, ActionExecutor[Any]]:
        if self._executors is None:
            found: dict[str, ActionExecutor[Any]] = {}
            owners: dict[str, str] = {}
            hook = "omnicron_action_executors"
            for res in call_each_plugin(self.plugin_manager, hook, context=self.context):
                if res.error is not None:
                    self._failed(res.plugin_name, hook, res.error)
                    continue
                try:
                    checked = [_checked_executor(res.plugin_name, e) for e in res.items]
                except PluginError as exc:
                    self._failed(res.plugin_name, hook, exc)
                    continue
                for executor in checked:
                    kind = executor.action_type
                    if kind in found:
                        raise PluginError(
                            f"action type {kind!r} is provided by both {owners[kind]!r} "
                            f"and {res.plugin_name!r}"
                        )
                    found[kind] = executor
                    owners[kind] = res.plugin_name
            self.executor_plugins = owners
            self._executors = found
        # Bad settings are the operator's to fix: refuse them (every time) rather than run
        # without that plugin. A plugin that fails for any other reason is left out.
        for failure in self.failures.values():
            if isinstance(failure, ConfigError):
                raise failure
        return self._executors

    @property
    def backends(self) -> dict[str, StoreBackendSpec]:
        if self._backends is None:
            found: dict[str, StoreBackendSpec] = {}
            owners: dict[str, str] = {}
            hook = "omnicron_store_backends"
            for res in call_each_plugin(self.plugin_manager, hook):
                if res.error is not None:
                    self._failed(res.plugin_name, hook, res.error)
                    continue
                for spec in res.items:
                    if not isinstance(spec, StoreBackendSpec):
                        self._failed(
                            res.plugin_name,
                            hook,
                            PluginError(f"returned {type(spec).__name__}, not StoreBackendSpec"),
                        )
                        continue
                    if spec.scheme in found:
                        raise PluginError(f"store scheme {spec.scheme!r} is registered twice")
                    found[spec.scheme] = spec
                    owners[spec.scheme] = res.plugin_name
            self.backend_plugins = owners
            self._backends = found
        return self._backends

    def executors_built(self) -> dict[str, ActionExecutor[Any]]:
        """The executors built so far, without raising for another plugin's bad settings."""
        if self._executors is None:
            with contextlib.suppress(ConfigError):
                self.executors  # noqa: B018 - builds them
        return dict(self._executors or {})

    def not_loaded(self) -> list[str]:
        """Plugins that are installed but did not load or register, with the reason."""
        pm = self.plugin_manager
        out = [f"{f.name} ({f.distribution}): {f.error}" for f in getattr(pm, "load_failures", ())]
        dists: dict[str, str] = getattr(pm, "blocked_distributions", {})
        out += [
            f"{name} ({dists[name]}): disabled" if name in dists else f"{name}: disabled"
            for name, plugin in pm.list_name_plugin()
            if plugin is None
        ]
        out += [f"{name}: {type(exc).__name__}: {exc}" for name, exc in self.failures.items()]
        return out

    def executor_for(self, action_type: str) -> ActionExecutor[Any]:
        """The executor for ``action_type``, or a validation error naming what is installed."""
        executor = self.executors.get(action_type)
        if executor is not None:
            return executor
        installed = ", ".join(sorted(self.executors)) or "none"
        if not action_type:
            raise JobValidationError(
                f"invalid action: action type is required; installed action types: {installed}",
                field="action.type",
            )
        message = (
            f"invalid action: invalid action type: {action_type}; "
            f"installed action types: {installed}"
        )
        broken = self.not_loaded()
        if broken:
            message += f"; plugins not loaded: {'; '.join(broken)}"
        else:
            message += " (install the plugin that provides it, e.g. with pip)"
        raise JobValidationError(message, field="action.type")

    def validate_action(self, action: Action) -> None:
        """Validate an action with its executor's synchronous check."""
        self.executor_for(action.type).check(action)

    async def validate_action_async(self, action: Action) -> None:
        """Validate an action with its executor's add-time (possibly I/O-bound) check."""
        await self.executor_for(action.type).check_async(action)

    async def aclose(self) -> None:
        if self._executors:
            for executor in self._executors.values():
                try:
                    await executor.aclose()
                except Exception as exc:  # closing must reach every executor
                    _log.warning(
                        "executor.close_failed", action_type=executor.action_type, error=str(exc)
                    )


def describe_executor(executor: ActionExecutor[Any]) -> dict[str, Any]:
    """``{"type", "description", "parameters"}`` of an executor (``omnicron plugins --json``,
    the agent tools, the docs)."""
    return {
        "type": executor.action_type,
        "description": executor.description,
        "parameters": executor.params_schema(),
    }


_FLAG = re.compile(r"^--[a-z0-9][a-z0-9-]*$")


def _flag_problem(flag: Any, params: set[str]) -> str:
    """Why a declared CLI flag cannot be offered ("" if it can)."""
    if not isinstance(flag, ParamFlag):
        return f"expected a ParamFlag, got {type(flag).__name__}"
    if not isinstance(flag.flag, str) or not _FLAG.match(flag.flag):
        return "flag must look like --name (lower case letters, digits and dashes)"
    if flag.param not in params:
        return f"{flag.param!r} is not one of its parameters ({', '.join(sorted(params))})"
    if flag.kind not in ("str", "json", "pairs"):
        return f"kind must be 'str', 'json' or 'pairs', got {flag.kind!r}"
    return ""


def _agent_problem(executor: ActionExecutor[Any], params: set[str]) -> str:
    """Why the agent tools could not offer an executor's parameters ("" if they can)."""
    description: Any = executor.description  # a plugin's class attributes are not checked
    if not isinstance(description, str):
        return f"description must be a str, got {type(description).__name__}"
    withheld: Any = executor.agent_withheld
    if not isinstance(withheld, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in withheld.items()
    ):
        return "agent_withheld must map parameter names to the reason a model is told"
    session: Any = executor.agent_session_param
    if not isinstance(session, str) or (session and session not in params):
        return f"agent_session_param {session!r} is not one of its parameters"
    return ""


def _checked_executor(plugin: str, executor: Any) -> ActionExecutor[Any]:
    if not isinstance(executor, ActionExecutor):
        raise PluginError(
            f"plugin {plugin!r} returned {type(executor).__name__} from "
            "omnicron_action_executors; expected an ActionExecutor"
        )
    if not executor.action_type:
        raise PluginError(f"plugin {plugin!r} gave an executor with no action_type")
    params_type = getattr(executor, "params_type", None)
    if not (isinstance(params_type, type) and issubclass(params_type, msgspec.Struct)):
        raise PluginError(
            f"plugin {plugin!r}: executor {executor.action_type!r} has no params_type "
            "(a msgspec.Struct of its parameters)"
        )
    reserved = RESERVED_ACTION_KEYS.intersection(_param_names(params_type))
    if reserved:
        raise PluginError(
            f"plugin {plugin!r}: executor {executor.action_type!r} declares the reserved "
            f"parameter name(s) {', '.join(sorted(reserved))}"
        )
    names = set(_param_names(params_type))
    problem = _agent_problem(executor, names)
    if problem:
        raise PluginError(f"plugin {plugin!r}: executor {executor.action_type!r}: {problem}")
    for flag in executor.cli_flags:
        problem = _flag_problem(flag, names)
        if problem:
            raise PluginError(
                f"plugin {plugin!r}: executor {executor.action_type!r} has a bad cli_flags "
                f"entry {flag!r}: {problem}"
            )
    try:  # the agent tools, MCP and `omnicron plugins` show it: fail here, alone
        executor.params_schema()
    except Exception as exc:
        raise PluginError(
            f"plugin {plugin!r}: executor {executor.action_type!r} has parameters without a "
            f"JSON Schema ({str(exc).strip().splitlines()[-1]}); give such a field "
            "Annotated[..., msgspec.Meta(extra_json_schema={...})]"
        ) from exc
    return executor
