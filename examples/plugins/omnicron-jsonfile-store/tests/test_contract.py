"""The jsonfile store against omnicron's store backend conformance kit."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicron_core.testing import StoreBackendContract, StoreTarget


class TestJsonFileStore(StoreBackendContract):
    @pytest.fixture
    def store_target(self, tmp_path: Path) -> StoreTarget:
        # absolute path: jsonfile:////abs/path.json
        return StoreTarget(url=f"jsonfile:///{tmp_path}/jobs.json", cross_process_claims=True)


def test_the_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    import asyncio
    import stat

    from omnicron_jsonfile_store import JsonFileBackend

    async def go() -> None:
        from omnicron_core.testing import make_test_job

        backend = JsonFileBackend(tmp_path / "jobs.json")
        await backend.open()
        await backend.save(make_test_job("a"))
        inode = (tmp_path / "jobs.json").stat().st_ino
        await backend.save(make_test_job("b"))
        # a new file replaced the old one (rename), never rewritten in place
        assert (tmp_path / "jobs.json").stat().st_ino != inode
        assert stat.S_IMODE((tmp_path / "jobs.json").stat().st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.json", "jobs.json.lock"]

    asyncio.run(go())
