"""Shared fixtures: personas in two organisations, token API clients, demo data.

Organisation A has ``analyst``, ``reviewer`` and ``admin``; organisation B has
``other_analyst``, ``other_reviewer`` and ``other_admin``. ``validated_version`` is the
finance demo table uploaded by ``analyst`` with the vertical's sample mapping confirmed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A worktree beside the main checkout points here with TESSERA_SHARED_DATA=/path/to/data.
SHARED_DATA = Path(os.environ.get("TESSERA_SHARED_DATA") or ROOT / ".." / "shared" / "data")

# Enough epochs to learn something on the demo table, few enough to keep tests fast.
FAST_TRAINING = {"epochs": 3, "batch_size": 64}


DB_FIXTURES = {
    "db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
}


@pytest.fixture(autouse=True)
def _tessera_dirs(settings, tmp_path):
    """Each test stores uploads and artifacts in its own temporary folders."""
    settings.TESSERA_UPLOAD_DIR = tmp_path / "uploads"
    settings.TESSERA_ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture(autouse=True)
def _audit_log_guard(request):
    """Keep the database-level append-only guard of the audit log in place for every test.

    A transactional test ends with a flush, which on SQLite deletes rows one by one and so
    trips the guard: lift it just before the flush (this fixture is torn down first, as it
    is set up after the database fixture) and restore it at the next test's start.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None and not DB_FIXTURES & set(request.fixturenames):
        yield
        return
    request.getfixturevalue("_django_db_helper")
    from django.db import connection

    from audits.append_only import install_guard, remove_guard

    install_guard(connection)
    yield
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    if transactional and connection.vendor == "sqlite":
        remove_guard(connection)


@pytest.fixture
def make_member(db):
    """make_member(organisation, role, username) -> a user with that membership."""
    from django.contrib.auth import get_user_model

    from accounts.models import Membership

    def make(organisation, role: str, username: str):
        user = get_user_model().objects.create_user(
            username=username, password="pw-" + username, email=f"{username}@example.org"
        )
        Membership.objects.create(user=user, organisation=organisation, role=role)
        return user

    return make


@pytest.fixture
def org_a(db):
    from accounts.models import Organisation

    return Organisation.objects.create(name="Acme Lending", slug="acme")


@pytest.fixture
def org_b(db):
    from accounts.models import Organisation

    return Organisation.objects.create(name="Borealis Bank", slug="borealis")


@pytest.fixture
def analyst(make_member, org_a):
    return make_member(org_a, "analyst", "alice")


@pytest.fixture
def reviewer(make_member, org_a):
    return make_member(org_a, "reviewer", "rita")


@pytest.fixture
def admin(make_member, org_a):
    return make_member(org_a, "admin", "adam")


@pytest.fixture
def other_analyst(make_member, org_b):
    return make_member(org_b, "analyst", "bob")


@pytest.fixture
def other_reviewer(make_member, org_b):
    return make_member(org_b, "reviewer", "berta")


@pytest.fixture
def other_admin(make_member, org_b):
    return make_member(org_b, "admin", "boris")


@pytest.fixture
def api_client(db):
    """api_client(user=None) -> a DRF APIClient authenticated with the user's token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


def database_url() -> str:
    """The URL of the database this test process uses (the test database), for subprocesses
    (a Celery worker, ``manage.py``) that must see what a transactional test commits."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or "localhost"
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{auth}@{host}{port}/{db['NAME']}"
    pytest.skip(f"no subprocess access to a {connection.vendor} test database")


def finance_frame(n_rows: int = 400, seed: int = 0):
    from verticals.registry import get_problem

    return get_problem("finance", "credit_risk").sample_data(n_rows, seed)


def csv_upload(data: bytes, name: str = "applications.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="text/csv")


def api_test_file(client, train, test, *, vertical: str, problem: str):
    """Upload ``train`` through the API and attach ``test`` as its given test file; returns
    the version id and the companion response."""
    upload = client.post("/api/v1/datasets/", {
        "vertical": vertical, "problem": problem,
        "file": csv_upload(train.to_csv(index=False).encode(), "train.csv")},
        format="multipart")
    assert upload.status_code == 201, upload.json()
    version = upload.json()["id"]
    return version, client.post(
        f"/api/v1/dataset-versions/{version}/companions/",
        {"kind": "test_set", "file": csv_upload(test.to_csv(index=False).encode(), "t.csv")},
        format="multipart")


def call_pipeline(*args) -> tuple[int, dict]:
    """``manage.py pipeline`` with ``args``: (exit code, the JSON it printed)."""
    import json

    from django.core.management import call_command

    out = io.StringIO()
    code = 0
    try:
        call_command("pipeline", *map(str, args), stdout=out)
    except SystemExit as exit_:
        code = exit_.code
    return code, json.loads(out.getvalue())


@pytest.fixture
def finance_csv() -> bytes:
    """The finance demo table (400 rows) as CSV bytes."""
    buffer = io.StringIO()
    finance_frame().to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


@pytest.fixture
def validated_version(analyst, finance_csv):
    """The finance demo data uploaded by ``analyst`` (org A), sample mapping confirmed."""
    from ingestion.services import confirm_mapping, upload_dataset
    from verticals.registry import get_problem

    version = upload_dataset(
        user=analyst, vertical="finance", problem="credit_risk",
        file=csv_upload(finance_csv), name="Applications",
    )
    mapping = get_problem("finance", "credit_risk").sample_mapping
    version = confirm_mapping(version=version, user=analyst, mapping=mapping)
    assert version.status == "validated", version.errors
    return version


@pytest.fixture
def trained_model(validated_version, analyst):
    """A run executed in-process on ``validated_version`` (few epochs): its ModelVersion."""
    from training.services import execute_run, start_run

    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING))
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run.model_version


@pytest.fixture
def pending_model(validated_version, analyst):
    """A ModelVersion awaiting review with a small fairness report, made without training
    (fast; for tests of review, reports and pages that do not look inside the model)."""
    from audits.models import FairnessReport
    from training.models import ModelVersion, TrainingRun

    group = {"count": 200, "selection_rate": 0.3, "tpr": 0.7, "fpr": 0.2, "accuracy": 0.75}
    fairness = {
        "foreign_worker": {
            "by_group": {"no": group, "yes": {**group, "selection_rate": 0.5}},
            "disparities": {"demographic_parity_difference": 0.2,
                            "demographic_parity_ratio": 0.6, "equalized_odds_difference": 0.1},
            "checks": [{"name": "demographic_parity_difference", "value": 0.2,
                        "threshold": 0.1, "passed": False}],
            "judged_groups": ["no", "yes"],
            "passed": False,
        }
    }
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation,
        dataset_version=validated_version,
        vertical="finance",
        problem="credit_risk",
        status=TrainingRun.Status.SUCCEEDED,
        metrics={"roc_auc": 0.74, "accuracy": 0.7},
        privacy={"enabled": True, "epsilon": 2.9, "delta": 1e-5, "noise_multiplier": 1.1,
                 "sample_rate": 0.2, "steps": 30, "accountant": "prv"},
        fairness=fairness,
        result={"baseline": {"name": "logistic_regression", "metrics": {"roc_auc": 0.72}}},
        created_by=analyst,
    )
    FairnessReport.objects.create(run=run, passed=False, report=fairness, policy={})
    return ModelVersion.objects.create(
        organisation=run.organisation, run=run, vertical="finance", problem="credit_risk",
        artifact_sha256="0" * 64,
    )
