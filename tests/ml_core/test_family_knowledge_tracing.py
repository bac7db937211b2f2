"""Knowledge tracing and next-exercise families: response preparation, leakage guards, the
split by student, the DKT model under Opacus, results, audits and reloading.

Fairness numbers are recomputed independently (sklearn per group via pandas groupby,
fairlearn for the decision rates); epsilon is checked against Google's dp-accounting.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from dp_accounting import dp_event, pld
from fairlearn.metrics import demographic_parity_difference
from opacus.layers import DPGRU
from opacus.validators import ModuleValidator
from sklearn.metrics import accuracy_score, roc_auc_score

from ml_core.families import knowledge_tracing as kt
from ml_core.families.knowledge_tracing_data import (
    ResponseColumns,
    merge_student_attributes,
    multi_skill_mask,
    prepare_responses,
    split_students,
)
from ml_core.models.sequence import KnowledgeTracingGRU, plain_state_dict, shifted_inputs
from ml_core.pipeline import TrainingCancelled, run_training
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    FairnessPolicy,
    PrivacyConfig,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)

MAPPING = ColumnMapping(
    target="correct", sensitive=("sex",),
    roles=(("student", "student"), ("skill", "skill"), ("time", "order")),
)
NO_GROUPS = ColumnMapping(target="correct", roles=MAPPING.roles)
FAST = TrainConfig(epochs=4, batch_size=32, learning_rate=1e-2, patience=4, seed=0)


def make_spec(family: str = "knowledge_tracing") -> ProblemSpec:
    ranking = family == "next_exercise"
    return ProblemSpec(
        key=f"test_{family}", name="Test", description="Synthetic responses.",
        task_type=TaskType.RANKING if ranking else TaskType.SEQUENCE_PREDICTION,
        hints=(RoleHint(ColumnRole.TARGET, ("correct",), required=True),),
        sensitive_hints=("sex",),
        metrics=(("zpd_share", "mean_distance_to_target") if ranking
                 else ("roc_auc", "accuracy", "brier")),
        primary_metric="zpd_share" if ranking else "roc_auc",
        baseline="random_choice" if ranking else "per_skill_mean",
        model_family=family, privacy=PrivacyConfig(enabled=True, target_epsilon=3.0),
        fairness=FairnessPolicy(min_group_size=20), train=FAST, min_rows=50,
    )


def responses(n_students: int = 90, seed: int = 0) -> pd.DataFrame:
    """Students with an ability; 4 skills of different difficulty; answers get likelier to
    be right with practice. Rows shuffled, index offset, so order and ids are exercised."""
    rng = np.random.default_rng(seed)
    difficulty = {"a": -1.2, "b": 0.0, "c": 0.6, "d": 1.2}
    rows = []
    for s in range(n_students):
        ability = rng.normal()
        practice = dict.fromkeys(difficulty, 0)
        sex = "F" if s % 2 else "M"
        for order in range(int(rng.integers(6, 16))):
            skill = str(rng.choice(list(difficulty)))
            logit = 1.5 * ability - difficulty[skill] + 0.4 * practice[skill]
            practice[skill] += 1
            correct = int(rng.random() < 1 / (1 + np.exp(-logit)))
            rows.append({"student": f"u{s:03d}", "sex": sex, "skill": skill,
                         "order": order * 10, "correct": correct})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=seed)
    frame.index = pd.RangeIndex(5000, 5000 + len(frame))
    return frame


# --- preparing responses -----------------------------------------------------------------


def test_answers_are_ordered_by_student_then_time():
    frame = pd.DataFrame({"student": ["b", "a", "a", "b", "a"], "skill": list("xyzxy"),
                          "order": [2, 3, 1, 1, 2], "correct": [1, 0, 1, "true", "incorrect"]},
                         index=[10, 11, 12, 13, 14])
    prepared = prepare_responses(frame, ResponseColumns.from_mapping(NO_GROUPS), None)
    table = prepared.table
    assert table["student"].tolist() == ["a", "a", "a", "b", "b"]
    assert table["row_id"].tolist() == [12, 14, 11, 13, 10]
    assert table["correct"].tolist() == [1, 0, 0, 1, 1]


def test_timestamps_are_parsed_for_the_order():
    frame = pd.DataFrame({"student": ["a"] * 3, "skill": list("xyz"), "correct": [1, 0, 1],
                          "order": ["2024-03-02 10:00", "2024-03-01 09:00", "2024-03-01 11:30"]})
    table = prepare_responses(frame, ResponseColumns.from_mapping(NO_GROUPS), None).table
    assert table["skill"].tolist() == ["y", "z", "x"]


def test_multi_skill_cells_are_detected_without_splitting_plain_names():
    skills = pd.Series(["3", "7", "3_7", "place_value", "12;15", "area", "perimeter",
                        "area_perimeter"])
    assert multi_skill_mask(skills).tolist() == [False, False, True, False, True, False,
                                                 False, True]


def test_one_answer_listed_per_skill_is_kept_once_with_the_combined_skill():
    frame = pd.DataFrame({
        "student": ["a", "a", "a", "a", "b"],
        "skill": ["3", "7", "3_7", "5", "3"],
        "order": [1, 1, 2, 3, 1],  # rows 1-2: one answer listed twice
        "correct": [1, 1, 0, 1, 0],
        "sex": ["F"] * 4 + ["M"],
    })
    prepared = prepare_responses(frame, ResponseColumns.from_mapping(MAPPING), None)
    assert prepared.table["skill"].tolist() == ["3+7", "3+7", "5", "3"]
    assert prepared.merged_rows == 1 and prepared.multi_skill_cells == 1
    assert any("Leakage guard" in note for note in prepared.notes())
    issues = {issue.code: issue for issue in kt.validate(frame, MAPPING, make_spec())}
    assert issues["multi_skill_cell"].severity == "warning"
    assert issues["multi_skill_cell"].rows == (3,)
    assert issues["multi_skill_rows"].rows == (1, 2)


def test_validate_reports_missing_roles_and_unreadable_values():
    frame = responses(12)
    no_skill = ColumnMapping(target="correct", roles=(("student", "student"), ("time", "order")))
    assert [i.code for i in kt.validate(frame, no_skill, make_spec())] == ["missing_role"]
    broken = frame.copy()
    broken["correct"] = broken["correct"].astype(object)
    broken.loc[broken.index[3], "correct"] = 2
    broken["order"] = broken["order"].astype(object)
    broken.loc[broken.index[5], "order"] = "soon"
    codes = {i.code: i for i in kt.validate(broken, MAPPING, make_spec())}
    assert codes["target_not_binary"].rows == (4,)
    assert codes["time_unreadable"].rows == (6,)
    few = responses(5)
    assert "too_few_students" in {i.code for i in kt.validate(few, MAPPING, make_spec())}
    assert kt.validate(responses(30), MAPPING, make_spec()) == []


def test_students_never_span_two_parts_of_the_split():
    students = [f"s{i}" for i in range(50)]
    split = split_students(students, test_fraction=0.2, val_fraction=0.15, seed=3)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(len(part) for part in parts) == 50
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert (len(split.test), len(split.val)) == (10, 8)
    assert split == split_students(students[::-1], test_fraction=0.2, val_fraction=0.15, seed=3)


def test_attributes_from_a_second_file_are_joined_by_student():
    answers = pd.DataFrame({"student_id": ["a", "b", "a", "c"], "correct": [1, 0, 1, 1]},
                           index=[7, 8, 9, 10])
    attributes = pd.DataFrame({"student_id": ["a", "b"], "sex": ["F", "M"], "age": [15, 16]})
    merged = merge_student_attributes(answers, attributes, student_column="student_id")
    assert merged.index.tolist() == [7, 8, 9, 10]
    assert merged["sex"].tolist()[:3] == ["F", "M", "F"] and pd.isna(merged["sex"].iloc[3])


# --- the model ---------------------------------------------------------------------------


def test_an_answer_is_predicted_from_earlier_answers_only():
    torch.manual_seed(0)
    model = KnowledgeTracingGRU(5, embed_dim=8, hidden_size=8).eval()
    skills = torch.tensor([[0, 1, 2, 1, 3]])
    correct = torch.tensor([[1, 0, 1, 1, 0]])
    flipped = correct.clone()
    flipped[0, 2] = 0
    with torch.no_grad():
        before = model(shifted_inputs(skills, correct), skills)
        after = model(shifted_inputs(skills, flipped), skills)
    # Answer 2's own prediction cannot see it; the next ones do.
    assert torch.equal(before[0, :3], after[0, :3])
    assert not torch.allclose(before[0, 3:], after[0, 3:])


def test_opacus_swaps_the_gru_and_the_weights_come_back_as_nn_gru():
    torch.manual_seed(0)
    model = KnowledgeTracingGRU(6, embed_dim=8, hidden_size=8)
    assert not ModuleValidator.is_valid(model)
    fixed = ModuleValidator.fix(model)
    assert isinstance(fixed.gru, DPGRU) and ModuleValidator.is_valid(fixed)
    plain = KnowledgeTracingGRU(6, embed_dim=8, hidden_size=8)
    plain.load_state_dict(plain_state_dict(fixed, plain))
    inputs = torch.randint(0, 13, (3, 7))
    skills = torch.randint(0, 6, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(plain(inputs, skills), fixed(inputs, skills))


def test_loss_is_a_mean_of_per_student_means():
    logits = torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.0, 0.0]])
    correct = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = (bce(logits[0], correct[0]) + bce(logits[1, :1], correct[1, :1])) / 2
    torch.testing.assert_close(kt.student_loss(logits, correct, mask), expected)


def test_choose_skill_prefers_the_zone_closest_to_target():
    assert kt.choose_skill(np.array([0.95, 0.55, 0.8, 0.3])) == 2  # 0.8 is 0.1 from 0.7
    assert kt.choose_skill(np.array([0.95, 0.64, 0.74])) == 2
    assert kt.choose_skill(np.array([0.95, 0.9, 0.2])) == 1  # none in the zone: nearest 0.7


# --- whole runs (shared: trained once per module) ----------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **update: object) -> None:
        self.calls.append(update)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return responses()


@pytest.fixture(scope="module")
def private_run(frame, tmp_path_factory):
    recorder = Recorder()
    result = run_training(frame=frame, mapping=MAPPING, spec=make_spec(),
                          artifact_dir=tmp_path_factory.mktemp("kt"), progress=recorder)
    return result, recorder


@pytest.fixture(scope="module")
def next_run(frame, tmp_path_factory):
    spec = make_spec("next_exercise")
    return run_training(frame=frame, mapping=MAPPING, spec=spec,
                        privacy=dataclasses.replace(spec.privacy, enabled=False),
                        artifact_dir=tmp_path_factory.mktemp("next"))


@pytest.mark.slow
def test_knowledge_tracing_result_is_complete_and_json_ready(private_run):
    result, recorder = private_run
    json.dumps(result.to_dict())
    assert result.task_type == "sequence_prediction"
    assert set(result.metrics) == set(result.baseline["metrics"]) == {"roc_auc", "accuracy",
                                                                      "brier"}
    assert result.nonprivate_metrics is not None and result.nonprivate_fairness is not None
    assert result.split["method"] == "by_student"
    assert result.metrics["roc_auc"] > 0.6 and result.nonprivate_metrics["roc_auc"] > 0.65
    stages = [call["stage"] for call in recorder.calls]
    assert stages[0] == "preparing" and "training_twin" in stages and stages[-1] == "saving"
    notes = " ".join(result.notes)
    assert "Split by student" in notes and "DPGRU" in notes


@pytest.mark.slow
def test_test_predictions_come_from_unseen_students_only(private_run, frame):
    result, _ = private_run
    predictions = result.predictions
    assert set(predictions["row_id"]) <= set(frame.index)
    assert predictions["row_id"].is_unique
    per_student = frame.groupby("student").size()
    test_students = set(predictions["student"])
    assert len(test_students) == result.split["test"]
    assert len(predictions) == per_student.loc[sorted(test_students)].sum()
    truth = frame.loc[predictions["row_id"], "correct"].to_numpy()
    np.testing.assert_array_equal(predictions["y_true"].to_numpy(), truth)


@pytest.mark.slow
def test_metrics_match_sklearn_and_the_baseline_uses_training_students(private_run, frame):
    result, _ = private_run
    predictions = result.predictions
    assert result.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(predictions["y_true"], predictions["y_score"]))
    assert result.metrics["accuracy"] == pytest.approx(
        accuracy_score(predictions["y_true"], predictions["y_score"] >= 0.5))
    test_students = set(predictions["student"])
    train_rows = frame[~frame["student"].isin(test_students)]
    # The baseline never saw a test student: its per-skill means equal a recomputation on
    # training students (within one answer of shrinkage, and never the test rows' means).
    assert result.baseline["metrics"]["roc_auc"] == pytest.approx(
        roc_auc_score(predictions["y_true"], predictions["baseline_score"]))
    means = train_rows.groupby("skill")["correct"].mean()
    gaps = (predictions.groupby("skill")["baseline_score"].first() - means).abs()
    assert gaps.max() < 0.05


@pytest.mark.slow
def test_privacy_is_spent_within_budget_by_an_independent_accountant(private_run):
    result, _ = private_run
    privacy = result.privacy
    assert privacy["enabled"] and 0 < privacy["epsilon"] <= 3.0 * 1.001
    event = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(privacy["sample_rate"],
                                       dp_event.GaussianDpEvent(privacy["noise_multiplier"])),
        privacy["steps"],
    )
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(
        event).get_epsilon(privacy["delta"])
    assert independent == pytest.approx(privacy["epsilon"], rel=0.05, abs=0.05)


@pytest.mark.slow
def test_auc_by_student_group_matches_sklearn_per_group(private_run):
    result, _ = private_run
    report = result.fairness["sex"]
    assert report["kind"] == "personal"
    predictions = result.predictions
    for group, rows in predictions.groupby("sex"):
        assert report["by_group"][group]["count"] == len(rows)
        assert report["by_group"][group]["auc"] == pytest.approx(
            roc_auc_score(rows["y_true"], rows["y_score"]))
    aucs = [report["by_group"][g]["auc"] for g in report["judged_groups"]]
    assert report["disparities"]["auc_ratio"] == pytest.approx(min(aucs) / max(aucs))
    assert report["disparities"]["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(predictions["y_true"], predictions["y_pred"],
                                      sensitive_features=predictions["sex"]), abs=1e-9)
    assert result.fairness_passed == report["passed"]


@pytest.mark.slow
def test_mastery_curves_cover_each_step(private_run):
    result, _ = private_run
    curves = result.charts["mastery"]
    assert 1 <= len(curves) <= kt.MASTERY_CHART_STUDENTS
    for curve in curves:
        assert curve["steps"] == list(range(len(curve["answers"]) + 1))
        for values in curve["skills"].values():
            assert len(values) == len(curve["steps"]) and all(0 < p < 1 for p in values)


@pytest.mark.slow
def test_artifact_reloads_to_the_same_scores(private_run, frame):
    result, _ = private_run
    loaded = kt.load(result.artifact_path)
    assert loaded.metadata["model_family"] == "knowledge_tracing"
    assert loaded.metadata["privacy"]["epsilon"] == pytest.approx(result.privacy["epsilon"])
    rows = frame.loc[result.predictions["row_id"]]
    scored = kt.predict(loaded, rows).set_index("row_id").loc[result.predictions["row_id"]]
    np.testing.assert_allclose(scored["y_score"].to_numpy(),
                               result.predictions["y_score"].to_numpy(), atol=1e-6)
    recommended = kt.recommend(loaded, rows)
    assert set(recommended["student"]) == set(result.predictions["student"])


def test_cancelling_raises_with_the_privacy_spent(frame, tmp_path):
    epochs: list[int] = []

    def progress(**update) -> None:
        if update["stage"] == "training" and update["epoch"]:
            epochs.append(update["epoch"])

    with pytest.raises(TrainingCancelled) as cancelled:
        run_training(frame=frame, mapping=MAPPING, spec=make_spec(),
                     train=dataclasses.replace(FAST, epochs=2), artifact_dir=tmp_path,
                     progress=progress, should_stop=lambda: bool(epochs))  # after epoch 1
    assert cancelled.value.privacy["enabled"] is True
    assert cancelled.value.privacy["steps"] > 0


@pytest.mark.slow
def test_next_exercise_beats_random_choice_and_reports_by_group(next_run):
    result = next_run
    json.dumps(result.to_dict())
    assert result.task_type == "ranking"
    assert set(result.metrics) == set(result.baseline["metrics"])
    assert result.baseline["name"] == "random_choice"
    predictions = result.predictions
    assert predictions["student"].is_unique and len(predictions) == result.split["test"]
    share = predictions["predicted_success"].between(kt.ZPD_LOW, kt.ZPD_HIGH).mean()
    assert result.metrics["zpd_share"] == pytest.approx(share)
    random_share = predictions["random_predicted_success"].between(kt.ZPD_LOW, kt.ZPD_HIGH).mean()
    assert result.baseline["metrics"]["zpd_share"] == pytest.approx(random_share)
    assert result.metrics["zpd_share"] >= result.baseline["metrics"]["zpd_share"]
    report = result.fairness["sex"]
    by_pandas = predictions.groupby("sex")["in_zpd"].mean()
    for group, value in by_pandas.items():
        assert report["by_group"][group]["zpd_share"] == pytest.approx(value)
    charts = result.charts["recommendations"]
    assert charts and all(c["recommended_skill"] in c["predicted_success"] for c in charts)


@pytest.mark.slow
def test_next_exercise_artifact_recommends_after_reload(next_run, frame):
    loaded = kt.load(next_run.artifact_path)
    assert loaded.metadata["model_family"] == "next_exercise"
    table = kt.predict(loaded, frame)
    assert table["student"].is_unique and len(table) == frame["student"].nunique()
    assert {"recommended_skill", "predicted_success", "in_zpd"} <= set(table.columns)
    assert all(skill in loaded.vocabulary.skills for skill in table["recommended_skill"])
