"""A given test file that carries its own target, for forecasting (the later periods of the
training file's series) and remaining useful life (whole held-out machines, with their RUL
column or run to failure): its rows are exactly the test part, through ml_core and through
the command's ``--test-file`` alone; series, dates or machines that do not fit are refused
by name (issue 13)."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse
from sklearn.metrics import mean_absolute_error, mean_squared_error

from ingestion.models import DatasetVersion
from ml_core.data import attach_labelled_test
from ml_core.families import forecasting, get_family
from ml_core.families import sequence_regression as rul
from ml_core.pipeline import run_training
from ml_core.spec import PrivacyConfig
from tests.conftest import api_test_file, csv_upload
from verticals.manufacturing.demo_data import run_to_failure
from verticals.manufacturing.vertical import REMAINING_USEFUL_LIFE, RUL_SAMPLE_MAPPING
from verticals.retail.demo_data import weekly_sales
from verticals.retail.vertical import DEMAND_FORECAST, FORECAST_SAMPLE_MAPPING

pytestmark = pytest.mark.django_db

HORIZON = 6
TESTED_WEEKS = 4  # fewer than the horizon: the test is the file's weeks, not the last six


def _sales():
    """Weekly sales cut at a week: the training file, and the next four weeks as a test file."""
    sales = weekly_sales(600, 3)
    weeks = sorted(sales["week"].unique())
    is_test = sales["week"].isin(weeks[-TESTED_WEEKS:])
    return sales[~is_test], sales[is_test]


def _machines():
    """Run-to-failure training machines, and held-out machines with their RUL column."""
    train = run_to_failure(1000, 5)
    held_out = run_to_failure(400, 6)
    held_out["unit"] = "H" + held_out["unit"].str[1:]
    return train, held_out


def _command(tmp_path, admin, train, test, *, vertical, problem, extra=()):
    paths = tmp_path / "train.csv", tmp_path / "test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    out, code = io.StringIO(), 0
    try:
        call_command("pipeline", str(paths[0]), "--vertical", vertical, "--problem", problem,
                     "--test-file", str(paths[1]), "--epochs", "1", *extra,
                     "--inline", "--json", "--user", admin.username, stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    body = json.loads(out.getvalue())
    assert code == 0, body.get("errors") or body["run"]["error"]
    return body["run"]


# --- forecasting ----------------------------------------------------------------------


def test_forecasting_is_tested_on_exactly_the_given_periods(tmp_path):
    train, test = _sales()
    combined = attach_labelled_test(train, test)
    result = run_training(frame=combined, mapping=FORECAST_SAMPLE_MAPPING, spec=DEMAND_FORECAST,
                          train=dataclasses.replace(DEMAND_FORECAST.train, epochs=1,
                                                    horizon=HORIZON),
                          artifact_dir=tmp_path)
    assert get_family("forecaster").supports.labelled_test_file
    split, p = result.split, result.predictions
    assert split["method"] == "given_test_file"
    assert split["test"] == len(test) == len(p)
    # The predictions are the test file's rows (they follow the training rows), all of them.
    assert sorted(p["row_id"]) == list(range(len(train), len(combined)))
    np.testing.assert_allclose(combined.loc[p["row_id"], "units_sold"], p["y_true"])
    assert split["test_start"] == min(test["week"]) and split["test_end"] == max(test["week"])
    assert split["val_start"] < split["test_start"] and split["train_end"] < split["val_start"]
    assert result.metrics["mae"] == pytest.approx(mean_absolute_error(p.y_true, p.y_pred))
    assert result.metrics["rmse"] == pytest.approx(
        np.sqrt(mean_squared_error(p.y_true, p.y_pred)))
    assert any("the given test file's periods" in note for note in result.notes)


def test_forecasting_refuses_unknown_series_and_overlapping_dates():
    train, test = _sales()
    unknown = test.assign(store=test["store"].where(test["item"] != "I1", "S9"))
    with pytest.raises(ValueError, match=r"series the training file lacks \('S9 / I1'"):
        forecasting.prepare(attach_labelled_test(train, unknown), FORECAST_SAMPLE_MAPPING,
                            horizon=HORIZON)
    last = max(train["week"])
    overlapping = attach_labelled_test(train, pd.concat([test, train[train["week"] == last]]))
    with pytest.raises(ValueError, match=rf"dates '{last}' are not after the training file"):
        forecasting.prepare(overlapping, FORECAST_SAMPLE_MAPPING, horizon=HORIZON)
    # Validation says so before any run (the upload's mapping step).
    (issue,) = [i for i in forecasting.validate(overlapping, FORECAST_SAMPLE_MAPPING,
                                                DEMAND_FORECAST)
                if i.code == "test_file_mismatch"]
    assert f"'{last}'" in issue.message and issue.severity == "error"
    weeks = sorted(train["week"].unique())
    longer = attach_labelled_test(train[train["week"] < weeks[-4]],
                                  pd.concat([train[train["week"] >= weeks[-4]], test]))
    prepared = forecasting.prepare(longer, FORECAST_SAMPLE_MAPPING, horizon=HORIZON)
    with pytest.raises(ValueError, match="covers 8 periods, more than the forecast horizon"):
        forecasting.split_by_time(prepared, horizon=HORIZON, given_test=prepared.given_test)


@pytest.mark.slow
def test_the_command_tests_a_forecast_on_the_given_file(tmp_path, admin):
    train, test = _sales()
    run = _command(tmp_path, admin, train, test, vertical="retail", problem="demand_forecast",
                   extra=("--horizon", str(HORIZON)))
    assert run["split"]["method"] == "given_test_file"
    assert run["split"]["test"] == len(test)


def test_the_api_takes_a_forecasting_test_file(api_client, analyst):
    train, test = _sales()
    _, response = api_test_file(api_client(analyst), train, test, vertical="retail",
                                 problem="demand_forecast")
    assert response.status_code == 201, response.json()


# --- remaining useful life --------------------------------------------------------------


def test_remaining_life_is_tested_on_every_row_of_the_given_machines(tmp_path):
    train, test = _machines()
    combined = attach_labelled_test(train, test)
    result = rul.run(frame=combined, mapping=RUL_SAMPLE_MAPPING, spec=REMAINING_USEFUL_LIFE,
                     privacy=PrivacyConfig(enabled=False),
                     train=dataclasses.replace(REMAINING_USEFUL_LIFE.train, epochs=1),
                     artifact_dir=tmp_path)
    assert get_family("sequence_regressor").supports.labelled_test_file
    split, p = result.split, result.predictions
    assert split["method"] == "given_test_set" and split["evaluation"] == "every_cycle"
    assert split["test_unit_ids"] == sorted(test["unit"].unique())
    assert split["test"] == len(test) == len(p)
    assert sorted(p["row_id"]) == list(range(len(train), len(combined)))
    cap = REMAINING_USEFUL_LIFE.train.rul_cap
    np.testing.assert_allclose(
        p["y_true"], np.minimum(combined.loc[p["row_id"], "rul"].to_numpy(), cap))
    assert result.metrics["rmse"] == pytest.approx(
        np.sqrt(mean_squared_error(p.y_true, p.y_pred)))
    assert result.metrics["mae"] == pytest.approx(mean_absolute_error(p.y_true, p.y_pred))


def test_run_to_failure_test_machines_get_their_computed_life():
    train, test = _machines()
    mapping = dataclasses.replace(RUL_SAMPLE_MAPPING, target="")
    combined = attach_labelled_test(train.drop(columns=["rul"]), test.drop(columns=["rul"]))
    prepared = rul.prepare(combined, mapping, cap=1000)
    split = rul.split_by_unit(prepared, REMAINING_USEFUL_LIFE.train,
                              given_test=prepared.given_test)
    assert prepared.given_test == frozenset(test["unit"])
    assert len(split.test_rows) == len(test)
    judged = prepared.frame.iloc[split.test_rows]
    expected = test.set_index(["unit", "cycle"])["rul"]
    assert list(prepared.target[split.test_rows]) == [
        expected[(u, c)] for u, c in zip(judged["unit"], judged["cycle"], strict=True)]


def test_a_machine_in_both_files_is_refused_by_name():
    train, test = _machines()
    both = pd.concat([test, train[train["unit"] == "U002"]])
    with pytest.raises(ValueError, match=r"1 units have rows in both the training and the "
                                         r"test file \('U002'\)"):
        rul.prepare(attach_labelled_test(train, both), RUL_SAMPLE_MAPPING, cap=125)
    (issue,) = [i for i in rul.validate(attach_labelled_test(train, both), RUL_SAMPLE_MAPPING,
                                        REMAINING_USEFUL_LIFE)
                if i.code == "test_file_mismatch"]
    assert "'U002'" in issue.message and issue.severity == "error"


@pytest.mark.slow
def test_the_command_takes_a_remaining_life_test_file_alone(tmp_path, admin):
    train, test = _machines()
    run = _command(tmp_path, admin, train, test, vertical="manufacturing",
                   problem="remaining_useful_life")
    assert run["split"]["method"] == "given_test_set"
    assert run["split"]["evaluation"] == "every_cycle"
    assert run["split"]["test"] == len(test)


def test_the_web_upload_takes_either_test_file_alone(client, analyst):
    client.force_login(analyst)
    sales, later = _sales()
    machines, held_out = _machines()
    for (vertical, problem), train, test in (
            (("retail", "demand_forecast"), sales, later),
            (("manufacturing", "remaining_useful_life"), machines, held_out)):
        response = client.post(reverse("dataset_upload", args=[vertical, problem]), {
            "file": csv_upload(train.to_csv(index=False).encode(), "train.csv"),
            "test_file": csv_upload(test.to_csv(index=False).encode(), "test.csv")})
        assert response.status_code == 302, response.content.decode()[:2000]
        version = DatasetVersion.objects.get(dataset__problem=problem)
        assert [c.kind for c in version.companions.all()] == ["test_set"]


def test_the_api_refuses_a_machine_in_both_files_at_the_mapping(api_client, analyst):
    train, test = _machines()
    client = api_client(analyst)
    version, attached = api_test_file(
        client, train, pd.concat([test, train[train["unit"] == "U003"]]),
        vertical="manufacturing", problem="remaining_useful_life")
    assert attached.status_code == 201, attached.json()
    refused = client.post(f"/api/v1/dataset-versions/{version}/mapping/",
                          {"target": "rul"}, format="json")
    assert refused.status_code == 400
    (error,) = [e for e in refused.json()["errors"] if e["code"] == "test_file_mismatch"]
    assert "'U003'" in error["message"]


def test_cut_series_without_their_true_values_are_refused_at_the_mapping(api_client, analyst):
    train, test = _machines()
    client = api_client(analyst)
    # A test file without the RUL column: series cut before failure, whose true values may
    # still follow, so attaching it is accepted; confirming the mapping without them is not.
    version, attached = api_test_file(client, train, test.drop(columns=["rul"]),
                                       vertical="manufacturing",
                                       problem="remaining_useful_life")
    assert attached.status_code == 201, attached.json()
    refused = client.post(f"/api/v1/dataset-versions/{version}/mapping/",
                          {"target": "rul"}, format="json")
    assert refused.status_code == 400
    (error,) = [e for e in refused.json()["errors"] if e["code"] == "companion_mismatch"]
    assert "no column 'rul'" in error["message"] and "test_truth" in error["message"]
