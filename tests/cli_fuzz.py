"""Random argument lists and config files against the ``omnicron`` command (in-process, through
click's runner, in a process of its own): ``python tests/cli_fuzz.py SEED COUNT`` prints one line
per input that ended in an unexpected error (the top level's safety net) or an exception, and
``done N`` with the number of distinct findings. ``tests/test_cli_hostile.py`` runs it."""

from __future__ import annotations

import os
import random
import string
import sys
import tempfile

from click.testing import CliRunner

from omnicron_core.cli import main

ATOMS = [
    "[/]", "\x1b]0;t\x07", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00", "-1", "0", "1e309",
    "nan", "inf", "", " ", "@every 0s", "@every -1s", "@every 1000000h", "* * * * * * *",
    "0 0 31 2 *", "0 0 30 2 *", "Pacific/Kiritimati", "Asia/Tokyo", "Nowhere/City", "memory://",
    "sqlite:///", "sqlite:////", "sqlite://host/x", "x://", "sqlite:///%00", "{}", "[]", "null",
    '{"a":', "[" * 3000, "1" * 400, "ä", "--", "-", "true", "1h", "300ms", "9223372036854775807",
    "send_message", "call_webhook", "call_tool", "http://127.0.0.1:9/x", "CRON_TZ=X 0 9 * * *",
    "j1", "j1", "now", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "2999-01-01T00:00:00Z",
    "postgresql://u:pw@127.0.0.1:99999/db", "postgresql://u@127.0.0.1:1/db?password=pw",
    "postgresql://u@127.0.0.1:1/d%00b", "x" * 5000, "a\nb", "\u202e", "skip", "buffer_all",
    "failed", "1e-9", "100000", "${env:HOME}",
]  # fmt: skip
JOB_FLAGS = [
    "--name", "--description", "--cron", "--every", "--at", "--timezone", "--session-id",
    "--message", "--tool-name", "--tool-params", "--metadata", "--webhook-url",
    "--webhook-header", "--action-type", "--id", "--webhook-method", "--webhook-body",
    "--param", "--params",
]  # fmt: skip
#: command, how many positional arguments, the options it takes
COMMANDS: list[tuple[list[str], int, list[str]]] = [
    (["validate"], 0, []),
    (["next"], 5, ["--tz", "--after", "-n"]),
    (["jobs", "list"], 0, ["--status"]),
    (["jobs", "show"], 1, []),
    (["jobs", "add"], 0, JOB_FLAGS),
    (["jobs", "update"], 1, JOB_FLAGS),
    (["jobs", "export"], 0, []),
    (["jobs", "enable"], 1, []),
    (["jobs", "disable"], 1, []),
    (["jobs", "remove"], 2, []),
    (["jobs", "import"], 1, []),
    (["plugins"], 0, []),
    (["run", "--for", "0"], 0, []),
    (["jobs", "history"], 1, ["--limit", "--before", "--outcome"]),
    (["jobs", "describe"], 1, ["--fires", "--runs"]),
    (["jobs", "pause"], 1, ["--note", "--by"]),
    (["jobs", "resume"], 1, ["--catch-up"]),
    (["jobs", "backfill"], 1, ["--from", "--to", "--overlap", "--rate"]),
    (["jobs", "trigger"], 1, []),
    (["store", "check"], 0, []),
]
KEYS = [
    "scheduler.timezone", "scheduler.store", "scheduler.max_concurrency",
    "scheduler.misfire_grace", "scheduler.shutdown_grace", "scheduler.metrics_port",
    "scheduler.store_options", "log.level", "log.format", "skill.min_interval",
    "skill.max_jobs_per_owner", "plugins.webhook.timeout", "plugins.send_message.transport",
    "plugins.tool.allow", "scheduler.history_keep", "scheduler.history_max_age",
    "scheduler.history_prune_interval", "skill.policy",
]  # fmt: skip


def atom(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(ATOMS)
    return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 12)))


def toml_value(rng: random.Random) -> str:
    text = atom(rng)
    quoted = '"' + "".join(f"\\u{ord(c):04x}" if not c.isalnum() else c for c in text) + '"'
    return rng.choice(
        [
            quoted,
            "1",
            "-5",
            "1e400",
            "nan",
            "inf",
            "[]",
            "{}",
            "true",
            "[[1]]",
            "2026-01-01T00:00:00Z",
            "1979-05-27",
            "07:32:00",
        ]
    )


def config(rng: random.Random) -> str:
    lines = []
    for key in rng.sample(KEYS, rng.randint(0, 3)):
        table, name = key.rsplit(".", 1)
        lines += [f"[{table}]", f"{name} = {toml_value(rng)}"]
    if rng.random() < 0.4:
        kind = rng.choice(["cron", "interval", "once", "timezone"])
        policy = rng.choice(["overlap", "start_at", "end_at", "max_runs", "retry", "jitter"])
        action_type = rng.choice(['"send_message"', toml_value(rng)])
        lines += [
            "[[jobs]]",
            f"id = {toml_value(rng)}",
            f"name = {toml_value(rng)}",
            f"schedule = {{ {kind} = {toml_value(rng)} }}",
            f"action = {{ type = {action_type}, "
            f"session_id = {toml_value(rng)}, message = {toml_value(rng)} }}",
        ]
        if rng.random() < 0.5:
            lines.append(f"policy = {{ {policy} = {toml_value(rng)} }}")
    return "\n".join(lines) + "\n"


def main_(seed: int, count: int) -> int:
    rng = random.Random(seed)
    runner = CliRunner()
    found: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        # a real store with a job and its history, for the commands that read or change one
        runner.invoke(
            main,
            ["jobs", "add", "--id", "j1", "--name", "j1", "--every", "1h", "--session-id", "s",
             "--message", "m", "--store", "sqlite:///j.db"],
            env={"OMNICRON_LOG_LEVEL": "error"},
        )  # fmt: skip
        for _ in range(count):
            with open("c.toml", "w", encoding="utf-8") as fh:
                fh.write(config(rng))
            command, positional, options = rng.choice(COMMANDS)
            args = list(command)
            args += [atom(rng) for _ in range(rng.randint(min(1, positional), positional))]
            for _ in range(rng.randint(0, 4) if options else 0):
                args += [rng.choice(options), atom(rng)]
            if rng.random() < 0.3:
                args.append("--json")
            if "-c" not in args and rng.random() < 0.7:
                args += ["-c", "c.toml"]
            if "--store" not in args:
                args += ["--store", rng.choice(["memory://", "sqlite:///j.db"])]
            # NUL cannot be in a real argument list (C strings)
            args = [a.replace("\x00", "") for a in args]
            result = runner.invoke(main, args, env={"OMNICRON_LOG_LEVEL": "error"})
            out = result.output or ""
            exc = result.exception
            if "error: unexpected" in out:
                key = out.split("error: unexpected", 1)[1].split("\n")[0][:80]
            elif exc is not None and not isinstance(exc, SystemExit):
                key = repr(exc)[:80]
            else:
                continue
            if key not in found:
                found[key] = args
                print(f"FOUND {key!r} args={args!r}")
    print(f"done {len(found)}")
    return len(found)


if __name__ == "__main__":
    sys.exit(1 if main_(int(sys.argv[1]), int(sys.argv[2])) else 0)
