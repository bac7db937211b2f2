"""Every model family trains on the GPU when there is one (issue #3, item 8).

Skipped on machines without CUDA (CI's are CPU-only). On a GPU machine
``scripts/gpu_check.sh`` runs this module and the benchmark's ``_cuda`` entries. Each
problem trains privately for one epoch on its sample data with ``device="auto"``; the run
must report the CUDA device, finite metrics and an accounted epsilon within its target,
and the saved artifact must load on the CPU (deployment machines often have no GPU).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from verticals.registry import all_problems

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

ROWS = {"text_encoder": 300}
PROBLEMS = [pytest.param(v, p, id=f"{v.key}-{p.key}") for v, p in all_problems()]


@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_trains_privately_on_the_gpu(vertical, problem, tmp_path) -> None:
    from ml_core.pipeline import run_training

    spec = problem.spec
    frame = problem.sample_data(ROWS.get(spec.model_family, 1000), 7)
    result = run_training(
        frame=frame, mapping=problem.sample_mapping, spec=spec,
        privacy=dataclasses.replace(spec.privacy, enabled=True),
        train=dataclasses.replace(spec.train, epochs=1, device="auto"),
        artifact_dir=tmp_path,
    )
    assert result.device.startswith("cuda"), result.device
    value = result.metrics[spec.primary_metric]
    assert value is not None and math.isfinite(value), result.metrics
    assert result.privacy["epsilon"] <= spec.privacy.target_epsilon + 1e-6
    # The saved weights load on a machine without a GPU.
    from pathlib import Path

    from ml_core.artifacts import WEIGHTS_FILE

    weights = Path(result.artifact_path)
    weights = weights / WEIGHTS_FILE if weights.is_dir() else weights.parent / WEIGHTS_FILE
    state = torch.load(weights, map_location="cpu", weights_only=True)
    tensors = list(_tensors(state))
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
