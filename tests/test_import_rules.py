"""The import rules of docs/architecture.md, as import-linter contracts in pyproject.toml: layers
core -> drivers.ray -> each driver, the drivers independent, core importing no driver, service or
CLI, the service no driver, only ray-pipeline the service (its client), and no import cycle.
CI runs ``lint-imports`` too (.ci/run); this runs it with the suite."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' brings import-linter")
    out = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and " KEPT" in out.stdout
