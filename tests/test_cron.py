"""Hand-checked behaviour of omnicron_core.cron: syntax, semantics, DST and errors."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from omnicron_core._errors import JobValidationError
from omnicron_core.cron import CronError, CronExpression, parse_cron, validate_cron


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def times(expr: str, after: datetime, n: int, zone: str | None = None) -> list[datetime]:
    return [t.astimezone(UTC) for t in parse_cron(expr, zone).next_times(after, n)]


# --- basic syntax (2024-01-01 is a Monday) ---------------------------------------------------


def test_monday_is_one() -> None:
    assert times("0 9 * * 1", utc(2024, 1, 2), 2) == [utc(2024, 1, 8, 9), utc(2024, 1, 15, 9)]
    assert times("0 9 * * MON", utc(2024, 1, 1), 1) == [utc(2024, 1, 1, 9)]
    assert parse_cron("0 9 * * 1").next_after(utc(2024, 1, 2)).weekday() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("dow", ["0", "7", "SUN", "sun", "Sun"])
def test_sunday_as_zero_or_seven(dow: str) -> None:
    assert times(f"0 0 * * {dow}", utc(2024, 1, 1), 2) == [utc(2024, 1, 7), utc(2024, 1, 14)]


def test_weekday_range_with_seven() -> None:
    assert times("0 0 * * 5-7", utc(2024, 1, 1), 4) == [
        utc(2024, 1, 5),
        utc(2024, 1, 6),
        utc(2024, 1, 7),
        utc(2024, 1, 12),
    ]


def test_dom_or_dow_when_both_restricted() -> None:
    # the 1st of the month OR any Monday
    assert times("0 0 1 * 1", utc(2024, 1, 20), 4) == [
        utc(2024, 1, 22),
        utc(2024, 1, 29),
        utc(2024, 2, 1),
        utc(2024, 2, 5),
    ]


def test_dom_and_dow_when_one_starts_with_star() -> None:
    # day-of-month '*/2' starts with '*': odd days AND Mondays
    assert times("0 0 */2 * 1", utc(2024, 1, 1), 3) == [
        utc(2024, 1, 15),
        utc(2024, 1, 29),
        utc(2024, 2, 5),
    ]
    # day-of-week '*/2' (Sun, Tue, Thu, Sat) starts with '*': the 1st AND one of those
    assert times("0 0 1 * */2", utc(2024, 1, 1), 2) == [utc(2024, 2, 1), utc(2024, 6, 1)]


def test_steps_longer_than_range() -> None:
    assert times("0 11-12/4 * * *", utc(2024, 1, 1), 2) == [
        utc(2024, 1, 1, 11),
        utc(2024, 1, 2, 11),
    ]
    assert times("*/90 * * * *", utc(2024, 1, 1), 2) == [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]


def test_steps_lists_and_ranges() -> None:
    assert times("*/25 * * * *", utc(2024, 1, 1), 4) == [
        utc(2024, 1, 1, 0, 25),
        utc(2024, 1, 1, 0, 50),
        utc(2024, 1, 1, 1, 0),
        utc(2024, 1, 1, 1, 25),
    ]
    # a/n means a-max/n
    assert times("5/20 * * * *", utc(2024, 1, 1), 3) == [
        utc(2024, 1, 1, 0, 5),
        utc(2024, 1, 1, 0, 25),
        utc(2024, 1, 1, 0, 45),
    ]
    assert times("0 1,3-4,22 * * *", utc(2024, 1, 1), 4) == [
        utc(2024, 1, 1, 1),
        utc(2024, 1, 1, 3),
        utc(2024, 1, 1, 4),
        utc(2024, 1, 1, 22),
    ]


def test_month_names_case_insensitive() -> None:
    assert times("0 0 1 jan,Jul *", utc(2024, 1, 1), 2) == [utc(2024, 7, 1), utc(2025, 1, 1)]
    assert times("0 0 1 FEB-MAR *", utc(2024, 1, 1), 2) == [utc(2024, 2, 1), utc(2024, 3, 1)]


def test_last_day_of_month() -> None:
    assert times("0 0 L * *", utc(2024, 1, 1), 3) == [
        utc(2024, 1, 31),
        utc(2024, 2, 29),
        utc(2024, 3, 31),
    ]


def test_last_weekday_of_month() -> None:
    # 2024-03-31 is a Sunday, 2024-08-31 a Saturday
    assert times("0 0 LW 3,8 *", utc(2024, 1, 1), 2) == [utc(2024, 3, 29), utc(2024, 8, 30)]


def test_last_friday_and_nth_weekday() -> None:
    assert times("0 0 * * 5L", utc(2024, 1, 1), 2) == [utc(2024, 1, 26), utc(2024, 2, 23)]
    assert times("0 0 * * 1#2", utc(2024, 1, 1), 2) == [utc(2024, 1, 8), utc(2024, 2, 12)]
    assert times("0 0 * * MON#5", utc(2024, 1, 1), 2) == [utc(2024, 1, 29), utc(2024, 4, 29)]
    # OR with a day-of-month: the 1st or the last Friday
    assert times("0 0 1 * 5L", utc(2024, 1, 1), 3) == [
        utc(2024, 1, 26),
        utc(2024, 2, 1),
        utc(2024, 2, 23),
    ]


def test_six_fields_seconds_first() -> None:
    assert times("0 0 9 * * *", utc(2024, 1, 1), 2) == [utc(2024, 1, 1, 9), utc(2024, 1, 2, 9)]
    assert times("0 */5 * * * *", utc(2024, 1, 1), 2) == [
        utc(2024, 1, 1, 0, 5),
        utc(2024, 1, 1, 0, 10),
    ]
    assert times("30 */5 * * * *", utc(2024, 1, 1), 2) == [
        utc(2024, 1, 1, 0, 0, 30),
        utc(2024, 1, 1, 0, 5, 30),
    ]
    assert times("*/20 * * * * *", utc(2024, 1, 1), 3) == [
        utc(2024, 1, 1, 0, 0, 20),
        utc(2024, 1, 1, 0, 0, 40),
        utc(2024, 1, 1, 0, 1, 0),
    ]
    assert parse_cron("0 0 9 * * *").has_seconds
    assert not parse_cron("0 9 * * *").has_seconds


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("@yearly", [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@annually", [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@monthly", [utc(2024, 2, 1), utc(2024, 3, 1)]),
        ("@weekly", [utc(2024, 1, 7), utc(2024, 1, 14)]),
        ("@daily", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("@midnight", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("@hourly", [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]),
        ("@DAILY", [utc(2024, 1, 2), utc(2024, 1, 3)]),
    ],
)
def test_descriptors(expr: str, expected: list[datetime]) -> None:
    assert times(expr, utc(2024, 1, 1), 2) == expected


def test_every() -> None:
    c = parse_cron("@every 1h30m")
    anchor = utc(2024, 1, 1)
    assert c.next_after(utc(2024, 1, 1, 2), anchor=anchor) == utc(2024, 1, 1, 3)
    assert c.next_after(anchor, anchor=anchor) == utc(2024, 1, 1, 1, 30)
    assert c.next_after(utc(2024, 1, 1, 1, 30), anchor=anchor) == utc(2024, 1, 1, 3)
    # k >= 1 even when `after` is before the anchor
    assert c.next_after(utc(2023, 6, 1), anchor=anchor) == utc(2024, 1, 1, 1, 30)
    # anchor defaults to `after`
    assert c.next_after(utc(2024, 5, 5, 5, 5)) == utc(2024, 5, 5, 6, 35)
    assert c.next_times(anchor, 3) == [
        utc(2024, 1, 1, 1, 30),
        utc(2024, 1, 1, 3),
        utc(2024, 1, 1, 4, 30),
    ]
    fine = parse_cron("@every 1.5s")
    assert fine.next_after(utc(2024, 1, 1, 0, 0, 1), anchor=anchor) == datetime(
        2024, 1, 1, 0, 0, 1, 500000, tzinfo=UTC
    )
    # exact over a long span (no float drift)
    odd = parse_cron("@every 7ms")
    got = odd.next_after(utc(2030, 1, 1), anchor=anchor)
    assert got is not None and (got - anchor) % timedelta(milliseconds=7) == timedelta(0)
    assert timedelta(0) < got - utc(2030, 1, 1) <= timedelta(milliseconds=7)


def test_cron_tz_prefix_beats_location() -> None:
    c = parse_cron("CRON_TZ=Europe/Berlin 0 9 * * *", "America/New_York")
    assert c.timezone == ZoneInfo("Europe/Berlin")
    got = c.next_after(utc(2024, 6, 1))
    assert got == utc(2024, 6, 1, 7)
    assert got is not None and got.tzinfo == ZoneInfo("Europe/Berlin")
    assert parse_cron("TZ=Asia/Kolkata 30 9 * * *").next_after(utc(2024, 6, 1)) == utc(
        2024, 6, 1, 4
    )
    assert parse_cron("0 9 * * *", "Asia/Kolkata").next_after(utc(2024, 6, 1)) == utc(
        2024, 6, 1, 3, 30
    )
    assert parse_cron("0 9 * * *", ZoneInfo("Asia/Kolkata")).timezone == ZoneInfo("Asia/Kolkata")
    assert parse_cron("0 9 * * *").timezone == UTC


def test_results_are_aware_in_zone_and_strictly_after() -> None:
    c = parse_cron("*/5 * * * *", "Europe/Berlin")
    after = datetime(2024, 5, 5, 12, 5, tzinfo=timezone(timedelta(hours=-7)))
    got = c.next_after(after)
    assert got is not None and got.tzinfo is c.timezone
    assert got == after + timedelta(minutes=5)
    # microseconds: the next whole matching second after `after`
    assert c.next_after(after + timedelta(microseconds=1)) == after + timedelta(minutes=5)
    assert c.next_after(after - timedelta(microseconds=1)) == after
    with pytest.raises(ValueError, match="aware"):
        c.next_after(datetime(2024, 1, 1))


def test_strictly_after_on_random_corpus() -> None:
    rng = random.Random(7)
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
    for expr in ["* * * * *", "*/7 1-3 * * *", "30 2 * * *", "0 0 * * *", "15 1 * * 0"]:
        for _ in range(40):
            zone = rng.choice(zones)
            after = utc(2024, 1, 1) + timedelta(seconds=rng.randint(0, 366 * 86400))
            got = parse_cron(expr, zone).next_after(after)
            assert got is not None and got > after


def test_cache_and_validate() -> None:
    assert parse_cron("0 9 * * *", "Europe/Berlin") is parse_cron("0 9 * * *", "Europe/Berlin")
    assert parse_cron("0 9 * * *", "Europe/Berlin") is parse_cron(
        "0 9 * * *", ZoneInfo("Europe/Berlin")
    )
    assert isinstance(parse_cron("0 9 * * *"), CronExpression)
    assert parse_cron("0 9 * * *").expr == "0 9 * * *"
    validate_cron("0 9 * * *")
    with pytest.raises(CronError):
        validate_cron("0 9 * *")


def test_descriptions_live_above_the_semantics() -> None:
    # describe depends on cron, not the other way round (no import circle)
    from omnicron_core.describe import describe_cron

    assert describe_cron("0 9 * * 1-5") == "At 09:00, Monday through Friday"
    assert not hasattr(parse_cron("0 9 * * 1-5"), "describe")


def test_next_after_is_fast() -> None:
    c = parse_cron("0 9 * * 1-5", "Europe/Berlin")
    after = utc(2024, 5, 1, 12)
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        c.next_after(after)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 500e-6  # generous for slow CI; ~20 µs measured locally


# --- daylight saving time --------------------------------------------------------------------


def test_spring_forward_fixed_time_berlin() -> None:
    # 2024-03-31 02:00 CET -> 03:00 CEST: 02:30 does not exist, the job runs at 03:00 CEST
    assert times("30 2 * * *", utc(2024, 3, 30, 12), 2, "Europe/Berlin") == [
        utc(2024, 3, 31, 1, 0),
        utc(2024, 4, 1, 0, 30),
    ]


def test_spring_forward_fixed_time_new_york() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT
    assert times("30 2 * * *", utc(2024, 3, 9, 12), 2, "America/New_York") == [
        utc(2024, 3, 10, 7, 0),
        utc(2024, 3, 11, 6, 30),
    ]
    got = parse_cron("30 2 * * *", "America/New_York").next_after(utc(2024, 3, 9, 12))
    assert got is not None and (got.hour, got.minute) == (3, 0)


def test_spring_forward_hourly_job_skips_missing_hour() -> None:
    assert times("0 * * * *", utc(2024, 3, 30, 23, 30), 3, "Europe/Berlin") == [
        utc(2024, 3, 31, 0),  # 01:00 CET
        utc(2024, 3, 31, 1),  # 03:00 CEST (02:00 does not exist)
        utc(2024, 3, 31, 2),
    ]


def test_fall_back_fixed_time_fires_once() -> None:
    # 2024-11-03 02:00 EDT -> 01:00 EST: 01:30 happens twice, the job runs on the first
    c = parse_cron("30 1 * * *", "America/New_York")
    assert times("30 1 * * *", utc(2024, 11, 2, 12), 2, "America/New_York") == [
        utc(2024, 11, 3, 5, 30),
        utc(2024, 11, 4, 6, 30),
    ]
    # asked during the second 01:xx it never goes back in time
    assert c.next_after(utc(2024, 11, 3, 6, 15)) == utc(2024, 11, 4, 6, 30)


def test_fall_back_wildcard_job_runs_in_both_passes() -> None:
    assert times("*/30 * * * *", utc(2024, 11, 3, 4, 50), 5, "America/New_York") == [
        utc(2024, 11, 3, 5, 0),  # 01:00 EDT
        utc(2024, 11, 3, 5, 30),  # 01:30 EDT
        utc(2024, 11, 3, 6, 0),  # 01:00 EST
        utc(2024, 11, 3, 6, 30),  # 01:30 EST
        utc(2024, 11, 3, 7, 0),  # 02:00 EST
    ]
    # from the first pass, the next one is still in the first pass, then the second pass
    c = parse_cron("15 * * * *", "America/New_York")
    got = c.next_after(utc(2024, 11, 3, 5, 20))
    assert got is not None and got.astimezone(UTC) == utc(2024, 11, 3, 6, 15)
    assert (got.hour, got.minute, got.fold) == (1, 15, 1)


def test_lord_howe_half_hour_shift() -> None:
    # 2024-10-06 02:00 +10:30 -> 02:30 +11:00
    assert times("15 2 * * *", utc(2024, 10, 5), 1, "Australia/Lord_Howe") == [
        utc(2024, 10, 5, 15, 30)
    ]
    assert times("45 2 * * *", utc(2024, 10, 5), 1, "Australia/Lord_Howe") == [
        utc(2024, 10, 5, 15, 45)
    ]
    # 2025-04-06 02:00 +11:00 -> 01:30 +10:30: 01:45 happens twice, fires once
    assert times("45 1 * * *", utc(2025, 4, 5), 2, "Australia/Lord_Howe") == [
        utc(2025, 4, 5, 14, 45),
        utc(2025, 4, 6, 15, 15),
    ]


def test_dst_at_midnight() -> None:
    # Havana 2024-03-10 00:00 -05:00 -> 01:00 -04:00
    assert times("0 0 * * *", utc(2024, 3, 9, 12), 2, "America/Havana") == [
        utc(2024, 3, 10, 5),
        utc(2024, 3, 11, 4),
    ]
    assert times("30 0 * * *", utc(2024, 3, 9, 12), 1, "America/Havana") == [utc(2024, 3, 10, 5)]
    # Santiago 2024-09-08 00:00 -04:00 -> 01:00 -03:00
    assert times("0 0 * * *", utc(2024, 9, 7, 12), 1, "America/Santiago") == [utc(2024, 9, 8, 4)]
    # Santiago 2024-04-07 00:00 -03:00 -> 2024-04-06 23:00 -04:00: 23:30 only once
    assert times("30 23 * * *", utc(2024, 4, 6, 12), 2, "America/Santiago") == [
        utc(2024, 4, 7, 2, 30),
        utc(2024, 4, 8, 3, 30),
    ]


def test_dst_at_midnight_cronsim_quirks_kept() -> None:
    # cronsim enters a day whose midnight is skipped at that (skipped) midnight: an hour-0
    # wildcard job fires once, at the jump; a job without hour 0 misses the first real hour.
    tz = ZoneInfo("America/Havana")
    start = utc(2024, 3, 8, 12)
    for expr, expected in [
        ("* 0 10 3 *", [utc(2024, 3, 10, 5), utc(2025, 3, 10, 4)]),
        ("* 1,2 10 3 *", [utc(2024, 3, 10, 6), utc(2024, 3, 10, 6, 1)]),
    ]:
        assert times(expr, start, 2, "America/Havana") == expected
        sim = CronSim(expr, start.astimezone(tz))
        assert [next(sim).astimezone(UTC) for _ in range(2)] == expected


# --- cronsim agreement on odd syntax ---------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "5-5/2 * * * *",
        "0 0 LW/5 * *",
        "0 0 L/2 * *",
        "0 0 LW * *",
        "0 0 lw * *",
        "0 0 * * 0L",
        "0 0 * * 7L",
        "0 0 * * 7#1",
        "0 0 * * sun#1,5l",
        "00 09 * * *",
        "0 0 * JAN/3 *",
        "0 0 * * MON/2",
        "0 0 * * 1-7/3",
        "0 0 * * */7",
        "0 0 29 2 *",
        "0 0 30 2 1",
        "0 0 31 */2 *",
        "0 0 L 2 *",
        "0 0 * 2 1#5",
        "0 0 1,2-3/1,*/9 * *",
    ],
)
def test_odd_syntax_agrees_with_cronsim(expr: str) -> None:
    start = utc(2024, 1, 1)
    sim = CronSim(expr, start)
    expected = [next(sim) for _ in range(6)]
    assert times(expr, start, 6) == expected


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 24 * * *", "cron field 'hour' has 24; allowed 0-23"),
        ("60 * * * *", "cron field 'minute' has 60; allowed 0-59"),
        ("0 0 0 * *", "cron field 'day-of-month' has 0; allowed 1-31"),
        ("0 0 32 * *", "cron field 'day-of-month' has 32; allowed 1-31"),
        ("0 0 * 13 *", "cron field 'month' has 13; allowed 1-12"),
        ("0 0 * * 8", "cron field 'day-of-week' has 8; allowed 0-7"),
        ("60 0 0 * * *", "cron field 'second' has 60; allowed 0-59"),
        ("0 0 * FOO *", "cron field 'month' has 'FOO'; expected a number 1-12 or a name JAN-DEC"),
        (
            "0 0 * * FRIDAY",
            "cron field 'day-of-week' has 'FRIDAY'; expected a number 0-7 (0 and 7 are Sunday)"
            " or a name SUN-SAT",
        ),
        ("0 MON * * *", "cron field 'hour' has 'MON'; expected a number 0-23"),
        ("*/0 * * * *", "cron field 'minute' has step 0 in '*/0'; step must be at least 1"),
        ("1-5/x * * * *", "cron field 'minute' has '1-5/X'; the step after '/' must be"),
        ("0 5-3 * * *", "cron field 'hour' has range '5-3' whose start is after its end"),
        ("0 1,,2 * * *", "cron field 'hour' has an empty list item in '1,,2'"),
        ("0 0 * * L", "cron field 'day-of-week' has 'L'; 'L' must follow a weekday number"),
        (
            "0 0 * * 1#6",
            "cron field 'day-of-week' has '1#6'; the week number after '#' must be 1-5",
        ),
        ("0 0 * * 1#0", "the week number after '#' must be 1-5"),
        ("0 0 ? * *", "cron field 'day-of-month' has '?'"),
        ("0 0 L-3 * *", "cron field 'day-of-month' has 'L'"),
        ("0 0 15W * *", "cron field 'day-of-month' has '15W'"),
        ("L * * * *", "cron field 'minute' has 'L'"),
        ("-1 * * * *", "cron field 'minute' has ''"),
        (
            "* * * *",
            "cron expression '* * * *' has 4 fields; expected 5 (minute hour day-of-month month"
            " day-of-week) or 6 (second first)",
        ),
        ("* * * * * * *", "has 7 fields; expected 5"),
        ("hello", "cron expression 'hello' has 1 field; expected 5"),
        ("", "cron expression is empty"),
        ("   ", "cron expression is empty"),
        ("0 0 30 2 *", "cron expression '0 0 30 2 *' can never fire"),
        ("0 0 31 4,6,9,11 *", "cron expression '0 0 31 4,6,9,11 *' can never fire"),
        ("0 0 */15 * 1#2", "can never fire"),
        ("CRON_TZ=Mars/Olympus 0 0 * * *", "has unknown time zone 'Mars/Olympus'"),
        ("TZ= 0 0 * * *", "has an empty time zone"),
        ("CRON_TZ=UTC", "has a time zone but no schedule"),
        ("@every 0s", "@every duration must be greater than 0"),
        ("@every -5m", "@every duration must be greater than 0"),
        ("@every banana", "has a bad @every duration: invalid duration 'banana'"),
        ("@every", "@every needs a duration"),
        ("@every 1ns", "@every duration must be at least 1µs"),
        ("@reboot", "has unknown descriptor '@reboot'; expected one of @yearly"),
        ("@daily 5", "has unexpected text after '@daily': '5'"),
    ],
)
def test_error_messages(expr: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert message in str(info.value)
    assert info.value.field == "schedule.cron"
    assert isinstance(info.value, JobValidationError)


def test_bad_location() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Nope/Zone'"):
        parse_cron("0 0 * * *", "Nope/Zone")


@pytest.mark.parametrize(
    "expr",
    ["0 0 * * L", "0 0 ? * *", "0 0 L-3 * *", "0 0 15W * *", "0 24 * * *", "*/0 * * * *"],
)
def test_cronsim_rejects_too(expr: str) -> None:
    with pytest.raises(CronSimError):
        CronSim(expr, utc(2024, 1, 1))
    with pytest.raises(CronError):
        parse_cron(expr)
