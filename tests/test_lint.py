"""ruff over the package, tests, scripts, benchmarks and the notebooks' code cells (config: pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["trustml_lab", "tests", "scripts", "benchmarks", "solutions", "notebooks"]


def _ruff() -> list[str]:
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    return [found]


@pytest.mark.parametrize("path", PATHS)
def test_ruff_finds_nothing(path):
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", path],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
