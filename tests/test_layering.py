"""The core's modules form layers: no import circles, each module imports on its own, and
everything omnicron raises on purpose is an ``OmnicronError``."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import omnicron_core

PACKAGE = Path(omnicron_core.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> set[str]:
    """The omnicron_core modules ``module`` imports at run time (function-level imports too:
    a lazy import hides a circle, it does not remove it; ``if TYPE_CHECKING`` ones excluded)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:  # `from . import hookspecs` imports a module
                if f"{target}.{alias.name}" in MODULES:
                    found.add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Every import circle, each reported once (from its smallest module name)."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(GRAPH[node]):
            # a package imports its own submodules; the submodules importing the package is
            # the circle we look for, so the package-to-child edge does not count
            if nxt.startswith(node + "."):
                continue
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for module in MODULES:
        walk(module, module, [module])
    return found


def test_no_import_circles() -> None:
    assert _cycles() == []


def test_the_graph_sees_imports() -> None:
    # the test above can fail: the graph holds the edges it should
    assert "omnicron_core._errors" in GRAPH["omnicron_core._scheduler"]
    assert "omnicron_core.cron" in GRAPH["omnicron_core.describe"]
    assert "omnicron_core.cron" in GRAPH["omnicron_core._schedule"]  # a function-level import


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith("__main__")])
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # importing is silent too


def test_every_exported_exception_is_an_omnicron_error() -> None:
    exported = [
        getattr(omnicron_core, name)
        for name in omnicron_core.__all__
        if inspect.isclass(getattr(omnicron_core, name))
        and issubclass(getattr(omnicron_core, name), BaseException)
    ]
    names = {cls.__name__ for cls in exported}
    assert {
        "CronError",
        "SettingError",
        "ArgumentError",
        "ToolError",
        "ConfigError",
        "MissingEnvVarError",
    } <= names
    assert [
        cls.__name__ for cls in exported if not issubclass(cls, omnicron_core.OmnicronError)
    ] == []


def test_exceptions_defined_anywhere_in_the_core_are_in_the_tree() -> None:
    from omnicron_core.config import ConfigErrors
    from omnicron_core.skill import ArgumentError, ToolError

    for cls in (ConfigErrors, ArgumentError, ToolError):
        assert issubclass(cls, omnicron_core.OmnicronError)
    assert issubclass(omnicron_core.CronError, omnicron_core.JobValidationError)
    assert issubclass(omnicron_core.SettingError, omnicron_core.ConfigError)
