"""A claim whose COMMIT's answer is lost (the connection drops during COMMIT): the node looks
up its fires by key on a fresh connection and starts the runs that committed at once, instead
of leaving them `running` until their lease runs out; a claim that rolled back raises (nothing
is marked twice). A real TCP proxy in front of the real server cuts the connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from omnicron_postgres import PostgresBackend

from omnicron_core import (
    Action,
    Job,
    JobStatus,
    RunWrites,
    Schedule,
    StoreError,
    fire_run_id,
    new_job,
)


class CuttingProxy:
    """Forwards TCP to the server; when armed, passes the next COMMIT on, lets the server
    commit, and closes the connection before its answer reaches the client."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = False
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            cut = threading.Event()  # this connection's answers are dropped from now on
            for args in ((client, server, True, cut), (server, client, False, cut)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, upstream: bool, cut: threading.Event
    ) -> None:
        try:
            while data := src.recv(65536):
                if not upstream and cut.is_set():
                    continue  # the COMMIT's answer never reaches the client
                if upstream and self.armed and b"COMMIT" in data:
                    self.armed = False
                    self.cuts += 1
                    cut.set()
                    dst.sendall(data)
                    threading.Event().wait(0.3)  # the server commits meanwhile
                    for s in (src, dst):
                        s.shutdown(socket.SHUT_RDWR)
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, CuttingProxy]]:
    parts = urlsplit(pg_url)
    assert parts.hostname is not None and parts.port is not None
    proxy = CuttingProxy(parts.hostname, parts.port)
    netloc = (
        f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    )
    yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), proxy
    proxy.listener.close()


def due_job(job_id: str) -> Job:
    j = new_job(
        job_id,
        job_id,
        Schedule(cron="0 0 1 1 *"),
        Action(type="send_message", session_id="s", message="m"),
    )
    j.next_run_at = datetime.now(UTC) - timedelta(seconds=1)
    return j


async def test_a_claim_whose_commit_answer_is_lost_is_verified_by_fire_key(
    proxied: tuple[str, CuttingProxy], pg_url: str
) -> None:
    url, proxy = proxied
    b = PostgresBackend.from_url(url, {})
    await b.open()
    try:
        done = due_job("x")  # its fire already ran (its row exists): not to be started
        await b.save_many([due_job("a"), due_job("b"), done])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO omnicron_fires (job_id, scheduled_for, state) "
                "VALUES ('x', %s, 'succeeded')",
                (done.next_run_at,),
            )
        marked: list[str] = []
        writes = RunWrites()

        def mark(job: Job) -> Job:
            marked.append(job.id)
            proxy.armed = True  # this claim's COMMIT is cut after the server got it
            job.status = JobStatus.RUNNING
            return job

        claimed = await b.claim_due(await b.now(), 10, mark, owner="n1", runs=writes)
        assert proxy.cuts == 1
        assert sorted(j.id for j in claimed) == ["a", "b"]
        assert sorted(marked) == ["a", "b", "x"]  # marked once: the claim was not replayed
        assert done.next_run_at is not None
        assert writes.rejected == {fire_run_id("x", done.next_run_at)}
        with psycopg.connect(pg_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT job_id, state, lease_owner FROM omnicron_fires ORDER BY job_id"
            ).fetchall()
        assert rows == [("a", "running", "n1"), ("b", "running", "n1"), ("x", "succeeded", None)]
        assert b.stats()["leases_held"] == 2  # renewed from now on like any claimed run
    finally:
        await b.close()


async def test_a_claim_cut_before_commit_rolls_back_and_is_not_replayed(pg_url: str) -> None:
    b = PostgresBackend.from_url(pg_url, {})
    await b.open()
    try:
        await b.save(due_job("c"))
        marked: list[str] = []

        def mark(job: Job) -> Job:
            # the claim's own session is terminated mid-transaction (a restart, a failover)
            marked.append(job.id)
            if len(marked) > 1:
                job.status = JobStatus.RUNNING
                return job
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'omnicron pool%%' AND state LIKE 'idle in%%'"
                )
            job.status = JobStatus.RUNNING
            return job

        with pytest.raises(StoreError) as info:
            await b.claim_due(await b.now(), 10, mark, owner="n1")
        assert getattr(info.value, "transient", True)
        assert marked == ["c"]  # not marked again on a fresh connection
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM omnicron_fires").fetchone() == (0,)
            assert conn.execute("SELECT status FROM omnicron_jobs").fetchone() == ("enabled",)
        # the next claim takes it normally
        assert [j.id for j in await b.claim_due(await b.now(), 10, mark, owner="n1")] == ["c"]
        assert marked == ["c", "c"]
    finally:
        await b.close()
