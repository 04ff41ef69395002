"""The one loop over successive fire times (cron, the Schedule API, the CLI, the agent tools)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

__all__ = ["successive"]


def successive(
    next_after: Callable[[datetime], datetime | None],
    after: datetime,
    *,
    first: datetime | None = None,
) -> Iterator[datetime]:
    """``first`` (when given), then ``next_after(previous)`` again and again, until it gives
    ``None`` (a schedule that ends). Lazy: take what you need with ``itertools.islice``."""
    cursor: datetime | None = after
    if first is not None:
        yield first
        cursor = first
    while cursor is not None:
        cursor = next_after(cursor)
        if cursor is not None:
            yield cursor
