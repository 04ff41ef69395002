"""Backoff delays and ``Retry-After`` parsing."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["backoff_delay", "is_retryable_status", "parse_retry_after"]


def is_retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def backoff_delay(
    retry: int, initial: float, maximum: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(maximum, initial * 2**(retry-1))]``."""
    ceiling = min(maximum, initial * 2.0 ** max(retry - 1, 0))
    return rand() * ceiling


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
