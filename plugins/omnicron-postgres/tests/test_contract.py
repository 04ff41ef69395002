"""The store conformance kit (``omnicron_core.testing.StoreBackendContract``, with its run
history and two-process cases) against the real throwaway server: each test gets a fresh
schema, built through the installed ``postgresql://`` plugin in this process and in the
children."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from omnicron_postgres.testing import TempPostgres

from omnicron_core.testing import StoreBackendContract, StoreTarget


class TestPostgresStoreContract(StoreBackendContract):
    @pytest.fixture
    def store_target(self, pg_server: TempPostgres, pg_schema: str) -> Iterator[StoreTarget]:
        yield StoreTarget(url=pg_server.url, options={"schema": pg_schema})
