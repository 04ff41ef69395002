"""The run-history conformance cases on the built-in backends (memory, SQLite file)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from omnicron_core._backend import StoreBackend
from omnicron_core.backends.memory import MemoryBackend
from omnicron_core.backends.sqlite import SQLiteBackend
from omnicron_core.testing_history import RunHistoryContract, Scenario


@dataclass
class _Target:
    kind: str
    path: Path
    persistent: bool

    def make(self) -> StoreBackend:
        return MemoryBackend() if self.kind == "memory" else SQLiteBackend(self.path)


class TestBuiltinHistory(RunHistoryContract):
    @pytest.fixture(params=["memory", "sqlite"])
    def store_target(self, request: pytest.FixtureRequest, tmp_path: Path) -> _Target:
        return _Target(request.param, tmp_path / "h.db", request.param == "sqlite")

    def run(self, target: _Target, scenario: Scenario) -> None:
        async def go() -> None:
            backend = target.make()
            await backend.open()
            try:
                await scenario(backend)
            finally:
                await backend.close()

        asyncio.run(go())
