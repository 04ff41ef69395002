"""Faults with real processes and a real server: a node killed mid-claim, a node stopped
(SIGSTOP) past its lease and resumed, the LISTEN session dropped, PostgreSQL restarted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from omnicron_postgres.testing import CLI, Cluster, Receiver, TempPostgres, cli_env

WEBHOOK_CONFIG = """
[plugins.webhook]
allow_networks = ["127.0.0.0/8"]
max_attempts = 1
timeout = 30
"""


def every_second(n: int, prefix: str = "j") -> list[dict[str, object]]:
    return [
        {
            "id": f"{prefix}{i:03}",
            "name": f"{prefix}{i:03}",
            "schedule": {"cron": "* * * * * *"},
            "action": {"type": "send_message", "session_id": "s", "message": "m"},
        }
        for i in range(n)
    ]


def test_a_node_killed_mid_claim_leaves_nothing_and_the_jobs_are_taken_at_once(
    cluster: Cluster,
) -> None:
    cluster.import_jobs(
        [
            {
                "id": f"o{i:02}",
                "name": "o",
                "schedule": {"once": "2030-01-01T00:00:00Z"},
                "action": {"type": "send_message", "session_id": "s", "message": "m"},
            }
            for i in range(20)
        ]
    )
    cluster.sql("UPDATE omnicron_jobs SET next_run_at = now() - interval '1 second'")
    # a process that claims and is killed while its claim transaction is open (in `mark`)
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from omnicron_core import JobStatus
        from omnicron_postgres import PostgresBackend

        def mark(job):
            print("claiming", flush=True)
            time.sleep(60)  # killed here, mid-transaction
            return job

        async def main():
            b = PostgresBackend.from_url({cluster.url!r}, {{"lease": 60}})
            await b.open()
            await b.claim_due(await b.now(), 100, mark, owner="doomed")

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claiming"
    # the rows are locked by the open transaction: a node claiming now gets nothing of them
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # rolled back: no fire recorded, every job still due, and a node takes them all at once
    # (no lease to wait for)
    assert cluster.sql("SELECT count(*) FROM omnicron_fires") == [(0,)]
    cluster.start(1, "--for", "6")
    cluster.wait_for(lambda: len(cluster.runs()) == 20, 30, "the 20 fires")
    assert cluster.procs[1].wait(30) == 0
    assert sorted(j for j, _, _ in cluster.runs()) == [f"o{i:02}" for i in range(20)]


def test_a_node_stopped_past_its_lease_has_its_late_finish_refused(
    cluster: Cluster, slow_receiver: Receiver
) -> None:
    cluster.options = {"lease": 3, "heartbeat": 0.5, "node_timeout": 60}
    cluster.extra_config = WEBHOOK_CONFIG
    cluster.import_jobs(
        [
            {
                "id": "slow",
                "name": "slow",
                "schedule": {"cron": "*/10 * * * * *"},
                "action": {"type": "call_webhook", "webhook_url": slow_receiver.url},
            }
        ]
    )
    cluster.start(0)
    cluster.start(1)
    cluster.wait_for(
        lambda: bool(cluster.sql("SELECT 1 FROM omnicron_fires WHERE state = 'running'")),
        30,
        "the slow webhook in flight",
    )
    owner = cluster.sql("SELECT lease_owner FROM omnicron_fires WHERE state = 'running'")[0][0]
    holder = int(owner.removeprefix("node"))
    cluster.signal(holder, signal.SIGSTOP)
    # past the 3 s lease: the other node takes the run back
    cluster.wait_for(
        lambda: (
            cluster.sql("SELECT state FROM omnicron_fires ORDER BY id LIMIT 1")
            == [("interrupted",)]
        ),
        30,
        "the stopped node's run taken back",
    )
    cluster.signal(holder, signal.SIGCONT)
    cluster.wait_for(
        lambda: any(e.get("event") == "postgres.finish_refused" for e in cluster.logs()),
        30,
        "the late finish refused",
    )
    codes = cluster.stop_all()
    assert codes == {0: 0, 1: 0}
    refused = [e for e in cluster.logs() if e.get("event") == "postgres.finish_refused"]
    assert refused[0]["job_ids"] == ["slow"] and refused[0]["_file"].startswith(f"node{holder}")
    assert any(e.get("event") == "postgres.lease_lost" for e in cluster.logs())
    # the first fire stays recorded as interrupted (the late success was not written)
    first = cluster.sql("SELECT state, error FROM omnicron_fires ORDER BY id LIMIT 1")[0]
    assert first == ("interrupted", f"lease expired on node {owner}")
    assert max(Counter(slow_receiver.keys).values()) == 1


def test_a_dropped_listen_session_reconnects_and_cli_writes_still_arrive(
    cluster: Cluster,
) -> None:
    cluster.start(0)
    cluster.wait_for(
        lambda: bool(
            cluster.sql(
                "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'omnicron listen%'"
            )
        ),
        30,
        "the node listening",
    )
    cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name LIKE 'omnicron listen%'"
    )
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    out = subprocess.run(
        [
            *CLI,
            *("jobs", "add", "--id", "late", "--name", "late", "--at", at),
            *("--session-id", "s", "--message", "m", "--store", cluster.url),
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    cluster.wait_for(lambda: [j for j, _, _ in cluster.runs()] == ["late"], 30, "the added job")
    cluster.wait_for(
        lambda: bool(
            cluster.sql(
                "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'omnicron listen%'"
            )
        ),
        30,
        "the listener back",
    )
    assert cluster.stop_all() == {0: 0}
    assert any(e.get("event") == "postgres.listen_lost" for e in cluster.logs())


def test_a_postgresql_restart_mid_run_is_survived_without_duplicates(tmp_path: Path) -> None:
    # a server of its own: restarting the session's would cut other tests' sessions
    with TempPostgres() as server:
        cluster = Cluster(tmp_path, server.create_database())
        cluster.options = {"heartbeat": 0.5}
        cluster.import_jobs(every_second(40))
        try:
            cluster.start(0)
            cluster.start(1)
            cluster.wait_for(lambda: len(cluster.runs()) > 80, 60, "nodes firing")
            server.restart()
            restarted = datetime.now(UTC)
            cluster.wait_for(
                lambda: any(
                    datetime.fromisoformat(fire) > restarted + timedelta(seconds=3)
                    for _, fire, _ in cluster.runs()
                ),
                60,
                "fires after the restart",
            )
            time.sleep(3)
            assert cluster.stop_all() == {0: 0, 1: 0}
        finally:
            for proc in cluster.procs.values():
                if proc.poll() is None:
                    proc.kill()
    runs = cluster.runs()
    count = Counter((job_id, fire) for job_id, fire, _ in runs)
    assert max(count.values()) == 1, "a fire ran twice"
    after = {
        fire
        for _, fire, _ in runs
        if datetime.fromisoformat(fire) > restarted + timedelta(seconds=3)
    }
    assert len(after) >= 2
    events = [e.get("event") for e in cluster.logs()]
    assert "postgres.listen_lost" in events
    json.dumps(events)  # the logs are JSON lines throughout
