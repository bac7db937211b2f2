"""Every long computation honours a cancel between its chunks (ml_core.cancellation).

Each test sets the cancel flag while the computation runs (from inside its N-th chunk)
and counts the chunks that ran: none may start after the flag. No wall-clock times are
asserted; the one wait (an abandoned single call) is on an event.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ml_core import cancellation, drift, fairness, group_metrics, metrics, privacy_audit
from ml_core.cancellation import TrainingCancelled
from ml_core.families import text
from ml_core.families.image import backbone
from ml_core.families.text import caches
from ml_core.families.text import family as text_family
from ml_core.models import text_encoder as te
from ml_core.pipeline import run_training
from ml_core.spec import FairnessPolicy, PrivacyConfig, TrainConfig


class Flag:
    """A should_stop whose answer the test flips; counts how often it was asked."""

    def __init__(self) -> None:
        self.on = False
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.on


class FlipAt:
    """Counts chunks; flips ``flag`` inside the ``at``-th one (the cancel arrives while
    that chunk runs)."""

    def __init__(self, flag: Flag, at: int) -> None:
        self.flag, self.at, self.count = flag, at, 0

    def __call__(self) -> None:
        self.count += 1
        if self.count == self.at:
            self.flag.on = True


def flip_inside(monkeypatch, owner: object, name: str, flag: Flag, at: int, *,
                when=lambda: True) -> FlipAt:
    """Wrap ``owner.name`` (a function or method): each call while ``when()`` is a chunk,
    and the ``at``-th one flips ``flag`` before it computes."""
    chunks = FlipAt(flag, at)
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        if when():
            chunks()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return chunks


# --- the mechanism -----------------------------------------------------------------------


def test_outside_a_block_nothing_is_asked() -> None:
    cancellation.check()
    assert not cancellation.requested()
    assert list(cancellation.checked(range(3))) == [0, 1, 2]
    assert cancellation.call(lambda: 7) == 7


def test_a_checked_loop_starts_no_chunk_after_the_cancel() -> None:
    flag = Flag()
    seen = []
    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled) as cancelled:
        for item in cancellation.checked(range(10)):
            seen.append(item)
            if item == 3:
                flag.on = True
    assert seen == [0, 1, 2, 3]
    assert cancelled.value.privacy == {}


def test_a_cancel_carries_what_was_spent_and_nested_blocks_ask_both_checks() -> None:
    outer, inner = Flag(), Flag()
    with cancellation.stop_when(outer):
        cancellation.record_spent({"epsilon": 1.5, "steps": 3})
        with cancellation.stop_when(inner):
            assert not cancellation.requested()
            outer.on = True  # the enclosing caller cancels
            with pytest.raises(TrainingCancelled) as cancelled:
                cancellation.check()
            assert cancelled.value.privacy == {"epsilon": 1.5, "steps": 3}
            with pytest.raises(TrainingCancelled) as cancelled:
                cancellation.check({"epsilon": 0.2})  # the caller knows better
            assert cancelled.value.privacy == {"epsilon": 0.2}
        with cancellation.stop_when(None):  # no check of its own: the enclosing one holds
            assert cancellation.requested()
    assert not cancellation.requested()


def test_a_single_long_call_is_abandoned_at_the_next_poll() -> None:
    release, finished = threading.Event(), threading.Event()

    def long_call() -> int:
        release.wait(120)  # a compiled fit that has no chunks to check between
        finished.set()
        return 1

    flag = Flag()

    def stop_on_third_poll() -> bool:
        return flag() or flag.asked >= 3

    try:
        with cancellation.stop_when(stop_on_third_poll), pytest.raises(TrainingCancelled):
            cancellation.call(long_call, poll_s=0.01)
        assert flag.asked == 3
        assert not finished.is_set()  # honoured while the call was still running
    finally:
        release.set()


def test_a_single_call_returns_its_value_and_raises_its_error() -> None:
    with cancellation.stop_when(Flag()):
        assert cancellation.call(lambda: 5, poll_s=0.01) == 5
        with pytest.raises(ZeroDivisionError):
            cancellation.call(lambda: 1 / 0, poll_s=0.01)


# --- encoding and feature extraction ------------------------------------------------------


def test_the_text_encoding_starts_no_batch_after_the_cancel(monkeypatch) -> None:
    classifier = te.build_classifier(te.tiny_source(0), trainable_layers=1, n_classes=2)
    ids, mask = te.tokenize(te.load_tokenizer(), [f"note number {i}" for i in range(200)],
                            max_length=16)
    monkeypatch.setattr(caches, "ENCODE_BATCH", 16)  # 13 batches
    flag = Flag()
    batches = flip_inside(monkeypatch, te.FrozenLower, "forward", flag, 2)
    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled) as cancelled:
        caches.lower_states(classifier.lower, ids, mask, device=torch.device("cpu"))
    assert batches.count == 2
    assert cancelled.value.privacy == {}


def test_a_text_run_cancelled_while_encoding_stops_there_having_spent_nothing(
        monkeypatch, tmp_path) -> None:
    from tests.ml_core.test_family_text import MAPPING, SPEC, TINY, notes

    caches._STATE_CACHE.clear()  # encode for real, not from another test's memo
    monkeypatch.setattr(caches, "ENCODE_BATCH", 16)  # 240 notes: 15 batches
    stages: list[str] = []
    flag = Flag()
    batches = flip_inside(monkeypatch, te.FrozenLower, "forward", flag, 3,
                          when=lambda: stages[-1] == "encoding")

    def progress(**update) -> None:
        stages.append(update["stage"])

    with pytest.raises(TrainingCancelled) as cancelled:
        text.run(frame=notes(240), mapping=MAPPING, spec=SPEC, artifact_dir=tmp_path,
                 progress=progress, should_stop=flag, encoder=TINY)
    assert stages[-1] == "encoding"
    assert batches.count == 3
    assert cancelled.value.privacy == {}  # no private step was taken
    assert not any(tmp_path.iterdir())


class ZeroTrunk(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(images), backbone.TRUNK_CHANNELS, 7, 7)


def test_image_feature_extraction_starts_no_batch_after_the_cancel() -> None:
    flag = Flag()
    loaded = FlipAt(flag, 2)

    def load_batch(part: slice) -> torch.Tensor:
        loaded()
        return torch.zeros(part.stop - part.start, 3, backbone.IMAGE_SIZE, backbone.IMAGE_SIZE)

    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled):
        backbone.extract_features(ZeroTrunk(), load_batch, n=80, batch_size=8)  # 10 batches
    assert loaded.count == 2


# --- baselines and references -------------------------------------------------------------


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(size=n) > 0.5).astype(int)
    return x, y


@pytest.mark.parametrize("baseline", ["logistic_regression", "tfidf", "gradient_boosting"])
def test_a_single_call_baseline_is_abandoned_while_it_fits(monkeypatch, baseline) -> None:
    release, fitting, finished = threading.Event(), threading.Event(), threading.Event()
    openmp_threads: list[int] = []

    def long_fit(self, *args, **kwargs):
        openmp_threads.extend(i["num_threads"] for i in threadpool_info()
                              if i["user_api"] == "openmp")
        fitting.set()
        release.wait(120)  # one call into compiled code, with no chunk boundary to check
        finished.set()
        return self

    estimator = (HistGradientBoostingClassifier if baseline == "gradient_boosting"
                 else LogisticRegression)
    monkeypatch.setattr(estimator, "fit", long_fit)
    x, y = _rows(200)
    run = {
        "logistic_regression": lambda: metrics.logistic_regression_baseline(
            x_train=x, y_train=y, x_eval=(x,), seed=0),
        "tfidf": lambda: text_family.tfidf_baseline(
            texts_train=["good service", "bad service"] * 5, y_train=np.array([1, 0] * 5),
            texts_eval=["good"], seed=0),
        "gradient_boosting": lambda: metrics.reference_models(
            x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y, metrics=None,
            seed=0),
    }[baseline]
    try:
        # The cancel arrives while the fit runs.
        with cancellation.stop_when(fitting.is_set), pytest.raises(TrainingCancelled):
            run()
        assert fitting.is_set() and not finished.is_set()
    finally:
        release.set()
    if baseline == "gradient_boosting":  # its one-thread limit holds in the fitting thread
        assert openmp_threads and set(openmp_threads) == {1}


# --- private preprocessing, audits, drift -------------------------------------------------


def test_the_private_preprocessing_starts_no_column_after_the_cancel(monkeypatch) -> None:
    from ml_core import data
    from ml_core.private_statistics import PreprocessingNoise

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=300) for i in range(6)})
    flag = Flag()
    columns = flip_inside(monkeypatch, data, "private_numeric", flag, 2)
    noise = PreprocessingNoise.plan(noise_multiplier=2.0, n_categorical=0, n_histograms=6,
                                    threshold_delta=1e-6, max_rows=1)
    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled) as cancelled:
        data.fit_private_encoder(frame, tuple(frame.columns), persons=np.arange(300),
                                 noise=noise, seed=0)
    assert columns.count == 2
    assert cancelled.value.privacy == {}  # nothing of it is released: the run is cancelled


def test_the_fairness_audit_starts_no_attribute_after_the_cancel(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    sensitive = pd.DataFrame({f"a{i}": rng.choice(["p", "q"], 200) for i in range(5)})
    flag = Flag()
    audited = flip_inside(monkeypatch, fairness, "_audit_attribute", flag, 2)
    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled):
        fairness.audit(y_true=rng.integers(0, 2, 200), y_pred=rng.integers(0, 2, 200),
                       sensitive=sensitive, policy=FairnessPolicy())
    assert audited.count == 2


def test_a_score_by_group_starts_no_group_after_the_cancel() -> None:
    rng = np.random.default_rng(0)
    sensitive = pd.DataFrame({"region": rng.choice(list("abcdefgh"), 400)})
    flag = Flag()
    scored = FlipAt(flag, 2)

    def metric(y_true, y_score) -> float:
        scored()
        return float(np.mean(y_true == y_score))

    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled):
        group_metrics.score_by_group(y_true=rng.integers(0, 2, 400),
                                     y_score=rng.integers(0, 2, 400), sensitive=sensitive,
                                     metric=metric, name="accuracy")
    assert scored.count == 2


def test_a_drift_report_starts_no_column_after_the_cancel(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({f"x{i}": rng.normal(size=500) for i in range(6)})
    current = pd.DataFrame({f"x{i}": rng.normal(size=500) for i in range(6)})
    flag = Flag()
    compared = flip_inside(monkeypatch, drift, "_column_psi", flag, 2)
    with cancellation.stop_when(flag), pytest.raises(TrainingCancelled):
        drift.drift_report(reference=reference, current=current, columns=list(reference))
    assert compared.count == 2


def test_the_privacy_audit_training_takes_no_step_after_the_cancel(split) -> None:
    flag = Flag()
    steps = FlipAt(flag, 3)
    handle = register_optimizer_step_post_hook(lambda *_: steps())
    train = TrainConfig(epochs=3, batch_size=64, learning_rate=0.02, hidden_sizes=(8,),
                        seed=0)
    try:
        with cancellation.stop_when(flag), pytest.raises(TrainingCancelled) as cancelled:
            privacy_audit.audit_tabular(split, train=train,
                                        privacy=PrivacyConfig(enabled=True, target_epsilon=4.0),
                                        canaries=16, seed=0)
    finally:
        handle.remove()
    assert steps.count == 3
    assert cancelled.value.privacy["steps"] == 3  # the audit training's spend so far


def test_a_cancel_during_the_audits_reports_the_trained_models_spend(frame, spec, mapping,
                                                                    tmp_path) -> None:
    flag = Flag()

    def progress(**update) -> None:
        if update["stage"] == "auditing":
            flag.on = True  # both models are trained; the audits are next

    with pytest.raises(TrainingCancelled) as cancelled:
        run_training(frame=frame, mapping=mapping, spec=spec, privacy=spec.privacy,
                     train=dataclasses.replace(spec.train, epochs=2), artifact_dir=tmp_path,
                     progress=progress, should_stop=flag)
    spent = cancelled.value.privacy
    assert spent["steps"] == spent["planned_steps"] > 0
    assert 0 < spent["epsilon"] <= spec.privacy.target_epsilon
    assert not (tmp_path / "model.pt").exists()
