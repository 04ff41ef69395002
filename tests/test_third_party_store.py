"""A third-party store distribution, installed with plain pip into a fresh virtualenv (no uv
workspace): examples/plugins/omnicron-jsonfile-store passes the conformance kit there, and
``omnicron run`` fires jobs from a ``jsonfile://`` store while another ``omnicron`` process adds
one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugins" / "omnicron-jsonfile-store"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store-venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [
            str(path / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            str(ROOT),
            str(ROOT / "plugins" / "omnicron-send-message"),
            f"{EXAMPLE}[test]",
        ],
        check=True,
        env=env,
        cwd=path.parent,
    )
    return path


def _env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("OMNICRON_", "PYTHON"))}
    out["OMNICRON_LOG_FORMAT"] = "json"
    return out


@pytest.mark.timeout(900)
def test_the_jsonfile_store_passes_the_kit_in_a_plain_pip_install(venv: Path) -> None:
    proc = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",  # list why each skipped case was skipped
            "-c",
            str(EXAMPLE / "pyproject.toml"),  # not the repository's pytest settings
            "--rootdir",
            str(EXAMPLE),
            str(EXAMPLE / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
        cwd=venv.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "passed" in summary
    # the two-process cases ran (the backend declares external_writers); only the run-history
    # cases are skipped (this store keeps no history)
    skipped = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("keeps no run history" in line for line in skipped), proc.stdout
    # the kit and the plugin came from the virtualenv, not from this checkout
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import omnicron_core, omnicron_jsonfile_store as m; "
            "print(omnicron_core.__file__); print(m.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        cwd=venv.parent,
    )
    assert all(str(venv) in line for line in where.stdout.splitlines())


@pytest.mark.timeout(600)
def test_omnicron_run_fires_jobs_from_a_jsonfile_store(venv: Path, tmp_path: Path) -> None:
    store = tmp_path / "data" / "jobs.json"
    messages = tmp_path / "messages.jsonl"
    config = tmp_path / "omnicron.toml"
    config.write_text(
        f"""
[scheduler]
store = "jsonfile:///{store}"
timezone = "UTC"

[plugins.send_message]
transport = "jsonl"
path = "{messages}"

[[jobs]]
id = "declared"
name = "declared"
schedule = {{ interval = "300ms" }}
action = {{ type = "send_message", session_id = "s-declared", message = "tick" }}
"""
    )
    omnicron = str(venv / "bin" / "omnicron")
    validated = subprocess.run(
        [omnicron, "validate", "-c", str(config)], capture_output=True, text=True, env=_env()
    )
    assert validated.returncode == 0, validated.stderr
    assert not store.exists()  # validate builds the backend but creates nothing

    run = subprocess.Popen(
        [omnicron, "run", "-c", str(config), "--for", "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while not (messages.exists() and messages.read_text().strip()):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.1)
        # another process adds a job to the same store while `run` is live
        added = tmp_path / "added.json"
        added.write_text(
            json.dumps(
                [
                    {
                        "id": "added",
                        "name": "added",
                        "schedule": {"interval": "500ms"},
                        "action": {
                            "type": "send_message",
                            "session_id": "s-added",
                            "message": "hello",
                        },
                    }
                ]
            )
        )
        imported = subprocess.run(
            [omnicron, "jobs", "import", "-c", str(config), str(added)],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=tmp_path,
        )
        assert imported.returncode == 0, imported.stderr
    finally:
        _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "state saved" in err
    sent = [json.loads(line) for line in messages.read_text().splitlines() if line.strip()]
    sessions = {m["session_id"] for m in sent}
    assert sessions == {"s-declared", "s-added"}, sent
    jobs = {j["id"]: j for j in json.loads(store.read_text())}
    assert set(jobs) == {"declared", "added"}
    assert jobs["declared"]["run_count"] == sum(m["session_id"] == "s-declared" for m in sent)
    assert jobs["added"]["run_count"] >= 1 and jobs["added"]["status"] == "enabled"
