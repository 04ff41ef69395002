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


def test_the_kit_rejects_a_store_that_loses_another_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kit can fail: a store that declares other writers but writes back a stale cache
    (what a simple third-party store did) fails the two-process case."""
    here = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(here)
    from _naive_store import make  # type: ignore[import-not-found]

    target = StoreTarget(
        url=f"naive://{tmp_path}/jobs.json",
        factory=make,
        child_factory="_naive_store:make",
        env={"PYTHONPATH": here},
    )
    with pytest.raises(AssertionError, match="saved by the other process are lost"):
        StoreBackendContract().test_a_second_process_writes_while_a_scheduler_runs(target)
