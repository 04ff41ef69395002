"""Run history and per-job policies: the records a store keeps for every fire, and the
optional policy fields of a job (overlap, catch-up, jitter, bounds, timeout, retries).

Everything here is optional on a job and omitted from its JSON at the defaults, so the Go
original's JSON stays valid and a job without a policy behaves as before.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from ._duration import Duration

__all__ = [
    "OUTPUT_EXCERPT_BYTES",
    "CatchUp",
    "Overlap",
    "PauseNote",
    "PendingFire",
    "Policy",
    "RetryPolicy",
    "RunCounts",
    "RunOutcome",
    "RunRecord",
    "RunTrigger",
    "RunWrites",
    "deterministic_jitter",
    "fire_run_id",
    "manual_run_id",
]

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

#: The most bytes of a run's output kept in its history record (the excerpt is cut on a
#: character boundary and marked with a trailing "…").
OUTPUT_EXCERPT_BYTES = 2048
#: The most characters of an error kept in a record.
ERROR_EXCERPT_CHARS = 2048


class _Base(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    pass


class _Value(
    msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True, frozen=True
):
    """A value: shared between job copies, never mutated."""


class Overlap(enum.StrEnum):
    """What a fire does while an earlier run of the same job is still going."""

    SKIP = "skip"  # record the fire as skipped (the original's behaviour)
    BUFFER_ONE = "buffer_one"  # keep at most one fire to run after the current one
    BUFFER_ALL = "buffer_all"  # keep every fire (up to Policy.buffer_limit), run them in order
    ALLOW_ALL = "allow_all"  # start it alongside (up to Policy.concurrency runs at once)
    CANCEL_OTHER = "cancel_other"  # cancel the running one(s), then start


class CatchUp(enum.StrEnum):
    """What runs for the fires that came due while the scheduler was not firing (downtime),
    among those younger than the catch-up window."""

    LATEST = "latest"  # one run for the latest of them; the others are recorded skipped
    ALL = "all"  # each of them, in order, up to Policy.buffer_limit


class RetryPolicy(_Value, frozen=True):
    """Retries of a failed run: attempt ``n+1`` starts ``backoff * 2**(n-1)`` (at most
    ``max_backoff``) after attempt ``n`` failed, plus a deterministic jitter of up to
    ``jitter`` of that delay."""

    #: Retries after the first attempt (0: none).
    attempts: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    backoff: Duration = msgspec.field(default_factory=lambda: Duration(10_000_000_000))
    max_backoff: Duration = msgspec.field(default_factory=lambda: Duration(600_000_000_000))
    #: Fraction of each delay added as jitter (0 to 1), deterministic per (job, fire, attempt).
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1


class Policy(_Value, frozen=True):
    """A job's schedule policies; every field is optional."""

    overlap: Overlap = Overlap.SKIP
    #: Most runs in flight at once under ``allow_all``.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    #: Most fires kept waiting under ``buffer_all`` and catch-up ``all``.
    buffer_limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    #: Fires older than this when claimed are recorded missed (default: the scheduler's
    #: ``misfire_grace``; neither set: no limit).
    catch_up_window: Duration | None = None
    catch_up: CatchUp = CatchUp.LATEST
    #: Most delay added to each fire, deterministic per (job, fire time), never past the
    #: next fire.
    jitter: Duration | None = None
    #: No fire before this time.
    start_at: AwareDatetime | None = None
    #: No fire after this time; the job is then finished.
    end_at: AwareDatetime | None = None
    #: The job is finished after this many scheduled runs (counted in ``counts.started``).
    max_runs: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: A run longer than this is cancelled and fails ("timed out").
    timeout: Duration | None = None
    retry: RetryPolicy | None = None


class PauseNote(_Value, frozen=True):
    """Who paused a job, when, and why."""

    at: AwareDatetime
    by: str = ""
    note: str = ""


class PendingFire(_Value, frozen=True):
    """A fire of a job that is in flight (``Job.in_flight``) or waiting for the run in flight
    to finish (``Job.buffered``: ``buffer_*`` and catch-up all)."""

    at: AwareDatetime
    trigger: str = "schedule"
    attempt: int = 1


class RunCounts(_Base):
    """Totals of a job's history; they survive the pruning of the records."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    missed: int = 0
    cancelled: int = 0
    interrupted: int = 0
    retried: int = 0

    def is_zero(self) -> bool:
        return not any(msgspec.structs.astuple(self))


class RunTrigger(enum.StrEnum):
    """Why a run (or record) exists."""

    SCHEDULE = "schedule"  # a fire at its time
    CATCH_UP = "catch_up"  # a fire that came due while the scheduler was not firing
    BACKFILL = "backfill"  # a past fire run on request
    MANUAL = "manual"  # trigger_job / "run now"
    RETRY = "retry"  # attempt 2+ of a failed run


class RunOutcome(enum.StrEnum):
    """Where a run stands. ``running`` is the only state that changes afterwards."""

    RUNNING = "running"  # started, or waiting for its retry (started_at unset)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: overlap policy, or coalesced by catch-up "latest"
    MISSED = "missed"  # not run: older than the catch-up window when claimed
    CANCELLED = "cancelled"  # stopped by cancel_other, a timeout's sibling, or shutdown
    INTERRUPTED = "interrupted"  # the process died during the run (found at restart)

    @property
    def finished(self) -> bool:
        return self is not RunOutcome.RUNNING


class RunRecord(_Base, kw_only=True, gc=False):
    """One entry of a job's run history.

    ``run_id`` is the record's key. For every trigger but ``manual`` it is derived from
    (job, fire time, attempt) by :func:`fire_run_id`, so the store's unique key on
    ``run_id`` is exactly "one record per (job, scheduled fire time, attempt)": a second
    insert of the same fire is rejected (this is what makes backfill idempotent and a
    duplicate fire checkable). Manual runs get ``<job id>@manual:<uuid>``
    (:func:`manual_run_id`): every run id starts with ``<job id>@``.

    Not tracked by the garbage collector (``gc=False``): its fields are strings, datetimes,
    ints and enum members, so it can never be part of a reference cycle, and a burst makes
    two per fire (the scheduler's and the memory store's copy) that would otherwise drive
    full collections over everything the process holds.
    """

    run_id: str
    job_id: str
    trigger: RunTrigger
    outcome: RunOutcome
    #: The nominal fire time (for a manual run: when it was requested).
    scheduled_at: AwareDatetime
    #: When it was due: the fire time plus jitter, or the retry time.
    due_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    #: Nanoseconds from ``scheduled_at`` to the start (or to when a miss/skip was recorded).
    lateness: int | None = None
    #: 1 for the first attempt; retries count up.
    attempt: int = 1
    error: str = ""
    #: The start of the run's output as JSON text, at most OUTPUT_EXCERPT_BYTES.
    output: str = ""
    #: The scheduler (host:pid) that wrote the record.
    owner: str = ""
    #: When the record was first written (max-age retention counts from here).
    recorded_at: AwareDatetime
    #: Insertion order, assigned by the store (0 before it is stored). Newest first by
    #: ``seq`` is the history's order, and the ``before`` cursor of a history read.
    seq: int = 0


_RECORD_ENCODER = msgspec.json.Encoder()
_RECORD_DECODER = msgspec.json.Decoder(RunRecord)


def encode_record(record: RunRecord) -> bytes:
    """Compact storage encoding of a record (``seq`` is the store's own column)."""
    return _RECORD_ENCODER.encode(record)


def decode_record(data: bytes | str, seq: int = 0) -> RunRecord:
    record = _RECORD_DECODER.decode(data)
    record.seq = seq
    return record


def record_to_builtins(record: RunRecord) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out


def fire_run_id(job_id: str, scheduled_at: datetime, attempt: int = 1) -> str:
    """The run id of a non-manual run: ``<job id>@<fire time, UTC ISO>`` and ``#<attempt>``
    from the second attempt on. Equal fires give equal ids on every backend."""
    utc = scheduled_at if scheduled_at.tzinfo is UTC else scheduled_at.astimezone(UTC)
    base = f"{job_id}@{utc.isoformat()}"
    return base if attempt <= 1 else f"{base}#{attempt}"


def manual_run_id(job_id: str) -> str:
    """The run id of a manual run: ``<job id>@manual:<random uuid>`` (every run id starts
    with its job id and ``@``, so a backend may key records by (job id, run id))."""
    return f"{job_id}@manual:{uuid.uuid4()}"


def excerpt_output(output: Any) -> str:
    """The run's output as JSON text, cut to OUTPUT_EXCERPT_BYTES."""
    if output is None:
        return ""
    try:
        text = output if isinstance(output, str) else _RECORD_ENCODER.encode(output).decode()
    except (TypeError, msgspec.EncodeError):
        text = repr(output)
    return _cut(text, OUTPUT_EXCERPT_BYTES)


def excerpt_error(error: str) -> str:
    return _cut(error, ERROR_EXCERPT_CHARS)


def _cut(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def deterministic_jitter(job_id: str, at: datetime, most: timedelta, salt: str = "") -> timedelta:
    """A delay in ``[0, most)`` that depends only on (job, fire time, salt): a scheduler that
    recomputes it after a crash gets the same instant."""
    if most <= timedelta(0):
        return timedelta(0)
    key = f"{job_id}\x00{at.astimezone(UTC).isoformat()}\x00{salt}".encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    span_us = most // timedelta(microseconds=1)
    return timedelta(microseconds=value % max(1, span_us))


@dataclass
class RunWrites:
    """Run-history writes carried by one :meth:`StoreBackend.claim_due` or
    :meth:`StoreBackend.update_many` call, committed in the same transaction as the job
    writes (a crash never leaves one without the other).

    The ``mark``/``patch`` callbacks append to ``insert``/``update`` while the backend calls
    them; the backend writes the lists after applying every callback and before it commits.

    - ``insert``: new records. One whose ``run_id`` is already stored is not written; its
      ``run_id`` is added to ``rejected`` (the caller then does not start that run).
    - ``update``: records replaced whole by ``run_id`` (inserted if absent, e.g. pruned).
    - ``rejected``: filled by the backend.
    """

    insert: list[RunRecord] = field(default_factory=list)
    update: list[RunRecord] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.insert or self.update)

    def clear(self) -> None:
        self.insert.clear()
        self.update.clear()
        self.rejected.clear()
