"""POST /api/v1/models/{id}/predict: token auth, roles, approval state, schema-checked rows."""

from __future__ import annotations

import numpy as np
import pytest

from ml_core.artifacts import load_model, predict_proba
from tests.conftest import finance_frame

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def rows(n=3, seed=5):
    frame = finance_frame(50, seed).drop(columns=["default"]).head(n)
    return frame, [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                   for r in frame.to_dict(orient="records")]


def url(model):
    return f"/api/v1/models/{model.pk}/predict/"


def test_scores_rows_of_an_approved_model(trained_model, api_client, analyst, approve):
    frame, body = rows()
    assert api_client(analyst).post(url(trained_model), {"rows": body},
                                    format="json").status_code == 409  # not approved yet
    approve(trained_model)
    response = api_client(analyst).post(url(trained_model), {"rows": body}, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert [p["row"] for p in answer["predictions"]] == [1, 2, 3]
    expected = predict_proba(load_model(trained_model.run.artifact_path), frame)
    assert np.allclose([p["score"] for p in answer["predictions"]], expected)
    threshold = answer["threshold"]
    assert [p["prediction"] for p in answer["predictions"]] == [
        int(s >= threshold) for s in expected]


def test_roles_and_organisations(trained_model, api_client, approve, reviewer, admin,
                                 other_analyst):
    approve(trained_model)
    _, body = rows(1)
    for user in (reviewer, admin):
        assert api_client(user).post(url(trained_model), {"rows": body},
                                     format="json").status_code == 200
    assert api_client(other_analyst).post(url(trained_model), {"rows": body},
                                          format="json").status_code == 404
    assert api_client().post(url(trained_model), {"rows": body},
                             format="json").status_code == 401


def test_bad_rows_are_a_clear_400(trained_model, api_client, analyst, approve, reviewer, admin):
    approve(trained_model)
    client = api_client(analyst)
    frame, body = rows(3)
    body[1]["income"] = "lots"
    response = client.post(url(trained_model), {"rows": body}, format="json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "not_numeric" and error["column"] == "income" and error["rows"] == [2]

    for row in body:
        row.pop("income")
    response = client.post(url(trained_model), {"rows": body}, format="json")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "missing_column" and error["column"] == "income"
    assert client.post(url(trained_model), {"rows": []}, format="json").status_code == 400
    assert client.post(url(trained_model), {"rows": "x"}, format="json").status_code == 400

    # A retired model stops serving.
    from governance.registry import retire

    retire(model_version=trained_model, user=reviewer, reason="superseded")
    assert client.post(url(trained_model), {"rows": rows(1)[1]},
                       format="json").status_code == 409
