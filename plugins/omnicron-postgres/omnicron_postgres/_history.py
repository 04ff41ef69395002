"""Run history in PostgreSQL (issue 10's interface): ``omnicron_runs``, one row per run record,
keyed by (job id, run id); written in the same transaction as the job state."""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import TupleRow

from omnicron_core.plugin import RunOutcome, RunRecord, RunWrites

_COLS = "(run_id, job_id, outcome, owner, scheduled_at, recorded_at, data)"
_UNNEST = (
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::timestamptz[], %b::timestamptz[], %b::text[])"
)
INSERT_RUNS = (
    f"INSERT INTO omnicron_runs {_COLS} {_UNNEST} "
    "ON CONFLICT ON CONSTRAINT omnicron_runs_key DO NOTHING RETURNING run_id"
)
UPSERT_RUNS = (
    f"INSERT INTO omnicron_runs {_COLS} {_UNNEST} "
    "ON CONFLICT ON CONSTRAINT omnicron_runs_key DO UPDATE SET outcome = EXCLUDED.outcome, "
    "owner = EXCLUDED.owner, data = EXCLUDED.data"
)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(RunRecord)


def encode(record: RunRecord) -> str:
    if record.seq:
        record = msgspec.structs.replace(record, seq=0)
    return _ENCODER.encode(record).decode()


def decode(seq: int, data: str) -> RunRecord:
    return msgspec.structs.replace(_DECODER.decode(data), seq=seq)


def columns(records: Sequence[RunRecord]) -> tuple[list[Any], ...]:
    return (
        [r.run_id for r in records],
        [r.job_id for r in records],
        [str(r.outcome) for r in records],
        [r.owner for r in records],
        [r.scheduled_at for r in records],
        [r.recorded_at for r in records],
        [encode(r) for r in records],
    )


async def write_runs(conn: psycopg.AsyncConnection[TupleRow], runs: RunWrites | None) -> None:
    if runs is None:
        return
    if runs.insert:
        cur = await conn.execute(INSERT_RUNS, columns(runs.insert))
        written = Counter(r[0] for r in await cur.fetchall())
        # a run id inserted more often than it was written (already stored, or twice in
        # this batch) was rejected
        wanted = Counter(r.run_id for r in runs.insert)
        runs.rejected.update(run_id for run_id, n in wanted.items() if written[run_id] < n)
    if runs.update:
        # one row per key and statement (ON CONFLICT DO UPDATE): the last version wins
        last = {(r.job_id, r.run_id): r for r in runs.update}
        await conn.execute(UPSERT_RUNS, columns(builtins.list(last.values())))


def history_query(
    job_id: str, limit: int, before: int | None, outcome: RunOutcome | None
) -> tuple[str, list[Any]]:
    query = "SELECT seq, data FROM omnicron_runs WHERE job_id = %s"
    args: list[Any] = [job_id]
    if before is not None:
        query += " AND seq < %s"
        args.append(before)
    if outcome is not None:
        query += " AND outcome = %s"
        args.append(str(outcome))
    query += " ORDER BY seq DESC LIMIT %s"
    args.append(limit)
    return query, args


PRUNE = (
    "DELETE FROM omnicron_runs WHERE seq IN ("
    " SELECT seq FROM ("
    "  SELECT seq FROM ("
    "   SELECT seq, outcome, row_number() OVER (PARTITION BY job_id ORDER BY seq DESC) AS rn"
    "   FROM omnicron_runs WHERE job_id = ANY(%s)) ranked"
    "  WHERE %s::int IS NOT NULL AND rn > %s::int AND outcome <> 'running'"
    "  UNION"
    "  SELECT seq FROM omnicron_runs"
    "  WHERE %s::timestamptz IS NOT NULL AND recorded_at < %s::timestamptz"
    "  AND outcome <> 'running'"
    " ) victims LIMIT %s)"
)


def prune_args(
    job_ids: Sequence[str], keep_last: int | None, older_than: datetime | None, limit: int
) -> list[Any]:
    return [builtins.list(job_ids), keep_last, keep_last, older_than, older_than, limit]


# Runs a node was taken back from: their records say so too (the reaper's transaction).
INTERRUPT_RECORDS = (
    "UPDATE omnicron_runs r SET outcome = 'interrupted', "
    "data = jsonb_set(jsonb_set(r.data::jsonb, '{outcome}', '\"interrupted\"'), "
    "'{error}', to_jsonb(u.error))::text "
    "FROM unnest(%b::text[], %b::timestamptz[], %b::text[]) AS u(job_id, scheduled_at, error) "
    "WHERE r.job_id = u.job_id AND r.scheduled_at = u.scheduled_at AND r.outcome = 'running'"
)

RUNNING = (
    "SELECT r.seq, r.data FROM omnicron_runs r WHERE r.outcome = 'running' AND ("
    " r.owner = %s OR NOT EXISTS (SELECT 1 FROM omnicron_fires f WHERE f.job_id = r.job_id"
    " AND f.scheduled_for = r.scheduled_at AND f.state = 'running'))"
    " ORDER BY r.seq LIMIT %s"
)
