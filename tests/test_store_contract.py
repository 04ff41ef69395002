"""The built-in backends pass the conformance kit that third-party backends run."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicron_core.testing import StoreBackendContract, StoreTarget


class TestMemoryBackend(StoreBackendContract):
    @pytest.fixture
    def store_target(self) -> StoreTarget:
        return StoreTarget(url="memory://", persistent=False)


class TestSQLiteBackend(StoreBackendContract):
    @pytest.fixture
    def store_target(self, tmp_path: Path) -> StoreTarget:
        return StoreTarget(url=f"sqlite:///{tmp_path}/jobs.db", cross_process_claims=True)
