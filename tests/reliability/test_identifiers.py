"""Direct identifiers: flagged at upload by name and by values, shown on the mapping and
version pages and in the API, kept out of the features a model is trained on, and let in
only by an admin, with the decision in the audit log."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audits.models import AuditLogEntry
from ingestion.models import DatasetVersion
from ingestion.services import confirm_mapping, set_identifier_allowed, upload_dataset
from ml_core.identifiers import exclude_identifiers, find_identifiers
from ml_core.spec import ColumnMapping
from tests.conftest import FAST_TRAINING, csv_upload, finance_frame
from training.models import TrainingRun
from training.services import execute_run, start_run

pytestmark = pytest.mark.django_db

API = "/api/v1"
N = 200


def people_frame(n: int = N) -> pd.DataFrame:
    """The finance demo table with identifier columns added: two flagged by their names,
    three by their values only (their names say nothing)."""
    frame = finance_frame(n)
    frame.insert(1, "Surname", [f"Name{i % 150}" for i in range(n)])
    frame.insert(2, "Mobile", [f"07700 900{i:03d}" for i in range(n)])
    frame["contact_info"] = [f"applicant{i}@example.org" for i in range(n)]
    frame["ref"] = [f"{100 + i:03d}-{10 + i % 80:02d}-{1000 + i:04d}" for i in range(n)]
    frame["acct"] = ["GB82WEST12345698765432", "DE89370400440532013000",
                     "GB33BUKB20201555555555", "FR1420041010050500013M02606"] * (n // 4)
    return frame


def upload_people(user, frame: pd.DataFrame | None = None) -> DatasetVersion:
    data = (people_frame() if frame is None else frame).to_csv(index=False).encode()
    return upload_dataset(user=user, vertical="finance", problem="credit_risk",
                          file=csv_upload(data, "people.csv"), name="People")


FLAGGED = {"Surname": ("person name", "name"), "Mobile": ("phone number", "name"),
           "contact_info": ("e-mail address", "values"), "ref": ("national id", "values"),
           "acct": ("bank account or card", "values")}


# --- detection --------------------------------------------------------------------------


def test_identifiers_are_flagged_at_upload_by_name_and_by_values(analyst):
    version = upload_people(analyst)

    found = {item["column"]: (item["kind"], item["evidence"]) for item in version.identifiers}
    assert found == FLAGGED
    assert all(item["message"].startswith(f"Column '{item['column']}' looks like a direct "
                                          "identifier") for item in version.identifiers)
    # Suggested as excluded, so the mapping page starts with them out.
    assert set(FLAGGED) <= set(version.suggested_mapping["exclude"])


@pytest.mark.parametrize(("values", "kind"), [
    (["4010232137", "9434765919", "4505577104", "9990000026"], "national id"),  # NHS, text
    ([4010232137, 9434765919, 4505577104, 9990000026], "national id"),  # NHS, numbers
    (["AB 12 34 56 C", "CE123456A", "JG103759A", "ZX123456D"], "national id"),  # NINO
    (["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009", "4012888888881881"],
     "bank account or card"),  # cards with a valid Luhn digit
    (["+44 20 7946 0958", "(020) 7946 0000", "555-123-4567", "+1 415 555 2671"],
     "phone number"),
])
def test_values_alone_flag_a_column(values, kind):
    (finding,) = find_identifiers(pd.DataFrame({"x": values}))
    assert (finding.column, finding.kind, finding.evidence) == ("x", kind, "values")


def test_codes_amounts_and_dates_are_not_identifiers():
    frame = pd.DataFrame({
        "address": ["U", "R"] * 50,  # the student data's urban / rural code
        "amount": [12345678901 + i for i in range(100)],
        "sku": [f"{100 + i}-456-789" for i in range(100)],
        "date": [f"2024-01-{1 + i % 28:02d}" for i in range(100)],
        "code10": [str(4010232138 + i * 11) for i in range(100)],  # NHS-shaped, bad check digits
        "product_name": [f"widget {i}" for i in range(100)],
    })
    assert find_identifiers(frame) == []


def test_exclusion_keeps_roles_that_are_not_inputs():
    mapping = ColumnMapping(target="default", id="email", sensitive=("name",),
                            features=("phone", "income"), roles=(("covariate", "iban"),))
    kept, blocked = exclude_identifiers(mapping, ["email", "name", "phone", "iban"])
    assert kept.features == ("income",) and set(kept.exclude) == {"phone", "iban"}
    assert kept.id == "email" and kept.sensitive == ("name",) and kept.roles == ()
    assert blocked == ["phone", "iban"]


# --- shown on the pages and in the API --------------------------------------------------


def test_identifiers_are_shown_on_the_mapping_page_and_in_the_api(analyst, api_client):
    version = upload_people(analyst)
    web = Client()
    web.force_login(analyst)

    page = web.get(reverse("dataset_mapping", args=[version.pk])).content.decode()
    assert "Direct identifiers (5)" in page
    assert "contact_info" in page and "e-mail addresses" in page
    assert "Allow as an input" not in page  # analysts are not offered the decision

    body = api_client(analyst).get(f"{API}/dataset-versions/{version.pk}/").json()
    assert {item["column"] for item in body["identifiers"]} == set(FLAGGED)
    assert body["identifiers_allowed"] == []

    version = confirm_mapping(version=version, user=analyst,
                              mapping=ColumnMapping(target="default", id="applicant_id"))
    page = web.get(reverse("dataset_version", args=[version.pk])).content.decode()
    assert "Direct identifiers (5)" in page and "Excluded from training" in page


# --- kept out of training ---------------------------------------------------------------


def trained_features(version: DatasetVersion, user) -> list[str]:
    run = start_run(version=version, user=user, privacy_enabled=False,
                    config=dict(FAST_TRAINING, epochs=1), enqueue=False)
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    metadata = json.loads((Path(run.artifact_path) / "metadata.json").read_text())
    return metadata["feature_columns"]


def test_analyst_mapping_identifiers_as_features_does_not_train_on_them(analyst, admin):
    version = upload_people(analyst)
    everything = tuple(c for c in version.columns if c not in ("default", "applicant_id"))

    version = confirm_mapping(version=version, user=analyst, mapping=ColumnMapping(
        target="default", id="applicant_id", features=everything))

    assert version.status == DatasetVersion.Status.VALIDATED, version.errors
    assert not set(FLAGGED) & set(version.mapping["features"])
    assert set(FLAGGED) <= set(version.mapping["exclude"])
    warned = {w["column"] for w in version.warnings if w["code"] == "identifier_excluded"}
    assert warned == set(FLAGGED)
    features = trained_features(version, admin)  # admin: non-private on personal data
    assert "income" in features and not set(FLAGGED) & set(features)


# --- only an admin decides --------------------------------------------------------------


def test_analyst_and_reviewer_cannot_allow_an_identifier(analyst, reviewer, api_client):
    version = upload_people(analyst)
    for user in (analyst, reviewer):
        with pytest.raises(PermissionDenied):
            set_identifier_allowed(version=version, user=user, column="contact_info",
                                   allowed=True, reason="I need it")
        response = api_client(user).post(
            f"{API}/dataset-versions/{version.pk}/identifiers/",
            {"column": "contact_info", "allowed": True, "reason": "I need it"}, format="json")
        assert response.status_code == 403
        web = Client()
        web.force_login(user)
        page = web.post(reverse("dataset_identifier", args=[version.pk]),
                        {"column": "contact_info", "allowed": "1", "reason": "I need it"})
        assert page.status_code == 403
    version.refresh_from_db()
    assert version.identifiers_allowed == []
    assert not AuditLogEntry.objects.filter(action="dataset.identifier_allowed").exists()


def test_admin_allows_an_identifier_recorded_in_the_audit_log(analyst, admin, api_client):
    version = upload_people(analyst)
    client = api_client(admin)
    url = f"{API}/dataset-versions/{version.pk}/identifiers/"

    assert client.post(url, {"column": "Surname", "allowed": True, "reason": " "},
                       format="json").status_code == 400  # a reason is required
    assert client.post(url, {"column": "income", "allowed": True, "reason": "x"},
                       format="json").status_code == 400  # not flagged
    response = client.post(url, {"column": "Surname", "allowed": True,
                                 "reason": "family names predict nothing, audit the claim"},
                           format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["identifiers_allowed"] == ["Surname"]
    entry = AuditLogEntry.objects.get(action="dataset.identifier_allowed")
    assert entry.actor == admin and entry.object_id == str(version.pk)
    assert entry.detail == {"column": "Surname", "kind": "person name", "evidence": "name",
                            "reason": "family names predict nothing, audit the claim"}

    everything = tuple(c for c in version.columns if c not in ("default", "applicant_id"))
    version = confirm_mapping(version=DatasetVersion.objects.get(pk=version.pk), user=analyst,
                              mapping=ColumnMapping(target="default", id="applicant_id",
                                                    features=everything))
    assert "Surname" in version.mapping["features"]
    assert any(w["code"] == "identifier_allowed" and w["column"] == "Surname"
               for w in version.warnings)
    features = trained_features(version, admin)
    assert "Surname" in features
    assert not (set(FLAGGED) - {"Surname"}) & set(features)

    # Decided once, with the mapping: no change after it is confirmed.
    late = client.post(url, {"column": "contact_info", "allowed": True, "reason": "late"},
                       format="json")
    assert late.status_code == 400 and "already validated" in late.json()["detail"]


def test_admin_decides_on_the_web_page(analyst, admin):
    version = upload_people(analyst)
    web = Client()
    web.force_login(admin)
    assert "Allow as an input" in web.get(
        reverse("dataset_mapping", args=[version.pk])).content.decode()

    response = web.post(reverse("dataset_identifier", args=[version.pk]),
                        {"column": "Mobile", "allowed": "1", "reason": "contact channel study"})

    assert response.status_code == 302
    version.refresh_from_db()
    assert version.identifiers_allowed == ["Mobile"]
    web.post(reverse("dataset_identifier", args=[version.pk]),
             {"column": "Mobile", "allowed": "0", "reason": "changed my mind"})
    version.refresh_from_db()
    assert version.identifiers_allowed == []
    assert list(AuditLogEntry.objects.filter(action__startswith="dataset.identifier_")
                .order_by("id").values_list("action", flat=True)) == [
        "dataset.identifier_allowed", "dataset.identifier_blocked"]


def test_pipeline_command_allows_identifiers_only_for_admins(analyst, tmp_path):
    path = tmp_path / "people.csv"
    people_frame().to_csv(path, index=False)

    def pipeline(*args) -> tuple[int, dict]:
        out, code = io.StringIO(), 0
        try:
            call_command("pipeline", str(path), "--vertical", "finance", "--problem",
                         "credit_risk", "--target", "default", "--validate-only", "--json",
                         *args, stdout=out)
        except SystemExit as exit_:
            code = exit_.code
        return code, json.loads(out.getvalue())

    code, body = pipeline("--user", analyst.username, "--allow-identifier", "ref")
    assert code == 1 and body["errors"][0]["code"] == "identifier_refused"
    assert "admin" in body["errors"][0]["message"]

    code, body = pipeline("--allow-identifier", "ref")  # the system user administers "cli"
    assert code == 0, body
    assert body["dataset"]["identifiers_allowed"] == ["ref"]
    assert "ref" in body["dataset"]["mapping"]["features"]
    assert "contact_info" in body["dataset"]["mapping"]["exclude"]
    assert AuditLogEntry.objects.filter(action="dataset.identifier_allowed",
                                        detail__column="ref").exists()
