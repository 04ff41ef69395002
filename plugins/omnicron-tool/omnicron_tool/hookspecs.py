"""The hook that the tool plugin adds: plugins and host applications provide tools."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from omnicron_core.plugin import hookspec

if TYPE_CHECKING:
    from ._tool import Tool

__all__ = ["omnicron_tools"]


@hookspec
def omnicron_tools() -> Iterable[Tool]:  # type: ignore[empty-body]
    """Return the tools this plugin or host application provides to ``call_tool`` jobs.

    Every implementation is called; the tool registry (:func:`omnicron_tool.get_tools`) merges
    the results. A plugin that raises or returns a non-``Tool`` is left out and logged with its
    name; a name two plugins provide is left out (jobs calling it fail naming both plugins). A tool from this hook
    still runs only if ``[plugins.tool] allow`` lists it (the built-ins ``echo`` and ``now`` are
    allowed by default). The hook is called when a job is validated and before each run, so
    return descriptors that are cheap to build (module-level constants are best).

    :return: an iterable of :class:`omnicron_tool.Tool` (may be empty). A tool's ``func`` is
        called with the job's ``tool_params`` as keyword arguments, sync ones in a worker thread.

    Example::

        from omnicron_core.plugin import hookimpl
        from omnicron_tool import Tool

        def disk_usage(path: str = "/") -> dict:
            import shutil
            return shutil.disk_usage(path)._asdict()

        @hookimpl
        def omnicron_tools():
            return [
                Tool(
                    name="disk_usage",
                    description="free and used bytes of a file system",
                    parameters={
                        "type": "object",
                        "properties": {"path": {"type": "string"}},
                        "additionalProperties": False,
                    },
                    func=disk_usage,
                    timeout=5,
                )
            ]
    """
