"""``SkillConfig``: what the agent tools may schedule, and for whom."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .._duration import parse_go_duration
from .._errors import SettingError
from .._limits import JobLimits
from .._locate import locate

__all__ = ["AGENT_POLICY_FIELDS", "PolicyLimits", "SkillConfig", "load_skill_config"]

#: The policy fields (``Job.policy``) the ``policy`` argument of ``cron_create`` and
#: ``cron_update`` can carry.
AGENT_POLICY_FIELDS = (
    "overlap",
    "concurrency",
    "buffer_limit",
    "catch_up",
    "catch_up_window",
    "jitter",
    "start_at",
    "end_at",
    "max_runs",
    "timeout",
    "retry",
)


def _duration_setting(text: str, key: str) -> int:
    try:
        ns = parse_go_duration(text, allow_days=True)
    except ValueError as exc:
        raise SettingError(str(exc), key) from None
    if ns < 0:
        raise SettingError("must not be negative", key)
    return ns


class PolicyLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What agents may set of a job's schedule policy (``[skill.policy]``).

    A value past a bound is refused with the field named (``policy.retry.attempts: at most
    3``) and nothing is saved. Under ``allow_all`` / ``buffer_all`` / catch-up ``all`` an agent
    job's ``concurrency`` / ``buffer_limit`` default to the bound when it is lower than the
    core's default.
    """

    #: Policy fields agents may set; ``[]`` takes the ``policy`` argument away.
    fields: tuple[str, ...] = AGENT_POLICY_FIELDS
    #: Longest ``catch_up_window`` (Go duration, ``d`` allowed).
    max_catch_up_window: str = "1d"
    #: Longest ``jitter``.
    max_jitter: str = "1h"
    #: Longest ``timeout``.
    max_timeout: str = "6h"
    #: Most ``retry.attempts``.
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    #: Shortest ``retry.backoff``.
    min_retry_backoff: str = "10s"
    #: Most ``concurrency`` (runs at once under ``allow_all``).
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    #: Most ``buffer_limit`` (fires kept waiting under ``buffer_all`` / catch-up ``all``).
    max_buffer: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    #: ``start_at`` and ``end_at`` at most this far from now.
    horizon: str = "366d"

    def __post_init__(self) -> None:
        for name in self.fields:
            if name not in AGENT_POLICY_FIELDS:
                raise SettingError(
                    f"unknown policy field {name!r}; known: {', '.join(AGENT_POLICY_FIELDS)}",
                    "fields",
                )
        for key in (
            "max_catch_up_window",
            "max_jitter",
            "max_timeout",
            "min_retry_backoff",
            "horizon",
        ):
            _duration_setting(getattr(self, key), key)

    def ns(self, key: str) -> int:
        """A duration setting in nanoseconds."""
        return parse_go_duration(getattr(self, key), allow_days=True)


class SkillConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Limits on what a model may do through the ``cron_*`` tools (its jobs are untrusted input).

    Convert untrusted data with :func:`load_skill_config` (or ``msgspec.convert``), so every value
    is checked. Limits apply to every caller of the tools; ``operators`` (and ``principal=None``,
    trusted host code) only gain the right to see and manage every owner's jobs.
    """

    #: Principals that see and manage every owner's jobs (e.g. ``"user:admin"``).
    operators: tuple[str, ...] = ()
    #: Action types the tools may schedule; ``None`` = every installed one. The
    #: ``action_type`` enum of ``cron_create`` is the installed types in this list.
    allowed_action_types: tuple[str, ...] | None = None
    #: Allowed values of action parameters, by parameter name: ``{"tool_name": ["now"]}``
    #: lets agents schedule only the ``now`` tool (the schema offers them as an enum).
    allowed_values: dict[str, tuple[str, ...]] = msgspec.field(default_factory=dict)
    #: Parameters an executor withholds from agents (``webhook_headers``, ``webhook_body``)
    #: that the tools offer anyway.
    allow_params: tuple[str, ...] = ()
    #: A principal ``session:<id>`` may only target session ``<id>`` (in the parameter an
    #: executor names as its ``agent_session_param``, e.g. send_message's ``session_id``).
    own_session_only: bool = False
    #: Shortest time between two runs of one job (Go duration, ``d`` allowed); ``"0"`` = none.
    min_interval: str = "1m"
    #: Jobs one owner may have at once; ``0`` = no limit.
    max_jobs_per_owner: Annotated[int, msgspec.Meta(ge=0)] = 100
    max_name_length: Annotated[int, msgspec.Meta(ge=1)] = 200
    max_description_length: Annotated[int, msgspec.Meta(ge=0)] = 1000
    #: Longest string an action parameter may hold (``maxLength`` in the schemas).
    max_param_length: Annotated[int, msgspec.Meta(ge=1)] = 4000
    #: Characters of ``schedule_cron`` (checked before the expression is parsed).
    max_cron_length: Annotated[int, msgspec.Meta(ge=9, le=4096)] = 256
    #: Size of a job's action as JSON (parameters, headers and body together).
    max_action_bytes: Annotated[int, msgspec.Meta(ge=64)] = 64 * 1024
    #: Characters of any one string (or key) in the action, e.g. a header value or the body.
    max_action_string_length: Annotated[int, msgspec.Meta(ge=1)] = 16 * 1024
    #: Nesting depth of objects and arrays in the action's parameters.
    max_action_depth: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    #: Size of a tool call's arguments as JSON text, refused before they are decoded.
    max_arguments_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1024 * 1024
    #: How many ``next_fire_times`` a job description carries.
    preview_count: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    #: The most fire times ``cron_next`` returns.
    max_preview_count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    #: What agents may set of a job's schedule policy (``[skill.policy]``).
    policy: PolicyLimits = msgspec.field(default_factory=PolicyLimits)

    def __post_init__(self) -> None:
        try:
            ns = parse_go_duration(self.min_interval, allow_days=True)
        except ValueError as exc:
            raise SettingError(str(exc), "min_interval") from None
        if ns < 0:
            raise SettingError("must not be negative", "min_interval")

    @property
    def min_interval_ns(self) -> int:
        return parse_go_duration(self.min_interval, allow_days=True)

    @property
    def job_limits(self) -> JobLimits:
        """The size limits a job made through the tools must meet (the core's own also apply)."""
        return JobLimits(
            max_name_length=self.max_name_length,
            max_description_length=self.max_description_length,
            max_cron_length=self.max_cron_length,
            max_action_bytes=self.max_action_bytes,
            max_action_string_length=self.max_action_string_length,
            max_depth=self.max_action_depth,
        )


def load_skill_config(data: Any) -> SkillConfig:
    """Convert a mapping (TOML table, JSON object) to :class:`SkillConfig`.

    Raises :class:`~omnicron_core.ConfigError` naming the key (``skill.min_interval``).
    """
    if data is None:
        return SkillConfig()
    try:
        return msgspec.convert(data, SkillConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise locate(exc, "skill", root=SkillConfig) from None
