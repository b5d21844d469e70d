"""Imports run one way: nothing below the console script imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keras_optnotes
from keras_optnotes import _usage, cli

PACKAGE = Path(keras_optnotes.__file__).parent
BELOW_CLI = sorted((PACKAGE / "commands").glob("*.py")) + [PACKAGE / "report.py"]


def _imported_modules(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in `path` (lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_checked_files_include_every_command():
    names = {path.stem for path in BELOW_CLI}
    assert {
        "report",
        "_common",
        "compare",
        "critical_batch",
        "regularize",
        "sharpness",
    } <= names


@pytest.mark.parametrize("path", BELOW_CLI, ids=lambda path: path.name)
def test_commands_and_report_do_not_import_the_console_script(path):
    assert "keras_optnotes.cli" not in _imported_modules(path)


def test_the_console_script_reexports_the_shared_usage_names():
    assert cli.UsageError is _usage.UsageError
    assert cli.PROG == _usage.PROG == "keras-optnotes"
