"""A throw-away Tessera installation for the entries that go through the platform.

Each job (:mod:`bench.platform_jobs`) runs in a fresh Python process with its own
settings: a SQLite database, uploads and artifacts in a temporary folder that is removed
afterwards, so a benchmark never touches the developer's database or files and a job's
peak memory is its own. The folder also holds the generated CSV files, so a later job of
the same run reuses them.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "config.settings.local"


class PlatformJobError(RuntimeError):
    pass


class PlatformEnv:
    """A temporary folder and the environment variables that point the platform at it."""

    def __init__(self, *, keep: bool = False) -> None:
        base = os.environ.get("TESSERA_VAR_DIR") or None
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="tessera-bench-", dir=base))
        self.keep = keep

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("DATABASE_URL", "CELERY_BROKER_URL", "TESSERA_UPLOAD_DIR",
                     "TESSERA_ARTIFACT_DIR", "TESSERA_BROKER_DIR"):
            env.pop(name, None)
        env.update({
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DJANGO_DEBUG": "0",
            "TESSERA_VAR_DIR": str(self.folder),
            "DATABASE_URL": f"sqlite:///{self.folder / 'bench.sqlite3'}",
            "TESSERA_MAX_UPLOAD_BYTES": str(8 * 1024**3),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), str(ROOT / "platform"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        })
        return env

    def run(self, job: str, *, timeout: float = 1800, **arguments) -> dict:
        """Run ``bench.platform_jobs``'s ``job`` with ``arguments``; its JSON answer."""
        arguments = {"folder": str(self.folder), **arguments}
        command = [sys.executable, "-m", "bench.platform_jobs", job, json.dumps(arguments)]
        done = subprocess.run(command, cwd=ROOT, env=self.environ(), capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise PlatformJobError(f"platform job {job!r} failed ({done.returncode}):\n"
                                   + done.stderr[-4000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PlatformEnv:
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()


_SHARED: PlatformEnv | None = None


def shared_env() -> PlatformEnv:
    """One installation for every platform entry of this benchmark run (migrating the
    database takes a while); removed when the process exits."""
    global _SHARED
    if _SHARED is None:
        _SHARED = PlatformEnv()
        atexit.register(_SHARED.close)
        _SHARED.run("setup")
    return _SHARED
