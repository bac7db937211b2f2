"""Save and load a family's torch module with a JSON metadata file.

Same layout as ``ml_core.artifacts`` (``model.pt`` + ``metadata.json``; no pickle: the
weights load with ``weights_only=True`` and everything else is JSON), without the tabular
encoder. The weights' sha256 is recorded at save time and checked on load.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ml_core.artifacts import (
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    SavedArtifact,
    file_sha256,
    library_versions,
)
from ml_core.privacy import unwrap


def save_module(*, module: nn.Module, directory: Path, metadata: dict) -> SavedArtifact:
    """Write the UNWRAPPED module's weights and ``metadata`` (JSON-ready) into ``directory``.

    ``metadata`` should hold ``model_family``, ``spec_key``, ``seed`` and ``privacy``; the
    architecture (``module.architecture()``), weights' sha256, versions and format version
    are added here.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plain = unwrap(module)
    weights = directory / WEIGHTS_FILE
    torch.save({key: value.detach().cpu() for key, value in plain.state_dict().items()}, weights)
    sha256 = file_sha256(weights)
    full = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "architecture": plain.architecture(),
        "weights_sha256": sha256,
        "versions": metadata.get("versions") or library_versions(),
    }
    (directory / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True))
    return SavedArtifact(path=str(directory), sha256=sha256)


def load_state(path: Path | str) -> tuple[dict, dict]:
    """``(state_dict, metadata)`` of a saved module, after checking the weights' sha256."""
    directory = Path(path)
    for name in (WEIGHTS_FILE, METADATA_FILE):
        if not (directory / name).is_file():
            raise ArtifactError(f"artifact {directory} lacks {name}")
    metadata = json.loads((directory / METADATA_FILE).read_text())
    if file_sha256(directory / WEIGHTS_FILE) != metadata.get("weights_sha256"):
        raise ArtifactError(f"weights in {directory} do not match their recorded sha256")
    state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    return state, metadata


def load_module(path: Path | str, model_class: type) -> tuple[torch.nn.Module, dict]:
    """A saved module rebuilt with ``model_class.from_architecture`` from its metadata, its
    weights loaded (sha256 checked), on the CPU in eval mode; and the metadata."""
    state, metadata = load_state(path)
    model = model_class.from_architecture(metadata["architecture"])
    model.load_state_dict(state)
    return model.eval(), metadata
