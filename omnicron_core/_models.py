"""The Job model, JSON-compatible with the Go original field for field."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, overload

import msgspec

from ._duration import Duration, format_go_duration, parse_go_duration
from ._errors import JobValidationError
from ._runs import PauseNote, PendingFire, Policy, RunCounts

__all__ = [
    "Action",
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


#: Keys of an action's JSON object that are not parameters.
RESERVED_ACTION_KEYS = frozenset({"type", "params"})


class Action:
    """What a job does: a ``type`` and the ``params`` its executor declares.

    The core knows no parameter: the executor plugin for ``type`` declares them as a msgspec
    Struct (``ActionExecutor.params_type``) and checks them when the job is added. ``params``
    holds plain JSON values (str, int, float, bool, None, lists and dicts of them).

    In JSON an action is *flat*, as the Go original wrote it: the parameters sit beside
    ``type`` (``{"type": "call_webhook", "webhook_url": "..."}``). Input also accepts
    ``{"type": ..., "params": {...}}``. Keyword arguments other than ``type`` and ``params``
    are parameters too: ``Action("send_message", session_id="s1", message="hi")``.
    """

    __slots__ = ("params", "type")
    #: The attributes that hold its data (the generic walkers of ``_limits`` read them).
    __record_fields__ = ("type", "params")

    def __init__(
        self, type: str = "", params: Mapping[str, Any] | None = None, **flat: Any
    ) -> None:
        self.type = type
        self.params: dict[str, Any] = dict(params) if params else {}
        self.params.update(flat)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return self.type == other.type and self.params == other.params

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Action(type={self.type!r}, params={self.params!r})"

    def copy(self) -> Action:
        """A deep copy: the params share nothing with this action's."""
        return _action(self.type, _copy_json(self.params))

    def to_builtins(self) -> dict[str, Any]:
        """The flat JSON object: ``{"type": ..., **params}``."""
        out: dict[str, Any] = {"type": self.type}
        out.update(self.params)
        return out

    @classmethod
    def from_builtins(cls, data: Any) -> Action:
        """An action from decoded JSON/TOML: flat, or with its parameters under ``params``.

        Raises ``ValueError``/``TypeError`` naming the problem (msgspec adds the path).
        """
        if type(data) is dict and "params" not in data:
            # The stored and Go shape (flat): the fast path of every decode.
            params = dict(data)
            kind = params.pop("type", "")
            if type(kind) is str:
                return _action(kind, params)
        if isinstance(data, Action):
            return data.copy()
        if not isinstance(data, Mapping):
            raise TypeError(f"expected object, got {_json_kind(data)}")
        kind = data.get("type", "")
        if not isinstance(kind, str):
            raise TypeError(f"type: expected str, got {_json_kind(kind)}")
        for key in data:
            if not isinstance(key, str):
                raise TypeError("expected parameter names to be strings")
        params = {k: v for k, v in data.items() if k not in RESERVED_ACTION_KEYS}
        if "params" in data:
            nested = data["params"]
            if nested is not None and not isinstance(nested, Mapping):
                raise TypeError(f"params: expected object, got {_json_kind(nested)}")
            if params and nested:
                raise ValueError(
                    "give the parameters either beside `type` or under `params`, not both "
                    f"(found {', '.join(sorted(params))} beside `type`)"
                )
            params = dict(nested or {})
        return _action(kind, params)


def _action(kind: str, params: dict[str, Any]) -> Action:
    """An Action owning ``params`` as given (no copy): for callers that just made them."""
    action = Action.__new__(Action)
    action.type = kind
    action.params = params
    return action


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class Job(_Base, gc=False):
    """A scheduled job and its run state.

    Not tracked by the garbage collector (``gc=False``): a job holds JSON data (its action's
    params, its metadata) and value structs, none of which can refer back to it, so it is
    never part of a reference cycle (a host that puts a job inside its own metadata would
    make one, and that job would then be freed only with the process). Its dicts and lists
    are still tracked. Every fire makes several job objects (the claim's, the store's
    copies, the write-back's), and a burst of 1,000 runs in flight otherwise promotes them
    all towards full collections over everything the process holds.
    """

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
    # -- omnicron's extensions (issue 10); omitted at their defaults --------------------
    #: Schedule policies (overlap, catch-up, jitter, bounds, timeout, retries).
    policy: Policy | None = None
    #: Set while paused (``disable_job(note=...)``): who, when, why.
    pause: PauseNote | None = None
    #: Why the job stopped for good (``end_at`` passed, ``max_runs`` reached); it is then
    #: disabled, not deleted.
    finished: str = ""
    #: The nominal fire time of ``next_run_at`` when jitter moved ``next_run_at`` later.
    next_fire_at: AwareDatetime | None = None
    #: The fires whose runs hold the job now (one while ``status`` is ``running``; under an
    #: overlap policy other than ``skip`` the job stays ``enabled`` and holds up to
    #: ``policy.concurrency``). A crash leaves them here, so start-up recovery records them
    #: ``interrupted``.
    in_flight: list[PendingFire] | None = None
    #: Fires waiting for the run in flight (``buffer_one``/``buffer_all``, catch-up ``all``).
    buffered: list[PendingFire] | None = None
    #: Totals of the run history (they survive its pruning).
    counts: RunCounts | None = None

    @property
    def active_runs(self) -> int:
        """How many runs of this job are in flight (``len(in_flight)``)."""
        return len(self.in_flight) if self.in_flight else 0

    def is_recurring(self) -> bool:
        """True for cron and interval jobs (they run more than once)."""
        return bool(self.schedule.cron) or (
            self.schedule.interval is not None and self.schedule.interval.ns > 0
        )

    def copy(self) -> Job:
        """A deep copy: nothing in it is shared with this job (datetimes and Durations are
        immutable and may be shared)."""
        # A shallow copy (C), then the mutable parts replaced: about twice as fast as
        # ``msgspec.structs.replace`` with keywords, and it runs several times per fire.
        job: Job = _STRUCT_COPY(self)
        job.schedule = _STRUCT_COPY(self.schedule)
        action = self.action
        params = action.params
        job.action = _action(action.type, _copy_dict(params) if params else {})
        metadata = self.metadata
        if metadata is not None:
            job.metadata = _copy_dict(metadata) if metadata else {}
        if self.buffered is not None:
            job.buffered = list(self.buffered)
        if self.in_flight is not None:
            job.in_flight = list(self.in_flight)
        if self.counts is not None:
            job.counts = _STRUCT_COPY(self.counts)
        return job

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


#: msgspec's shallow struct copy (C; ``Struct.__copy__``, which its type stubs do not name)
_STRUCT_COPY: Callable[[Any], Any] = getattr(msgspec.Struct, "__copy__")  # noqa: B009


@overload
def _copy_json(value: dict[str, Any]) -> dict[str, Any]: ...
@overload
def _copy_json(value: dict[str, Any] | None) -> dict[str, Any] | None: ...
def _copy_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of JSON-like data (dicts and lists copied; other values are immutable)."""
    if not value:
        return None if value is None else {}
    return _copy_dict(value)


def _copy_dict(value: dict[str, Any]) -> dict[str, Any]:
    out = dict(value)
    for k, v in out.items():
        if type(v) not in _SCALARS:
            out[k] = _copy_value(v)
    return out


def _copy_value(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return _copy_dict(value)
    if kind is list:
        return [v if type(v) in _SCALARS else _copy_value(v) for v in value]
    if isinstance(value, dict | list):  # subclasses: through JSON, as plain dicts and lists
        return _PLAIN_DECODER.decode(_ENCODER.encode(value))
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _enc_hook(obj: Any) -> Any:
    if type(obj) is Action:  # every job has one: the first test
        return {"type": obj.type, **obj.params}
    if isinstance(obj, Duration):
        return str(obj)
    if isinstance(obj, Action):
        return obj.to_builtins()
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
    if tp is Action:
        return Action.from_builtins(obj)
    raise NotImplementedError(f"cannot decode {tp!r}")


def _json_dec_hook(tp: type, obj: Any) -> Any:
    """``dec_hook`` for JSON decoders: the object msgspec hands over is its own fresh dict,
    so the flat action (every stored job's) takes it as its params without a copy."""
    if tp is Action and type(obj) is dict and "params" not in obj:
        kind = obj.pop("type", "")
        if type(kind) is str:
            return _action(kind, obj)
        obj["type"] = kind  # not a str: the general path names the error
    return dec_hook(tp, obj)


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_JOB_DECODER = msgspec.json.Decoder(Job, dec_hook=_json_dec_hook)
_PLAIN_DECODER = msgspec.json.Decoder()
_JOBS_DECODER = msgspec.json.Decoder(list[Job], dec_hook=_json_dec_hook)

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
    "policy",
    "pause",
    "finished",
    "next_fire_at",
    "in_flight",
    "buffered",
    "counts",
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
    if "metadata" in out and not out["metadata"]:
        del out["metadata"]
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
