"""The hookspec this plugin adds is documented in its docstring and in the docs."""

from __future__ import annotations

import inspect
from pathlib import Path

from omnicron_send_message import hookspecs

from omnicron_core import hookspecs as core_hookspecs

ROOT = Path(__file__).resolve().parents[3]


def test_hookspec_is_documented_like_the_core_ones() -> None:
    fn = hookspecs.omnicron_deliver_message
    assert fn.omnicron_spec["firstresult"] is True  # type: ignore[attr-defined]
    doc = inspect.getdoc(fn) or ""
    for param in inspect.signature(fn).parameters:
        assert f":param {param}:" in doc, param
    assert ":return:" in doc and "Example" in doc
    assert "Stops at the first non-None result" in doc
    assert hookspecs.omnicron_deliver_message.__name__ not in vars(core_hookspecs)


def test_docs_pages_cover_the_hook_and_every_setting() -> None:
    from omnicron_send_message import SendMessageSettings

    page = (ROOT / "docs" / "executors" / "send_message.md").read_text()
    assert "omnicron_deliver_message" in page
    for name in SendMessageSettings.__struct_fields__:
        assert f"| `{name}` |" in page, name
    assert "executors/send_message.md" in (ROOT / "docs" / "plugins.md").read_text()
