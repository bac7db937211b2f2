"""`manage.py pipeline` on a fresh checkout (no database tables yet) says exactly what to run,
never an OperationalError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_unmigrated_database_gets_a_clear_instruction(tmp_path):
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n")
    env = {**os.environ, "TESSERA_VAR_DIR": str(tmp_path / "var"),
           "DJANGO_SETTINGS_MODULE": "config.settings.local"}
    env.pop("DATABASE_URL", None)
    (tmp_path / "var").mkdir()
    done = subprocess.run(
        [sys.executable, "manage.py", "pipeline", str(data), "--vertical", "finance",
         "--problem", "credit_risk"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode != 0
    assert "OperationalError" not in done.stderr and "Traceback" not in done.stderr
    assert "make migrate" in done.stderr and "python manage.py migrate" in done.stderr
