"""Demand forecasting on the real Walmart.csv, exactly as published.

45 stores x 143 weeks; dates as dd/mm/yy (05/02/10 = 5 February 2010), CRLF, no final
newline. Target Weekly_Sales; Holiday_Flag and the economic columns are covariates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_core.spec import ColumnMapping
from verticals.registry import get_problem

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
WALMART = SHARED_DATA / "Walmart.csv"

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not WALMART.exists(), reason="../shared/data/Walmart.csv is absent"),
]

MAPPING = ColumnMapping(
    target="Weekly_Sales",
    roles=(("series", "Store"), ("time", "Date"), ("covariate", "Holiday_Flag"),
           ("covariate", "Temperature"), ("covariate", "Fuel_Price"), ("covariate", "CPI"),
           ("covariate", "Unemployment")),
)


@pytest.fixture(scope="module")
def walmart():
    from ml_core.tables import read_table

    frame, _ = read_table(WALMART)
    return frame


@pytest.fixture(scope="module")
def result(walmart, tmp_path_factory):
    from ml_core.pipeline import run_training

    problem = get_problem("retail", "demand_forecast")
    return run_training(frame=walmart, mapping=MAPPING, spec=problem.spec,
                        artifact_dir=tmp_path_factory.mktemp("walmart"))


def test_reads_and_validates(walmart) -> None:
    from ml_core.families.forecasting import validate

    assert len(walmart) == 6435 and walmart["Store"].nunique() == 45
    problem = get_problem("retail", "demand_forecast")
    assert validate(walmart, MAPPING, problem.spec) == []


@pytest.mark.slow
def test_beats_naive_and_seasonal_naive(result) -> None:
    baselines = result.baseline["baselines"]
    for name in ("naive", "seasonal_naive"):
        assert result.metrics["wape"] < baselines[name]["wape"], (result.metrics, name)
        assert result.metrics["mase"] < baselines[name]["mase"], (result.metrics, name)
    split = result.split
    # Day-first dates: the file ends on 26 October 2012, so the 8-week test starts 7 Sept.
    assert split["test_end"] == "2012-10-26" and split["test_start"] == "2012-09-07"
    assert len(result.predictions) == 45 * 8
    assert result.privacy["enabled"] is False
    assert any("%d/%m/%y" in note for note in result.notes)
    json.dumps(result.to_dict())
