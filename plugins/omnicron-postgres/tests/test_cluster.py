"""Three real ``omnicron run`` nodes on one PostgreSQL database, one of them killed with
``kill -9`` midway and restarted later: every fire runs once, none is lost except those the
killed node had in flight, and the survivors take over without waiting for the lease."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime, timedelta

from omnicron_postgres.testing import Cluster, Receiver

JOBS_1S = 100  # cron every second
JOBS_2S = 100  # cron every two seconds
SLOW_JOBS = 12  # webhooks every 5 s to a receiver that answers after 4 s: always in flight
LEASE = 30.0


def fire_times(start: datetime, end: datetime, period: int) -> list[datetime]:
    """Whole-second fire times t with start <= t <= end and t.second % period == 0."""
    t = start.replace(microsecond=0) + timedelta(seconds=1)
    out = []
    while t <= end:
        if t.second % period == 0:
            out.append(t)
        t += timedelta(seconds=1)
    return out


def test_three_nodes_kill_one_restart_it_every_fire_once(
    cluster: Cluster, slow_receiver: Receiver
) -> None:
    cluster.options = {"lease": LEASE, "heartbeat": 1}
    cluster.extra_config = """
[plugins.webhook]
allow_networks = ["127.0.0.0/8"]
max_attempts = 1
timeout = 20
"""
    jobs = [
        {
            "id": f"c{i:03}",
            "name": f"c{i:03}",
            "schedule": {"cron": "* * * * * *" if i < JOBS_1S else "*/2 * * * * *"},
            "action": {"type": "send_message", "session_id": "s", "message": "m"},
        }
        for i in range(JOBS_1S + JOBS_2S)
    ] + [
        {
            "id": f"slow{i:02}",
            "name": f"slow{i:02}",
            "schedule": {"cron": "*/5 * * * * *"},
            "action": {"type": "call_webhook", "webhook_url": slow_receiver.url},
        }
        for i in range(SLOW_JOBS)
    ]
    cluster.import_jobs(jobs)
    for node in range(3):
        cluster.start(node)
    cluster.wait_for(
        lambda: (
            {f for _, _, f in cluster.runs()}
            >= {"sink-0-1.jsonl", "sink-1-2.jsonl", "sink-2-3.jsonl"}
        ),
        60,
        "all three nodes firing",
    )
    t_begin = cluster.db_now()
    time.sleep(15)
    # kill the node that has slow webhooks in flight (one node claims the 12 due together)
    cluster.wait_for(
        lambda: bool(
            cluster.sql(
                "SELECT 1 FROM omnicron_fires WHERE state = 'running' AND job_id LIKE 'slow%' "
                "AND started_at < now() - interval '1 second'"
            )
        ),
        30,
        "slow webhooks in flight",
    )
    owner = cluster.sql(
        "SELECT lease_owner FROM omnicron_fires WHERE state = 'running' AND job_id LIKE 'slow%'"
    )[0][0]
    victim = int(owner.removeprefix("node"))
    t_kill = cluster.db_now()
    cluster.signal(victim, signal.SIGKILL)
    cluster.procs[victim].wait()
    time.sleep(18)
    cluster.start(victim)  # the same node id comes back
    time.sleep(15)
    t_end = cluster.db_now()
    codes = cluster.stop_all()
    assert codes == {0: 0, 1: 0, 2: 0}

    runs = cluster.runs()
    count = Counter((job_id, fire) for job_id, fire, _ in runs)
    duplicates = {key: n for key, n in count.items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} fires ran more than once"
    hooks = Counter(slow_receiver.keys)
    assert len(hooks) > 0 and max(hooks.values()) == 1, "a webhook fire was delivered twice"

    # the runs the killed node had in flight were taken back by a survivor
    interrupted = cluster.sql(
        "SELECT job_id, scheduled_for, finished_at FROM omnicron_fires WHERE state = 'interrupted'"
    )
    in_flight = {row[0] for row in interrupted}
    assert any(job_id.startswith("slow") for job_id in in_flight), interrupted
    for _, _, finished_at in interrupted:
        # known dead (its session and heartbeat are gone): well before the 30 s lease ends
        assert finished_at - t_kill < timedelta(seconds=LEASE / 2)
    reaped_by = max((row[2] for row in interrupted), default=t_kill)

    seen = {(job_id, datetime.fromisoformat(fire)) for job_id, fire, _ in runs}
    lost = []
    for job in jobs:
        if job["id"].startswith("slow"):
            continue
        period = (
            1
            if job["schedule"]["cron"].startswith("*") and "/" not in job["schedule"]["cron"]
            else 2
        )
        for t in fire_times(t_begin, t_end - timedelta(seconds=2), period):
            if job["id"] in in_flight and t_kill - timedelta(
                seconds=2
            ) <= t <= reaped_by + timedelta(seconds=2):
                continue  # the killed node had this job in flight: its lease returns it
            if (job["id"], t) not in seen:
                lost.append((job["id"], t.isoformat()))
    assert lost == [], f"{len(lost)} fires lost, e.g. {lost[:5]}"

    # the dead node's share went to the survivors at once, and the restarted node worked again
    sinks = Counter(f for _, _, f in runs)
    assert sinks[f"sink-{victim}-4.jsonl"] > 0
    assert len(seen) >= 40 * (JOBS_1S + JOBS_2S // 2)
