"""The dependency direction (platform apps -> verticals -> ml_core), as import-linter checks it.

The contracts live in pyproject.toml under [tool.importlinter].
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports_executable() -> str:
    # The venv running the tests has lint-imports next to its python.
    beside_python = Path(sys.executable).parent / "lint-imports"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("lint-imports")
    assert found, "lint-imports (import-linter) is not installed"
    return found


def test_import_contracts_are_kept() -> None:
    python_path = os.pathsep.join(
        [str(ROOT), str(ROOT / "platform"), os.environ.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env = {
        **os.environ,
        "PYTHONPATH": python_path,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    completed = subprocess.run(
        [lint_imports_executable(), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "broken" in completed.stdout and " 0 broken" in completed.stdout
