"""The text-classification family on a tiny random encoder (fast), checked independently:
metrics and confusion matrix with sklearn, group scores with pandas, epsilon with Google's
dp-accounting, decision disparities with fairlearn."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from dp_accounting import dp_event, pld
from fairlearn.metrics import demographic_parity_difference
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ml_core.families import get_family, text
from ml_core.models import text_encoder as te
from ml_core.pipeline import TrainingCancelled
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)

TINY = text.TextEncoderOptions(source=te.tiny_source(0), trainable_layers=1)
WORDS = {
    "urgent": ("chest pain", "not breathing", "severe bleeding", "unresponsive"),
    "soon": ("fever for days", "ankle swelling", "persistent cough", "vomiting"),
    "routine": ("refill request", "mild rash", "follow up visit", "sore throat"),
}
SPEC = ProblemSpec(
    key="test_notes", name="Test notes", description="Synthetic notes for family tests.",
    task_type=TaskType.TEXT_CLASSIFICATION,
    hints=(RoleHint(ColumnRole.TARGET, ("urgency",), required=True),
           RoleHint(ColumnRole.TEXT, ("note",))),
    sensitive_hints=("sex",), metrics=("macro_f1", "accuracy"), primary_metric="macro_f1",
    baseline="tfidf_logistic_regression", model_family="text_encoder",
    privacy=PrivacyConfig(enabled=True, target_epsilon=8.0),
    train=TrainConfig(epochs=2, batch_size=32, learning_rate=5e-3, max_length=24, seed=3),
)
MAPPING = ColumnMapping(target="urgency", sensitive=("sex",), id="note_id",
                        roles=(("text", "note"),))


def notes(n_rows: int = 240, seed: int = 0, labels: tuple[str, ...] = tuple(WORDS)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.choice(labels, n_rows)
    every = [w for group in WORDS.values() for w in group]
    note = [f"patient with {rng.choice(WORDS[lab])} and {rng.choice(every)}" for lab in label]
    return pd.DataFrame({"note_id": np.arange(n_rows) + 100, "note": note, "urgency": label,
                         "sex": rng.choice(["F", "M"], n_rows)}, index=np.arange(n_rows) + 500)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **update: object) -> None:
        self.calls.append(update)


@pytest.fixture(scope="module")
def private_result(tmp_path_factory):
    frame = notes()
    recorder = Recorder()
    result = text.run(frame=frame, mapping=MAPPING, spec=SPEC,
                      artifact_dir=tmp_path_factory.mktemp("text"),
                      progress=recorder, encoder=TINY)
    return frame, result, recorder


def test_the_registry_dispatches_text_encoder_here() -> None:
    assert type(get_family("text_encoder")) is text.TextEncoderFamily
    assert get_family("text_encoder").options(SPEC) == text.TextEncoderOptions()


def test_the_specs_family_options_reach_the_encoder(private_result, tmp_path) -> None:
    # run_training with the options in the spec equals text.run given them directly.
    from ml_core.pipeline import run_training

    _, direct, _ = private_result
    through_spec = run_training(frame=notes(), mapping=MAPPING,
                                spec=dataclasses.replace(SPEC, family_options=TINY),
                                artifact_dir=tmp_path)
    assert through_spec.metrics == direct.metrics
    assert through_spec.privacy["epsilon"] == direct.privacy["epsilon"]
    assert through_spec.charts["kind"] == "confusion_matrix"


@pytest.mark.slow
def test_result_shape_metrics_and_baseline(private_result) -> None:
    frame, result, recorder = private_result
    assert result.task_type == "text_classification"
    assert set(result.metrics) == set(result.baseline["metrics"]) >= {"macro_f1", "accuracy"}
    assert result.baseline["name"] == "tfidf_logistic_regression"
    assert result.nonprivate_metrics is not None and result.nonprivate_fairness is not None
    assert result.split["method"] == "stratified"
    assert result.split["train"] + result.split["val"] + result.split["test"] == len(frame)
    predictions = result.predictions
    assert len(predictions) == result.split["test"]
    assert set(predictions["row_id"]) <= set(frame.index)
    truth = frame.loc[predictions["row_id"], "urgency"].to_numpy()
    np.testing.assert_array_equal(predictions["y_true"].to_numpy(), truth)
    assert result.metrics["accuracy"] == pytest.approx(accuracy_score(truth, predictions["y_pred"]))
    assert result.metrics["macro_f1"] == pytest.approx(
        f1_score(truth, predictions["y_pred"], average="macro", labels=sorted(WORDS),
                 zero_division=0))
    probabilities = predictions[[f"prob_{label}" for label in sorted(WORDS)]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    stages = [call["stage"] for call in recorder.calls]
    assert stages[0] == "preparing" and "training" in stages and "training_twin" in stages
    assert any("Frozen" in note for note in result.notes)
    assert any("ModuleValidator" in note for note in result.notes)
    # Only Linear weights train in the top, so DP-SGD takes the book-keeping clipping path.
    assert result.privacy["clipping"]["fast_path"] is True
    assert any(note.startswith("DP-SGD clipping: book-keeping") for note in result.notes)
    import json

    json.dumps(result.to_dict())


@pytest.mark.slow
def test_charts_confusion_matrix_and_per_class_f1(private_result) -> None:
    _, result, _ = private_result
    predictions = result.predictions
    labels = result.charts["confusion"]["labels"]
    assert labels == sorted(WORDS)
    expected = confusion_matrix(predictions["y_true"], predictions["y_pred"], labels=labels)
    assert result.charts["confusion"]["matrix"] == expected.tolist()
    per_class = f1_score(predictions["y_true"], predictions["y_pred"], labels=labels,
                         average=None, zero_division=0)
    np.testing.assert_allclose(result.charts["per_class_f1"]["model"], per_class)
    assert len(result.charts["per_class_f1"]["baseline"]) == len(labels)


@pytest.mark.slow
def test_privacy_spent_matches_an_independent_accountant(private_result) -> None:
    _, result, _ = private_result
    privacy = result.privacy
    assert privacy["enabled"] and 0 < privacy["epsilon"] <= SPEC.privacy.target_epsilon + 1e-6
    event = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(privacy["sample_rate"],
                                       dp_event.GaussianDpEvent(privacy["noise_multiplier"])),
        privacy["steps"])
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(event).get_epsilon(
        privacy["delta"])
    assert independent == pytest.approx(privacy["epsilon"], rel=0.05, abs=0.05)
    epsilons = [record["epsilon"] for record in result.history]
    assert epsilons == sorted(epsilons)


@pytest.mark.slow
def test_group_scores_match_pandas(private_result) -> None:
    _, result, _ = private_result
    report = result.fairness["sex"]
    assert report["kind"] == "personal"
    assert {"by_group", "disparities", "checks", "passed"} <= set(report)
    predictions = result.predictions
    for group, rows in predictions.groupby("sex"):
        values = report["by_group"][group]
        assert values["count"] == len(rows)
        assert values["accuracy"] == pytest.approx((rows["y_true"] == rows["y_pred"]).mean())
        assert values["macro_f1"] == pytest.approx(
            f1_score(rows["y_true"], rows["y_pred"], average="macro", zero_division=0))
    accuracies = [v["accuracy"] for v in report["by_group"].values()]
    spread = max(accuracies) - min(accuracies)
    assert report["disparities"]["accuracy_difference"] == pytest.approx(spread)


@pytest.mark.slow
def test_artifact_reloads_to_identical_scores(private_result) -> None:
    frame, result, _ = private_result
    loaded = text.load(result.artifact_path)
    assert loaded.metadata["model_family"] == "text_encoder"
    assert loaded.metadata["epsilon"] == pytest.approx(result.privacy["epsilon"])
    scored = text.predict(loaded, frame.loc[result.predictions["row_id"]])
    np.testing.assert_array_equal(scored["y_pred"], result.predictions["y_pred"])
    np.testing.assert_allclose(scored["y_score"], result.predictions["y_score"], atol=1e-5)


def test_fresh_rows_comparison_refits_the_baseline_as_training_did(private_result) -> None:
    # Given the run's own test rows as "fresh" rows, the refitted baseline and the reloaded
    # model must score exactly what training reported on its test split.
    frame, result, _ = private_result
    test_rows = frame.loc[result.predictions["row_id"]]
    compared = text.compare_on_fresh_rows(result.artifact_path, frame=frame, mapping=MAPPING,
                                          spec=SPEC, fresh=test_rows)
    assert compared["rows"] == len(test_rows)
    assert compared["baseline"] == pytest.approx(result.baseline["metrics"])
    assert compared["model"] == pytest.approx(result.metrics)
    # Rows from another draw are scored against sklearn's own macro F1.
    fresh = notes(300, seed=9)
    compared = text.compare_on_fresh_rows(result.artifact_path, frame=frame, mapping=MAPPING,
                                          spec=SPEC, fresh=fresh)
    predicted = text.predict(text.load(result.artifact_path), fresh)["y_pred"]
    assert compared["model"]["macro_f1"] == pytest.approx(
        f1_score(fresh["urgency"], predicted, average="macro"))
    unseen = fresh.assign(urgency=np.where(fresh.index % 2 == 0, "never", fresh["urgency"]))
    with pytest.raises(ValueError, match="never trained on"):
        text.compare_on_fresh_rows(result.artifact_path, frame=frame, mapping=MAPPING,
                                   spec=SPEC, fresh=unseen)


@pytest.mark.slow
def test_binary_labels_get_the_decision_audit(tmp_path) -> None:
    frame = notes(400, seed=1, labels=("urgent", "routine"))
    train = dataclasses.replace(SPEC.train, epochs=1)
    result = text.run(frame=frame, mapping=MAPPING, spec=SPEC, privacy=PrivacyConfig(enabled=False),
                      train=train, artifact_dir=tmp_path, encoder=TINY)
    report = result.fairness["sex"]
    assert result.nonprivate_metrics is None and result.privacy["enabled"] is False
    positive = report["positive_label"]
    assert positive in ("urgent", "routine")
    predictions = result.predictions
    judged = predictions[predictions["sex"].isin(report["judged_groups"])]
    assert judged["sex"].nunique() == 2
    reference = demographic_parity_difference(
        (judged["y_true"] == positive).astype(int), (judged["y_pred"] == positive).astype(int),
        sensitive_features=judged["sex"])
    computed = report["disparities"]["demographic_parity_difference"]
    assert computed == pytest.approx(reference, abs=1e-9)


@pytest.mark.slow
def test_cancel_raises_with_privacy_spent(tmp_path) -> None:
    epochs: list[int] = []

    def progress(**update) -> None:
        if update["stage"] == "training" and update["epoch"]:
            epochs.append(update["epoch"])

    with pytest.raises(TrainingCancelled) as raised:
        text.run(frame=notes(120), mapping=MAPPING, spec=SPEC, artifact_dir=tmp_path,
                 progress=progress, should_stop=lambda: bool(epochs), encoder=TINY)
    assert raised.value.privacy["enabled"] is True
    assert raised.value.privacy["steps"] > 0


def test_validate_finds_missing_text_and_small_classes() -> None:
    frame = notes(60)
    assert text.validate(frame, MAPPING, SPEC) == []
    broken = ColumnMapping(target="urgency", roles=(("text", "nope"),))
    assert [i.code for i in text.validate(frame, broken, SPEC)] == ["text_column_missing"]
    rare = frame.copy()
    rare.loc[rare.index[:2], "urgency"] = "unique"
    rare.loc[rare.index[2], "note"] = ""
    codes = {issue.code: issue.severity for issue in text.validate(rare, MAPPING, SPEC)}
    assert codes == {"class_too_small": "error", "empty_texts": "warning"}


def test_text_column_is_found_without_a_role() -> None:
    frame = notes(20).rename(columns={"note": "Note"})
    assert text.text_column(frame, ColumnMapping(target="urgency"), SPEC) == "Note"
    other = frame.rename(columns={"Note": "free_words"})
    unnamed = ColumnMapping(target="urgency", sensitive=("sex",))
    assert text.text_column(other, unnamed, SPEC) == "free_words"


@pytest.mark.slow
def test_predict_is_the_same_with_or_without_the_state_memo(private_result) -> None:
    # Scoring inside a run's memo may reuse its frozen-encoder states; a cold process
    # computes them again and must give the same scores. Scoring never fills the memo.
    frame, result, _ = private_result
    loaded = text.load(result.artifact_path)
    cold = text.predict(loaded, frame)
    with text.encoder_memo():
        warm = text.predict(loaded, frame)
        assert not text._STATE_CACHE
    np.testing.assert_array_equal(warm["y_pred"], cold["y_pred"])
    np.testing.assert_allclose(warm["y_score"], cold["y_score"], atol=1e-5)


def test_encoder_states_of_the_rows_do_not_outlive_the_run(tmp_path, monkeypatch) -> None:
    # The private model and its twin read one encoding of the rows; once run() returns (or
    # raises), no state derived from the rows' text is left in the process.
    from ml_core.families.text import caches

    encoded: list[int] = []
    real = caches.lower_states

    def counting(lower, ids, mask, *, device):
        encoded.append(int(ids.shape[0]))
        return real(lower, ids, mask, device=device)

    monkeypatch.setattr(caches, "lower_states", counting)
    frame = notes(120)
    text.run(frame=frame, mapping=MAPPING, spec=SPEC, artifact_dir=tmp_path / "ok",
             encoder=TINY)
    assert encoded.count(len(frame)) == 1  # the twin reused the private model's encoding
    assert not text._STATE_CACHE
    with pytest.raises(TrainingCancelled):
        text.run(frame=frame, mapping=MAPPING, spec=SPEC, artifact_dir=tmp_path / "stop",
                 encoder=TINY, should_stop=lambda: bool(text._STATE_CACHE))
    assert not text._STATE_CACHE
