"""Drift: PSI per feature and per sensitive group; a shifted file trips it, an unshifted one
does not; a drifted dataset version shows on the champion and can start a retrain."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from ml_core.data import feature_columns
from ml_core.drift import drift_report, psi
from ml_core.fairness import sensitive_frame
from tests.conftest import csv_upload, finance_frame
from verticals.registry import get_problem


def problem():
    return get_problem("finance", "credit_risk")


def report(reference, current):
    p = problem()
    columns = list(feature_columns(reference, p.sample_mapping))
    both = pd.concat([reference, current], ignore_index=True)
    groups = sensitive_frame(both, p.sample_mapping, p.spec)
    return drift_report(reference=reference, current=current, columns=columns,
                        groups_reference=groups.iloc[:len(reference)].reset_index(drop=True),
                        groups_current=groups.iloc[len(reference):].reset_index(drop=True))


def test_psi_matches_the_textbook_formula():
    reference = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    current = pd.Series(["a"] * 30 + ["b"] * 30 + ["c"] * 40)
    ref = (np.array([50, 30, 20]) + 0.5) / 101.5
    cur = (np.array([30, 30, 40]) + 0.5) / 101.5
    assert psi(reference, current) == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))))
    assert psi(reference, reference) == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fresh_sample_of_the_same_population_does_not_trip(seed):
    result = report(finance_frame(400, 0), finance_frame(400, seed))
    assert not result["drifted"], result["max_psi"]
    assert result["max_psi"] < result["threshold"]


def test_a_shifted_feature_trips():
    current = finance_frame(400, 1)
    current["income"] = current["income"] * 1.6
    result = report(finance_frame(400, 0), current)
    assert result["drifted"] and result["features"]["income"] >= result["threshold"]
    assert max(v for k, v in result["features"].items() if k != "income") < 0.25


def test_a_shift_within_one_group_shows_in_that_group():
    reference, current = finance_frame(400, 0), finance_frame(400, 1)
    women = current["sex"].astype(str).str.lower().str.startswith("f")
    current.loc[women, "income"] = current.loc[women, "income"] * 1.8
    result = report(reference, current)
    assert result["drifted"]
    by_group = result["groups"]["sex"]["by_group"]
    female = next(g for g in by_group if g.lower().startswith("f"))
    male = next(g for g in by_group if g.lower().startswith("m"))
    assert by_group[female]["features"]["income"] >= 0.25
    assert by_group[male]["features"]["income"] < 0.1


@pytest.mark.django_db
def test_new_dataset_versions_are_checked_against_the_champion(
    make_model, approve, reviewer, analyst, admin, validated_version,
    django_capture_on_commit_callbacks
):
    from governance.drift import check_dataset_version
    from governance.registry import promote
    from governance.schedules import set_schedule
    from ingestion.services import confirm_mapping, upload_dataset
    from training.models import TrainingRun

    champion = approve(make_model())
    promote(model_version=champion, user=reviewer, reason="champion")

    def new_version(frame):
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        version = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                                 file=csv_upload(buffer.getvalue().encode()),
                                 dataset=validated_version.dataset)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            version = confirm_mapping(version=version, user=analyst,
                                      mapping=problem().sample_mapping)
        assert len(callbacks) >= 1  # the drift check is queued
        return version

    steady = check_dataset_version(new_version(finance_frame(400, 1)).pk)
    assert steady is not None and not steady.drifted and steady.model_version == champion

    set_schedule(user=admin, vertical="finance", problem="credit_risk", retrain_on_drift=True)
    shifted = finance_frame(400, 2)
    shifted["income"] = shifted["income"] * 1.6
    version = new_version(shifted)
    drifted = check_dataset_version(version.pk)
    assert drifted.drifted and drifted.report["features"]["income"] >= 0.25
    # The schedule says retrain on drift: a retrain of the latest version was started.
    assert TrainingRun.objects.get(retrain__isnull=False).dataset_version == version
