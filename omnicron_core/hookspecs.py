"""Hook specifications of omnicron.

Every hook is named ``omnicron_*`` and is implemented with :data:`omnicron_core.hookimpl`.
Registration hooks are plain (synchronous) functions that return descriptors; the async work
lives on the objects they return, because pluggy does not await coroutines. pluggy calls hooks
with keyword arguments, so an implementation may accept any subset of the parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._backend import StoreBackendSpec
    from ._models import ExecutionResult, Job
    from ._plugins import ActionExecutor, PluginContext
    from ._runs import RunRecord

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("omnicron")
hookimpl = pluggy.HookimplMarker("omnicron")


@hookspec(historic=True)
def omnicron_add_hookspecs(plugin_manager: pluggy.PluginManager) -> None:
    """Add a plugin's own hook specifications to the plugin manager.

    Called once for every plugin, including plugins registered later (a historic hook).

    :param plugin_manager: the omnicron plugin manager; call ``add_hookspecs(module)`` on it.
    :return: nothing.

    Example (the send-message plugin adds ``omnicron_deliver_message``)::

        @hookimpl
        def omnicron_add_hookspecs(plugin_manager):
            from . import hookspecs
            plugin_manager.add_hookspecs(hookspecs)
    """


@hookspec
def omnicron_action_executors(  # type: ignore[empty-body]
    context: PluginContext,
) -> Iterable[ActionExecutor[Any]]:
    """Return the action executors this plugin provides.

    Each executor names one action type (``ActionExecutor.action_type``), declares that type's
    parameters as a msgspec Struct (``params_type``: the core decodes a job's ``action.params``
    into it when the job is added or updated, with located errors, then calls ``validate``),
    and runs it (``async execute(job, run)``). Two executors claiming one type are refused.
    The core calls this hook one plugin at a time: a plugin that raises is left out (and
    reported), the others still register.

    :param context: the plugin manager, this runtime's per-plugin settings
        (``context.settings_for("webhook")``) and the scheduler's location.
    :return: an iterable of executors (may be empty).

    Example::

        @hookimpl
        def omnicron_action_executors(context):
            return [EchoExecutor(**context.settings_for("echo"))]
    """


@hookspec
def omnicron_store_backends() -> Iterable[StoreBackendSpec]:  # type: ignore[empty-body]
    """Return the store backends this plugin provides, one per URL scheme.

    A :class:`~omnicron_core.StoreBackendSpec` pairs a scheme (``"sqlite"``) with a factory
    ``factory(url, options) -> StoreBackend``; ``StoreConfig(url="sqlite:///jobs.db")`` picks the
    backend by the scheme. Two backends claiming one scheme are refused.

    :return: an iterable of backend specs.

    Example::

        @hookimpl
        def omnicron_store_backends():
            return [StoreBackendSpec("redis", RedisBackend.from_url)]
    """


@hookspec
def omnicron_job_changed(job: Job, change: str) -> None:
    """Notify that a job was added, updated, removed, enabled or disabled.

    Called after the change is saved. Exceptions are logged and otherwise ignored.

    :param job: a copy of the job after the change (before it, for ``"removed"``).
    :param change: one of ``"added"``, ``"updated"``, ``"removed"``, ``"enabled"``,
        ``"disabled"``.
    :return: nothing.

    Example::

        @hookimpl
        def omnicron_job_changed(job, change):
            audit_log.write(f"{change} {job.id}")
    """


@hookspec
def omnicron_job_ran(job: Job, result: ExecutionResult) -> None:
    """Notify that a job ran (scheduled or triggered by hand), with its outcome.

    Called after the run state is saved. Exceptions are logged and otherwise ignored.

    :param job: a copy of the job with its updated run state.
    :param result: the run's result (``result.scheduled_at`` is ``None`` for a manual trigger).
    :return: nothing.

    Example::

        @hookimpl
        def omnicron_job_ran(job, result):
            if not result.success:
                alert(job.name, result.error)
    """


@hookspec
def omnicron_run_recorded(job_id: str, record: RunRecord) -> None:
    """Notify that a fire ended up in the run history with a final outcome.

    Called after the record is saved, for every record that is not ``running``: runs that
    finished (``succeeded``, ``failed``, ``cancelled``, ``interrupted``), and fires that did not
    run (``skipped`` by the overlap policy or coalesced by catch-up, ``missed`` past the
    catch-up window). A failed attempt that is retried is recorded too (``record.attempt``
    counts up, ``record.trigger`` is ``"retry"`` from the second attempt). Exceptions are
    logged and otherwise ignored.

    :param job_id: the job's id.
    :param record: the history record (:class:`~omnicron_core.RunRecord`).
    :return: nothing.

    Example::

        @hookimpl
        def omnicron_run_recorded(job_id, record):
            if record.outcome == "missed":
                alert(f"{job_id} missed its {record.scheduled_at} fire")
    """
