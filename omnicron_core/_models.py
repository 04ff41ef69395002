"""The Job model, JSON-compatible with the Go original field for field."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from ._duration import Duration, format_go_duration, parse_go_duration
from ._errors import JobValidationError

__all__ = [
    "Action",
    "ActionType",
    "ExecutionResult",
    "Job",
    "JobStatus",
    "Schedule",
    "decode_job",
    "decode_jobs",
    "encode_job",
    "encode_jobs",
    "job_from_builtins",
    "job_to_builtins",
    "new_job",
    "utcnow",
]

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(enum.StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    RUNNING = "running"


class ActionType(enum.StrEnum):
    """The action types of the original. Plugins may add others: ``Action.type`` is a plain str."""

    SEND_MESSAGE = "send_message"
    CALL_WEBHOOK = "call_webhook"
    CALL_TOOL = "call_tool"


class _Base(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    pass


class Schedule(_Base):
    """When a job runs: exactly one of ``cron``, ``once`` or ``interval``.

    ``timezone`` (an IANA name) is omnicron's extension: it overrides the scheduler's location
    for this job's cron expression.
    """

    cron: str = ""
    once: AwareDatetime | None = None
    interval: Duration | None = None
    timezone: str = ""

    def __post_init__(self) -> None:
        interval: Any = self.interval
        if interval is not None and not isinstance(interval, Duration):
            # the Python API takes what a Duration takes: "2s", a timedelta, integer ns
            try:
                self.interval = Duration(interval)
            except ValueError as exc:
                raise JobValidationError(str(exc), field="schedule.interval") from None
            except TypeError:
                raise JobValidationError(
                    f"interval cannot be a {type(interval).__name__}; expected a Go duration "
                    "string such as '90s' or '1h30m', a timedelta or integer nanoseconds",
                    field="schedule.interval",
                ) from None
        if self.interval is not None and self.interval.ns == 0:
            self.interval = None

    def kinds(self) -> list[str]:
        """The schedule kinds that are set, in the original's order."""
        out = []
        if self.cron:
            out.append("cron")
        if self.once is not None:
            out.append("once")
        if self.interval is not None and self.interval.ns > 0:
            out.append("interval")
        return out


class Action(_Base):
    """What a job does. The executor plugin for ``type`` owns the meaning of the other fields."""

    type: str
    session_id: str = ""
    message: str = ""
    webhook_url: str = ""
    webhook_method: str = ""
    webhook_headers: dict[str, str] | None = None
    webhook_body: str = ""
    tool_name: str = ""
    tool_params: dict[str, Any] | None = None


class Job(_Base):
    """A scheduled job and its run state."""

    id: str = ""
    name: str = ""
    description: str = ""
    schedule: Schedule = msgspec.field(default_factory=Schedule)
    action: Action = msgspec.field(default_factory=lambda: Action(type=""))
    owner_principal: str = ""
    #: ``"agent"`` when the job was created or changed through the agent tools (the skill or
    #: the MCP server); ``""`` for operators' jobs (API, config, CLI). ``${env:}`` secrets
    #: resolve only in operators' jobs, and an update never clears the mark. Any other value
    #: is refused when a job is added; a stored one still decodes (and counts as an agent's).
    origin: str = ""
    status: JobStatus = JobStatus.ENABLED
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    last_run_at: AwareDatetime | None = None
    next_run_at: AwareDatetime | None = None
    run_count: int = 0
    last_error: str = ""
    metadata: dict[str, Any] | None = None

    def is_recurring(self) -> bool:
        """True for cron and interval jobs (they run more than once)."""
        return bool(self.schedule.cron) or (
            self.schedule.interval is not None and self.schedule.interval.ns > 0
        )

    def copy(self) -> Job:
        """A deep copy: nothing in it is shared with this job (datetimes and Durations are
        immutable and may be shared)."""
        action = self.action
        return msgspec.structs.replace(
            self,
            schedule=msgspec.structs.replace(self.schedule),
            action=msgspec.structs.replace(
                action,
                webhook_headers=None
                if action.webhook_headers is None
                else dict(action.webhook_headers),
                tool_params=_copy_json(action.tool_params),
            ),
            metadata=_copy_json(self.metadata),
        )

    def to_json(self) -> bytes:
        return encode_job(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Job:
        return decode_job(data)


class ExecutionResult(_Base):
    """The outcome of one run. ``duration`` is integer nanoseconds, as Go's JSON has it.

    ``scheduled_at`` and ``lateness`` (nanoseconds between the fire time and the start) are
    omnicron's extensions, set for scheduled runs and omitted for manual triggers.
    """

    success: bool
    output: Any = None
    error: str = ""
    duration: int = 0
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    scheduled_at: AwareDatetime | None = None
    lateness: int | None = None

    @property
    def duration_str(self) -> str:
        """The duration as Go prints it (``"1.2ms"``)."""
        return format_go_duration(self.duration)

    def to_builtins(self) -> dict[str, Any]:
        out = msgspec.to_builtins(self, enc_hook=_enc_hook)
        out.setdefault("duration", self.duration)
        return out  # type: ignore[no-any-return]

    @classmethod
    def ok(cls, output: Any = None) -> ExecutionResult:
        return cls(success=True, output=output)

    @classmethod
    def failed(cls, error: str, output: Any = None) -> ExecutionResult:
        return cls(success=False, error=error, output=output)


def _copy_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None if value is None else {}
    copied: dict[str, Any] = _PLAIN_DECODER.decode(_ENCODER.encode(value))
    return copied


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Duration):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def dec_hook(tp: type, obj: Any) -> Any:
    """msgspec ``dec_hook`` for omnicron's own types (``Duration``): pass it to
    ``msgspec.convert``/decoders that build Schedules or Jobs from outside data."""
    if tp is Duration:
        if isinstance(obj, bool):
            raise ValueError("expected a Go duration string or integer nanoseconds")
        if isinstance(obj, int):
            return Duration(obj)
        if isinstance(obj, str):
            return Duration(parse_go_duration(obj)) if obj else Duration(0)
        raise ValueError("expected a Go duration string (e.g. '1h30m') or integer nanoseconds")
    raise NotImplementedError(f"cannot decode {tp!r}")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_JOB_DECODER = msgspec.json.Decoder(Job, dec_hook=dec_hook)
_PLAIN_DECODER = msgspec.json.Decoder()
_JOBS_DECODER = msgspec.json.Decoder(list[Job], dec_hook=dec_hook)

# Fields the Go original writes even when empty, in its key order.
_ALWAYS = ("id", "name", "schedule", "action", "status", "created_at", "updated_at", "run_count")
_ORDER = (
    "id",
    "name",
    "description",
    "schedule",
    "action",
    "owner_principal",
    "origin",
    "status",
    "created_at",
    "updated_at",
    "last_run_at",
    "next_run_at",
    "run_count",
    "last_error",
    "metadata",
)
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def job_to_builtins(job: Job) -> dict[str, Any]:
    """The job as JSON-ready builtins in the Go original's shape (always-present keys kept)."""
    raw: dict[str, Any] = msgspec.to_builtins(job, enc_hook=_enc_hook)
    out: dict[str, Any] = {}
    for key in _ORDER:
        if key in raw:
            out[key] = raw[key]
        elif key in _ALWAYS:
            if key in ("created_at", "updated_at"):
                out[key] = _GO_ZERO_TIME
            elif key == "run_count":
                out[key] = 0
            elif key == "status":
                out[key] = str(job.status)
            else:
                out[key] = raw.get(key, "")
    if "schedule" not in raw:
        out["schedule"] = {}
    # Go's omitempty drops empty maps as well as nil ones.
    for holder, key in (
        (out, "metadata"),
        (out.get("action", {}), "webhook_headers"),
        (out.get("action", {}), "tool_params"),
    ):
        if key in holder and not holder[key]:
            del holder[key]
    return out


def job_from_builtins(data: Any) -> Job:
    """Convert decoded JSON/TOML (dicts, lists, strings) to a Job; errors name the path."""
    return msgspec.convert(data, type=Job, dec_hook=dec_hook, strict=False)


def encode_job(job: Job) -> bytes:
    """The job's JSON, key for key as the Go original writes it."""
    return _ENCODER.encode(job_to_builtins(job))


def encode_jobs(jobs: list[Job]) -> bytes:
    return _ENCODER.encode([job_to_builtins(j) for j in jobs])


def decode_job(data: bytes | str) -> Job:
    """Decode one job from JSON (Go's or ours). Raises ``msgspec.ValidationError`` with the path."""
    return _JOB_DECODER.decode(data)


def decode_jobs(data: bytes | str) -> list[Job]:
    return _JOBS_DECODER.decode(data)


def fast_encode(job: Job) -> bytes:
    """Compact storage encoding (defaults omitted); ``decode_job`` reads it back."""
    return _ENCODER.encode(job)


def new_job(
    id: str | None,
    name: str,
    schedule: Schedule,
    action: Action,
    *,
    description: str = "",
    metadata: dict[str, Any] | None = None,
) -> Job:
    """A new enabled job stamped with the current time, as the original's ``NewJob``.

    ``id=None`` picks a random UUID.
    """
    now = utcnow()
    return Job(
        id=id if id is not None else str(uuid.uuid4()),
        name=name,
        description=description,
        schedule=schedule,
        action=action,
        status=JobStatus.ENABLED,
        created_at=now,
        updated_at=now,
        metadata=dict(metadata) if metadata else {},
    )
