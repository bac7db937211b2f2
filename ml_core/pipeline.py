"""The one entry point the platform calls: ``run_training``. (Interface; implemented by the ml_core work.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ml_core.spec import ColumnMapping, PrivacyConfig, ProblemSpec, ProgressSink, StopCheck, TrainConfig


class TrainingCancelled(Exception):
    """Raised when ``should_stop`` returned True; carries the privacy spent so far."""

    def __init__(self, privacy: dict | None = None) -> None:
        super().__init__("training cancelled")
        self.privacy = privacy or {}


@dataclass(frozen=True)
class TrainingResult:
    """JSON-serialisable outcome of one run (``predictions`` aside, which is a DataFrame)."""

    metrics: dict  # private (or only) model on the held-out test split: roc_auc, pr_auc, accuracy, f1, brier, ks
    baseline: dict  # {"name": "logistic_regression", "metrics": {...}}
    nonprivate_metrics: dict | None  # the non-private twin on the same split; None for a non-private run
    privacy: dict  # enabled, epsilon, delta, noise_multiplier, sample_rate, steps, accountant, target_epsilon, max_grad_norm
    fairness: dict  # attribute -> {by_group, disparities, checks, passed}
    nonprivate_fairness: dict | None
    fairness_passed: bool
    split: dict  # {"method": "stratified", "train": n, "val": n, "test": n, "seed": s}
    history: list[dict]  # per epoch: epoch, loss, val_metric, epsilon
    device: str
    seed: int
    artifact_path: str
    artifact_sha256: str
    versions: dict  # torch, opacus, sklearn, python
    predictions: pd.DataFrame = field(repr=False, compare=False)  # row_id, y_true, y_score, y_pred, <sensitive banded>

    def to_dict(self) -> dict:
        """Everything but the predictions, JSON-ready."""
        raise NotImplementedError


def run_training(
    *,
    frame: pd.DataFrame,
    mapping: ColumnMapping,
    spec: ProblemSpec,
    privacy: PrivacyConfig | None = None,
    train: TrainConfig | None = None,
    artifact_dir: Path,
    progress: ProgressSink | None = None,
    should_stop: StopCheck | None = None,
) -> TrainingResult:
    """Train, evaluate, audit and save one model for ``spec`` on ``frame``."""
    raise NotImplementedError
