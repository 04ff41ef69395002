"""The hookspec this plugin adds is documented in its docstring and in the docs."""

from __future__ import annotations

import inspect
from pathlib import Path

from omnicron_tool import ToolSettings, hookspecs

ROOT = Path(__file__).resolve().parents[3]


def test_hookspec_is_documented_like_the_core_ones() -> None:
    fn = hookspecs.omnicron_tools
    assert fn.omnicron_spec["firstresult"] is False  # type: ignore[attr-defined]
    doc = inspect.getdoc(fn) or ""
    assert ":return:" in doc and "Example" in doc


def test_docs_page_covers_the_hook_and_every_setting() -> None:
    page = (ROOT / "docs" / "executors" / "call_tool.md").read_text()
    assert "omnicron_tools" in page
    for name in ToolSettings.__struct_fields__:
        assert f"| `{name}` |" in page, name
    assert "executors/call_tool.md" in (ROOT / "docs" / "plugins.md").read_text()
