"""One age-banding source: the dataset profile, the fairness report and the guide give the
same bands, sorted as numbers (``<26`` first), also for an age column whose name no banding
matches (a headerless file's ``column_13``), whose bands are then quartiles of the table."""

from __future__ import annotations

import dataclasses
import io

import pytest

from ml_core.fairness import band_labels, group_sort_key
from tests.conftest import FAST_TRAINING, csv_upload, finance_frame
from verticals.registry import get_problem


def test_band_labels_sort_as_numbers():
    labels = ["26-31", "missing", "41+", "<26", "32-40", "female"]
    assert sorted(labels, key=group_sort_key) == ["<26", "26-31", "32-40", "41+", "female",
                                                  "missing"]


def test_the_guide_states_the_declared_bands():
    problem = get_problem("finance", "credit_risk")
    [banding] = problem.spec.banding
    labels = band_labels(banding)
    assert labels == ["<25", "25-34", "35-49", "50-64", "65+"]
    assert f"age in bands {', '.join(labels)})" in problem.guide


@pytest.mark.django_db
def test_profile_and_report_band_an_unnamed_age_column_alike(analyst):
    from audits.models import FairnessReport
    from ingestion.services import confirm_mapping, upload_dataset
    from training.services import execute_run, start_run

    frame = finance_frame().rename(columns={"age": "column_13"})
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    version = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                             file=csv_upload(buffer.getvalue().encode()), name="Headerless")
    mapping = get_problem("finance", "credit_risk").sample_mapping
    mapping = dataclasses.replace(
        mapping, sensitive=tuple("column_13" if c == "age" else c for c in mapping.sensitive),
        features=tuple(c for c in mapping.features if c != "age"))
    version = confirm_mapping(version=version, user=analyst, mapping=mapping)
    assert version.status == "validated", version.errors
    profile_groups = list(version.profile["groups"]["column_13"])
    assert profile_groups[0].startswith("<")  # sorted as numbers: the lowest band first

    run = start_run(version=version, user=analyst, config=dict(FAST_TRAINING))
    execute_run(run.pk)
    report = FairnessReport.objects.get(run=run).report["column_13"]["by_group"]
    # The test rows need not hold every band, but every band they hold is the profile's,
    # in the same order as pages show them (PostgreSQL's jsonb keeps no key order).
    from ml_core.fairness import group_sort_key

    assert sorted(report, key=group_sort_key) == [g for g in profile_groups if g in report]
    assert len(report) >= 3
