from __future__ import annotations

import pytest

from omnicron_core import Registry, get_plugin_manager


@pytest.fixture
def registry() -> Registry:
    """Executors from the installed plugins (the workspace installs all three)."""
    return Registry(get_plugin_manager())
