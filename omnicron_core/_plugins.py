"""Plugin descriptors and the plugin manager factory."""

from __future__ import annotations

import abc
import contextlib
import importlib.metadata
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import hookspecs
from ._backend import StoreBackendSpec
from ._errors import JobValidationError, PluginError
from ._log import get_logger

if TYPE_CHECKING:
    from ._models import Action, ExecutionResult, Job

__all__ = [
    "ENTRY_POINT_GROUP",
    "ActionExecutor",
    "PluginContext",
    "PluginLoadFailure",
    "Registry",
    "RunInfo",
    "StoreBackendSpec",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "omnicron"

# Where the action types of the original live, so an error can name the missing distribution.
KNOWN_ACTION_DISTRIBUTIONS = {
    "send_message": "omnicron-send-message",
    "call_webhook": "omnicron-webhook",
    "call_tool": "omnicron-tool",
}

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


class ActionExecutor(abc.ABC):
    """Runs the actions of one type. Subclass it in a plugin and return it from
    ``omnicron_action_executors``.

    ``validate`` raises :class:`~omnicron_core.JobValidationError` (message without the
    ``"invalid action: "`` prefix, which the core adds); ``execute`` returns an
    :class:`~omnicron_core.ExecutionResult` and should not raise (the scheduler turns an
    exception into a failed result with its message).
    """

    #: The ``action.type`` this executor handles.
    action_type: str = ""
    #: One line for ``omnicron plugins`` and the agent tools.
    description: str = ""

    @abc.abstractmethod
    def validate(self, action: Action) -> None:
        """Refuse an action this executor cannot run; called at add/update time and before a run."""

    async def validate_async(self, action: Action) -> None:
        """The add-time check, for executors that must do I/O to decide (a DNS lookup).

        The Scheduler awaits this when a job is added or updated; the default calls
        :meth:`validate`. Override it instead of blocking the event loop in ``validate``.
        """
        self.validate(action)

    @abc.abstractmethod
    async def execute(self, job: Job, run: RunInfo) -> ExecutionResult:
        """Perform the job's action once."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Release what the executor holds (clients, files). Called when the scheduler stops."""


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
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["name"] or "?"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                continue
            seen.add(ep.name)
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
                pm.check_pending()
            except Exception as exc:  # a broken third-party plugin must not take the host down
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                failure = PluginLoadFailure(ep.name, dist_name, f"{type(exc).__name__}: {exc}")
                if strict:
                    raise PluginError(
                        f"plugin {ep.name!r} from {dist_name} failed to load: {failure.error}"
                    ) from exc
                pm.load_failures.append(failure)
                _log.warning(
                    "plugin.load_failed",
                    plugin=ep.name,
                    distribution=dist_name,
                    error=failure.error,
                )


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
        raise JobValidationError(msg, field=exc.field or "action") from None
    except (ValueError, TypeError) as exc:
        raise JobValidationError(f"invalid action: {exc}", field="action") from None


class Registry:
    """The executors and store backends that a plugin manager's plugins provide.

    Builds executors once (``omnicron_action_executors``) and refuses two plugins claiming the
    same action type or URL scheme.
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
        self._executors: dict[str, ActionExecutor] | None = None
        self._backends: dict[str, StoreBackendSpec] | None = None

    @property
    def executors(self) -> dict[str, ActionExecutor]:
        if self._executors is None:
            found: dict[str, ActionExecutor] = {}
            owners: dict[str, str] = {}
            for impl in self.plugin_manager.hook.omnicron_action_executors.get_hookimpls():
                kwargs = {k: v for k, v in {"context": self.context}.items() if k in impl.argnames}
                produced = cast("Iterable[ActionExecutor]", impl.function(**kwargs) or ())
                for executor in produced:
                    kind = executor.action_type
                    if not kind:
                        raise PluginError(
                            f"plugin {impl.plugin_name!r} gave an executor with no action_type"
                        )
                    if kind in found:
                        raise PluginError(
                            f"action type {kind!r} is provided by both {owners[kind]!r} "
                            f"and {impl.plugin_name!r}"
                        )
                    found[kind] = executor
                    owners[kind] = impl.plugin_name
            self._executors = found
        return self._executors

    @property
    def backends(self) -> dict[str, StoreBackendSpec]:
        if self._backends is None:
            found: dict[str, StoreBackendSpec] = {}
            for specs in self.plugin_manager.hook.omnicron_store_backends():
                for spec in specs or ():
                    if spec.scheme in found:
                        raise PluginError(f"store scheme {spec.scheme!r} is registered twice")
                    found[spec.scheme] = spec
            self._backends = found
        return self._backends

    def executor_for(self, action_type: str) -> ActionExecutor:
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
        dist = KNOWN_ACTION_DISTRIBUTIONS.get(action_type)
        if dist:
            raise JobValidationError(
                f"invalid action: action type {action_type!r} needs the {dist} plugin, which is "
                f"not installed (pip install {dist}); installed action types: {installed}",
                field="action.type",
            )
        raise JobValidationError(
            f"invalid action: invalid action type: {action_type}; installed action types: {installed}",
            field="action.type",
        )

    def validate_action(self, action: Action) -> None:
        """Validate an action with its executor's synchronous check."""
        executor = self.executor_for(action.type)
        with _located():
            executor.validate(action)

    async def validate_action_async(self, action: Action) -> None:
        """Validate an action with its executor's add-time (possibly I/O-bound) check."""
        executor = self.executor_for(action.type)
        with _located():
            await executor.validate_async(action)

    async def aclose(self) -> None:
        if self._executors:
            for executor in self._executors.values():
                try:
                    await executor.aclose()
                except Exception as exc:  # closing must reach every executor
                    _log.warning(
                        "executor.close_failed", action_type=executor.action_type, error=str(exc)
                    )
