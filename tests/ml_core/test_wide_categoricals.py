"""Wide code columns: hashed and grouped by a declared public hierarchy, never encoded with
a vocabulary learnt from the rows; a given test file is the test split; gradient-boosted
trees stand beside the logistic baseline."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from ml_core.code_hierarchies import hash_bucket, icd9_category, icd9_chapter, postcode_prefix
from ml_core.data import MAX_ONE_HOT_LEVELS, TabularEncoder, attach_labelled_test, encode_and_split
from ml_core.metrics import reference_models
from ml_core.pipeline import run_training
from ml_core.spec import ColumnMapping
from ml_core.validation import suggest_mapping
from verticals.registry import get_problem

READMISSION = get_problem("healthcare", "readmission_risk").spec


def _codes(rng: np.random.Generator, count: int) -> list[str]:
    codes: set[str] = set()
    while len(codes) < count:
        roll = rng.random()
        if roll < 0.03:
            codes.add(f"V{rng.integers(10, 90)}")
        elif roll < 0.05:
            codes.add(f"E{rng.integers(800, 999)}")
        else:
            codes.add(f"{rng.integers(1, 999):03d}.{rng.integers(0, 99):02d}")
    return sorted(codes)


def wide_encounters(n: int, seed: int = 0) -> pd.DataFrame:
    """Three diagnosis columns of 700 ICD-9-like codes each (about 1,500 levels seen five
    times or more in 6,000 rows: the width one-hot encoding had)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(700) + 10.0) ** 0.6
    popularity /= popularity.sum()
    frame = {}
    for k in (1, 2, 3):
        frame[f"diag_{k}"] = rng.choice(_codes(rng, 700), n, p=popularity)
    frame["age"] = rng.integers(20, 90, n)
    circulatory = np.isin(pd.Series(frame["diag_1"]).map(icd9_chapter), ["circulatory"])
    logit = -1.5 + 1.2 * circulatory + 0.02 * (frame["age"] - 55)
    frame["readmitted"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(frame)


# Chapters that raise or lower readmission risk; the comorbidity of a diabetes-chapter and a
# heart-chapter code, prior admissions and very short or very long stays raise it further.
CHAPTER_EFFECTS = {"circulatory": 0.5, "endocrine": 0.3, "neoplasms": 0.6, "respiratory": 0.3,
                   "injury": -0.4, "supplementary_v": -0.3, "mental": 0.2}


def comorbid_encounters(n: int, seed: int = 0) -> pd.DataFrame:
    """Encounters with three 700-level ICD-9 code columns (about 1,500 levels seen five
    times in 6,000 rows), prior admissions and length of stay, whose outcome is not additive
    in the encoded features: a comorbidity across any two code columns, a threshold on
    prior admissions, a U-shaped length of stay (premature discharge and long stays)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(700) + 10.0) ** 0.6
    popularity /= popularity.sum()
    frame = {f"diag_{k}": rng.choice(_codes(rng, 700), n, p=popularity) for k in (1, 2, 3)}
    frame["age"] = rng.integers(20, 90, n)
    frame["number_inpatient"] = rng.poisson(0.8, n)
    frame["time_in_hospital"] = rng.integers(1, 15, n)
    chapters = np.stack([pd.Series(frame[f"diag_{k}"]).map(icd9_chapter).to_numpy()
                         for k in (1, 2, 3)])
    effects = np.vectorize(lambda chapter: CHAPTER_EFFECTS.get(chapter, 0.0))(chapters)
    stay = frame["time_in_hospital"]
    logit = (-2.0 + effects.T @ np.array([1.0, 0.6, 0.4])
             + 2.5 * ((chapters == "endocrine").any(axis=0)
                      & (chapters == "circulatory").any(axis=0))
             + 1.0 * (frame["number_inpatient"] >= 2) + 1.0 * ((stay <= 2) | (stay >= 11)))
    frame["readmitted"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(frame)


@pytest.mark.slow
def test_the_private_model_beats_the_logistic_baseline_on_a_wide_code_table(tmp_path):
    """Issue 13: at epsilon 3 on about 1,500 levels of three 700-level code columns, the
    private model beats the product's logistic baseline (ROC AUC on the test rows).

    20,000 encounters, seed 0 (the spread over seeds 0-2, private minus logistic: +0.003,
    -0.003, +0.007; docs/real-data.md)."""
    frame = comorbid_encounters(20_000, seed=0)
    mapping = suggest_mapping(frame, READMISSION)
    train = dataclasses.replace(READMISSION.train, seed=0, device="cpu")
    result = run_training(frame=frame, mapping=mapping, spec=READMISSION, train=train,
                          artifact_dir=tmp_path)
    privacy = result.privacy
    assert privacy["enabled"] and privacy["target_epsilon"] == 3.0
    assert privacy["epsilon"] <= 3.0 + 1e-6 and privacy["steps"] == privacy["planned_steps"]
    # The larger private batch of a large table (trainer.private_schedule): 4 % of persons.
    assert privacy["sample_rate"] == pytest.approx(0.04, rel=0.05)
    assert result.metrics["roc_auc"] > result.baseline["metrics"]["roc_auc"]


def test_icd9_and_postcode_hierarchies():
    assert icd9_category("250.83") == icd9_category("25083") == "250"
    assert icd9_chapter("250.83") == "endocrine"
    assert icd9_chapter("0389") == icd9_chapter("38") == "infectious"
    assert icd9_category("V57.1") == "V57" and icd9_chapter("V57") == "supplementary_v"
    assert icd9_category("E849.7") == "E849" and icd9_chapter("E8497") == "external_e"
    assert postcode_prefix("02139") == "021" and postcode_prefix("l9g 2b1") == "L9G"
    # crc32, not Python's per-process hash: the same bucket in every run.
    assert hash_bucket("diag_1:code", "250.83") == hash_bucket("diag_1:code", "250.83")
    assert 0 <= hash_bucket("diag_1:code", "250.83") < 32


def test_three_700_level_code_columns_encode_narrow_without_a_vocabulary():
    frame = wide_encounters(6000)
    seen_five_times = sum(int((frame[c].value_counts() >= 5).sum()) for c in
                          ("diag_1", "diag_2", "diag_3"))
    assert 1300 <= seen_five_times <= 2100  # what one-hot encoding used to produce
    mapping = suggest_mapping(frame, READMISSION)
    assert dict(mapping.hierarchies) == {"diag_1": "icd9", "diag_2": "icd9", "diag_3": "icd9"}
    encoder = TabularEncoder.fit(frame, ("diag_1", "diag_2", "diag_3", "age"),
                                 hierarchies=dict(mapping.hierarchies))
    assert encoder.n_features < 300
    assert encoder.levels == {} and set(encoder.hashed) == {"diag_1", "diag_2", "diag_3"}
    stored = json.dumps(encoder.to_dict())
    # No code of the data, nor a category learnt from it, is in what the artifact keeps.
    assert not [code for code in frame["diag_1"].unique() if f'"{code}' in stored
                or f"={code}" in stored]
    matrix = encoder.transform(frame)
    # Each code column sets exactly one chapter, one category bucket and one code bucket.
    chapter = [i for i, name in enumerate(encoder.feature_names) if name.startswith(
        "diag_1:chapter=")]
    np.testing.assert_array_equal(matrix[:, chapter].sum(axis=1), 1.0)
    circulatory = encoder.feature_names.index("diag_1:chapter=circulatory")
    np.testing.assert_array_equal(matrix[:, circulatory],
                                  frame["diag_1"].map(icd9_chapter).eq("circulatory"))
    # Unseen codes are encoded like any other: by hash, no "other" bucket needed.
    unseen = frame.head(3).assign(diag_1=["999.99", "V99", "E999"])
    assert encoder.transform(unseen).shape == (3, encoder.n_features)


def test_wide_columns_without_a_hierarchy_are_hashed_past_the_one_hot_cap():
    frame = wide_encounters(2000)
    encoder = TabularEncoder.fit(frame, ("diag_1", "age"))
    assert frame["diag_1"].nunique() > MAX_ONE_HOT_LEVELS
    assert encoder.hashed == {"diag_1": None} and encoder.n_features == 1 + 32


def test_a_given_test_file_is_exactly_the_test_split():
    frame = wide_encounters(600, seed=1)
    given = wide_encounters(150, seed=2)
    combined = attach_labelled_test(frame, given)
    mapping = ColumnMapping(target="readmitted", hierarchies=(("diag_1", "icd9"),))
    split = encode_and_split(combined, mapping, READMISSION.train)
    np.testing.assert_array_equal(np.sort(split.ids_test), np.arange(600, 750))
    np.testing.assert_array_equal(split.y_test, given["readmitted"].to_numpy())
    assert split.method.startswith("given test file")
    assert "__split__" not in " ".join(split.encoder.feature_names)


def test_gradient_boosting_reference_matches_scikit_learn():
    frame = wide_encounters(800, seed=3)
    split = encode_and_split(frame, ColumnMapping(target="readmitted"),
                             dataclasses.replace(READMISSION.train, seed=4))
    references = reference_models(
        x_train=split.x_train, y_train=split.y_train, x_val=split.x_val, y_val=split.y_val,
        x_test=split.x_test, y_test=split.y_test, metrics=("roc_auc",), seed=4)
    with threadpool_limits(limits=1, user_api="openmp"):  # as the reference fits it
        trees = HistGradientBoostingClassifier(random_state=4).fit(split.x_train, split.y_train)
    expected = roc_auc_score(split.y_test, trees.predict_proba(split.x_test)[:, 1])
    reference = references["gradient_boosting"]
    assert reference["metrics"]["roc_auc"] == expected
    assert "curator" in reference["note"]
