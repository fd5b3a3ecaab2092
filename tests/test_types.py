"""The exporter's type hints are complete and consistent (`mypy --strict` finds nothing), and the tests use them
correctly (plain `mypy`, configured in pyproject.toml, finds nothing in tests/)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT


def mypy(*args: str, cache: Path) -> str:
    """What mypy says about ARGS, run from the project (its configuration in pyproject.toml); empty when clean."""
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed; run the tests with `make test`, which installs it")
    result = subprocess.run([sys.executable, "-m", "mypy", f"--cache-dir={cache}", *args],
                            capture_output=True, text=True, timeout=600, cwd=PROJECT)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def test_mypy_strict(tmp_path: Path) -> None:
    assert mypy("--strict", "exporter/kmem_exporter", cache=tmp_path) == ""


def test_mypy_on_the_tests(tmp_path: Path) -> None:
    assert mypy("tests", cache=tmp_path) == ""
