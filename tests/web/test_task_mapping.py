"""The upload and mapping pages for task problems: the problem's roles offered, pre-filled
from the suggested mapping, stored on confirmation; second files where a problem takes them."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ingestion.models import DatasetVersion
from verticals.registry import get_problem

pytestmark = pytest.mark.django_db


def sample_upload(vertical: str, problem: str, rows: int = 200, *, drop=(), name="data.csv"):
    buffer = io.StringIO()
    get_problem(vertical, problem).sample_data(rows, 0).drop(columns=list(drop)).to_csv(
        buffer, index=False)
    return SimpleUploadedFile(name, buffer.getvalue().encode(), content_type="text/csv")


def _selects(html: str) -> dict[str, tuple[list[str], str | None]]:
    """Column name -> (offered role values, selected value) from the mapping form."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        label = re.search(r'<label for="id_role_\d+">(.*?)</label>', row)
        if not label:
            continue
        # The role select only (each row also has a "read as" type select).
        role_select = re.search(r'<select name="role_\d+".*?</select>', row, re.S).group(0)
        options = re.findall(r'<option value="([^"]*)"', role_select)
        selected = re.search(r'<option value="([^"]*)" selected', role_select)
        found[label.group(1)] = (options, selected.group(1) if selected else None)
    return found


def test_forecast_mapping_offers_its_roles_prefilled_and_stores_them(client, analyst):
    client.force_login(analyst)
    response = client.post(reverse("dataset_upload", args=["retail", "demand_forecast"]),
                           {"file": sample_upload("retail", "demand_forecast")})
    version = DatasetVersion.objects.get()
    assert response["Location"] == reverse("dataset_mapping", args=[version.pk])

    html = client.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    selects = _selects(html)
    offered, _ = selects["store"]
    assert {"series", "time", "covariate", "target", "sensitive", "exclude"} <= set(offered)
    assert "feature" not in offered  # the forecaster reads covariates, not "features"
    assert selects["store"][1] == "series" and selects["item"][1] == "series"
    assert selects["week"][1] == "time" and selects["units_sold"][1] == "target"
    assert selects["price"][1] == "covariate" and selects["region"][1] == "sensitive"
    assert "Series key" in html and "Covariate" in html

    post = {f"role_{i}": role for i, role in enumerate(
        selects[c][1] for c in version.columns)}
    response = client.post(reverse("dataset_mapping", args=[version.pk]), post)
    version.refresh_from_db()
    assert version.status == "validated", version.errors
    assert ["series", "store"] in version.mapping["roles"]
    assert ["time", "week"] in version.mapping["roles"]
    assert version.mapping["features"] == []  # the family decides


def test_a_single_role_given_twice_is_refused(client, analyst):
    client.force_login(analyst)
    client.post(reverse("dataset_upload", args=["retail", "recommendation"]),
                {"file": sample_upload("retail", "recommendation")})
    version = DatasetVersion.objects.get()
    columns = version.columns
    post = {f"role_{i}": "exclude" for i in range(len(columns))}
    post[f"role_{columns.index('user_id')}"] = "user"
    post[f"role_{columns.index('product_id')}"] = "user"
    response = client.post(reverse("dataset_mapping", args=[version.pk]), post)
    assert response.status_code == 200
    assert "Choose at most one column as user." in response.content.decode()
    version.refresh_from_db()
    assert version.status == "pending"


def test_recommendation_may_leave_the_target_unmapped(client, analyst):
    client.force_login(analyst)
    client.post(reverse("dataset_upload", args=["retail", "recommendation"]),
                {"file": sample_upload("retail", "recommendation", drop=["purchased"])})
    version = DatasetVersion.objects.get()
    html = client.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    selects = _selects(html)
    post = {f"role_{i}": selects[c][1] for i, c in enumerate(version.columns)}
    assert "target" not in post.values()
    client.post(reverse("dataset_mapping", args=[version.pk]), post)
    version.refresh_from_db()
    assert version.status == "validated", version.errors
    assert version.mapping["target"] == ""


def test_attributes_uploaded_beside_the_interactions_can_be_mapped(client, analyst):
    frame = get_problem("retail", "recommendation").sample_data(200, 0)
    people = frame.groupby("user_id", as_index=False)[["age", "gender"]].first()
    attributes = SimpleUploadedFile("people.csv", people.to_csv(index=False).encode())
    client.force_login(analyst)
    page = client.get(reverse("dataset_upload", args=["retail", "recommendation"]))
    assert 'name="attributes"' in page.content.decode()

    client.post(reverse("dataset_upload", args=["retail", "recommendation"]), {
        "file": sample_upload("retail", "recommendation", drop=["age", "gender"]),
        "attributes": attributes})

    version = DatasetVersion.objects.get()
    assert {"age", "gender"} <= set(version.columns)
    html = client.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    assert "people.csv" in html and "joined on <code>user_id</code>" in html
    selects = _selects(html)
    assert selects["gender"][1] == "sensitive"  # suggested from the joined columns


def test_upload_offers_second_files_only_where_the_problem_takes_them(client, analyst):
    client.force_login(analyst)
    rul = client.get(reverse("dataset_upload", args=["manufacturing", "remaining_useful_life"]))
    credit = client.get(reverse("dataset_upload", args=["finance", "credit_risk"]))
    assert 'name="test_file"' in rul.content.decode()
    assert 'name="test_truth"' in rul.content.decode()
    # A tabular problem takes a given test file that carries its own target (issue 13).
    assert 'name="test_file"' in credit.content.decode()
    for name in ("attributes", "test_truth"):
        assert f'name="{name}"' not in credit.content.decode()


def test_binary_mapping_keeps_the_tabular_roles(client, analyst):
    client.force_login(analyst)
    client.post(reverse("dataset_upload", args=["finance", "credit_risk"]),
                {"file": sample_upload("finance", "credit_risk")})
    version = DatasetVersion.objects.get()
    html = client.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    offered, selected = _selects(html)["income"]
    # privacy_unit: the column naming the applicant, whom the epsilon then protects.
    assert offered == ["feature", "privacy_unit", "target", "sensitive", "id", "exclude"]
    assert selected == "feature"
