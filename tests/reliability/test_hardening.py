"""Hardening: production settings pass `check --deploy`, secrets only from the environment,
sign-in lockout (django-axes) on the login page and the API token endpoint, CSRF on every
form. (The audit log's database-level append-only guard: tests/platform/test_review_services.)
"""

from __future__ import annotations

import importlib
import os
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from tests.reliability._objects import (  # noqa: F401 - fixtures
    serving_artifact_fixture,
    worlds_fixture,
)
from tests.reliability.test_isolation_matrix import MATRIX, endpoints, path_of

ROOT = Path(__file__).resolve().parents[2]
LOCKED = "Too many failed sign-in attempts"


# --- production settings ------------------------------------------------------------------


def production_env(**changes) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "TESSERA_LOGIN", "TESSERA_TRUSTED"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "tessera.example.org",
        # Uploads are encrypted at rest: production needs its own key (ingestion.E001).
        "TESSERA_FERNET_KEYS": Fernet.generate_key().decode(),
    })
    env.update(changes)
    return env


def test_check_deploy_with_production_settings_has_no_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env(TESSERA_VAR_DIR=str(tmp_path)), capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.fixture
def load_production(monkeypatch):
    """load_production(**env) -> the production settings module imported under ``env``."""

    def load(**changes):
        for key in [k for k in os.environ if k.startswith("DJANGO_")]:
            monkeypatch.delenv(key)
        for key, value in production_env(**changes).items():
            if key.startswith("DJANGO_"):
                monkeypatch.setenv(key, value)
        sys.modules.pop("config.settings.production", None)
        try:
            return importlib.import_module("config.settings.production")
        finally:
            sys.modules.pop("config.settings.production", None)

    return load


@pytest.mark.parametrize("key", ["", "   ", "insecure-dev-key-change-me",
                                 "change-me-to-a-long-random-string"])
def test_production_refuses_to_start_without_a_secret_key(load_production, key):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        load_production(DJANGO_SECRET_KEY=key)


def test_production_refuses_to_start_without_allowed_hosts(load_production):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_ALLOWED_HOSTS"):
        load_production(DJANGO_ALLOWED_HOSTS="")


def test_production_takes_its_secrets_from_the_environment(load_production):
    key = secrets.token_urlsafe(50)
    settings = load_production(DJANGO_SECRET_KEY=key, DJANGO_ALLOWED_HOSTS="a.example,b.example")
    assert settings.SECRET_KEY == key
    assert settings.ALLOWED_HOSTS == ["a.example", "b.example"]
    assert settings.DEBUG is False
    assert settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE


def test_production_exits_with_the_reason_when_the_key_is_missing(tmp_path):
    env = production_env(TESSERA_VAR_DIR=str(tmp_path))
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Set the DJANGO_SECRET_KEY environment variable" in result.stderr


# --- sign-in lockout ---------------------------------------------------------------------

def sign_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


@pytest.mark.django_db
def test_five_failures_lock_the_username_from_that_address(analyst, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    client = Client(REMOTE_ADDR="127.0.0.2")
    for _ in range(4):
        response = sign_in(client, "alice", "wrong")
        assert response.status_code == 200
        assert LOCKED not in response.content.decode()
    fifth = sign_in(client, "alice", "wrong")
    assert fifth.status_code == 429
    # Locked: even the right password is refused, with the reason in words.
    response = sign_in(client, "alice", "pw-alice")
    html = response.content.decode()
    assert response.status_code == 429
    assert LOCKED in html and "15 minutes" in html and "ask an administrator" in html
    assert 'name="username"' in html and "csrfmiddlewaretoken" in html
    assert response["Retry-After"] == str(15 * 60)
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("dashboard")).status_code == 302  # still signed out

    # The lock is for that username from that address: alice elsewhere, bob here sign in.
    assert sign_in(Client(REMOTE_ADDR="127.0.0.3"), "alice", "pw-alice").status_code == 302


@pytest.mark.django_db
def test_a_success_clears_the_failures(analyst):
    client = Client(REMOTE_ADDR="127.0.0.2")
    for _ in range(4):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", "pw-alice").status_code == 302
    client = Client(REMOTE_ADDR="127.0.0.2")
    for _ in range(4):
        assert sign_in(client, "alice", "wrong").status_code == 200
    assert sign_in(client, "alice", "pw-alice").status_code == 302


@pytest.mark.django_db
def test_an_administrator_unlocks_in_the_admin(analyst, django_user_model):
    from axes.models import AccessAttempt

    client = Client(REMOTE_ADDR="127.0.0.2")
    for _ in range(5):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", "pw-alice").status_code == 429
    attempt = AccessAttempt.objects.get(username="alice")

    root = django_user_model.objects.create_superuser("root", "root@example.org", "pw-root")
    operator = Client()
    operator.force_login(root)
    changelist = reverse("admin:axes_accessattempt_changelist")
    assert "alice" in operator.get(changelist).content.decode()
    response = operator.post(changelist, {"action": "delete_selected",
                                          "_selected_action": [attempt.pk], "post": "yes"})
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, "alice", "pw-alice").status_code == 302


@pytest.mark.django_db
def test_the_api_token_endpoint_locks_out_too(api_client, analyst):
    url = reverse("api:token")
    client = api_client()
    client.defaults["REMOTE_ADDR"] = "127.0.0.2"
    for _ in range(4):
        response = client.post(url, {"username": "alice", "password": "wrong"})
        assert response.status_code == 400
    assert client.post(url, {"username": "alice", "password": "wrong"}).status_code == 429
    response = client.post(url, {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429
    assert LOCKED in response.json()["detail"]
    assert response["Retry-After"] == str(15 * 60)
    # The login page shares the lock: same username, same address.
    assert sign_in(Client(REMOTE_ADDR="127.0.0.2"), "alice", "pw-alice").status_code == 429
    other = api_client()
    other.defaults["REMOTE_ADDR"] = "127.0.0.3"
    assert "token" in other.post(url, {"username": "alice", "password": "pw-alice"}).json()


@pytest.mark.django_db
def test_a_forged_forwarded_for_header_does_not_reset_the_count(analyst):
    """Without a trusted proxy, X-Forwarded-For is not the address: rotating it gets nowhere."""
    for n in range(5):
        Client(REMOTE_ADDR="127.0.0.2", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").post(
            reverse("login"), {"username": "alice", "password": "wrong"})
    response = Client(REMOTE_ADDR="127.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.99").post(
        reverse("login"), {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429


# --- CSRF on every form -------------------------------------------------------------------


class FormParser(HTMLParser):
    """Each <form>: its method, action and the names of its inputs."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._current = {"method": (attrs.get("method") or "get").lower(),
                             "action": attrs.get("action"), "fields": {}}
            self.forms.append(self._current)
        elif tag in ("input", "select", "textarea", "button") and self._current is not None:
            name = attrs.get("name")
            if name:
                self._current["fields"][name] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def post_forms(html: str) -> list[dict]:
    parser = FormParser()
    parser.feed(html)
    return [form for form in parser.forms if form["method"] == "post"]


def html_pages(world) -> list[str]:
    """Every page of the site (GET entries of the matrix) plus the states that show more
    forms: a queued run (cancel), an approved model (promote, retire)."""
    pages = []
    for endpoint in endpoints():
        if endpoint.admin_site or endpoint.key.startswith("api:"):
            continue
        for case in MATRIX[endpoint.key]:
            if case.method == "GET":
                pages.append(path_of(endpoint, case, world))
    pages += [reverse("run_detail", args=[world.run_queued.pk]),
              reverse("governance:model", args=[world.model_approved.pk]),
              reverse("governance:model", args=[world.model_pending.pk]),
              reverse("dataset_upload", args=["finance", "credit_risk"]),
              reverse("admin:login")]
    return pages


@pytest.mark.django_db
def test_every_post_form_carries_a_csrf_token_and_fails_without_it(worlds):
    world = worlds["a"]
    actions: dict[str, dict] = {}
    anonymous = Client()
    for form in post_forms(anonymous.get(reverse("login")).content.decode()):
        assert "csrfmiddlewaretoken" in form["fields"], "login"
        actions[urljoin(reverse("login"), form["action"] or "")] = {"form": form, "user": None}
    for role, user in world.users.items():
        client = Client()
        client.force_login(user)
        for page in html_pages(world):
            response = client.get(page)
            if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
                continue
            for form in post_forms(response.content.decode()):
                action = urljoin(page, form["action"] or page)
                assert "csrfmiddlewaretoken" in form["fields"], (
                    f"{role} {page}: a POST form to {action} has no CSRF token")
                actions.setdefault(action, {"form": form, "user": user})
    # login, logout, upload, mapping, train, cancel, review, promote, retire, score, mitigate,
    # ledger, gates, schedule, admin login
    assert len(actions) >= 15, sorted(actions)

    for action, found in actions.items():
        client = Client(enforce_csrf_checks=True)
        if found["user"] is not None:
            client.force_login(found["user"])
        fields = {k: v for k, v in found["form"]["fields"].items()
                  if k != "csrfmiddlewaretoken"}
        response = client.post(action, fields)
        assert response.status_code == 403, (action, response.status_code)
        assert b"CSRF" in response.content, action


@pytest.mark.django_db
def test_session_authenticated_api_writes_need_the_csrf_token(analyst, validated_version):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    response = client.post(reverse("api:run-list"), {"dataset_version": validated_version.pk},
                           content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
