"""The ``policy`` argument of ``cron_create`` / ``cron_update`` / ``cron_next``: a job's schedule
policy as an agent may set it, within the skill's :class:`PolicyLimits`.

Every refusal names the field (``policy.retry.attempts: ...``) and nothing is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import msgspec

from .._duration import Duration, format_go_duration
from .._errors import JobValidationError, ToolError
from .._locate import locate
from .._models import Job, _enc_hook, dec_hook
from .._runs import CatchUp, Overlap, Policy, RetryPolicy
from .._validation import validate_policy
from ._args import json_type_name
from ._config import AGENT_POLICY_FIELDS, PolicyLimits

__all__ = ["PREVIEW_POLICY_FIELDS", "policy_from", "policy_schema"]

#: The policy fields ``cron_next`` applies to its preview (the bounds).
PREVIEW_POLICY_FIELDS = ("start_at", "end_at", "max_runs")

_RETRY_FIELDS = tuple(RetryPolicy.__struct_fields__)


def policy_schema(limits: PolicyLimits, min_interval_ns: int = 0) -> dict[str, Any]:
    """The JSON Schema of the ``policy`` argument (only the fields agents may set)."""
    least = _least_backoff(limits, min_interval_ns)[1]
    dur = "a duration such as '90s' or '1h30m'"
    specs: dict[str, dict[str, Any]] = {
        "overlap": {
            "type": "string",
            "enum": [str(o) for o in Overlap],
            "description": "What a fire does while the previous run is still going: skip "
            "(default), buffer_one, buffer_all, allow_all, cancel_other",
        },
        "concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": limits.max_concurrency,
            "description": "Most runs at once under allow_all",
        },
        "buffer_limit": {
            "type": "integer",
            "minimum": 1,
            "maximum": limits.max_buffer,
            "description": "Most fires kept waiting under buffer_all and catch_up all",
        },
        "catch_up": {
            "type": "string",
            "enum": [str(c) for c in CatchUp],
            "description": "After downtime: latest (default, one run) or all (each late fire)",
        },
        "catch_up_window": {
            "type": "string",
            "maxLength": 64,
            "description": f"Fires later than this are recorded missed ({dur}; at most "
            f"{limits.max_catch_up_window})",
        },
        "jitter": {
            "type": "string",
            "maxLength": 64,
            "description": f"Most random delay added to each fire ({dur}; at most "
            f"{limits.max_jitter})",
        },
        "start_at": {
            "type": "string",
            "maxLength": 64,
            "description": "No fire before this RFC 3339 time (with a zone offset)",
        },
        "end_at": {
            "type": "string",
            "maxLength": 64,
            "description": "No fire after this RFC 3339 time; the job is then finished "
            f"(within {limits.horizon} from now)",
        },
        "max_runs": {
            "type": "integer",
            "minimum": 1,
            "description": "The job is finished after this many scheduled runs",
        },
        "timeout": {
            "type": "string",
            "maxLength": 64,
            "description": f"A run longer than this is cancelled and fails ({dur}; at most "
            f"{limits.max_timeout})",
        },
        "retry": {
            "type": "object",
            "description": "Retries of a failed run: {attempts (at most "
            f"{limits.max_retries}), backoff (at least {least}), "
            "max_backoff, jitter (0 to 1)}",
            "properties": {
                "attempts": {"type": "integer", "minimum": 0, "maximum": limits.max_retries},
                "backoff": {"type": "string", "maxLength": 64},
                "max_backoff": {"type": "string", "maxLength": 64},
                "jitter": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "additionalProperties": False,
        },
    }
    return {
        "type": "object",
        "description": "Schedule policy (optional; omitted fields keep their defaults, or on "
        "cron_update their current values; null resets a field). See cron_get's policy.",
        "properties": {name: specs[name] for name in limits.fields},
        "additionalProperties": False,
    }


def _refuse(field: str, message: str) -> ToolError:
    return ToolError(f"policy.{field}: {message}")


def _dur(ns: int) -> str:
    return format_go_duration(ns)


def policy_from(
    raw: Any,
    base: Policy | None,
    limits: PolicyLimits,
    now: datetime,
    min_interval_ns: int = 0,
) -> Policy | None:
    """The policy ``raw`` (the agent's ``policy`` argument) gives on top of ``base`` (the job's
    current policy, ``None`` for a new job), checked against ``limits``; ``None`` when it is
    all defaults. ``min_interval_ns`` (the skill's ``min_interval``) raises the shortest retry
    backoff: a retry is a run, so it may not come sooner than the job may run again.
    Raises :class:`ToolError` naming the field."""
    if not isinstance(raw, Mapping):
        raise ToolError(f"policy: must be an object, got {json_type_name(raw)}")
    for key in raw:
        if key not in AGENT_POLICY_FIELDS:
            raise _refuse(
                str(key)[:64],
                f"unknown policy field; known: {', '.join(AGENT_POLICY_FIELDS)}",
            )
        if key not in limits.fields:
            allowed = ", ".join(limits.fields) or "none"
            raise _refuse(key, f"agents may not set this field (allowed: {allowed})")
    retry = raw.get("retry")
    if retry is not None:
        if not isinstance(retry, Mapping):
            raise _refuse("retry", f"must be an object, got {json_type_name(retry)}")
        for key in retry:
            if key not in _RETRY_FIELDS:
                raise _refuse(
                    f"retry.{str(key)[:64]}", f"unknown field; known: {', '.join(_RETRY_FIELDS)}"
                )
    data: dict[str, Any] = msgspec.to_builtins(base, enc_hook=_enc_hook) if base is not None else {}
    for key, value in raw.items():
        if value is None:
            data.pop(key, None)  # null: back to the default
        else:
            data[key] = value
    try:
        policy = msgspec.convert(data, Policy, dec_hook=dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        err = locate(exc, "policy", root=Policy)
        raise ToolError(str(err)) from None
    given = {k for k, v in raw.items() if v is not None}
    retry_given = retry if isinstance(retry, Mapping) else {}
    least = _least_backoff(limits, min_interval_ns)
    _check_bounds(policy, given, retry_given, limits, now, least)
    policy = _agent_defaults(policy, given, retry_given, limits, least)
    try:
        validate_policy(Job(policy=policy))
    except JobValidationError as exc:
        raise ToolError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
    return None if policy == Policy() else policy


def _least_backoff(limits: PolicyLimits, min_interval_ns: int) -> tuple[int, str]:
    """The shortest retry backoff an agent may have (ns) and how to name it in a refusal."""
    floor = limits.ns("min_retry_backoff")
    if min_interval_ns > floor:
        return min_interval_ns, f"{_dur(min_interval_ns)}, the minimum interval between runs"
    return floor, limits.min_retry_backoff


def _check_bounds(
    policy: Policy,
    given: set[str],
    retry: Mapping[str, Any],
    limits: PolicyLimits,
    now: datetime,
    least: tuple[int, str],
) -> None:
    for name, key in (
        ("catch_up_window", "max_catch_up_window"),
        ("jitter", "max_jitter"),
        ("timeout", "max_timeout"),
    ):
        value: Duration | None = getattr(policy, name)
        if name in given and value is not None and value.ns > limits.ns(key):
            raise _refuse(
                name, f"{_dur(value.ns)} is longer than agents may set ({getattr(limits, key)})"
            )
    if "concurrency" in given and policy.concurrency > limits.max_concurrency:
        raise _refuse("concurrency", f"at most {limits.max_concurrency}, got {policy.concurrency}")
    if "buffer_limit" in given and policy.buffer_limit > limits.max_buffer:
        raise _refuse("buffer_limit", f"at most {limits.max_buffer}, got {policy.buffer_limit}")
    horizon = now + timedelta(microseconds=limits.ns("horizon") // 1000)
    for name in ("start_at", "end_at"):
        when: datetime | None = getattr(policy, name)
        if name in given and when is not None and when > horizon:
            raise _refuse(
                name,
                f"more than {limits.horizon} from now; agents may schedule until "
                f"{horizon.replace(microsecond=0).isoformat()}",
            )
    if "end_at" in given and policy.end_at is not None and policy.end_at <= now:
        raise _refuse("end_at", "must be in the future")
    if "retry" in given and policy.retry is not None:
        if policy.retry.attempts > limits.max_retries:
            raise _refuse(
                "retry.attempts", f"at most {limits.max_retries}, got {policy.retry.attempts}"
            )
        if "backoff" in retry and policy.retry.backoff.ns < least[0]:
            raise _refuse(
                "retry.backoff",
                f"{_dur(policy.retry.backoff.ns)} is shorter than agents may set ({least[1]})",
            )


def _agent_defaults(
    policy: Policy,
    given: set[str],
    retry: Mapping[str, Any],
    limits: PolicyLimits,
    least: tuple[int, str],
) -> Policy:
    """The core's defaults lowered to the agent bounds where the agent did not choose."""
    changes: dict[str, Any] = {}
    default = Policy()
    if (
        policy.overlap == Overlap.ALLOW_ALL
        and policy.concurrency == default.concurrency > limits.max_concurrency
        and "concurrency" not in given
    ):
        changes["concurrency"] = limits.max_concurrency
    if (
        (policy.overlap == Overlap.BUFFER_ALL or policy.catch_up == CatchUp.ALL)
        and policy.buffer_limit == default.buffer_limit > limits.max_buffer
        and "buffer_limit" not in given
    ):
        changes["buffer_limit"] = limits.max_buffer
    if policy.retry is not None:
        backoff = policy.retry.backoff
        if "backoff" not in retry and backoff.ns < least[0]:
            backoff = Duration(least[0])
        max_backoff = policy.retry.max_backoff
        if "max_backoff" not in retry and max_backoff.ns < backoff.ns:
            max_backoff = backoff  # the default cap (10m) lifted to a longer floor
        if (backoff, max_backoff) != (policy.retry.backoff, policy.retry.max_backoff):
            changes["retry"] = msgspec.structs.replace(
                policy.retry, backoff=backoff, max_backoff=max_backoff
            )
    return msgspec.structs.replace(policy, **changes) if changes else policy
