"""Validation of whole jobs: the original's messages, in the original's order."""

from __future__ import annotations

from datetime import tzinfo

from ._errors import JobValidationError
from ._limits import AGENT_ORIGIN, JobLimits, check_env_free, check_job_limits, is_agent_job
from ._models import Action, Job
from ._plugins import Registry
from ._schedule import EARLIEST, LATEST, validate_schedule

__all__ = ["validate_action_minimal", "validate_job", "validate_job_async", "validate_policy"]

_MAX_ID = 256
_DEFAULT_LIMITS = JobLimits()


def validate_action_minimal(action: Action) -> None:
    """The check of an action that no executor owns (a host handler runs it): it needs a type.

    The parameters belong to the executors, so without one there is nothing more to check.
    """
    if not action.type:
        raise JobValidationError("invalid action: action type is required", field="action.type")


def validate_job(
    job: Job,
    registry: Registry | None,
    location: tzinfo | None,
    *,
    handler_runs_actions: bool = False,
    check_action: bool = True,
    limits: JobLimits | None = None,
) -> None:
    """Raise :class:`JobValidationError` for the first problem found.

    Sizes are checked first (``limits``, before anything is parsed). The action is checked by
    the executor plugin for its type; with ``handler_runs_actions`` (a host handler runs every
    job) a type no plugin owns only needs to be named. A job an agent made
    (``origin="agent"``, or with an owner) may hold no ``${env:}`` reference.
    """
    if not job.id:
        raise JobValidationError("job ID is required", field="id")
    if len(job.id) > _MAX_ID or any(ord(c) < 32 for c in job.id):
        raise JobValidationError(
            f"job ID must be at most {_MAX_ID} characters with no control characters",
            field="id",
        )
    if not job.name:
        raise JobValidationError("job name is required", field="name")
    check_job_limits(job, limits or _DEFAULT_LIMITS)
    if job.origin not in ("", AGENT_ORIGIN):
        raise JobValidationError(
            f"origin must be '' or '{AGENT_ORIGIN}', got {job.origin!r}", field="origin"
        )
    if is_agent_job(job):
        check_env_free(job)
    validate_schedule(job.schedule, location)
    validate_policy(job)
    if not check_action:
        return
    if registry is not None and (not handler_runs_actions or job.action.type in registry.executors):
        registry.validate_action(job.action)
    else:
        validate_action_minimal(job.action)


#: Largest ``policy.max_runs`` (stores keep counters as 64-bit integers).
MAX_RUNS = 1_000_000_000_000


def validate_policy(job: Job) -> None:
    """Raise :class:`JobValidationError` for a policy that cannot be applied (field types and
    ranges are checked when the job is decoded)."""
    policy = job.policy
    if policy is None:
        return
    for name in ("catch_up_window", "jitter", "timeout"):
        value = getattr(policy, name)
        if value is not None and value.ns < 0:
            raise JobValidationError(f"{name} must not be negative", field=f"policy.{name}")
    if policy.timeout is not None and policy.timeout.ns == 0:
        raise JobValidationError("timeout must be positive", field="policy.timeout")
    for name in ("start_at", "end_at"):
        value = getattr(policy, name)
        if value is not None and value.tzinfo is None:
            raise JobValidationError(
                f"{name} must be an RFC 3339 time with a zone offset", field=f"policy.{name}"
            )
        if value is not None and not EARLIEST <= value < LATEST:
            # as schedule.once: a time some zone cannot show could be saved but never listed
            raise JobValidationError(
                f"{name} {value.isoformat()} is outside the supported range; give a time from "
                f"{EARLIEST:%Y-%m-%d} up to (not including) {LATEST:%Y-%m-%d}",
                field=f"policy.{name}",
            )
    if policy.max_runs is not None and policy.max_runs > MAX_RUNS:
        raise JobValidationError(
            f"max_runs must be at most {MAX_RUNS}, got {str(policy.max_runs)[:40]}",
            field="policy.max_runs",
        )
    if (
        policy.start_at is not None
        and policy.end_at is not None
        and policy.end_at <= policy.start_at
    ):
        raise JobValidationError("end_at must be after start_at", field="policy.end_at")
    retry = policy.retry
    if retry is not None:
        if retry.backoff.ns < 0 or retry.max_backoff.ns < 0:
            raise JobValidationError(
                "retry backoff must not be negative", field="policy.retry.backoff"
            )
        if retry.max_backoff.ns < retry.backoff.ns:
            raise JobValidationError(
                "retry max_backoff must be at least backoff", field="policy.retry.max_backoff"
            )


async def validate_job_async(
    job: Job,
    registry: Registry | None,
    location: tzinfo | None,
    *,
    handler_runs_actions: bool = False,
    limits: JobLimits | None = None,
) -> None:
    """:func:`validate_job` with the executor's add-time check awaited (it may do I/O)."""
    validate_job(job, registry, location, check_action=False, limits=limits)  # + policy
    if registry is not None and (not handler_runs_actions or job.action.type in registry.executors):
        await registry.validate_action_async(job.action)
    else:
        validate_action_minimal(job.action)
