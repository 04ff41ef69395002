"""The code samples of docs/plugins.md, run for real: the plugin module is written to a package,
its pyproject is installed with pip into a fresh virtualenv next to the core, and the page's
test module runs under pytest against it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "plugins.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)


def test_the_page_has_the_samples_this_test_runs() -> None:
    assert len(blocks("python")) == 2
    assert len(blocks("toml")) == 2


def test_the_pyproject_sample_matches_the_example_distribution() -> None:
    sample = tomllib.loads(blocks("toml")[1])
    example = tomllib.loads(
        (ROOT / "examples/plugins/omnicron-append-file/pyproject.toml").read_text()
    )
    assert sample["project"]["dependencies"] == example["project"]["dependencies"]
    assert sample["project"]["entry-points"] == example["project"]["entry-points"]
    assert sample["build-system"] == example["build-system"]


@pytest.fixture(scope="module")
def doc_plugin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The page's plugin as a distribution (its pyproject, its module), pip-installed."""
    src = tmp_path_factory.mktemp("doc-plugin")
    (src / "pyproject.toml").write_text(
        blocks("toml")[1]
        + '\n[tool.hatch.build.targets.wheel]\npackages = ["omnicron_append_file"]\n'
    )
    (src / "omnicron_append_file").mkdir()
    (src / "omnicron_append_file" / "__init__.py").write_text(blocks("python")[0])
    venv = tmp_path_factory.mktemp("doc-venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT), str(src),
         "pytest", "pytest-asyncio"],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
    )  # fmt: skip
    return venv, src


@pytest.mark.timeout(900)
def test_the_sample_plugin_installs_lists_and_runs(
    doc_plugin: tuple[Path, Path], tmp_path: Path
) -> None:
    venv, _ = doc_plugin
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    listed = subprocess.run(
        [str(venv / "bin" / "omnicron"), "plugins", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    (action,) = next(p for p in json.loads(listed.stdout) if p["name"] == "append_file")["actions"]
    assert action["type"] == "append_file"
    assert set(action["parameters"]["properties"]) == {"path", "text", "newline"}
    # the TOML action line of the page, in a config that omnicron validates
    config = tmp_path / "omnicron.toml"
    config.write_text(
        f'[scheduler]\nstore = "sqlite:///{tmp_path / "j.db"}"\n\n'
        f'[plugins.append_file]\nroot = "{tmp_path}"\n\n'
        '[[jobs]]\nid = "hb"\nname = "hb"\nschedule = { interval = "1h" }\n' + blocks("toml")[0]
    )
    checked = subprocess.run(
        [str(venv / "bin" / "omnicron"), "validate", "-c", str(config)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.timeout(900)
def test_the_pages_plugin_tests_pass(doc_plugin: tuple[Path, Path], tmp_path: Path) -> None:
    venv, _ = doc_plugin
    (tmp_path / "test_sample.py").write_text(blocks("python")[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRON_")}
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "test_sample.py"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
