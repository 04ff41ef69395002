from __future__ import annotations

from pathlib import Path

import pytest

from omnicron_core import Registry, get_plugin_manager


@pytest.fixture
def registry() -> Registry:
    """Executors from the installed plugins (the workspace installs all three)."""
    return Registry(get_plugin_manager())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with an omnicron.toml: a SQLite store and send_message to a JSONL file."""
    (tmp_path / "omnicron.toml").write_text(
        f"""
[scheduler]
store = "sqlite:///{tmp_path / "jobs.db"}"
timezone = "UTC"

[plugins.send_message]
transport = "jsonl"
path = "{tmp_path / "messages.jsonl"}"
"""
    )
    return tmp_path
