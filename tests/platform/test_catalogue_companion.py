"""A public item catalogue as a companion file (issue 14): accepted through the API and the
command for recommendation, refused where nothing is recommended, audited, and carried to
the private run, whose vocabulary it is (no budget spent on it)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from django.urls import reverse

from audits.models import AuditLogEntry
from ingestion.models import CompanionFile, DatasetVersion
from ingestion.services import load_frame
from ml_core.families.recommendation import catalogue_attributes, declared_catalogue
from tests.conftest import csv_upload, finance_frame
from tests.platform.test_pipeline_command_tasks import pipeline
from training.models import TrainingRun
from verticals.registry import get_problem

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:Secure RNG turned off",
                                         "ignore:Optimal order is the")]

API = "/api/v1"


def shoppers(rows: int = 600) -> pd.DataFrame:
    return get_problem("retail", "recommendation").sample_data(rows, 0)


def products(frame: pd.DataFrame, *, extra: int = 2, leave_out: int = 3) -> pd.DataFrame:
    """The shop's products: those bought but the ``leave_out`` last ids, and ``extra`` new,
    with a name (one per product) and an aisle (public attributes)."""
    ids = sorted(frame["product_id"].unique())[:-leave_out] + [f"NEW{n}" for n in range(extra)]
    return pd.DataFrame({"product_id": ids, "name": [f"product {i}" for i in ids],
                         "aisle": [f"aisle {n % 4}" for n in range(len(ids))]})


def _upload(client, frame: pd.DataFrame, *, vertical: str, problem: str) -> dict:
    response = client.post(f"{API}/datasets/", {
        "vertical": vertical, "problem": problem,
        "file": csv_upload(frame.to_csv(index=False).encode(), "table.csv")},
        format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()


def test_the_api_accepts_a_catalogue_and_the_table_carries_it(api_client, analyst):
    client = api_client(analyst)
    frame = shoppers()
    catalogue = products(frame)
    version = _upload(client, frame, vertical="retail", problem="recommendation")
    response = client.post(
        f"{API}/dataset-versions/{version['id']}/companions/",
        {"kind": "catalogue",
         "file": csv_upload(catalogue.to_csv(index=False).encode(), "products.csv")},
        format="multipart")
    assert response.status_code == 201, response.json()
    stored = DatasetVersion.objects.get(pk=version["id"])
    companion = stored.companions.get()
    assert companion.kind == CompanionFile.Kind.CATALOGUE
    assert companion.key_column == "product_id"  # named like the item column
    loaded = load_frame(stored)
    assert declared_catalogue(loaded) == tuple(sorted(catalogue["product_id"]))
    # Its other columns are the items' public attributes.
    assert list(catalogue_attributes(loaded).table.columns) == ["name", "aisle"]
    # The declaration is on the audit log.
    entry = AuditLogEntry.objects.filter(action="dataset.companion_attached").latest("pk")
    assert entry.detail["kind"] == "catalogue" and entry.detail["filename"] == "products.csv"
    # Its columns are not the interactions' columns to map.
    assert "name" not in stored.columns


def test_the_api_refuses_a_catalogue_where_nothing_is_recommended(api_client, analyst):
    client = api_client(analyst)
    version = _upload(client, finance_frame(200), vertical="finance", problem="credit_risk")
    response = client.post(
        f"{API}/dataset-versions/{version['id']}/companions/",
        {"kind": "catalogue", "file": csv_upload(b"id\n1\n2\n", "items.csv")},
        format="multipart")
    assert response.status_code == 400
    assert "takes no item catalogue" in response.json()["detail"]


def test_the_web_upload_offers_the_catalogue_and_says_it_is_declared_public(client, analyst):
    client.force_login(analyst)
    url = reverse("dataset_upload", args=["retail", "recommendation"])
    page = client.get(url).content.decode()
    assert "Item catalogue" in page and "declare the catalogue public" in page
    frame = shoppers()
    client.post(url, {
        "file": csv_upload(frame.to_csv(index=False).encode(), "interactions.csv"),
        "catalogue": csv_upload(products(frame).to_csv(index=False).encode(), "products.csv")})
    version = DatasetVersion.objects.get()
    assert [c.kind for c in version.companions.all()] == ["catalogue"]
    page = client.get(reverse("dataset_version", args=[version.pk])).content.decode()
    assert "item ids in product_id, declared public" in page


@pytest.mark.slow
def test_the_command_trains_privately_on_the_declared_catalogue(tmp_path, admin):
    frame = shoppers()
    interactions, catalogue_file = tmp_path / "interactions.csv", tmp_path / "products.csv"
    frame.to_csv(interactions, index=False)
    catalogue = products(frame)
    catalogue.to_csv(catalogue_file, index=False)

    code, body = pipeline(interactions, "--vertical", "retail", "--problem", "recommendation",
                          "--catalogue", catalogue_file, "--privacy", "--epochs", 2,
                          "--inline", "--json", "--user", admin.username)

    assert code == 0, body.get("errors") or body["run"]["error"]
    run = TrainingRun.objects.get(pk=body["run"]["id"])
    assert [stage["stage"] for stage in run.privacy["stages"]] == ["sgd"]
    assert any("catalogue" in item for item in run.privacy["declared_public"])
    metadata = json.loads((Path(run.artifact_path) / "metadata.json").read_text())
    assert metadata["items"] == sorted(catalogue["product_id"])
    # The aisle scores items (the name, one per product, does not), declared public.
    assert metadata["catalogue_attributes"] == ["aisle"]
    assert any("'aisle'" in item for item in run.privacy["declared_public"])
    left_out = frame["product_id"].isin(set(frame["product_id"]) - set(catalogue["product_id"]))
    assert left_out.any()
    assert any("positive interactions on items outside it were dropped" in note
               for note in body["run"]["notes"])
