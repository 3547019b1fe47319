"""The style is checked, not hoped for: ruff (lint + format) and snakefmt, configured in
pyproject.toml, and ``snakemake --lint``, each run on the whole repository.

To fix what these report: ``ruff check --fix . && ruff format . && snakefmt .`` from the
repository root (a lint finding without an automatic fix is named with its file and line).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    result.output = result.stdout + result.stderr
    return result


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "--no-fix", "."),
        ("ruff", "format", "--check", "."),
        ("snakefmt", "--check", "."),
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_repository_is_clean(command):
    result = run(*command)
    assert result.returncode == 0, f"`{' '.join(command)}` (pip install -e '.[test]'):\n{result.output[-6000:]}"


def test_snakemake_lint_is_clean():
    """Every rule has a log and a conda environment, no absolute paths, no mixed rules."""
    result = run("snakemake", "--lint", "--workflow-profile", "none")
    assert result.returncode == 0, result.output[-6000:]
    assert "Congratulations, your workflow is in a good condition!" in result.output
