"""The layers of the package, as the import contracts in pyproject.toml state them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers() -> None:
    # import-linter's own command line, on the contracts in pyproject.toml: cli > commands >
    # service > ingest > rules | extractors | ledger > fs > core, and who may import SQLite, the
    # format parsers and the I/O libraries. A broken contract prints the import chain that breaks it.
    command = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    result = subprocess.run(
        [sys.executable, "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
