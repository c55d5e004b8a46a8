"""The package's shape holds by itself: layers, no private imports across modules, small rooms.

The import-linter contracts live in ``setup.cfg``; running them here makes the
README's test command check them on every run, in CI and on a laptop alike.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "audiocopy"


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is in the test extra (tools/setup_env.sh test)")
    # Run from the repository so the contracts in its setup.cfg are the ones checked.
    result = subprocess.run([str(lint), "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _python_files() -> list[Path]:
    files = list(PACKAGE.rglob("*.py")) + list((ROOT / "tools").rglob("*.py")) + [ROOT / "server.py"]
    return sorted(f for f in files if "__pycache__" not in f.parts)


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("audiocopy")):
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


#: Modules may run to this many lines, functions to ``MAX_FUNCTION_LINES``,
#: unless the function carries a comment that starts "# Long:" saying why.
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_rooms_stay_small():
    big_modules, big_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            big_modules.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        lines = text.split("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = lines[node.lineno - 1:node.end_lineno]
                if len(body) > MAX_FUNCTION_LINES and not any(b.strip().startswith("# Long:") for b in body):
                    big_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {len(body)} lines")
    assert big_modules == [] and big_functions == []
