"""The plugins install like a third party's: into a clean virtualenv, from their own files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, http.server, json, threading
    from omnicron_core import (Action, Duration, JobValidationError, Registry, Schedule, Scheduler,
                               SchedulerConfig, get_plugin_manager, new_job)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200); self.end_headers(); self.wfile.write(b"pong")
        def log_message(self, *a): pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    async def main():
        registry = Registry(get_plugin_manager(),
                            settings={"webhook": {"allow_networks": ["127.0.0.0/8"]}})
        s = Scheduler(SchedulerConfig(registry=registry, location="UTC"))
        job = new_job("w", "w", Schedule(interval=Duration("1h")),
                      Action(type="call_webhook",
                             webhook_url=f"http://127.0.0.1:{server.server_port}/hook"))
        try:
            await s.add_job(job)
        except JobValidationError as exc:
            print(json.dumps({"error": str(exc)}))
            return
        result = await s.trigger_job("w")
        print(json.dumps({"types": sorted(registry.executors), "success": result.success,
                          "output": result.output}))

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path


def _pip(venv: Path, *args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args],
        check=True,
        env=env,
        cwd=ROOT,
    )


def _run(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=venv,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(900)
def test_core_alone_then_with_the_webhook_plugin(venv: Path) -> None:
    _pip(venv, str(ROOT))
    without = _run(venv)
    assert "invalid action type: call_webhook; installed action types: none" in without
    _pip(venv, str(ROOT), str(ROOT / "plugins" / "omnicron-webhook"))
    with_plugin = _run(venv)
    assert '"types": ["call_webhook"]' in with_plugin
    assert '"success": true' in with_plugin and '"body": "pong"' in with_plugin
