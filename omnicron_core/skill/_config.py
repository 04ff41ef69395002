"""``SkillConfig``: what the agent tools may schedule, and for whom."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .._duration import parse_go_duration
from .._errors import ConfigError

__all__ = ["SkillConfig", "load_skill_config"]


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
    #: How many ``next_fire_times`` a job description carries.
    preview_count: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    #: The most fire times ``cron_next`` returns.
    max_preview_count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20

    def __post_init__(self) -> None:
        try:
            ns = parse_go_duration(self.min_interval, allow_days=True)
        except ValueError as exc:
            raise ValueError(f"min_interval: {exc}") from None
        if ns < 0:
            raise ValueError("min_interval must not be negative")

    @property
    def min_interval_ns(self) -> int:
        return parse_go_duration(self.min_interval, allow_days=True)


def load_skill_config(data: Any) -> SkillConfig:
    """Convert a mapping (TOML table, JSON object) to :class:`SkillConfig`.

    Raises :class:`~omnicron_core.ConfigError` naming the key (``skill.min_interval``).
    """
    if data is None:
        return SkillConfig()
    try:
        return msgspec.convert(data, SkillConfig, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = ""
        if " - at `$." in text:
            text, _, rest = text.partition(" - at `$.")
            path = rest.rstrip("`")
        return _raise(text, path)


def _raise(message: str, path: str) -> SkillConfig:
    if message.startswith("Object contains unknown field"):
        key = message.split("`")[1]
        allowed = ", ".join(SkillConfig.__struct_fields__)
        raise ConfigError(f"unknown setting {key!r}; allowed settings: {allowed}", field="skill")
    if not path and ": " in message and message.split(": ", 1)[0] in SkillConfig.__struct_fields__:
        path, message = message.split(": ", 1)
    raise ConfigError(message, field=f"skill.{path}" if path else "skill")
