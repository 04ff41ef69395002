"""The versioned schema and its forward migrations (taken under an advisory lock, so nodes
starting at once migrate once)."""

from __future__ import annotations

import hashlib

__all__ = ["ADVISORY_CLASS", "MIGRATIONS", "migrate_sql_lock_key"]

#: First key of the two-int advisory locks each node holds while alive ("omni").
ADVISORY_CLASS = 0x6F6D6E69

#: Applied in order inside one transaction each; ``omnicron_schema.version`` counts them.
MIGRATIONS: tuple[str, ...] = (
    # 1: jobs (the job's JSON is the record, kept as text: PostgreSQL need not parse it on
    #    every claim and finish; status and next_run_at mirror it for the due query); fires: one row per (job, scheduled fire time), the store-enforced fire
    #    identity, carrying the run's lease and fencing token (attempt); nodes: heartbeats.
    """
    CREATE TABLE omnicron_jobs (
        id text PRIMARY KEY,
        status text NOT NULL,
        next_run_at timestamptz,
        data text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX omnicron_jobs_status_due ON omnicron_jobs (status, next_run_at);
    CREATE TABLE omnicron_fires (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id text NOT NULL,
        scheduled_for timestamptz NOT NULL,
        state text NOT NULL,
        attempt integer NOT NULL DEFAULT 1,
        lease_owner text,
        lease_until timestamptz,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        error text NOT NULL DEFAULT '',
        CONSTRAINT omnicron_fires_fire UNIQUE (job_id, scheduled_for)
    );
    CREATE INDEX omnicron_fires_running ON omnicron_fires (lease_until) WHERE state = 'running';
    CREATE INDEX omnicron_fires_finished ON omnicron_fires (finished_at)
        WHERE finished_at IS NOT NULL;
    CREATE TABLE omnicron_nodes (
        node_id text PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        info jsonb NOT NULL DEFAULT '{}'
    );
    """,
    # 2: run history (issue 10): one row per run record, keyed by (job id, run id); the
    #    record's JSON is the row, with the columns its queries filter on.
    """
    CREATE TABLE omnicron_runs (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id text NOT NULL,
        job_id text NOT NULL,
        outcome text NOT NULL,
        owner text NOT NULL DEFAULT '',
        scheduled_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL,
        data text NOT NULL,
        CONSTRAINT omnicron_runs_key UNIQUE (job_id, run_id)
    );
    CREATE INDEX omnicron_runs_job ON omnicron_runs (job_id, seq);
    CREATE INDEX omnicron_runs_running ON omnicron_runs (seq) WHERE outcome = 'running';
    CREATE INDEX omnicron_runs_age ON omnicron_runs (recorded_at);
    """,
)


def migrate_sql_lock_key(schema: str) -> int:
    """The transaction advisory lock key that serialises migrations of ``schema``."""
    digest = hashlib.blake2b(f"omnicron-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
