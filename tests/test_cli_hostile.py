"""Hostile input against the real ``omnicron`` process: user data is shown as plain text (no
rich markup, no emoji codes, control characters escaped, on a terminal and piped), and no input
produces a traceback (exit 1, or 2 for usage, with an ``error:`` line naming the field)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from omnicron_core import Store, decode_job
from omnicron_core._store import StoreConfig

CLI = [sys.executable, "-m", "omnicron_core.cli"]

HOSTILE_NAMES = {
    "close": "[/]",
    "link": "[link=http://x]y",
    "title": "\x1b]0;title\x07",
    "emoji": ":thumbs_up: [bold]b",
    "csi": "a\x9b31mred",
}
#: How each hostile name must appear: the markup and emoji codes as typed, controls escaped.
SHOWN = {
    "close": "[/]",
    "link": "[link=http://x]y",
    "title": "\\x1b]0;title\\x07",
    "emoji": ":thumbs_up: [bold]b",
    "csi": "a\\x9b31mred",
}


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    out.update({"OMNICRON_LOG_FORMAT": "json", "COLUMNS": "400", **extra})
    return out


def omnicron(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], cwd=cwd, env=env(**extra), capture_output=True, timeout=60)


def on_a_terminal(*args: str, cwd: Path) -> tuple[int, bytes]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (exit status, bytes)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *args], cwd=cwd, env=env(TERM="xterm-256color"), stdout=follower, stderr=follower
    )
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=30), out


def store_hostile_jobs(db: Path) -> None:
    """Write jobs straight into the store, past every validation an entry point would do."""

    async def save() -> None:
        store = Store(StoreConfig(url=f"sqlite:///{db}"))
        for key, name in HOSTILE_NAMES.items():
            job = decode_job(
                json.dumps(
                    {
                        "id": key,
                        "name": name,
                        "description": f"about {name}\x1b[2J",
                        "schedule": {"cron": "0 9 * * *"},
                        "action": {"type": "send_message", "session_id": "s", "message": "m"},
                        "status": "enabled",
                        "last_error": f"failed {name}",
                        "next_run_at": "2030-01-01T09:00:00Z",
                        "created_at": "2026-01-01T00:00:00Z",
                        "metadata": {"k\x1b[1m": f"v{name}"},
                    }
                )
            )
            await store.save(job)
        await store.close()

    asyncio.run(save())


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    db = tmp_path / "jobs.db"
    store_hostile_jobs(db)
    return db


def assert_plain(out: bytes, *, terminal: bool) -> None:
    """No byte sequence a terminal would act on came from user data."""
    assert b"\x07" not in out  # bell / OSC terminator
    assert b"\x1b]" not in out  # OSC: title, hyperlinks
    assert b"\x1b[2J" not in out  # clear screen
    assert "\x9b".encode() not in out  # 8-bit CSI
    assert "👍".encode() not in out  # emoji codes are text
    if not terminal:
        assert b"\x1b" not in out
    assert b"Traceback" not in out


def test_jobs_list_piped_shows_names_as_text(hostile: Path) -> None:
    proc = omnicron("jobs", "list", "--store", f"sqlite:///{hostile}", cwd=hostile.parent)
    assert proc.returncode == 0, proc.stderr
    assert_plain(proc.stdout + proc.stderr, terminal=False)
    text = proc.stdout.decode()
    for key, shown in SHOWN.items():
        line = next(line for line in text.splitlines() if line.startswith(key + " "))
        assert shown in line
        assert f"failed {shown}" in line


def test_jobs_list_on_a_terminal_shows_names_as_text(hostile: Path) -> None:
    status, out = on_a_terminal(
        "jobs", "list", "--store", f"sqlite:///{hostile}", cwd=hostile.parent
    )
    assert status == 0, out
    assert_plain(out, terminal=True)
    for shown in SHOWN.values():
        assert shown.encode() in out


@pytest.mark.parametrize("key", sorted(HOSTILE_NAMES))
def test_jobs_show_piped_and_on_a_terminal(hostile: Path, key: str) -> None:
    args = ("jobs", "show", key, "--store", f"sqlite:///{hostile}")
    proc = omnicron(*args, cwd=hostile.parent)
    assert proc.returncode == 0, proc.stderr
    assert_plain(proc.stdout + proc.stderr, terminal=False)
    lines = proc.stdout.decode().splitlines()
    assert f"name:        {SHOWN[key]}" in lines
    assert f"description: about {SHOWN[key]}\\x1b[2J" in lines
    assert f"last error:  failed {SHOWN[key]}" in lines
    status, out = on_a_terminal(*args, cwd=hostile.parent)
    assert status == 0, out
    assert_plain(out, terminal=True)
    assert SHOWN[key].encode() in out


def test_json_output_escapes_control_characters(hostile: Path) -> None:
    proc = omnicron("jobs", "list", "--json", "--store", f"sqlite:///{hostile}", cwd=hostile.parent)
    assert proc.returncode == 0, proc.stderr
    assert_plain(proc.stdout, terminal=False)
    names = {job["id"]: job["name"] for job in json.loads(proc.stdout)}
    assert names == HOSTILE_NAMES  # escaped in the bytes, exact in the data
    export = hostile.parent / "export.json"
    proc = omnicron(
        "jobs", "export", "-o", str(export), "--store", f"sqlite:///{hostile}", cwd=hostile.parent
    )
    assert proc.returncode == 0, proc.stderr
    assert_plain(export.read_bytes(), terminal=False)


def test_job_id_argument_is_shown_as_text(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"

    async def create() -> None:  # a read never creates the store
        store = Store(StoreConfig(url=db))
        await store.open()
        await store.close()

    asyncio.run(create())
    for job_id in ("[/]", "[link=http://x]y", "\x1b]0;t\x07"):
        proc = omnicron("jobs", "show", job_id, "--store", db, cwd=tmp_path)
        assert proc.returncode == 1
        assert_plain(proc.stdout + proc.stderr, terminal=False)
        assert proc.stderr.decode().startswith("error: job not found: ")
        status, out = on_a_terminal("jobs", "show", job_id, "--store", db, cwd=tmp_path)
        assert status == 1
        assert_plain(out, terminal=True)
        assert b"job not found" in out


# -- item 10: no traceback for any input --------------------------------------------------


def error_lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    text = proc.stderr.decode(errors="replace")
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ('[scheduler]\nstore = "memory://"\n"[/]" = 1\n', "scheduler.[/]"),
        ('[scheduler]\nstore = "memory://"\ntimezone = "[/]"\n', "scheduler.timezone"),
        ('"[link=http://x]y" = 1\n', "[link=http://x]y"),
        ('[plugins."[/]"]\nx = 1\n', "plugins.[/]"),
        ('[[jobs]]\nid = "[/]"\nname = "[/]"\nschedule = { cron = "[/]" }\n'
         'action = { type = "[/]" }\n', "jobs[0]"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["validate", "run"])
def test_markup_in_config_keys_and_values(
    tmp_path: Path, toml: str, field: str, command: str
) -> None:
    (tmp_path / "c.toml").write_text(toml)
    args = ["--for", "0"] if command == "run" else []
    proc = omnicron(command, "-c", "c.toml", *args, cwd=tmp_path)
    assert proc.returncode == 1
    errors = error_lines(proc)
    assert any(line.startswith(f"error: {field}") for line in errors), errors


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_bytes(b'[scheduler]\nstore = "\xff\xfe"\n')
    for command in ("validate", "run", "plugins", "mcp"):
        proc = omnicron(command, "-c", "c.toml", cwd=tmp_path)
        assert proc.returncode == 1, (command, proc.stderr)
        errors = error_lines(proc)
        assert errors, (command, proc.stderr)
        assert "c.toml" in errors[0] and "UTF-8" in errors[0], errors


def test_deeply_nested_toml(tmp_path: Path) -> None:
    depth = 50_000
    (tmp_path / "c.toml").write_text("x = " + "[" * depth + "]" * depth + "\n")
    for command in ("validate", "run", "mcp"):
        proc = omnicron(command, "-c", "c.toml", cwd=tmp_path)
        assert proc.returncode == 1, (command, proc.stderr)
        errors = error_lines(proc)
        assert errors and "c.toml" in errors[0] and "nest" in errors[0], errors


def test_moderately_nested_job_metadata_is_refused_with_its_place(tmp_path: Path) -> None:
    # deep enough to trouble the decoders, shallow enough for tomllib
    nested = "[" * 200 + "]" * 200
    (tmp_path / "c.toml").write_text(
        '[[jobs]]\nid = "a"\nname = "a"\nschedule = { cron = "@daily" }\n'
        'action = { type = "send_message", session_id = "s", message = "m" }\n'
        f"metadata = {{ deep = {nested} }}\n"
    )
    proc = omnicron("validate", "-c", "c.toml", cwd=tmp_path)
    assert proc.returncode == 1
    errors = error_lines(proc)
    assert errors and "nest" in errors[0], errors


def test_store_url_with_nul(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('[scheduler]\nstore = "sqlite:///x\\u0000y.db"\n')
    for command in ("validate", "run"):
        proc = omnicron(command, "-c", "c.toml", cwd=tmp_path)
        assert proc.returncode == 1, (command, proc.stderr)
        errors = error_lines(proc)
        assert errors and errors[0].startswith("error: scheduler.store: "), errors
        assert "\\x00" in errors[0]
    proc = omnicron("jobs", "list", "--store", "sqlite:///x\x01y.db", cwd=tmp_path)
    assert proc.returncode == 1
    assert error_lines(proc)
    assert not list(tmp_path.glob("x*"))


@pytest.mark.parametrize("command", [["jobs", "list"], ["jobs", "add", "--name", "a", "--every", "1h",
                                                         "--session-id", "s", "--message", "m"],
                                     ["run", "--for", "0"]])  # fmt: skip
def test_store_in_a_folder_that_cannot_be_made(tmp_path: Path, command: list[str]) -> None:
    proc = omnicron(*command, "--store", "sqlite:////proc/self/nonexistent/x.db", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc)
    assert errors and "/proc/self/nonexistent" in errors[0], errors


def test_unexpected_errors_become_an_error_line_with_a_hint(tmp_path: Path) -> None:
    # A store URL scheme whose factory crashes in a way nobody anticipated.
    plugin = tmp_path / "crashing_store.py"
    plugin.write_text(
        "from omnicron_core.plugin import StoreBackendSpec, hookimpl\n"
        "def factory(url, options):\n"
        "    raise ZeroDivisionError('boom')\n"
        "@hookimpl\n"
        "def omnicron_store_backends():\n"
        "    return [StoreBackendSpec(scheme='crash', factory=factory)]\n"
    )
    script = (
        "import sys, crashing_store\n"
        "from omnicron_core import _plugins\n"
        "orig = _plugins.get_plugin_manager\n"
        "def pm(*a, **k):\n"
        "    k['plugins'] = [*k.get('plugins', ()), crashing_store]\n"
        "    return orig(*a, **k)\n"
        "_plugins.get_plugin_manager = pm\n"
        "import omnicron_core.runtime as r; r.get_plugin_manager = pm\n"
        "from omnicron_core.cli import main\n"
        "sys.exit(main())\n"
    )
    base = [sys.executable, "-c", script, "jobs", "list", "--store", "crash://x"]
    proc = subprocess.run(
        base, cwd=tmp_path, env=env(PYTHONPATH=str(tmp_path)), capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    errors = error_lines(proc)
    assert errors and "ZeroDivisionError: boom" in errors[0], proc.stderr
    assert b"OMNICRON_DEBUG=1" in proc.stderr
    proc = subprocess.run(
        base, cwd=tmp_path, env=env(PYTHONPATH=str(tmp_path), OMNICRON_DEBUG="1"),
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert b"Traceback" in proc.stderr and b"ZeroDivisionError" in proc.stderr
    debug = [sys.executable, "-c", script, "--debug", *base[3:]]
    proc = subprocess.run(
        debug, cwd=tmp_path, env=env(PYTHONPATH=str(tmp_path)), capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    assert (
        b"Traceback" in proc.stderr and b"error: unexpected ZeroDivisionError: boom" in proc.stderr
    )


# -- item 11: private files and folders ---------------------------------------------------


def test_export_is_private_and_store_folders_too_under_umask_0(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "jobs.db"
    export = tmp_path / "export.json"
    export.write_text("[]")
    export.chmod(0o644)  # an existing file is made private too: it now holds the jobs
    script = (
        "import os, sys\n"
        "os.umask(0)\n"
        "from omnicron_core.cli import main\n"
        "sys.argv = ['omnicron', *sys.argv[1:]]\n"
        "main()\n"
    )
    add = ["jobs", "add", "--name", "a", "--every", "1h", "--session-id", "s", "--message", "m"]
    for args in (
        add,
        ["jobs", "export", "-o", str(export)],
        ["jobs", "export", "-o", str(tmp_path / "new.json")],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", script, *args, "--store", f"sqlite:///{db}"],
            cwd=tmp_path, env=env(), capture_output=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for out in (export, tmp_path / "new.json"):
        assert stat.S_IMODE(out.stat().st_mode) == 0o600, out
        assert len(json.loads(out.read_text())) == 1


@pytest.mark.parametrize(
    "setting", ["misfire_grace = 1e400", "shutdown_grace = inf", "misfire_grace = nan"]
)
def test_unbounded_seconds_are_refused(tmp_path: Path, setting: str) -> None:
    # found by fuzzing: an infinite misfire_grace overflowed timedelta in every command
    (tmp_path / "c.toml").write_text(f'[scheduler]\nstore = "memory://"\n{setting}\n')
    for command in (["validate"], ["jobs", "list"], ["run", "--for", "0"]):
        proc = omnicron(*command, "-c", "c.toml", cwd=tmp_path)
        assert proc.returncode == 1, (command, proc.stderr)
        errors = error_lines(proc)
        assert errors and errors[0].startswith(f"error: scheduler.{setting.split()[0]}"), errors


def test_undecodable_bytes_in_arguments_are_shown_escaped(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CLI, "jobs", "show", b"\xff[/]".decode("utf-8", "surrogateescape"), "--store", "memory://"],
        cwd=tmp_path, env=env(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == b"error: job not found: \\udcff[/]\n"


def test_console_log_events_escape_control_characters(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"

    async def save() -> None:
        store = Store(StoreConfig(url=f"sqlite:///{db}"))
        job = decode_job(
            json.dumps(
                {
                    "id": "\x1b]0;pwned\x07",
                    "name": "n",
                    "schedule": {"once": "2026-01-01T00:00:00Z"},
                    "action": {"type": "no_such_type\x1b[2J"},
                    "status": "enabled",
                    "next_run_at": "2026-01-01T00:00:00Z",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            )
        )
        await store.save(job)
        await store.close()

    asyncio.run(save())
    proc = omnicron(
        "run", "--for", "2", "--store", f"sqlite:///{db}", "--log-format", "console",
        "--log-level", "debug", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert b"\\x1b]0;pwned\\x07" in proc.stderr  # the run was logged, with its id escaped
    assert_plain(proc.stdout + proc.stderr, terminal=False)


def test_a_job_at_the_end_of_time_lists_in_a_zone_east_of_utc(tmp_path: Path) -> None:
    # 9999-12-31T23:59:59Z is year 10000 in Asia/Tokyo: listing must not crash on it
    db = tmp_path / "jobs.db"

    async def save() -> None:
        store = Store(StoreConfig(url=f"sqlite:///{db}"))
        job = decode_job(
            json.dumps(
                {
                    "id": "far",
                    "name": "far",
                    "schedule": {"once": "9999-12-31T23:59:59Z"},
                    "action": {"type": "send_message", "session_id": "s", "message": "m"},
                    "status": "enabled",
                    "next_run_at": "9999-12-31T23:59:59Z",
                    "created_at": "2026-01-01T00:00:00Z",
                }
            )
        )
        await store.save(job)
        await store.close()

    asyncio.run(save())
    (tmp_path / "c.toml").write_text(
        f'[scheduler]\nstore = "sqlite:///{db}"\ntimezone = "Asia/Tokyo"\n'
    )
    for command in (["jobs", "list"], ["jobs", "show", "far"]):
        proc = omnicron(*command, "-c", "c.toml", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert b"9999-12-31 23:59:59+00:00" in proc.stdout


def test_fuzzed_arguments_and_configs_never_reach_the_safety_net(tmp_path: Path) -> None:
    # random argument lists and config files (tests/cli_fuzz.py); each must end in a result,
    # a located error or a usage error, never in "error: unexpected ..." (a bug)
    script = Path(__file__).with_name("cli_fuzz.py")
    proc = subprocess.run(
        [sys.executable, str(script), "1", "400"], cwd=tmp_path, env=env(), capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.decode().splitlines()[-1] == "done 0"


@pytest.mark.parametrize(
    ("store", "words"),
    [
        ("sqlite:////proc/self/nonexistent/x.db", "/proc/self/nonexistent"),
        ("sqlite:///x\x01y.db", "control character"),
        ("nope://x", "no store backend"),
    ],
)
def test_mcp_server_with_a_bad_store(tmp_path: Path, store: str, words: str) -> None:
    # the store opens inside the server's task group: its error came out as an ExceptionGroup
    proc = subprocess.run(
        [*CLI, "mcp", "--store", store], cwd=tmp_path, env=env(), capture_output=True,
        stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = error_lines(proc)
    assert errors and words in errors[0], errors
    assert "unexpected" not in errors[0]


@pytest.mark.parametrize("flag", ["--param", "--tool-params", "--metadata", "--params"])
def test_deeply_nested_json_in_flags(tmp_path: Path, flag: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    value = f"x={deep}" if flag == "--param" else deep
    proc = omnicron(
        "jobs", "add", "--name", "a", "--every", "1h", "--type", "call_tool",
        "--tool-name", "t", flag, value, "--store", "memory://", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = error_lines(proc)
    assert errors and "nested too deeply" in errors[0] and flag in errors[0], errors
