"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a
temporary directory on a free port, removed afterwards.

PostgreSQL refuses to run as root; when the caller is root the server runs as the ``postgres``
OS user through ``runuser -u postgres --``, in a directory under ``/tmp`` owned by that user
(mode 0700). The binaries come from ``$OMNICRON_PG_BINDIR``, else
``/usr/lib/postgresql/15/bin``, else ``pg_config --bindir``; when none has them,
:class:`TempPostgres` raises :class:`RuntimeError` saying so (tests fail, never skip).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CLI", "Cluster", "Receiver", "TempPostgres", "cli_env", "find_bindir"]

_DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[str] = []
    if os.environ.get("OMNICRON_PG_BINDIR"):
        candidates.append(os.environ["OMNICRON_PG_BINDIR"])
    candidates.append(_DEFAULT_BINDIR)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(out.stdout.strip())
    for cand in candidates:
        path = Path(cand)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in "
        f"{', '.join(candidates)}; install PostgreSQL 15 (apt-get install postgresql-15) or set "
        "OMNICRON_PG_BINDIR to the directory that holds them"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TempPostgres:
    """A private PostgreSQL cluster. ``start()``, then :attr:`url` (superuser ``postgres``,
    trust authentication on 127.0.0.1), :meth:`create_database`, :meth:`restart`,
    :meth:`stop` and :meth:`remove`. ``settings`` become ``-c name=value`` server options."""

    def __init__(self, *, settings: dict[str, str] | None = None, fsync: bool = False) -> None:
        self.bindir = find_bindir()
        self.as_postgres = os.geteuid() == 0
        self.settings = {"max_connections": "200", "listen_addresses": "127.0.0.1"}
        if not fsync:
            # tests need no crash durability of the test cluster itself
            self.settings.update({"fsync": "off", "full_page_writes": "off"})
        self.settings.update(settings or {})
        self.dir = Path(tempfile.mkdtemp(prefix="omnicron-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        if self.as_postgres:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError(
                    "PostgreSQL refuses to run as root and there is no 'postgres' OS user to "
                    "run it as (the postgresql-15 package creates one)"
                ) from None
            if shutil.which("runuser") is None:
                shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError("running PostgreSQL as 'postgres' needs runuser (util-linux)")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        self.started = False

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        argv = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_postgres else argv

    def _run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}".strip()
            )

    def start(self) -> TempPostgres:
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        opts = " ".join(
            [f"-p {self.port}", f"-k {self.dir}"]
            + [f"-c {k}={v}" for k, v in self.settings.items()]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")
        self.started = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.started = False

    def restart(self) -> None:
        """Stop (fast: every connection is cut) and start again on the same port."""
        self.stop()
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url_for(database), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


# -- real `omnicron run` nodes on one database ------------------------------------------------


CLI = [sys.executable, "-m", "omnicron_core.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    out.update({"OMNICRON_LOG_FORMAT": "json", **extra})
    return out


class Cluster:
    """Scheduler nodes (``omnicron run`` processes) sharing one PostgreSQL database. Each node
    start writes its messages (the jsonl transport: job id and fire time per run) and its log
    to files of its own."""

    def __init__(self, tmp_path: Path, url: str, **options: Any) -> None:
        self.dir = tmp_path
        self.url = url
        self.options = options
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.starts = 0
        #: TOML appended to every node's config (plugin sections).
        self.extra_config = ""

    def config(self, node: int, generation: int) -> Path:
        path = self.dir / f"node{node}-{generation}.toml"
        opts = ", ".join(f"{k} = {json.dumps(v)}" for k, v in self.options.items())
        path.write_text(
            f"""
[scheduler]
store = "{self.url}"
store_options = {{ {opts} }}
timezone = "UTC"
shutdown_grace = 10

[plugins.send_message]
transport = "jsonl"
path = "{self.dir / f"sink-{node}-{generation}.jsonl"}"

{self.extra_config}
"""
        )
        return path

    def start(self, node: int, *extra: str, **env: str) -> subprocess.Popen[bytes]:
        self.starts += 1
        gen = self.starts
        log = (self.dir / f"node{node}-{gen}.log").open("wb")
        proc = subprocess.Popen(
            [*CLI, "run", "-c", str(self.config(node, gen)), *extra],
            env=cli_env(OMNICRON_NODE_ID=f"node{node}", **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[node] = proc
        return proc

    def signal(self, node: int, sig: signal.Signals) -> None:
        self.procs[node].send_signal(sig)

    def stop_all(self, timeout: float = 30) -> dict[int, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for node, proc in self.procs.items():
            try:
                codes[node] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[node] = proc.wait()
        return codes

    def runs(self) -> list[tuple[str, str, str]]:
        """(job id, fire time, sink file) of every message any node sent."""
        out = []
        for sink in sorted(self.dir.glob("sink-*.jsonl")):
            for line in sink.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by kill -9
                out.append((rec["job_id"], rec["scheduled_for"], sink.name))
        return out

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for log in sorted(self.dir.glob("node*.log")):
            for line in log.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                rec["_file"] = log.name
                out.append(rec)
        return out

    def sql(self, query: str, params: Any = None) -> list[Any]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def db_now(self) -> Any:
        return self.sql("SELECT clock_timestamp()")[0][0]

    def import_jobs(self, jobs: list[dict[str, Any]]) -> None:
        path = self.dir / "jobs.json"
        path.write_text(json.dumps(jobs))
        out = subprocess.run(
            [*CLI, "jobs", "import", str(path), "-c", str(self.config(0, 0))],
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr

    def wait_for(self, cond: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)


class Receiver:
    """A webhook receiver on 127.0.0.1 recording each request's Idempotency-Key and answering
    after ``delay`` seconds (so runs stay in flight); ``close()`` stops it."""

    def __init__(self, delay: float) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.keys: list[str] = []
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.keys.append(self.headers.get("Idempotency-Key", ""))
                time.sleep(receiver.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
