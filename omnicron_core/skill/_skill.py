"""The ``cron`` skill: the original's seven agent tools (plus ``cron_update`` and
``cron_next``) over a :class:`~omnicron_core.Scheduler`, with ownership and limits."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import msgspec

from .._duration import Duration, format_go_duration, parse_go_duration
from .._errors import JobNotFoundError, JobValidationError, OmnicronError, StoreError, ToolError
from .._limits import AGENT_ORIGIN, check_job_limits, quote
from .._log import get_logger
from .._models import Action, Job, JobStatus, Schedule, new_job
from .._plugins import Registry
from .._policy import FireTimes
from .._runs import Policy
from .._schedule import iter_fire_times, resolve_zone, validate_schedule
from .._scheduler import ExecutionHandler, Scheduler, SchedulerConfig
from .._store import Store, StoreConfig
from ._args import ArgumentError, check_arguments, decode_arguments
from ._config import SkillConfig
from ._policy_args import PREVIEW_POLICY_FIELDS, policy_from
from ._present import (
    answer_zone,
    display_zone,
    history_view,
    job_view,
    rfc3339,
    schedule_extras,
    zone_name,
)
from ._tools import (
    SKILL_PARAMS,
    AgentAction,
    SkillTool,
    ToolResult,
    build_schemas,
    merge_action_params,
)

__all__ = ["Skill", "ToolError"]

_log = get_logger("omnicron.skill")

#: Fire times sampled to find the shortest gap of a cron expression (its highest rate).
_RATE_SAMPLE = 64
#: ``metadata`` key holding when an agent last triggered the job (the manual-trigger limit).
TRIGGERED_AT_KEY = "omnicron.triggered_at"
_SESSION_PREFIX = "session:"
_SCHEDULE_PARAMS = ("schedule_cron", "schedule_interval", "schedule_once")


class Skill:
    """Schedule and manage recurring jobs from an agent.

    Wire it up like the original (``set_storage``, ``set_execution_handler``, ``await init()``,
    ``await close()``), or hand it a running :class:`Scheduler`. Every tool call goes through
    :meth:`call`, which never raises for bad input: it returns a :class:`ToolResult` with
    ``is_error=True`` and a message.
    """

    def __init__(
        self,
        config: SkillConfig | None = None,
        *,
        scheduler: Scheduler | None = None,
        store: Store | str | None = None,
        registry: Registry | None = None,
        location: tzinfo | str | None = None,
        start_scheduler: bool = True,
    ) -> None:
        if scheduler is not None and store is not None:
            raise ValueError("pass either a scheduler or a store, not both")
        self.config = config or SkillConfig()
        self._scheduler = scheduler
        self._own_scheduler = scheduler is None
        self._started_scheduler = False
        self._store: Store | None = None
        if registry is None and scheduler is not None:
            registry = scheduler.registry
        self._registry = registry or Registry()
        self._location = location
        self._start = start_scheduler
        self._handler: ExecutionHandler | None = None
        self._handler_set = False
        self._initialised = scheduler is not None
        self._create_lock = asyncio.Lock()
        if store is not None:
            self.set_storage(store)
        self._actions = agent_actions(self._registry, self.config)
        self._params = merge_action_params(list(self._actions.values()), self.config)
        handlers = {
            "cron_create": self._create,
            "cron_list": self._list,
            "cron_get": self._get,
            "cron_delete": self._delete,
            "cron_enable": self._enable,
            "cron_disable": self._disable,
            "cron_trigger": self._trigger,
            "cron_update": self._update,
            "cron_next": self._next,
            "cron_history": self._history,
        }
        self._tools = {
            name: SkillTool(
                name,
                description,
                schema,
                handlers[name],
                self._params.withheld if name in ("cron_create", "cron_update") else {},
            )
            for name, (description, schema) in build_schemas(
                self.config, list(self._actions.values())
            ).items()
        }

    # -- the original's surface -------------------------------------------------------------

    def name(self) -> str:
        return "cron"

    def description(self) -> str:
        return "Schedule and manage recurring jobs"

    def tools(self) -> list[SkillTool]:
        """The tools, in the original's order, then ``cron_update`` and ``cron_next``."""
        return list(self._tools.values())

    def get_tool(self, name: str) -> SkillTool | None:
        return self._tools.get(name)

    def openai_tools(self) -> list[dict[str, Any]]:
        """Every tool in OpenAI's function-calling format."""
        return [tool.to_openai() for tool in self._tools.values()]

    def anthropic_tools(self) -> list[dict[str, Any]]:
        """Every tool in Anthropic's tool format."""
        return [tool.to_anthropic() for tool in self._tools.values()]

    def set_storage(self, store: Store | str) -> None:
        """Use this store (or store URL, e.g. ``sqlite:///jobs.db``); call before :meth:`init`."""
        if self._initialised:
            raise RuntimeError("set_storage must be called before init()")
        if isinstance(store, str):
            store = Store(StoreConfig(url=store), registry=self._registry)
        self._store = store

    def set_execution_handler(self, handler: ExecutionHandler | None) -> None:
        """Run every job with ``handler`` instead of the executor plugins; works before or
        after :meth:`init` (the original ignored a handler set before init)."""
        self._handler = handler
        self._handler_set = True
        if self._scheduler is not None:
            self._scheduler.set_handler(handler)

    def get_scheduler(self) -> Scheduler | None:
        return self._scheduler

    async def init(self) -> None:
        """Build the scheduler on the store and start it. Raises ``OmnicronError("storage not
        configured")`` without a store, as the original. Calling it twice is harmless."""
        if self._scheduler is None:
            if self._store is None:
                raise OmnicronError("storage not configured")
            self._scheduler = Scheduler(
                SchedulerConfig(
                    store=self._store,
                    handler=self._handler,
                    location=self._location,
                    registry=self._registry,
                )
            )
        elif self._handler_set:
            self._scheduler.set_handler(self._handler)
        self._initialised = True
        if self._start and not self._scheduler.is_running():
            await self._scheduler.start()
            self._started_scheduler = True

    async def close(self) -> None:
        """Stop the scheduler if this skill started it."""
        if self._scheduler is not None and self._started_scheduler:
            await self._scheduler.stop()
            self._started_scheduler = False

    async def __aenter__(self) -> Skill:
        await self.init()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the single entry point ---------------------------------------------------------------

    async def call(
        self,
        tool_name: str,
        arguments: Mapping[str, Any] | str | bytes | None = None,
        *,
        principal: str | None = None,
    ) -> ToolResult:
        """Run a tool as an agent framework would: JSON (or a dict) in, a :class:`ToolResult`
        out. ``principal`` is the caller (``"session:<id>"``); ``None`` is trusted host code,
        which sees every job."""
        tool = self._tools.get(tool_name)
        if tool is None:
            return ToolResult.failure(
                f"unknown tool '{tool_name}'; available tools: {', '.join(self._tools)}"
            )
        if principal is not None and (not isinstance(principal, str) or not principal):
            return ToolResult.failure("principal must be a non-empty string, or None")
        try:
            decoded = decode_arguments(arguments, max_bytes=self.config.max_arguments_bytes)
            args = check_arguments(tool.name, tool.parameters, decoded, withheld=tool.withheld)
            if self._scheduler is None and tool.name != "cron_next":
                raise ToolError("the cron skill is not initialised (the host must call init())")
            value = await tool.handler(args, principal)
        except (ArgumentError, ToolError) as exc:
            return ToolResult.failure(str(exc))
        except JobValidationError as exc:
            return ToolResult.failure(located_message(exc))
        except Exception as exc:  # an agent's turn must survive anything a tool hits
            _log.exception("skill.tool_failed", tool=tool_name)
            return ToolResult.failure(f"{tool_name} failed: {type(exc).__name__}: {exc}")
        return ToolResult(value)

    # -- helpers ------------------------------------------------------------------------------

    @property
    def _sched(self) -> Scheduler:
        assert self._scheduler is not None
        return self._scheduler

    @property
    def _zone(self) -> tzinfo:
        if self._scheduler is not None:
            return self._scheduler.location
        return resolve_zone(self._location, field="location")

    def is_operator(self, principal: str | None) -> bool:
        """Whether ``principal`` sees every owner's jobs (``None`` is trusted host code)."""
        return principal is None or principal in self.config.operators

    def _visible(self, job: Job, principal: str | None) -> bool:
        return self.is_operator(principal) or job.owner_principal == principal

    async def _find(self, job_id: str, principal: str | None, verb: str) -> Job:
        try:
            job = await self._sched.get_job(job_id)
        except JobNotFoundError:
            raise ToolError(f"{verb}: job not found") from None
        if not self._visible(job, principal):
            raise ToolError(f"{verb}: job not found")  # exactly as an unknown id
        return job

    def _time(self, job: Job, when: datetime | None) -> str | None:
        """A time of ``job`` in the zone its fire times are shown in (one zone per answer)."""
        return None if when is None else rfc3339(when, answer_zone(job.schedule, self._zone))

    def _view_extras(self, job: Job) -> dict[str, Any]:
        return schedule_extras(job, self._zone, self.config.preview_count)

    def _schedule_from(self, args: dict[str, Any], base: Schedule | None) -> Schedule | None:
        """The schedule the arguments give (``None`` if they give none), checked and with its
        rate limited. ``base`` is the job's current schedule (for a timezone-only change)."""
        given = [p for p in _SCHEDULE_PARAMS if args.get(p)]
        timezone = args.get("timezone")
        if not given and timezone is None:
            return None
        if timezone:
            resolve_zone(timezone)  # the core's message names the zone
        if not given:
            if base is None:
                raise ToolError("schedule is required (cron, once, or interval)")
            schedule = msgspec.structs.replace(base, timezone=timezone or "")
        else:
            schedule = Schedule(timezone=timezone or "")
            if args.get("schedule_cron"):
                schedule.cron = args["schedule_cron"].strip()
            if args.get("schedule_interval"):
                text = args["schedule_interval"]
                try:
                    ns = parse_go_duration(text, allow_days=True)
                except ValueError as exc:
                    raise ToolError(f"invalid interval: {exc}") from None
                if ns <= 0:
                    raise ToolError(
                        f"invalid interval: {text!r} is not positive; use a duration such as '30m'"
                    )
                schedule.interval = Duration(ns)
            if args.get("schedule_once"):
                schedule.once = _parse_once(args["schedule_once"])
        validate_schedule(schedule, self._zone)
        return schedule

    def _policy_from(
        self, args: dict[str, Any], base: Policy | None, *, fields: tuple[str, ...] = ()
    ) -> Policy | None:
        """The job's policy with the ``policy`` argument applied (``base`` when none is
        given), within the skill's ``[skill.policy]`` limits; ``fields`` narrows them."""
        if "policy" not in args:
            return base
        limits = self.config.policy
        if fields:
            limits = msgspec.structs.replace(
                limits, fields=tuple(f for f in limits.fields if f in fields)
            )
        return policy_from(
            args["policy"], base, limits, datetime.now(UTC), self.config.min_interval_ns
        )

    def _rate_problem(self, schedule: Schedule, now: datetime) -> str | None:
        """Why ``schedule`` fires more often than ``min_interval`` allows, or ``None``."""
        limit = self.config.min_interval_ns
        if not limit:
            return None
        least = format_go_duration(limit)
        if schedule.interval is not None and schedule.interval.ns > 0:
            if schedule.interval.ns < limit:
                return (
                    f"schedule_interval {format_go_duration(schedule.interval.ns)} is shorter "
                    f"than the minimum interval between runs, {least}"
                )
            return None
        if not schedule.cron:
            return None
        zone = display_zone(schedule, self._zone)
        times = list(
            itertools.islice(iter_fire_times(schedule, now, location=self._zone), _RATE_SAMPLE)
        )
        gaps = [(b - a, a, b) for a, b in itertools.pairwise(times)]
        if not gaps:
            return None
        gap, a, b = min(gaps, key=lambda g: g[0])
        gap_ns = (gap.days * 86_400 + gap.seconds) * 1_000_000_000 + gap.microseconds * 1000
        if gap_ns >= limit:
            return None
        return (
            f"schedule_cron {schedule.cron!r} runs as often as every "
            f"{format_go_duration(gap_ns)} (at {rfc3339(a, zone)} and {rfc3339(b, zone)}); "
            f"the minimum interval between runs is {least}"
        )

    def _action_from(
        self, args: dict[str, Any], principal: str | None, current: Action | None
    ) -> Action | None:
        """The action the arguments give (``None`` if they change nothing of it)."""
        flat = [p for p in args if p in self._params.owners]
        nested = args.get("action_params")
        if current is not None and "action_type" not in args and not flat and nested is None:
            return None
        kind: str = args.get("action_type") or (current.type if current else "")
        offered = self._actions.get(kind)
        if offered is None:
            allowed = ", ".join(self._actions) or "none"
            raise ToolError(
                f"action type '{kind}' may not be scheduled by agents; allowed: {allowed}"
            )
        own = set(offered.param_names)
        for name in flat:
            if name not in own:
                raise ToolError(
                    f"parameter '{name}' belongs to {', '.join(self._params.owners[name])}, not "
                    f"{kind}; {kind} parameters: {', '.join(offered.param_names) or 'none'}"
                )
        params: dict[str, Any] = (
            dict(current.copy().params) if current is not None and current.type == kind else {}
        )
        given: dict[str, Any] = {name: args[name] for name in flat}
        if nested is not None:
            for name, value in nested.items():
                if name in offered.withheld and name not in self.config.allow_params:
                    raise ToolError(f"parameter '{name}' is not allowed: {offered.withheld[name]}")
                given[name] = value
        for name, value in given.items():
            params[name] = dict(value) if isinstance(value, Mapping) else value
        for name in offered.parameters.get("required", ()):
            if name in SKILL_PARAMS and name not in params:
                raise ToolError(
                    f"{kind} needs its parameter '{name}' inside action_params (a top-level "
                    f"'{name}' is the job's own)"
                )
        session_param = offered.session_param
        if session_param and principal and principal.startswith(_SESSION_PREFIX):
            own_session = principal[len(_SESSION_PREFIX) :]
            if not params.get(session_param):
                params[session_param] = own_session
            elif self.config.own_session_only and params[session_param] != own_session:
                raise ToolError(
                    f"{session_param} must be your own session '{own_session}'; this scheduler "
                    "does not let agents message other sessions"
                )
        for name, values in self.config.allowed_values.items():
            value = params.get(name)
            if name in own and value not in (None, "") and value not in values:
                raise ToolError(
                    f"{name} '{value}' may not be scheduled by agents; allowed: "
                    f"{', '.join(values) or 'none'}"
                )
        return Action(kind, params)

    async def _owned(self, principal: str) -> int:
        """How many jobs ``principal`` owns, counted in the store (which other Skill instances
        and processes share)."""
        return sum(1 for j in await self._sched.list_jobs() if j.owner_principal == principal)

    @staticmethod
    def _quota_error(owned: int, limit: int) -> ToolError:
        return ToolError(
            f"job limit reached: you have {owned} jobs and the maximum is {limit}; delete "
            "one you no longer need (cron_delete) first"
        )

    async def _check_quota(self, principal: str | None) -> None:
        limit = self.config.max_jobs_per_owner
        if principal is None or not limit:
            return
        owned = await self._owned(principal)
        if owned >= limit:
            raise self._quota_error(owned, limit)

    async def _recheck_quota(self, principal: str | None, saved: Job) -> None:
        """Count again once the job is saved, and take it back if the owner is now over the
        limit. The check before saving cannot see a job another process (or Skill instance)
        saves at the same moment; counting after saving can: of the creates that race, the
        last to count sees every one of them, so the limit holds (at worst all are refused)."""
        limit = self.config.max_jobs_per_owner
        if principal is None or not limit:
            return
        owned = await self._owned(principal)
        if owned > limit:
            await self._sched.remove_job(saved.id)
            raise self._quota_error(owned - 1, limit)

    # -- the tools ----------------------------------------------------------------------------

    async def _create(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        schedule = self._schedule_from(args, None)
        if schedule is None:
            raise ToolError("schedule is required (cron, once, or interval)")
        problem = self._rate_problem(schedule, datetime.now(UTC))
        if problem:
            raise ToolError(problem)
        action = self._action_from(args, principal, None)
        assert action is not None
        policy = self._policy_from(args, None)
        job = new_job(None, args["name"], schedule, action, description=args.get("description", ""))
        job.policy = policy
        # Whole seconds: an interval job's fire times (creation + n intervals) read cleanly.
        job.created_at = job.updated_at = (
            job.created_at.replace(microsecond=0) if job.created_at else None
        )
        job.owner_principal = principal or ""
        job.origin = AGENT_ORIGIN  # whoever calls, the content is a model's
        try:
            check_job_limits(job, self.config.job_limits)
        except JobValidationError as exc:
            raise ToolError(f"add job: {located_message(exc)}") from None
        async with self._create_lock:
            await self._check_quota(principal)
            try:
                saved = await self._sched.add_job(job)
            except JobValidationError as exc:
                raise ToolError(f"add job: {located_message(exc)}") from None
            await self._recheck_quota(principal, saved)
        _log.info("skill.job_created", job_id=saved.id, principal=principal)
        out = {
            "id": saved.id,
            "name": saved.name,
            "status": str(saved.status),
            "next_run_at": self._time(saved, saved.next_run_at),
        }
        out.update(self._view_extras(saved))
        return out

    async def _list(self, args: dict[str, Any], principal: str | None) -> list[dict[str, Any]]:
        status = args.get("status")
        out = []
        for job in await self._sched.list_jobs():
            if not self._visible(job, principal) or (status and job.status != status):
                continue
            item = {
                "id": job.id,
                "name": job.name,
                "description": job.description,
                "status": str(job.status),
                "run_count": job.run_count,
                "last_run_at": self._time(job, job.last_run_at),
                "next_run_at": self._time(job, job.next_run_at),
            }
            item.update(self._view_extras(job))
            out.append(item)
        return out

    async def _get(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        job = await self._find(args["id"], principal, "get job")
        return job_view(job, self._zone, self.config.preview_count)

    async def _delete(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        job = await self._find(args["id"], principal, "delete job")
        await self._sched.remove_job(job.id)
        return {"deleted": True, "id": job.id}

    async def _enable(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        job = await self._find(args["id"], principal, "enable job")
        try:
            saved = await self._sched.enable_job(job.id)
        except JobNotFoundError:
            raise ToolError("enable job: job not found") from None
        out = {
            "id": saved.id,
            "status": str(saved.status),
            "next_run_at": self._time(saved, saved.next_run_at),
        }
        out.update(self._view_extras(saved))
        return out

    async def _disable(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        job = await self._find(args["id"], principal, "disable job")
        try:
            saved = await self._sched.disable_job(
                job.id, note=str(args.get("note") or ""), by=principal or ""
            )
        except JobNotFoundError:
            raise ToolError("disable job: job not found") from None
        except JobValidationError as exc:  # the note (control characters)
            raise ToolError(f"disable job: parameter 'note': {exc.message}") from None
        out: dict[str, Any] = {"id": saved.id, "status": str(saved.status)}
        if saved.pause is not None and saved.pause.note:
            out["note"] = saved.pause.note
        out.update(self._view_extras(saved))
        return out

    async def _history(self, args: dict[str, Any], principal: str | None) -> list[dict[str, Any]]:
        job = await self._find(args["id"], principal, "job history")
        try:
            records = await self._sched.history(
                job.id, limit=int(args.get("limit") or 10), outcome=args.get("outcome")
            )
        except StoreError as exc:
            raise ToolError(f"job history: {exc}") from None
        return [history_view(r, self._zone) for r in records]

    async def _reserve_trigger(self, job: Job) -> None:
        """Refuse a manual run within ``min_interval`` of the job's last run or trigger.

        The check and the note of this trigger are one atomic store update, so concurrent
        calls (from this process or another sharing the store) let exactly one through."""
        limit_ns = self.config.min_interval_ns
        if not limit_ns:
            return
        now = datetime.now(UTC)
        limit = timedelta(microseconds=limit_ns // 1000)
        refused: list[str] = []

        def patch(cur: Job) -> Job | None:
            if cur.status == JobStatus.RUNNING:
                refused.append("trigger job: the job is running now; try again when it is done")
                return None
            last = _last_start(cur)
            if last is not None and now - last < limit:
                ready = (last + limit).astimezone(UTC)
                if ready.microsecond:  # whole seconds, never before the real time
                    ready = ready.replace(microsecond=0) + timedelta(seconds=1)
                refused.append(
                    f"trigger job: the job last ran at {rfc3339(last.astimezone(UTC))} and the "
                    f"minimum interval between runs is {format_go_duration(limit_ns)}; it can "
                    f"run again from {rfc3339(ready)}"
                )
                return None
            cur.metadata = dict(cur.metadata or {})
            cur.metadata[TRIGGERED_AT_KEY] = rfc3339(now)
            return cur

        saved = await self._sched.store.update(job.id, patch)
        if saved is None:
            raise ToolError(refused[0] if refused else "trigger job: job not found")

    async def _trigger(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        job = await self._find(args["id"], principal, "trigger job")
        await self._reserve_trigger(job)
        try:
            result = await self._sched.trigger_job(job.id)
        except JobNotFoundError:
            raise ToolError("trigger job: job not found") from None
        return {
            "id": job.id,
            "success": result.success,
            "output": _jsonable(result.output),
            "error": result.error,
            "duration": format_go_duration(result.duration),
        }

    async def _update(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        if len(args) == 1:
            raise ToolError(
                "nothing to update: give the fields to change besides id (e.g. name, "
                "schedule_cron, or an action parameter)"
            )
        job = await self._find(args["id"], principal, "update job")
        schedule = self._schedule_from(args, job.schedule)
        if schedule is not None:
            problem = self._rate_problem(schedule, datetime.now(UTC))
            if problem:
                raise ToolError(problem)
            job.schedule = schedule
        action = self._action_from(args, principal, job.action)
        if action is not None:
            job.action = action
        if "policy" in args:
            job.policy = self._policy_from(args, job.policy)
        if "name" in args:
            job.name = args["name"]
        if "description" in args:
            job.description = args["description"]
        job.origin = AGENT_ORIGIN
        try:
            check_job_limits(job, self.config.job_limits)
        except JobValidationError as exc:
            raise ToolError(f"update job: {located_message(exc)}") from None
        try:
            saved = await self._sched.update_job(job)
        except JobNotFoundError:
            raise ToolError("update job: job not found") from None
        except JobValidationError as exc:
            raise ToolError(f"update job: {located_message(exc)}") from None
        return job_view(saved, self._zone, self.config.preview_count)

    async def _next(self, args: dict[str, Any], principal: str | None) -> dict[str, Any]:
        schedule = self._schedule_from(
            {k: v for k, v in args.items() if k not in ("count", "policy")}, None
        )
        if schedule is None or not schedule.kinds():
            raise ToolError("schedule is required (cron, once, or interval)")
        now = datetime.now(UTC).replace(microsecond=0)  # whole seconds read better
        zone = display_zone(schedule, self._zone)
        count = int(args.get("count", min(5, self.config.max_preview_count)))
        # a draft job, previewed as cron_get would show it: the one fire-times iterator
        draft = Job(
            schedule=schedule,
            created_at=now,
            policy=self._policy_from(args, None, fields=PREVIEW_POLICY_FIELDS),
        )
        times = FireTimes(self._zone)
        draft.next_run_at = times.after(draft, now)
        out: dict[str, Any] = {
            "schedule_description": schedule_extras(
                Job(schedule=schedule, status=JobStatus.DISABLED), self._zone, 0
            )["schedule_description"],
            "timezone": zone_name(zone),
            "next_fire_times": [rfc3339(t, zone) for t in times.upcoming(draft, count)],
        }
        problem = self._rate_problem(schedule, now)
        if problem:
            out["warning"] = f"cron_create would refuse this schedule: {problem}"
        return out


def _last_start(job: Job) -> datetime | None:
    """When the job last ran or was triggered by an agent, whichever is later."""
    times = [job.last_run_at] if job.last_run_at is not None else []
    stamp = (job.metadata or {}).get(TRIGGERED_AT_KEY)
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            times.append(when)
    return max(times, default=None)


def _parse_once(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ToolError(
            f"invalid once time: {quote(text)} is not an RFC 3339 timestamp such as "
            "'2026-04-25T14:30:00Z'"
        ) from None
    if when.tzinfo is None or "T" not in text.upper():
        raise ToolError(
            f"invalid once time: {quote(text)} has no time zone offset; use RFC 3339 such as "
            "'2026-04-25T14:30:00Z' or '2026-04-25T16:30:00+02:00'"
        )
    now = datetime.now(UTC)
    if when <= now:
        raise ToolError(
            f"invalid once time: {text} is in the past (it is now {rfc3339(now.replace(microsecond=0))}); "
            "give a future time, or use cron_trigger to run a job now"
        )
    return when


def located_message(exc: JobValidationError) -> str:
    """The error's message, saying where unless it already starts with the place: an action
    parameter's error leads with the parameter (``path must be absolute``), else the location
    follows (``unknown tool 'x'; ... (at action.tool_name)``)."""
    message = exc.message
    field = exc.field or ""
    if not field.startswith("action.") or field == "action.type":
        return message
    text = message.removeprefix("invalid action: ")
    if text.startswith(field.removeprefix("action.")) or text.startswith(field):
        return message
    return f"{message} (at {field})"


def agent_actions(registry: Registry, config: SkillConfig) -> dict[str, AgentAction]:
    """The action types the tools offer: installed and allowed, in the allowed order."""
    installed = registry.executors_built()
    names = (
        sorted(installed) if config.allowed_action_types is None else config.allowed_action_types
    )
    out: dict[str, AgentAction] = {}
    for name in names:
        executor = installed.get(name)
        if executor is None:
            continue
        out[name] = AgentAction(
            type=name,
            description=executor.description,
            parameters=executor.params_schema(),
            session_param=executor.agent_session_param,
            withheld=dict(executor.agent_withheld),
        )
    return out


def _jsonable(value: Any) -> Any:
    try:
        return msgspec.to_builtins(value)
    except (TypeError, msgspec.EncodeError):
        return str(value)
