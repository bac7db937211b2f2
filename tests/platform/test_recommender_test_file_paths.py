"""A given test file for recommendation through the web upload, the API and the command's
``--test-file`` alone (issue 13): its positives are the test part, and a test user with no
history in the training file is refused by name at the mapping."""

from __future__ import annotations

import pandas as pd
import pytest
from django.urls import reverse

from ingestion.models import DatasetVersion
from tests.conftest import api_test_file, call_pipeline, csv_upload
from tests.ml_core.test_recommender_test_file import USER, published_split

pytestmark = pytest.mark.django_db

ROLES = [["user", "user_id"], ["item", "product_id"], ["time", "timestamp"]]


def test_the_web_upload_takes_a_recommendation_test_file(client, analyst):
    train, test = published_split(1500)
    client.force_login(analyst)
    response = client.post(reverse("dataset_upload", args=["retail", "recommendation"]), {
        "file": csv_upload(train.to_csv(index=False).encode(), "interactions.csv"),
        "test_file": csv_upload(test.to_csv(index=False).encode(), "test.csv")})
    assert response.status_code == 302, response.content.decode()[:2000]
    version = DatasetVersion.objects.get(dataset__problem="recommendation")
    assert [c.kind for c in version.companions.all()] == ["test_set"]


def test_the_api_takes_it_and_refuses_a_test_user_without_history(api_client, analyst):
    train, test = published_split(1500)
    client = api_client(analyst)
    version, attached = api_test_file(client, train, test,
                                      vertical="retail", problem="recommendation")
    assert attached.status_code == 201, attached.json()
    mapping = {"target": "purchased", "roles": ROLES}
    confirmed = client.post(f"/api/v1/dataset-versions/{version}/mapping/", mapping,
                            format="json")
    assert confirmed.status_code == 200, confirmed.json()
    stranger = test.iloc[:2].assign(**{USER: "U9999"})
    version, attached = api_test_file(client, train, pd.concat([test, stranger]),
                                      vertical="retail", problem="recommendation")
    assert attached.status_code == 201, attached.json()
    refused = client.post(f"/api/v1/dataset-versions/{version}/mapping/", mapping,
                          format="json")
    assert refused.status_code == 400
    (error,) = [e for e in refused.json()["errors"] if e["code"] == "test_file_mismatch"]
    assert "'U9999'" in error["message"] and "training file" in error["message"]


@pytest.mark.slow
def test_the_command_tests_recommendations_on_the_given_file(tmp_path, admin):
    # About 500 users: enough for the private item vocabulary at the default epsilon.
    train, test = published_split(6000)
    paths = tmp_path / "train.csv", tmp_path / "test.csv"
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    code, body = call_pipeline(paths[0], "--vertical", "retail", "--problem", "recommendation",
                               "--test-file", paths[1], "--epochs", "1", "--inline",
                               "--json", "--user", admin.username)
    assert code == 0, body.get("errors") or body["run"]["error"]
    split = body["run"]["split"]
    assert split["method"] == "given_test_file"
    assert split["test"] == int((test["purchased"] == 1).sum())
