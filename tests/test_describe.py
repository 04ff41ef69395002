"""Plain-English descriptions of cron expressions."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from omnicron_core.cron import CronError, parse_cron
from omnicron_core.describe import describe_cron


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("0 0 1 * *", "At 00:00 on day 1 of the month"),
        ("30 */5 * * * *", "At 30 seconds past the minute, every 5 minutes"),
        ("@every 1h30m", "Every 1h30m0s"),
        ("@every 90m", "Every 1h30m0s"),
        ("@daily", "At 00:00"),
        ("@hourly", "Every hour"),
        ("@weekly", "At 00:00, only on Sunday"),
        ("@monthly", "At 00:00 on day 1 of the month"),
        ("@yearly", "At 00:00 on day 1 of the month, only in January"),
        ("CRON_TZ=Europe/Berlin 0 9 * * *", "At 09:00 (Europe/Berlin)"),
        ("TZ=UTC @every 10s", "Every 10s (UTC)"),
        ("* * * * *", "Every minute"),
        ("* * * * * *", "Every second"),
        ("0 0 9 * * *", "At 09:00"),
        ("15 30 9 * * *", "At 09:30:15"),
        ("15 * * * *", "At 15 minutes past the hour"),
        ("0 */2 * * *", "Every 2 hours"),
        ("30 */2 * * *", "At 30 minutes past the hour, every 2 hours"),
        ("*/15 9-17 * * 1-5", "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"),
        ("0 9,17 * * *", "At 09:00 and 17:00"),
        ("10-20 * * * *", "Minutes 10 through 20 past the hour"),
        ("0 0 L * *", "At 00:00 on the last day of the month"),
        ("0 0 LW * *", "At 00:00 on the last weekday of the month"),
        ("0 0 * * 5L", "At 00:00, on the last Friday of the month"),
        ("0 0 * * 1#2", "At 00:00, on the second Monday of the month"),
        ("0 0 1 * 1", "At 00:00 on day 1 of the month, and on Monday"),
        ("0 0 1,15 * *", "At 00:00 on day 1 and 15 of the month"),
        ("0 12 * 1-6 *", "At 12:00, January through June"),
        ("0 0 * jan,JUL *", "At 00:00, only in January and July"),
        ("5 4 * * sun", "At 04:05, only on Sunday"),
        ("0 0 * * 0,6", "At 00:00, only on Sunday and Saturday"),
        ("0 0 */2 * *", "At 00:00, every 2 days"),
        ("* 9 * * *", "Every minute, between 09:00 and 09:59"),
        ("*/10 9,17 * * *", "Every 10 minutes, only in hours 09 and 17"),
        ("5/20 * * * *", "Every 20 minutes, starting at minute 5"),
        ("0,*/61 14 * * *", "Minute 0 and every 61 minutes, between 14:00 and 14:59"),
    ],
)
def test_describe(expr: str, expected: str) -> None:
    assert describe_cron(expr) == expected


def test_describe_rejects_bad_expression() -> None:
    with pytest.raises(CronError, match="hour"):
        describe_cron("0 24 * * *")


def _oracle_module() -> Any:
    path = Path(__file__).with_name("test_cron_oracle.py")
    spec = importlib.util.spec_from_file_location("_cron_oracle_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_describe_never_crashes_on_random_corpus() -> None:
    oracle = _oracle_module()
    described = 0
    for expr in [*oracle.CORPUS5, *oracle.CORPUS6]:
        try:
            parse_cron(expr)
        except CronError:
            continue
        text = describe_cron(expr)
        assert text and text[0].isupper() and "Cron schedule" not in text, expr
        described += 1
    assert described > 2000
