"""Hardening (issue 16, finding 5): header limits at upload, no server paths in the API,
the Content-Security-Policy, no-store on the API and personal-data downloads, expiring API
tokens refused during a lockout, an organisation's sign-in lifetime, and lockout of an
address trying many usernames."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.sessions import SIGNED_IN_AT
from audits.models import AuditLogEntry
from ingestion.models import DatasetVersion
from tests.conftest import csv_upload

pytestmark = pytest.mark.django_db

API = "/api/v1"


def _post_upload(client, data: bytes):
    return client.post(f"{API}/datasets/", {"vertical": "finance", "problem": "credit_risk",
                                            "file": csv_upload(data)}, format="multipart")


# --- column names --------------------------------------------------------------------

def test_a_long_column_name_is_refused_with_a_clear_error(api_client, analyst):
    long_name = "x" * 100_000
    response = _post_upload(api_client(analyst), f"a,{long_name}\n1,2\n3,4\n".encode())
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == "column_name_too_long" and "TESSERA_MAX_COLUMN_NAME_CHARS" in (
        error["message"])
    assert len(response.content) < 5_000  # the name is not echoed back in full
    version = DatasetVersion.objects.get()
    assert version.status == DatasetVersion.Status.REJECTED and version.columns == []


def test_a_long_header_in_total_is_refused(api_client, analyst, settings):
    settings.TESSERA_MAX_HEADER_CHARS = 1_000
    header = ",".join(f"column_{i:04d}_{'y' * 40}" for i in range(40))
    row = ",".join("1" for _ in range(40))
    response = _post_upload(api_client(analyst), f"{header}\n{row}\n{row}\n".encode())
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "header_too_long"


# --- server paths, no-store, CSP -------------------------------------------------------

def test_the_api_never_shows_a_server_path(api_client, analyst, trained_model):
    run = trained_model.run
    body = api_client(analyst).get(f"{API}/runs/{run.pk}/").content.decode()
    assert run.artifact_path and run.artifact_path not in body
    assert "artifact_path" not in body
    assert "artifact_path" not in api_client(analyst).get(f"{API}/runs/").content.decode()


def test_api_answers_are_never_stored(api_client, analyst):
    client = api_client(analyst)
    for path in (f"{API}/datasets/", f"{API}/runs/999/", f"{API}/verticals/"):
        assert client.get(path)["Cache-Control"] == "no-store"
    assert api_client().get(f"{API}/datasets/")["Cache-Control"] == "no-store"  # 401 too


def test_every_page_carries_a_script_only_from_self_policy(client, analyst):
    client.force_login(analyst)
    for path in ("/", "/login/", f"{API}/docs/"):
        policy = client.get(path)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split(
            "script-src")[1].split(";")[0]
        assert "frame-ancestors 'none'" in policy


def test_no_template_has_an_inline_script_or_handler():
    import re

    from tests.conftest import ROOT

    handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        if handler.search(text) or inline_script.search(text):
            offenders.append(str(template.relative_to(ROOT)))
    assert not offenders


def test_the_docs_page_loads_its_start_up_script_from_a_url(client):
    html = client.get(f"{API}/docs/").content.decode()
    assert "<script>" not in html and "?script=" in html.replace("&amp;", "&")


# --- API tokens --------------------------------------------------------------------------

def test_tokens_expire_and_the_token_endpoint_issues_a_new_one(api_client, analyst, settings):
    settings.TESSERA_API_TOKEN_TTL_HOURS = 1
    token = Token.objects.create(user=analyst)
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(hours=2))
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get(f"{API}/datasets/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    new = api_client().post(f"{API}/auth/token/", {"username": "alice", "password": "pw-alice"})
    assert new.status_code == 200 and new.json()["token"] != token.key
    client.credentials(HTTP_AUTHORIZATION=f"Token {new.json()['token']}")
    assert client.get(f"{API}/datasets/").status_code == 200


def test_a_token_is_refused_while_its_user_is_locked_out(api_client, analyst):
    token = Token.objects.create(user=analyst)
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(f"{API}/datasets/").status_code == 200
    attacker = Client(REMOTE_ADDR="10.9.9.9")
    for _ in range(5):
        attacker.post(reverse("login"), {"username": "alice", "password": "wrong"})
    response = client.get(f"{API}/datasets/")
    assert response.status_code == 401 and "locked" in response.json()["detail"]


# --- password spraying ---------------------------------------------------------------------

def test_an_address_trying_many_usernames_is_locked_out(make_member, org_a, analyst,
                                                        settings):
    settings.TESSERA_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    for i in range(6):
        make_member(org_a, "analyst", f"user{i}")
    sprayer = Client(REMOTE_ADDR="10.1.2.3")
    for i in range(6):  # one wrong password each: no username reaches its own limit of 5
        response = sprayer.post(reverse("login"), {"username": f"user{i}", "password": "x"})
        assert response.status_code == 200
    response = sprayer.post(reverse("login"), {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429
    # The same user from another address signs in.
    other = Client(REMOTE_ADDR="10.1.2.4")
    assert other.post(reverse("login"), {"username": "alice", "password": "pw-alice"}
                      ).status_code == 302


# --- session lifetime ----------------------------------------------------------------------

def test_an_organisation_admin_sets_a_session_lifetime_that_ends_open_sessions(
        client, admin, analyst):
    client.force_login(admin)
    response = client.post(reverse("organisation_security"), {"minutes": "1"})
    assert response.status_code == 200 and "5" in response.content.decode()  # out of range
    response = client.post(reverse("organisation_security"), {"minutes": "30"})
    assert response.status_code == 302
    admin.membership.organisation.refresh_from_db()
    assert admin.membership.organisation.session_lifetime_minutes == 30
    assert AuditLogEntry.objects.filter(action="organisation.session_lifetime_changed").exists()

    user = Client()
    user.force_login(analyst)
    assert user.get("/").status_code == 200
    session = user.session
    session[SIGNED_IN_AT] = time.time() - 31 * 60  # signed in 31 minutes ago
    session.save()
    response = user.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_only_an_admin_sets_the_lifetime(client, analyst):
    client.force_login(analyst)
    assert client.post(reverse("organisation_security"), {"minutes": "30"}).status_code == 403
