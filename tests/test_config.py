"""The config file: decoding, located errors, environment overrides, declared jobs."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from omnicron_core import JobLimits, JobStatus, SchedulerConfig
from omnicron_core._scheduler import TUNING_FIELDS
from omnicron_core.config import (
    SOURCE_CONFIG,
    SOURCE_HASH_KEY,
    SOURCE_KEY,
    Config,
    ConfigErrors,
    SchedulerSettings,
    apply_env,
    declared_jobs,
    decode_config,
    load_config,
    located,
)


def decode(text: str) -> Config:
    return decode_config(tomllib.loads(text))


def fields_of(exc: ConfigErrors) -> list[str | None]:
    return [e.field for e in exc.errors]


JOB = """
[[jobs]]
id = "j1"
name = "one"
schedule = { interval = "2s" }
action = { type = "send_message", session_id = "s", message = "m" }
"""


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.scheduler.store == "sqlite:///omnicron.db"
    # unset tuning keys take SchedulerConfig's defaults: written in one place
    assert config.scheduler.tuning() == {"limits": JobLimits()}
    assert SchedulerConfig(**config.scheduler.tuning()).max_concurrency == 1024
    assert config.scheduler.metrics_port is None
    assert config.log.level == "info" and config.log.format == "auto"
    assert config.jobs == [] and config.plugins == {}


def test_full_file_decodes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[scheduler]
timezone = "Europe/Berlin"
store = "memory://"
max_concurrency = 8
shutdown_grace = 1.5
misfire_grace = 60
metrics_port = 9464
[log]
level = "debug"
format = "json"
[plugins.send_message]
transport = "console"
"""
        + JOB
    )
    config = load_config(path)
    assert config.source == str(path)
    assert config.scheduler.timezone == "Europe/Berlin"
    assert config.scheduler.misfire_grace == 60
    assert SchedulerConfig(**config.scheduler.tuning()) == SchedulerConfig(
        max_concurrency=8,
        shutdown_grace=timedelta(seconds=1.5),
        misfire_grace=timedelta(minutes=1),
        owner=SchedulerConfig().owner,
    )
    assert config.log.level == "debug"
    assert config.plugins == {"send_message": {"transport": "console"}}
    ((declared, job),) = declared_jobs(config)
    assert job.schedule.interval is not None and job.schedule.interval.total_seconds() == 2
    assert job.metadata is not None and job.metadata[SOURCE_KEY] == SOURCE_CONFIG
    assert job.metadata[SOURCE_HASH_KEY]
    assert declared.id == "j1"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[scheduler]\nmax_concurrency = 'ten'\n", "scheduler.max_concurrency", "expected int"),
        ("[scheduler]\nmax_concurency = 10\n", "scheduler.max_concurency", "unknown key"),
        ("[scheduler]\nmax_concurrency = 0\n", "scheduler.max_concurrency", ">= 1"),
        ("[log]\nlevel = 'loud'\n", "log.level", "loud"),
        ("[schedular]\n", "schedular", "unknown section"),
        ("[plugins]\nwebhook = 3\n", "plugins.webhook", "expected a table"),
    ],
)
def test_section_errors_are_located(text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        decode(text)
    assert fields_of(info.value) == [field]
    assert words in info.value.errors[0].message


def test_errors_of_several_sections_come_together() -> None:
    with pytest.raises(ConfigErrors) as info:
        decode("[scheduler]\nstore = 1\n[log]\nformat = 'xml'\n[extra]\n")
    assert fields_of(info.value) == ["scheduler.store", "log.format", "extra"]
    # the sections that decoded are kept, so later checks can still run on them
    assert info.value.partial is not None


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ("id='a'\nschedule={interval='1s'}\naction={type='x'}", "jobs[1].name", "required"),
        ("id='a'\nname='a'\nschedule={interval='5q'}\naction={type='x'}", "jobs[1].schedule.interval", "unknown unit"),
        ("id='a'\nname='a'\nschedule={cron=5}\naction={type='x'}", "jobs[1].schedule.cron", "expected str"),
        ("id='a'\nname='a'\nschedule={interval='1s'}\naction={type='x', params=3}", "jobs[1].action", "params: expected object, got int"),
        ("id='a'\nname='a'\nschedule={interval='1s'}\naction={type='x'}\nsatus='x'", "jobs[1].satus", "unknown key"),
        ("id='a'\nname='a'\nschedule={interval='1s'}\naction={type='x'}\nenabled=true\nstatus='disabled'", "jobs[1]", "disagree"),
        ("id='a'\nname='a'\nschedule={interval='1s'}\naction={type='x'}\nmetadata={'omnicron.source'='x'}", "jobs[1].metadata", "reserved"),
        ("id='j1'\nname='a'\nschedule={interval='1s'}\naction={type='x'}", "jobs[1].id", "duplicate"),
    ],
)  # fmt: skip
def test_job_errors_are_located(entry: str, field: str, words: str) -> None:
    config = decode(JOB + "[[jobs]]\n" + entry + "\n")
    with pytest.raises(ConfigErrors) as info:
        declared_jobs(config)
    assert fields_of(info.value) == [field]
    assert words in info.value.errors[0].message


def test_every_bad_job_is_reported() -> None:
    config = decode(
        "[[jobs]]\nid='a'\n[[jobs]]\nid='b'\nname='b'\nschedule={}\naction={type='x'}\n"
        "[[jobs]]\nid='c'\nname='c'\nschedule={interval=true}\naction={type='x'}\n"
    )
    with pytest.raises(ConfigErrors) as info:
        declared_jobs(config)
    assert fields_of(info.value) == ["jobs[0].name", "jobs[2].schedule.interval"]


def test_status_and_enabled() -> None:
    config = decode(JOB + "enabled = false\n")
    ((_, job),) = declared_jobs(config)
    assert job.status == JobStatus.DISABLED
    config = decode(JOB + "status = 'disabled'\n")
    assert declared_jobs(config)[0][1].status == JobStatus.DISABLED
    assert declared_jobs(decode(JOB))[0][1].status == JobStatus.ENABLED


def test_definition_hash_follows_the_definition() -> None:
    one = declared_jobs(decode(JOB))[0][1].metadata
    same = declared_jobs(decode(JOB))[0][1].metadata
    other = declared_jobs(decode(JOB.replace('message = "m"', 'message = "n"')))[0][1].metadata
    assert one is not None and same is not None and other is not None
    assert one[SOURCE_HASH_KEY] == same[SOURCE_HASH_KEY]
    assert one[SOURCE_HASH_KEY] != other[SOURCE_HASH_KEY]


def test_environment_overrides_store_and_log() -> None:
    config = decode("[scheduler]\nstore = 'memory://'\n[log]\nlevel = 'info'\n")
    env = {
        "OMNICRON_STORE": "sqlite:///x.db",
        "OMNICRON_LOG_LEVEL": "DEBUG",
        "OMNICRON_LOG_FORMAT": "json",
    }
    out = apply_env(config, env)
    assert out.scheduler.store == "sqlite:///x.db"
    assert out.log.level == "debug" and out.log.format == "json"
    assert apply_env(config, {}).scheduler.store == "memory://"
    with pytest.raises(ConfigErrors) as info:
        apply_env(config, {"OMNICRON_LOG_LEVEL": "chatty"})
    assert fields_of(info.value) == ["OMNICRON_LOG_LEVEL"]


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[scheduler\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    assert info.value.errors[0].field == str(path)
    assert "line 1" in info.value.errors[0].message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(tmp_path / "nope.toml")
    assert "cannot read" in str(info.value)


class Inner(msgspec.Struct):
    n: int


class Outer(msgspec.Struct):
    items: list[Inner]


def test_located_turns_msgspec_paths_into_dotted_fields() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"items": [{"n": 1}, {"n": "x"}]}, Outer)
    error = located(info.value, "jobs[2]")
    assert error.field == "jobs[2].items[1].n"
    assert str(error) == "jobs[2].items[1].n: expected int, got str"


def test_scheduler_settings_are_scheduler_config_under_the_same_names() -> None:
    api = {f.name for f in dataclasses.fields(SchedulerConfig)}
    toml = set(SchedulerSettings.__struct_fields__)
    # objects only the API can hold; the file's text for them; the runtime's own keys
    assert api - toml == {"handler", "location", "registry", "owner", "clock"}
    assert toml - api == {"store_options", "timezone", "metrics_port", "metrics_host"}
    # `store` is a Store in the API and its URL in the file; every other shared key is tuning
    assert set(TUNING_FIELDS) == api & toml - {"store"}


@pytest.mark.parametrize(
    ("value", "seconds"), [("'45s'", 45.0), ("'1m30s'", 90.0), ("2.5", 2.5), ("0", 0.0)]
)
def test_spans_take_go_durations_or_seconds(value: str, seconds: float) -> None:
    config = decode(f"[scheduler]\nshutdown_grace = {value}\nexternal_check = {value}\n")
    built = SchedulerConfig(**config.scheduler.tuning())
    assert built.shutdown_grace == built.external_check == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("value", "words"), [("'soon'", "invalid duration 'soon'"), ("'-5s'", "negative")]
)
def test_bad_spans_are_located(value: str, words: str) -> None:
    with pytest.raises(ConfigErrors) as info:
        decode(f"[scheduler]\nmisfire_grace = {value}\n")
    (error,) = info.value.errors
    assert error.field == "scheduler.misfire_grace"
    assert words in error.message


def test_the_api_takes_the_same_spellings() -> None:
    config = SchedulerConfig(shutdown_grace="2s", misfire_grace=90, external_check=0.5)
    assert config.shutdown_grace == timedelta(seconds=2)
    assert config.misfire_grace == timedelta(seconds=90)
    assert config.external_check == timedelta(milliseconds=500)
    with pytest.raises(ValueError, match="max_concurrency must be an integer >= 1"):
        SchedulerConfig(max_concurrency=0)
    with pytest.raises(ValueError, match="shutdown_grace: invalid duration"):
        SchedulerConfig(shutdown_grace="later")


def test_jobs_accept_policies_and_scheduler_history_settings() -> None:
    plain_hash = (declared_jobs(decode(JOB))[0][1].metadata or {})[SOURCE_HASH_KEY]
    text = (
        "[scheduler]\nhistory_keep = 50\nhistory_max_age = '168h'\n"
        + JOB
        + "policy = { overlap = 'buffer_all', catch_up_window = '15m', catch_up = 'all', "
        "jitter = '30s', end_at = 2027-01-01T00:00:00Z, max_runs = 10, timeout = '5m', "
        "retry = { attempts = 3, backoff = '10s' } }\n"
    )
    config = decode(text)
    built = SchedulerConfig(**config.scheduler.tuning())
    assert (built.history_keep, built.history_max_age) == (50, timedelta(days=7))
    unlimited = decode("[scheduler]\nhistory_keep = 0\nhistory_max_age = 0\n").scheduler
    built = SchedulerConfig(**unlimited.tuning())
    assert (built.history_keep, built.history_max_age) == (None, None)
    ((_, job),) = declared_jobs(config)
    assert job.policy is not None
    assert (job.policy.overlap, job.policy.catch_up, job.policy.max_runs) == (
        "buffer_all",
        "all",
        10,
    )
    assert str(job.policy.catch_up_window) == "15m0s" and job.policy.end_at is not None
    assert job.policy.retry is not None and job.policy.retry.attempts == 3
    # a policy changes the definition hash; an entry without one hashes as before
    assert (job.metadata or {})[SOURCE_HASH_KEY] != plain_hash
    import hashlib

    ((declared, _),) = declared_jobs(decode(JOB))
    before = msgspec.to_builtins(declared, enc_hook=str, order="sorted")
    del before["policy"]  # what the hash was computed from before policies existed
    body = msgspec.json.encode(before, order="sorted")
    assert plain_hash == hashlib.sha256(body).hexdigest()[:16]
    bad = decode(JOB + "policy = { overlap = 'sometimes' }\n")
    with pytest.raises(ConfigErrors) as info:
        declared_jobs(bad)
    assert fields_of(info.value) == ["jobs[0].policy.overlap"]
