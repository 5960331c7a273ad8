"""The package's shape: data flows one way through the stages (no import from a later stage, no circle), no module
over 500 lines, and every module imports on its own in a fresh interpreter (slow)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "owngpt"
# The stages in the order data flows through them: a module may import from its own stage or an earlier one.
STAGES = ["errors", "allocator", "lazy", "lang", "io", "console", "config", "runtime", "tokenizer", "data", "persona", "model", "checkpoint", "train",
          "generate", "chat", "evaluate", "export", "serve", "pipeline", "clone", "cli", "__main__"]
MAX_LINES = 500


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _owngpt_imports(name: str, path: Path) -> set[str]:
    """Every owngpt module `path` imports, function-local imports included."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {m for m in found if m == "owngpt" or m.startswith("owngpt.")}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_runs_back_up_the_pipeline():
    backwards = []
    for name, path in _modules():
        own = _stage(name)
        if own is None:
            continue
        for imported in _owngpt_imports(name, path):
            theirs = _stage(imported)
            if theirs is not None and STAGES.index(theirs) > STAGES.index(own):
                backwards.append(f"{name} imports {imported}")
    assert not backwards, "imports from a later stage:\n" + "\n".join(sorted(backwards))


def test_every_stage_is_listed():
    assert {_stage(name) for name, _ in _modules()} - {None} <= set(STAGES)


def test_no_module_is_over_500_lines():
    big = [f"{path.relative_to(ROOT.parent)}: {n}" for _, path in _modules()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not big, big


def test_every_module_has_a_docstring():
    missing = [name for name, path in _modules() if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
               and path.name != "__main__.py"]
    assert not missing, missing


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    failed = []
    for name, _ in _modules():
        if name.endswith("__main__"):
            continue
        run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True)
        if run.returncode:
            failed.append(f"{name}: {run.stderr.strip().splitlines()[-1]}")
    assert not failed, "\n".join(failed)
