"""What a model version records of where it came from: the code, the data, the seed and the
configuration (the registry shows them; a reviewer can rebuild the model from them)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from django.conf import settings

from training.models import TrainingRun


@functools.cache
def code_version() -> str:
    """The git commit the code runs from: TESSERA_CODE_VERSION, else read from .git."""
    configured = os.environ.get("TESSERA_CODE_VERSION", "").strip()
    if configured:
        return configured[:64]
    git = Path(settings.ROOT_DIR) / ".git"
    try:
        if git.is_file():  # a worktree or submodule: ".git" names the real folder
            git = (git.parent / git.read_text().split(":", 1)[1].strip()).resolve()
        common = git / "commondir"
        shared = (git / common.read_text().strip()).resolve() if common.is_file() else git
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:64]
        ref = head.split(" ", 1)[1]
        for folder in (git, shared):
            if (folder / ref).is_file():
                return (folder / ref).read_text().strip()[:64]
        packed = shared / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0][:64]
    except (OSError, IndexError):
        pass
    return ""


def provenance_fields(run: TrainingRun, *, seed: int | None) -> dict:
    """What a new ModelVersion records beyond its run: code, data checksum, seed, config."""
    return {
        "code_version": code_version(),
        "dataset_sha256": run.dataset_version.sha256,
        "seed": seed if seed is not None else run.config.get("seed"),
        "config": dict(run.config or {}),
    }
