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
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["TempPostgres", "find_bindir"]

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
            pw = pwd.getpwnam("postgres")
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
