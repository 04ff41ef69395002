"""Property-based tests (hypothesis) of the parsers and decoders that take outside input: the
cron parser, Go durations, config decoding and the skill's arguments.

Every property is "a result, or the one documented error, located; never anything else".
Work is bounded by small inputs, a fixed number of fire times, and hypothesis' per-example
``deadline`` (generous, so a loaded machine does not fail it; a runaway search would).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from omnicron_core import ConfigError, Store, encode_job
from omnicron_core._cron_parse import FIELD_NAMES, CronError
from omnicron_core._duration import format_go_duration, parse_go_duration
from omnicron_core._plugins import Registry, get_plugin_manager
from omnicron_core._store import StoreConfig
from omnicron_core.config import ConfigErrors, decode_config
from omnicron_core.cron import parse_cron
from omnicron_core.runtime import Runtime
from omnicron_core.skill import Skill, SkillConfig

BOUNDED = settings(
    max_examples=400,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- cron ---------------------------------------------------------------------------------

_NUMBER = st.integers(min_value=-3, max_value=70).map(str)
_NAME = st.sampled_from(["MON", "fri", "SUN", "JAN", "dec", "L", "LW", "W", "?", "*", "H", "X"])
_ATOM = st.one_of(
    _NUMBER,
    _NAME,
    st.builds("{}W".format, _NUMBER),
    st.builds("{}L".format, _NUMBER),
    st.builds("{}#{}".format, _NUMBER, _NUMBER),
)
_RANGE = st.one_of(_ATOM, st.builds("{}-{}".format, _ATOM, _ATOM))
_STEPPED = st.one_of(_RANGE, st.builds("{}/{}".format, _RANGE, _NUMBER))
_FIELD = st.lists(_STEPPED, min_size=1, max_size=3).map(",".join)
_FIELDS = st.lists(_FIELD, min_size=4, max_size=7).map(" ".join)
_ZONE = st.sampled_from(
    [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Kiritimati",
        "Nowhere/City",
        "",
    ]
)
_DURATION_TEXT = st.one_of(
    st.builds(
        "{}{}".format,
        st.integers(-5, 10**6),
        st.sampled_from(["ns", "us", "ms", "s", "m", "h", "d", "x", ""]),
    ),
    st.text(max_size=12),
)
CRON_TEXT = st.one_of(
    _FIELDS,
    st.builds("CRON_TZ={} {}".format, _ZONE, _FIELDS),
    st.builds("@every {}".format, _DURATION_TEXT),
    st.sampled_from(
        [
            "@daily",
            "@hourly",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
            "@midnight",
            "@reboot",
            "@daily x",
            "@",
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet="0123456789*/,-LW#? ", max_size=40),
)
START = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@BOUNDED
@given(text=CRON_TEXT, zone=_ZONE, start=START)
@example(text="0 0 30 2 *", zone="UTC", start=datetime(2026, 1, 1, tzinfo=UTC))  # never fires
@example(text="0 0 31 4,6,9,11 *", zone="Europe/Berlin", start=datetime(2026, 1, 1, tzinfo=UTC))
@example(text="CRON_TZ=Nowhere/City 0 9 * * *", zone="", start=datetime(2026, 1, 1, tzinfo=UTC))
def test_cron_any_text_gives_fire_times_or_a_located_cron_error(
    text: str, zone: str, start: datetime
) -> None:
    try:
        compiled = parse_cron(text, zone or None)
    except CronError as exc:
        assert exc.field == "schedule.cron"
        assert exc.message.startswith(("cron field '", "cron expression")), exc.message
        if exc.message.startswith("cron field '"):
            assert exc.message.split("'")[1] in FIELD_NAMES
        return
    times = compiled.next_times(start, 3)
    previous = start
    for at in times:
        assert at.tzinfo is not None
        assert at > previous
        previous = at


def test_cron_next_times_signature() -> None:
    # the property above calls next_times(after, count); keep the two in step
    compiled = parse_cron("0 9 * * *", "UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert compiled.next_times(start, 2) == [
        datetime(2026, 1, 1, 9, tzinfo=UTC),
        datetime(2026, 1, 2, 9, tzinfo=UTC),
    ]


# -- Go durations -------------------------------------------------------------------------

NS = st.integers(min_value=-(2**63 - 1), max_value=2**63 - 1)


@settings(max_examples=300)
@given(ns=NS)
def test_duration_format_parse_round_trip(ns: int) -> None:
    assert parse_go_duration(format_go_duration(ns)) == ns


@settings(max_examples=300)
@given(text=st.one_of(_DURATION_TEXT, st.text(alphabet="0123456789.hmsuµμn+-d ", max_size=24)))
def test_duration_any_text_gives_a_value_or_value_error(text: str) -> None:
    for days in (False, True):
        try:
            ns = parse_go_duration(text, allow_days=days)
        except ValueError as exc:
            assert "duration" in str(exc)
            continue
        assert isinstance(ns, int) and abs(ns) <= 2**63 - 1
        assert parse_go_duration(format_go_duration(ns)) == ns


# -- config decoding ----------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "scheduler",
        "log",
        "plugins",
        "jobs",
        "skill",
        "timezone",
        "store",
        "store_options",
        "max_concurrency",
        "shutdown_grace",
        "misfire_grace",
        "metrics_port",
        "metrics_host",
        "level",
        "format",
        "send_message",
        "webhook",
        "tool",
        "transport",
        "path",
        "timeout",
        "id",
        "name",
        "schedule",
        "cron",
        "interval",
        "once",
        "action",
        "type",
        "session_id",
        "message",
        "enabled",
        "status",
        "metadata",
        "min_interval",
        "max_jobs_per_owner",
        "[/]",
        "x",
    ]
)
_SCALAR = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(
        [
            "UTC",
            "Nowhere/X",
            "memory://",
            "sqlite:///x\x00.db",
            "30s",
            "@daily",
            "send_message",
            "call_webhook",
            "jsonl",
            "info",
            "json",
            "enabled",
        ]
    ),
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
    st.dates(),
    st.times(),
)
TOML_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=30,
)
TOML_DOC = st.dictionaries(_KEYS, TOML_VALUE, max_size=5)


@settings(
    max_examples=300,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(doc=TOML_DOC)
def test_config_any_toml_structure_gives_a_config_or_located_errors(doc: dict[str, Any]) -> None:
    try:
        config = decode_config(doc, source="c.toml")
    except ConfigErrors as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.field, error  # every error names its place
        return
    try:
        errors = Runtime(config).check()
    except ConfigErrors as exc:  # a bad timezone is found while building the runtime
        errors = exc.errors
    for error in errors:
        assert isinstance(error, ConfigError)
        assert error.field, error


def test_config_deep_nesting_is_located() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ConfigErrors) as info:
        decode_config({"jobs": [{"id": "a", "metadata": {"x": deep}}]})
    assert info.value.errors[0].field is not None
    assert info.value.errors[0].field.startswith("jobs[0].metadata.x[0][0]")


# -- skill arguments ----------------------------------------------------------------------

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_ARG_NAMES = st.sampled_from(
    [
        "id",
        "name",
        "description",
        "schedule_cron",
        "schedule_interval",
        "schedule_once",
        "timezone",
        "action_type",
        "session_id",
        "message",
        "webhook_url",
        "webhook_method",
        "webhook_headers",
        "webhook_body",
        "tool_name",
        "tool_params",
        "status",
        "metadata",
        "expression",
        "count",
        "after",
        "enabled",
        "policy",
        "note",
        "limit",
        "outcome",
    ]
)
_POLICY_VALUE = st.one_of(
    JSON,
    st.sampled_from(
        [
            "skip", "allow_all", "buffer_all", "all", "latest", "1s", "-1s", "10m", "9999999h",
            "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2030-01-01T00:00:00Z",
            "now", "${env:HOME}", "\x1b[2J", 0, 1, 3, 10**30, 1e308, True,
        ]
    ),
)  # fmt: skip
POLICY = st.dictionaries(
    st.sampled_from(
        ["overlap", "concurrency", "buffer_limit", "catch_up", "catch_up_window", "jitter",
         "start_at", "end_at", "max_runs", "timeout", "retry", "owner"]
    ),
    st.one_of(
        _POLICY_VALUE,
        st.dictionaries(
            st.sampled_from(["attempts", "backoff", "max_backoff", "jitter", "x"]), _POLICY_VALUE
        ),
    ),
    max_size=5,
)  # fmt: skip
_ARG_VALUE = st.one_of(
    JSON,
    st.sampled_from(
        [
            "0 9 * * *",
            "@every 1s",
            "1h",
            "100ms",
            "2030-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "send_message",
            "call_webhook",
            "call_tool",
            "http://127.0.0.1:9/x",
            "Pacific/Kiritimati",
            "enabled",
            "x",
        ]
    ),
)
ARGUMENTS = st.one_of(
    st.dictionaries(_ARG_NAMES, st.one_of(_ARG_VALUE, POLICY), max_size=8),
    JSON,
    st.text(max_size=30),
    st.binary(max_size=30),
)
TOOLS = st.sampled_from(
    [
        "cron_create",
        "cron_list",
        "cron_get",
        "cron_delete",
        "cron_enable",
        "cron_disable",
        "cron_update",
        "cron_next",
        "cron_trigger",
        "cron_history",
        "no_such_tool",
    ]
)


CREATE = {
    "name": "mine",
    "schedule_cron": "0 9 * * *",
    "action_type": "send_message",
    "session_id": "s",
    "message": "m",
}


@pytest.fixture(scope="module")
def skill_and_store() -> Any:
    registry = Registry(get_plugin_manager(), settings={"send_message": {"transport": "host"}})
    store = Store(StoreConfig(url="memory://"), registry=registry)
    skill = Skill(
        SkillConfig(), store=store, registry=registry, location="UTC", start_scheduler=False
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(skill.init())
    # a job of someone else's, for get/update/delete to be refused on
    result = loop.run_until_complete(skill.call("cron_create", CREATE, principal="session:other"))
    assert not result.is_error, result.text
    yield skill, store, loop, result.content["id"]
    loop.run_until_complete(skill.close())
    loop.close()


@settings(
    max_examples=400,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(tool=TOOLS, arguments=ARGUMENTS, target=st.sampled_from(["mine", "theirs", "none"]))
@example(tool="cron_create", arguments=b"\x80", target="none")  # was a UnicodeDecodeError
@example(tool="cron_list", arguments="[" * 5000 + "]" * 5000, target="none")  # RecursionError
def test_skill_any_arguments_give_a_result_or_a_clear_error(
    skill_and_store: Any, tool: str, arguments: Any, target: str
) -> None:
    skill, store, loop, theirs = skill_and_store

    def call(name: str, args: Any) -> Any:
        return loop.run_until_complete(skill.call(name, args, principal="session:me"))

    mine = call("cron_create", CREATE).content["id"]  # a job of the caller's own
    if isinstance(arguments, dict) and target != "none":
        arguments.setdefault("id", mine if target == "mine" else theirs)
    if tool == "cron_trigger" and isinstance(arguments, dict):
        arguments["id"] = "no-such-job"  # a real trigger runs the action and records its result
    before = sorted(encode_job(j) for j in loop.run_until_complete(store.list()))
    with capture_logs() as logs:
        result = call(tool, arguments)
    # an error a tool did not anticipate is logged as skill.tool_failed: there must be none
    assert [e for e in logs if e.get("event") == "skill.tool_failed"] == [], result.text
    assert isinstance(result.text, str) and result.text
    json.loads(result.text)
    after = sorted(encode_job(j) for j in loop.run_until_complete(store.list()))
    if result.is_error:
        assert after == before, result.text  # nothing saved on error
        assert "error" in json.loads(result.text)
    loop.run_until_complete(skill.call("cron_delete", {"id": mine}, principal="session:me"))
