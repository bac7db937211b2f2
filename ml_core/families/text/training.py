"""Loop glue: what the text family's training reads and returns around its loop
(schedules, class weights, the weighted loss, the linear-probe start, probabilities),
and ``train_top``, which trains a copy of the top layers and head."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from opacus.grad_sample import GradSampleModule
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import TensorDataset

from ml_core import cancellation
from ml_core import privacy as dp
from ml_core.families.text.audit import text_metrics
from ml_core.families.text.caches import EncodedRows
from ml_core.models import text_encoder as te
from ml_core.sampling import PersonExamples
from ml_core.spec import PrivacyConfig, ProgressSink, StopCheck, TrainConfig
from ml_core.training_loop import LoopPlan, run_loop

PROBE_C = 10.0


def linear_probe(top: te.TrainableTop, embedded: EncodedRows, y: np.ndarray, fit: np.ndarray,
                 weights: np.ndarray | None, seed: int) -> te.TrainableTop:
    """A copy of ``top`` whose head is a logistic regression fitted on the frozen sentence
    embeddings of the ``fit`` rows (linear probing, then fine-tuning: Kumar et al. 2022,
    "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").
    A fitted head does not push random gradients into the pretrained layers at the start,
    and it is a strong model already: training keeps it unless an epoch beats it."""
    probed = copy.deepcopy(top)
    with torch.no_grad():
        index = torch.as_tensor(fit, dtype=torch.long)
        states, mask = embedded.batch(index)
        features = te.sentence_embedding(states, mask) - top.centre.to(states.device)
    n_classes = top.classifier.out_features
    present = np.unique(y[fit])
    if len(present) < 2:
        return probed
    model = LogisticRegression(C=PROBE_C, max_iter=2000, random_state=seed,
                               class_weight=None if weights is None else
                               {int(c): float(weights[c]) for c in present})
    cancellation.call(lambda: model.fit(features.cpu().numpy(), y[fit]))
    coef = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -10.0, dtype=np.float32)  # labels absent from training
    if len(present) == 2:  # sklearn keeps one weight vector for two classes
        coef[present[1]], bias[present[1]] = model.coef_[0] / 2, model.intercept_[0] / 2
        coef[present[0]], bias[present[0]] = -model.coef_[0] / 2, -model.intercept_[0] / 2
    else:
        coef[present], bias[present] = model.coef_, model.intercept_
    with torch.no_grad():
        probed.classifier.weight.copy_(torch.as_tensor(coef))
        probed.classifier.bias.copy_(torch.as_tensor(bias))
    return probed


@dataclass(frozen=True)
class TrainedTop:
    top: te.TrainableTop  # best weights, unwrapped, eval mode, CPU
    history: list[dict]
    best_epoch: int
    privacy: dict
    seconds: float
    clipping: str = ""  # how DP-SGD clipped per-sample gradients ("" when not private)


def predict_probabilities(top: nn.Module, rows: EncodedRows, positions: np.ndarray) -> np.ndarray:
    """Class probabilities (n, k) for ``positions`` (the model's mode is restored)."""
    was_training = top.training
    top.eval()
    chunks = []
    with torch.no_grad():
        for start in cancellation.checked(range(0, len(positions), 256)):
            index = torch.as_tensor(positions[start:start + 256], dtype=torch.long)
            states, mask = rows.batch(index)
            chunks.append(torch.softmax(top(states, mask).float(), dim=-1).cpu())
    top.train(was_training)
    if not chunks:
        return np.zeros((0, 0))
    return torch.cat(chunks).double().numpy()


def _per_sample_support(top: nn.Module) -> list[str]:
    """Names of trainable layers Opacus has no per-sample gradient rule for."""
    missing = []
    for name, module in top.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own and type(module) not in GradSampleModule.GRAD_SAMPLERS:
            missing.append(f"{name} ({type(module).__name__})")
    return missing


@dataclass(frozen=True)
class Schedule:
    """How one model trains: batch size and learning rates (head, transformer layers)."""

    batch_size: int
    head_learning_rate: float
    layer_learning_rate: float
    class_weights: np.ndarray | None = None  # one loss weight per class, or None


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (k n_c)`` per class c (1 for every class when balanced; absent classes get 1)."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 1.0)
    return weights.astype(np.float32)


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with per-class weights, averaged over the rows (not over the weights,
    as ``nn.CrossEntropyLoss(weight=...)`` does): a plain mean of per-row terms, which is
    what Opacus' ``loss_reduction="mean"`` assumes, so each row's weighted gradient is then
    clipped as usual and the privacy accounting is unchanged."""

    def __init__(self, weights: np.ndarray | None, device: torch.device) -> None:
        super().__init__()
        self.weights = (None if weights is None
                        else torch.as_tensor(weights, dtype=torch.float32, device=device))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        per_row = nn.functional.cross_entropy(logits, labels, reduction="none")
        if self.weights is not None:
            per_row = per_row * self.weights[labels]
        return per_row.mean()


def train_top(
    *, initial: te.TrainableTop, rows: EncodedRows, y: np.ndarray, fit: np.ndarray,
    val: np.ndarray, n_classes: int, train: TrainConfig, privacy: PrivacyConfig | None,
    stage: str, progress: ProgressSink | None, should_stop: StopCheck | None,
    schedule: Schedule | None = None, checkpoint_path: Path | None = None,
    persons: np.ndarray | None = None,
) -> TrainedTop:
    """Fine-tune a copy of ``initial`` on the ``fit`` rows; keep the epoch with the best
    validation macro F1. DP-SGD (Poisson sampling, PRV accountant) when ``privacy`` is on.

    ``schedule`` defaults to ``train``'s batch size and learning rate for every part. With
    ``checkpoint_path`` a checkpoint is written there every epoch, and one found there (an
    earlier attempt that died) is resumed: the result equals an uninterrupted run's
    (:mod:`ml_core.checkpoints`).

    ``persons`` (one privacy-unit value per row of ``y``) makes a private training sample
    persons, one of their ``fit`` rows each per step (:class:`PersonExamples`); a private
    training keeps its last epoch (no epoch chosen on private validation rows)."""
    started = time.perf_counter()
    private = privacy is not None and privacy.enabled
    schedule = schedule or Schedule(batch_size=train.batch_size,
                                    head_learning_rate=train.learning_rate,
                                    layer_learning_rate=train.learning_rate)

    def optimizer(top: nn.Module) -> torch.optim.Optimizer:
        head = [p for name, p in top.named_parameters()
                if p.requires_grad and name.startswith("classifier.")]
        layers = [p for name, p in top.named_parameters()
                  if p.requires_grad and not name.startswith("classifier.")]
        groups = [{"params": head, "lr": schedule.head_learning_rate}]
        if layers:
            groups.append({"params": layers, "lr": schedule.layer_learning_rate})
        return torch.optim.Adam(groups)

    # A plain mean over the batch's rows, matching loss_reduction="mean" in make_private.
    loss_fn = WeightedCrossEntropy(schedule.class_weights, rows.device)

    def batch_loss(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
        index, labels = batch
        states, mask = rows.batch(index)
        return loss_fn(model(states, mask), labels.to(rows.device)), len(labels)

    def macro_f1(model: nn.Module) -> float:
        probabilities = predict_probabilities(dp.unwrap(model), rows, val)
        return text_metrics(y[val], probabilities.argmax(axis=1), n_classes)["macro_f1"]

    def validate(model: nn.Module) -> tuple[float, float]:
        score = macro_f1(model)
        return score, score

    examples = (torch.as_tensor(fit, dtype=torch.long), torch.as_tensor(y[fit], dtype=torch.long))
    plan = LoopPlan(
        build=lambda: copy.deepcopy(initial).to(rows.device), fresh=lambda: copy.deepcopy(initial),
        dataset=(PersonExamples(tensors=examples, persons=persons[fit], seed=train.seed)
                 if private and persons is not None else TensorDataset(*examples)),
        batch_size=schedule.batch_size, batch_loss=batch_loss, validate=validate,
        optimizer=optimizer, train=train, privacy=privacy, stage=stage, device=rows.device,
        # The starting point competes too (a linear-probe head may already be the best).
        start_key=lambda model: macro_f1(model) if len(val) else -math.inf,
        # The frozen-encoder states are derived data: the signature names where they came
        # from (rows.origin) instead of holding them; the start weights cover the top.
        checkpoint_path=checkpoint_path,
        checkpoint_inputs=(fit, y[fit], val, y[val], *initial.state_dict().values(),
                           *(() if persons is None else (persons[fit],))),
        checkpoint_settings=lambda top: {
            "rows": rows.origin, "batch_size": schedule.batch_size,
            "head_learning_rate": schedule.head_learning_rate,
            "layer_learning_rate": schedule.layer_learning_rate,
            "class_weights": (None if schedule.class_weights is None
                              else [float(w) for w in schedule.class_weights]),
            "trained": [name for name, p in top.named_parameters() if p.requires_grad],
            "dropout": float(initial.dropout.p)},
        # The text top never limited its threads (a transformer layer is not small).
        limit_threads=False,
        select_on_validation=not private,
    )
    result = run_loop(plan, progress=progress, should_stop=should_stop)
    clipping = str(result.privacy.get("clipping", {}).get("reason", "")) if result.privacy[
        "enabled"] else ""
    return TrainedTop(top=result.module, history=result.history, best_epoch=result.best_epoch,
                      privacy=result.privacy, seconds=time.perf_counter() - started,
                      clipping=clipping)
