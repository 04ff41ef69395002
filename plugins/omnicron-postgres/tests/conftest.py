"""A throwaway PostgreSQL 15 for the whole session (never skipped: missing binaries fail)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from omnicron_postgres.testing import Cluster, Receiver, TempPostgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres]:
    server = TempPostgres().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(pg_server: TempPostgres) -> str:
    """A fresh empty database on the session's server."""
    return pg_server.create_database()


@pytest.fixture
def pg_schema(pg_server: TempPostgres) -> Iterator[str]:
    """A fresh schema name in the server's default database (dropped afterwards)."""
    name = f"s_{uuid.uuid4().hex[:10]}"
    yield name
    pg_server.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    made = Cluster(tmp_path, pg_url)
    try:
        yield made
    finally:
        for proc in made.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def slow_receiver() -> Iterator[Receiver]:
    """A webhook receiver that answers after 4 s: its runs are always in flight."""
    made = Receiver(delay=4.0)
    try:
        yield made
    finally:
        made.close()
