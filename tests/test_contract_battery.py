"""The contract every registered problem must meet (scikit-learn's check_estimator idea).

Parametrised over ``verticals.registry.all_problems()``, so a new vertical is checked as
soon as its AppConfig registers it: a well-formed spec, sample data that fit the sample
mapping and pass validation, a model trained with and without differential privacy that
beats the naive level and (non-private) stays close to the logistic-regression baseline,
a fairness audit of every sensitive attribute, a primary metric better than a naive level
computed here (in the metric's direction), epsilon checked against dp-accounting, and an
artifact that, reloaded through the family's own load and predict, gives the scores the
run recorded when it trained. Each problem trains once per privacy setting per module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dp_accounting import dp_event, pld
from fairlearn.metrics import demographic_parity_difference

from ml_core.families import ModelFamily
from ml_core.metrics import higher_is_better
from ml_core.spec import PrivacyConfig, ProblemSpec, TaskType
from ml_core.trainer import NONPRIVATE_EPOCH_FACTOR
from verticals.base import Problem, Vertical
from verticals.registry import all_problems

SLUG = re.compile(r"^[a-z][a-z0-9_]*$")
SAMPLE_ROWS = 400
# Training rows: enough that an 20 % test split gives a stable AUC, small enough for CI.
TRAIN_ROWS = 1000
TRAIN_EPOCHS = 8
# Fine-tuning transformer layers on 2 CPU cores costs ~100x a tabular epoch: the text
# family is checked on fewer rows and epochs. 300 rows x 8 epochs, not 600 x 3: scored on
# TEXT_FRESH_SAMPLE (test_text_model_beats_tfidf_on_fresh_rows), 300 x 8 beat TF-IDF on all
# 5 data seeds of both problems, 600 x 3 lost on note triage's data seed 0 (-0.006), and its
# text battery took longer (scripts/text_seed_study.py --fresh 1500; docs/benchmarks.md).
# On the 60-row
# test split macro F1 has a standard error of ~0.05: the BASELINE_SLACK check there only
# catches a model far behind (300 x 8 fell 0.050 below TF-IDF there on data seed 0).
# Images: each one passes the pretrained trunk at 224 x 224 (about 0.1 s on these cores)
# before the cached features train the top; 90 images x 8 epochs.
# The recommender protects each user: its private item vocabulary needs items held by a few
# dozen users each, about 500 shoppers (6,000 rows; 1,000 rows give none at epsilon 3).
FAMILY_SIZE = {"text_encoder": (300, 8), "image_classifier": (90, 8), "recommender": (6000, 8)}
# Text models are also scored on rows drawn with another data seed: (rows, data seed).
TEXT_FRESH_SAMPLE = (1500, 1000)
# The naive model's level per metric (ranking metrics: 0.5 is guessing).
NAIVE_LEVEL = {"roc_auc": 0.5}
NAIVE_MARGIN = 0.05
BASELINE_SLACK = 0.05

# Problems whose private model cannot be held to the naive level on the battery's sample,
# and why (docs/privacy.md): remaining useful life protects a whole MACHINE (its windows
# sampled and bounded as one unit); the sample's 5 training machines give DP-SGD a few
# dozen noisy steps over 5 examples, too few to beat the mean remaining life.
CANNOT_LEARN_PRIVATELY = {
    "remaining_useful_life": "machine-level DP over 5 training machines (sample data)",
}

PROBLEMS = [pytest.param(v, p, id=f"{v.key}-{p.key}") for v, p in all_problems()]


def test_some_problem_is_registered() -> None:
    # An empty registry would make every parametrised test below vanish silently.
    assert PROBLEMS, "no vertical registered: is its app in INSTALLED_APPS?"


# --- the spec --------------------------------------------------------------------------


@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_spec_is_well_formed(vertical: Vertical, problem: Problem) -> None:
    spec = problem.spec
    assert SLUG.match(vertical.key) and SLUG.match(spec.key)
    assert vertical.name and spec.name and spec.description
    assert isinstance(spec.task_type, TaskType)
    assert spec.metrics and spec.primary_metric in spec.metrics
    assert spec.baseline
    assert any(h.role == "target" and h.names for h in spec.hints)
    assert spec.privacy.target_epsilon > 0 and spec.privacy.max_grad_norm > 0
    assert spec.privacy.delta is None or 0 < spec.privacy.delta < 1
    assert 0 < spec.fairness.min_disparate_impact_ratio <= 1
    assert 0 <= spec.fairness.max_demographic_parity_difference <= 1
    assert 0 <= spec.fairness.max_equalized_odds_difference <= 1
    assert spec.fairness.min_group_size >= 1
    assert spec.train.epochs > 0 and spec.train.batch_size > 0 and spec.train.learning_rate > 0
    assert 0 < spec.train.test_fraction + spec.train.val_fraction < 1
    for banding in spec.banding:
        assert list(banding.edges) == sorted(banding.edges) and banding.edges
    assert len(spec.retrain_cron.split()) == 5
    assert problem.guide.strip(), "analysts need a guide"
    json.dumps(dataclasses.asdict(spec), default=str)  # plain data only


@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_sample_data_fits_the_sample_mapping(vertical: Vertical, problem: Problem) -> None:
    frame = problem.sample_data(SAMPLE_ROWS, 0)
    mapping = problem.sample_mapping
    assert isinstance(frame, pd.DataFrame) and len(frame) == SAMPLE_ROWS
    named = [*mapping.features, *mapping.sensitive, *mapping.exclude,
             *(column for _, column in mapping.roles)]
    if mapping.target:  # implicit-feedback problems may have none
        named.append(mapping.target)
        assert frame[mapping.target].notna().all()
    if mapping.id:
        named.append(mapping.id)
        assert frame[mapping.id].is_unique
    assert set(named) <= set(frame.columns)
    if problem.spec.task_type == TaskType.BINARY_CLASSIFICATION:
        target = frame[mapping.target]
        if problem.spec.target_rule is not None:  # a grade turned pass/fail by the problem
            from ml_core.data import apply_target_rule

            target = apply_target_rule(target, problem.spec.target_rule)
        assert target.nunique() == 2
    pd.testing.assert_frame_equal(frame, problem.sample_data(SAMPLE_ROWS, 0))
    assert not frame.equals(problem.sample_data(SAMPLE_ROWS, 1))


@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_suggested_mapping_recovers_the_sample_mapping(
    vertical: Vertical, problem: Problem
) -> None:
    from ml_core.validation import suggest_mapping

    suggested = suggest_mapping(problem.sample_data(SAMPLE_ROWS, 0), problem.spec)
    expected = problem.sample_mapping
    assert suggested.target == expected.target
    if expected.id:
        assert suggested.id == expected.id
    assert set(expected.sensitive) <= set(suggested.sensitive)
    # Task roles (series, time, user, item, ...) are suggested from the hints too.
    assert set(expected.roles) <= set(suggested.roles), (expected.roles, suggested.roles)


@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_sample_data_validates_without_errors(vertical: Vertical, problem: Problem) -> None:
    from ml_core.validation import validate

    issues = validate(problem.sample_data(SAMPLE_ROWS, 0), problem.sample_mapping, problem.spec)
    errors = [issue.to_dict() for issue in issues if issue.severity == "error"]
    assert errors == []


# --- training (slow) ------------------------------------------------------------------


class Progress:
    """A ProgressSink that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **update: object) -> None:
        self.calls.append(update)


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Callable:
    """Trains each (problem, privacy on/off) once per module; tests share the results."""
    cache: dict[tuple[str, str, bool], tuple] = {}

    def run(vertical: Vertical, problem: Problem, *, private: bool) -> tuple:
        key = (vertical.key, problem.key, private)
        if key not in cache:
            from ml_core.pipeline import run_training

            spec = problem.spec
            rows, epochs = FAMILY_SIZE.get(spec.model_family, (TRAIN_ROWS, TRAIN_EPOCHS))
            frame = problem.sample_data(rows, 7)
            progress = Progress()
            privacy = dataclasses.replace(spec.privacy, enabled=private)
            result = run_training(
                frame=frame,
                mapping=problem.sample_mapping,
                spec=spec,
                privacy=privacy,
                train=dataclasses.replace(spec.train, epochs=epochs),
                artifact_dir=tmp_path_factory.mktemp(f"{vertical.key}-{problem.key}-{private}"),
                progress=progress,
            )
            cache[key] = (frame, result, progress)
        return cache[key]

    return run


def primary(spec: ProblemSpec, metrics: dict) -> float:
    value = metrics[spec.primary_metric]
    assert value is not None and math.isfinite(value), metrics
    return float(value)


@pytest.mark.slow
@pytest.mark.parametrize("private", [True, False], ids=["private", "nonprivate"])
@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_trains_and_beats_the_naive_level(
    vertical: Vertical, problem: Problem, private: bool, train: Callable
) -> None:
    _, result, progress = train(vertical, problem, private=private)
    spec = problem.spec
    json.dumps(result.to_dict())
    assert set(spec.metrics) <= set(result.metrics)
    score = primary(spec, result.metrics)
    naive = NAIVE_LEVEL.get(spec.primary_metric)
    if naive is not None:
        assert score > naive + NAIVE_MARGIN, result.metrics
    # Forecasts keep the better of several naive baselines, all listed.
    assert result.baseline["name"] in {spec.baseline, *result.baseline.get("baselines", {})}
    assert result.task_type == spec.task_type.value
    assert progress.calls, "training reported no progress"
    # A non-private tabular training may run up to NONPRIVATE_EPOCH_FACTOR times its epochs
    # (ml_core.trainer.nonprivate_schedule: early stopping ends it, not the cap).
    limit = max(TRAIN_EPOCHS, *(epochs for _, epochs in FAMILY_SIZE.values()))
    assert result.history and len(result.history) <= limit * (
        1 if private else NONPRIVATE_EPOCH_FACTOR)
    if private:
        assert result.nonprivate_metrics is not None
    else:
        assert result.nonprivate_metrics is None
        # The non-private model must hold its own against the simple baseline.
        baseline = primary(spec, result.baseline["metrics"])
        if higher_is_better(spec.primary_metric):
            assert score >= baseline - BASELINE_SLACK, (score, baseline)
        else:
            assert score <= baseline + BASELINE_SLACK, (score, baseline)


TEXT_PROBLEMS = [param for param in PROBLEMS
                 if param.values[1].spec.model_family == "text_encoder"]


@pytest.mark.slow
@pytest.mark.parametrize(("vertical", "problem"), TEXT_PROBLEMS)
def test_text_model_beats_tfidf_on_fresh_rows(
    vertical: Vertical, problem: Problem, train: Callable
) -> None:
    """The non-private text model strictly beats TF-IDF + LR, scored on fresh rows.

    The test split (60 of the battery's 300 rows; 120 at 600) cannot tell the two apart:
    the standard error of macro F1 on it is about 0.04-0.05, as large as the gap, and over
    data seeds 0-4 the model "lost" there on some seeds. The model (reloaded from its
    artifact, the product's predict path) and the baseline (refitted as the product fits
    it, on the same training rows) are therefore scored on TEXT_FRESH_SAMPLE: 1,500 rows
    from the same generator with another data seed, where the standard error is about
    0.01. There the model won on every data seed 0-4 at the battery's size
    (``scripts/text_seed_study.py --fresh 1500``, README).
    """
    from ml_core.families.text import compare_on_fresh_rows

    frame, result, _ = train(vertical, problem, private=False)
    rows, seed = TEXT_FRESH_SAMPLE
    _, epochs = FAMILY_SIZE["text_encoder"]
    compared = compare_on_fresh_rows(
        result.artifact_path, frame=frame, mapping=problem.sample_mapping, spec=problem.spec,
        train=dataclasses.replace(problem.spec.train, epochs=epochs),
        fresh=problem.sample_data(rows, seed))
    assert compared["rows"] == rows
    model, baseline = compared["model"]["macro_f1"], compared["baseline"]["macro_f1"]
    assert model > baseline, compared


@pytest.mark.slow
@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_private_training_spends_at_most_its_budget(
    vertical: Vertical, problem: Problem, train: Callable
) -> None:
    _, result, _ = train(vertical, problem, private=True)
    privacy = result.privacy
    target = problem.spec.privacy.target_epsilon
    assert privacy["enabled"] is True
    assert privacy["target_epsilon"] == pytest.approx(target)
    assert 0 < privacy["epsilon"] <= target * 1.001
    assert 0 < privacy["delta"] < 1 and privacy["noise_multiplier"] > 0 and privacy["steps"] > 0
    # Independent accountant: the PLD of the same Poisson-subsampled Gaussian mechanism,
    # composed with the preprocessing Gaussian where the run released DP statistics (whose
    # vocabulary thresholds hold their own share of delta).
    event = dp_event.SelfComposedDpEvent(
        dp_event.PoissonSampledDpEvent(
            privacy["sample_rate"], dp_event.GaussianDpEvent(privacy["noise_multiplier"])
        ),
        privacy["steps"],
    )
    delta = privacy["delta"]
    stages = {stage["stage"]: stage for stage in privacy.get("stages", ())}
    if stages.get("preprocessing", {}).get("noise_multiplier") is not None:
        pre = stages["preprocessing"]
        event = dp_event.ComposedDpEvent(
            [dp_event.GaussianDpEvent(pre["noise_multiplier"]), event])
        delta -= pre["threshold_delta"]
    accountant = pld.PLDAccountant(value_discretization_interval=1e-3)
    independent = accountant.compose(event).get_epsilon(delta)
    assert independent == pytest.approx(privacy["epsilon"], rel=0.05, abs=0.05)
    epsilons = [e["epsilon"] for e in result.history if e.get("epsilon") is not None]
    assert epsilons == sorted(epsilons)


@pytest.mark.slow
@pytest.mark.parametrize("private", [True, False], ids=["private", "nonprivate"])
@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_audits_every_sensitive_attribute(
    vertical: Vertical, problem: Problem, private: bool, train: Callable
) -> None:
    from ml_core.fairness import passed

    _, result, _ = train(vertical, problem, private=private)
    sensitive = problem.sample_mapping.sensitive
    assert set(result.fairness) == set(sensitive)
    assert result.fairness_passed == passed(result.fairness)
    predictions = result.predictions
    if problem.spec.task_type != TaskType.BINARY_CLASSIFICATION:
        # Task-shaped audits (error, ranking or score by group): shape and group sizes.
        for attribute in sensitive:
            report = result.fairness[attribute]
            assert {"by_group", "disparities", "passed"} <= set(report), report
            assert report.get("kind", "personal") in {"personal", "operational"}
            assert all(g["count"] > 0 for g in report["by_group"].values())
        return
    for attribute in sensitive:
        report = result.fairness[attribute]
        assert {"by_group", "disparities", "checks", "passed"} <= set(report)
        assert sum(g["count"] for g in report["by_group"].values()) == len(predictions)
        # fairlearn as the reference, on the groups large enough to be judged.
        judged = predictions[predictions[attribute].isin(report["judged_groups"])]
        if judged[attribute].nunique() >= 2:
            reference = demographic_parity_difference(
                judged["y_true"], judged["y_pred"], sensitive_features=judged[attribute]
            )
            computed = report["disparities"]["demographic_parity_difference"]
            assert computed == pytest.approx(reference, abs=1e-9)


# --- reloading: the artifact scores as the trained model did --------------------------


def _loaded_family(problem: Problem, path: Path) -> tuple[ModelFamily, object]:
    from ml_core.families import get_family

    family = get_family(problem.spec.model_family)
    return family, family.load(path)


def _by_row(table: pd.DataFrame, column: str, row_ids: pd.Series) -> np.ndarray:
    """``table[column]`` in the order of ``row_ids`` (every row id must be there)."""
    values = table.dropna(subset=["row_id"]).set_index("row_id")[column]
    assert set(row_ids) <= set(values.index), "the reloaded model skipped training rows"
    return values.reindex(row_ids.to_numpy()).to_numpy(dtype=float)


def _rescored_tabular(problem: Problem, path: Path, frame: pd.DataFrame, predictions: pd.DataFrame
                      ) -> tuple[np.ndarray, np.ndarray]:
    from ml_core.artifacts import load_model, predict_proba

    rows = frame.loc[predictions["row_id"].to_numpy()]
    scores = np.asarray(predict_proba(load_model(path), rows), dtype=float)
    return scores, predictions["y_score"].to_numpy(dtype=float)


def _rescored_forecaster(problem: Problem, path: Path, frame: pd.DataFrame,
                         predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    # The test periods with their targets blanked: the reloaded model forecasts them from
    # the last validation period, as the run's test forecasts start.
    family, loaded = _loaded_family(problem, path)
    blanked = frame.copy()
    blanked[problem.sample_mapping.target] = blanked[problem.sample_mapping.target].astype(float)
    blanked.loc[predictions["row_id"].to_numpy(), problem.sample_mapping.target] = np.nan
    forecast = family.predict(loaded, blanked)
    return (_by_row(forecast, "y_pred", predictions["row_id"]),
            predictions["y_pred"].to_numpy(dtype=float))


def _rescored_recommender(problem: Problem, path: Path, frame: pd.DataFrame,
                          predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    # Each test user's positive interactions without the held-out ones: the reloaded model
    # must rank the same top-k lists with the same scores. (predict skips every item a user
    # has a row for, positive or not; the run skipped the training positives.)
    from ml_core.families.recommendation import interactions

    family, loaded = _loaded_family(problem, path)
    data = interactions(frame, problem.sample_mapping)
    held = {(user, item) for user, wanted in zip(predictions["user"], predictions["held_out"],
                                                 strict=True) for item in wanted.split("|")}
    history = frame.loc[[row for user, item, row in zip(data.users, data.items, data.row_ids,
                                                        strict=True)
                         if (data.user_names[user - 1], data.item_names[item - 1]) not in held]]
    ranked = family.predict(loaded, history).sort_values(["user", "rank"])
    lists = ranked.groupby("user", sort=False)["item"].agg("|".join)
    assert lists.reindex(predictions["user"]).tolist() == predictions["top_k"].tolist()
    first = ranked[ranked["rank"] == 1].set_index("user")["score"]
    return (first.reindex(predictions["user"]).to_numpy(dtype=float),
            predictions["top_score"].to_numpy(dtype=float))


def _rescored_by_row(column: str) -> Callable:
    def rescored(problem: Problem, path: Path, frame: pd.DataFrame, predictions: pd.DataFrame
                 ) -> tuple[np.ndarray, np.ndarray]:
        family, loaded = _loaded_family(problem, path)
        table = family.predict(loaded, frame)
        return (_by_row(table, column, predictions["row_id"]),
                predictions[column].to_numpy(dtype=float))

    return rescored


def _rescored_text(problem: Problem, path: Path, frame: pd.DataFrame, predictions: pd.DataFrame
                   ) -> tuple[np.ndarray, np.ndarray]:
    family, loaded = _loaded_family(problem, path)
    table = family.predict(loaded, frame.loc[predictions["row_id"].to_numpy()])
    assert table["y_pred"].tolist() == predictions["y_pred"].tolist()
    return table["y_score"].to_numpy(dtype=float), predictions["y_score"].to_numpy(dtype=float)


def _rescored_image(problem: Problem, path: Path, frame: pd.DataFrame, predictions: pd.DataFrame
                    ) -> tuple[np.ndarray, np.ndarray]:
    # The run's row ids are the images' paths (the mapped image column), not frame labels.
    family, loaded = _loaded_family(problem, path)
    image_column = problem.sample_mapping.role("image")
    rows = frame.set_index(image_column, drop=False).loc[predictions["row_id"].to_numpy()]
    table = family.predict(loaded, rows.reset_index(drop=True))
    assert table["y_pred"].tolist() == predictions["y_pred"].tolist()
    return table["y_score"].to_numpy(dtype=float), predictions["y_score"].to_numpy(dtype=float)


def _rescored_next_exercise(problem: Problem, path: Path, frame: pd.DataFrame,
                            predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    # Each test student's answers up to the last one the run read (its row_id), in the
    # order the model reads them: the reloaded model must recommend the same skill.
    from ml_core.families.knowledge_tracing import predict_answers, recommend

    _, loaded = _loaded_family(problem, path)
    order = predict_answers(loaded, frame)
    rows = []
    for student, last in zip(predictions["student"], predictions["row_id"], strict=True):
        answers = order[order["student"] == student]["row_id"].tolist()
        rows.extend(answers[: answers.index(last) + 1])
    chosen = recommend(loaded, frame.loc[rows]).set_index("student")
    again = chosen.reindex(predictions["student"])
    assert again["recommended_skill"].tolist() == predictions["recommended_skill"].tolist()
    return (again["predicted_success"].to_numpy(dtype=float),
            predictions["predicted_success"].to_numpy(dtype=float))


# model family -> (problem, artifact path, training frame, training-time predictions) ->
# (the reloaded artifact's scores, the run's own scores), aligned row by row.
RESCORED: dict[str, Callable] = {
    "tabular_mlp": _rescored_tabular,
    "forecaster": _rescored_forecaster,
    "recommender": _rescored_recommender,
    "sequence_regressor": _rescored_by_row("y_pred"),
    "knowledge_tracing": _rescored_by_row("y_score"),
    "next_exercise": _rescored_next_exercise,
    "text_encoder": _rescored_text,
    "image_classifier": _rescored_image,
}


def test_every_family_has_a_rescoring_check() -> None:
    assert {p.values[1].spec.model_family for p in PROBLEMS} <= set(RESCORED)


@pytest.mark.slow
@pytest.mark.parametrize("private", [True, False], ids=["private", "nonprivate"])
@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_artifact_reloads_to_the_training_time_scores(
    vertical: Vertical, problem: Problem, private: bool, train: Callable
) -> None:
    """The saved artifact, reloaded through the family's own load and predict (the
    product's path), scores the test rows as the run scored them when it trained."""
    frame, result, _ = train(vertical, problem, private=private)
    path = Path(result.artifact_path)  # a directory: weights, metadata (encoder)
    from ml_core.artifacts import METADATA_FILE, WEIGHTS_FILE

    weights = path / WEIGHTS_FILE
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == result.artifact_sha256
    metadata = json.loads((path / METADATA_FILE).read_text())
    assert metadata["seed"] == result.seed
    if private:
        assert metadata["epsilon"] == pytest.approx(result.privacy["epsilon"])
    else:
        assert metadata["epsilon"] is None
    reloaded, trained = RESCORED[problem.spec.model_family](
        problem, path, frame, result.predictions)
    assert len(trained) == len(result.predictions) > 0
    np.testing.assert_allclose(reloaded, trained, rtol=1e-5, atol=1e-5)


# --- the primary metric against the naive level ------------------------------------------


def _random_ndcg(frame: pd.DataFrame, problem: Problem, predictions: pd.DataFrame, k: int
                 ) -> float:
    """Expected NDCG@k of a uniformly random ranking of each test user's unseen items."""
    mapping = problem.sample_mapping
    users = frame[mapping.role("user")].astype("string").str.strip()
    items = frame[mapping.role("item")].astype("string").str.strip()
    n_items = items.nunique()
    known = items.groupby(users).agg(lambda values: set(values))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    levels = []
    for user, wanted in zip(predictions["user"], predictions["held_out"], strict=True):
        relevant = len(wanted.split("|"))
        candidates = n_items - len(known[user] - set(wanted.split("|")))
        # Each of the k slots holds a relevant item with probability relevant / candidates.
        expected = relevant / candidates * discounts.sum()
        levels.append(expected / discounts[: min(relevant, k)].sum())
    return float(np.mean(levels))


def naive_level(problem: Problem, frame: pd.DataFrame, result: object) -> float:
    """The primary metric of a model that learnt nothing, computed here from the test
    rows the run judged (not from the family's code)."""
    from sklearn.metrics import f1_score

    spec, predictions = problem.spec, result.predictions
    metric = spec.primary_metric
    if metric == "roc_auc":
        return 0.5
    if metric == "pr_auc":  # a score independent of the label: the prevalence
        return float(predictions["y_true"].mean())
    if metric == "macro_f1":  # the most common test label for every row
        truth = predictions["y_true"]
        return float(f1_score(truth, [truth.mode()[0]] * len(truth), average="macro"))
    if metric == "mase":  # the last observed value carried forward
        error = (predictions["naive"] - predictions["y_true"]).abs()
        return float((error / predictions["mase_scale"]).mean())
    if metric == "rmse":  # one constant for every row: the training units' mean RUL
        error = predictions["mean_rul"] - predictions["y_true"]
        return float(np.sqrt((error ** 2).mean()))
    if metric.startswith("ndcg@"):
        return _random_ndcg(frame, problem, predictions, int(metric.split("@")[1]))
    if metric == "zpd_share":  # a skill drawn at random, read by the same mastery
        return float(predictions["random_in_zpd"].astype(float).mean())
    raise AssertionError(f"no naive level for {metric}: add one")


@pytest.mark.slow
@pytest.mark.parametrize("private", [True, False], ids=["private", "nonprivate"])
@pytest.mark.parametrize(("vertical", "problem"), PROBLEMS)
def test_primary_metric_beats_the_naive_level(
    vertical: Vertical, problem: Problem, private: bool, train: Callable
) -> None:
    if private and problem.key in CANNOT_LEARN_PRIVATELY:
        pytest.xfail(CANNOT_LEARN_PRIVATELY[problem.key])
    frame, result, _ = train(vertical, problem, private=private)
    spec = problem.spec
    score, naive = primary(spec, result.metrics), naive_level(problem, frame, result)
    if higher_is_better(spec.primary_metric):
        assert score > naive, (spec.primary_metric, score, naive)
    else:
        assert score < naive, (spec.primary_metric, score, naive)


def test_privacy_config_default_is_private() -> None:
    # The battery trains "private" with the spec's own budget: make sure that means on.
    assert PrivacyConfig().enabled
