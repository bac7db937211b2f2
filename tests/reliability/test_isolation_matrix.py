"""The isolation and role matrix: every URL of the resolver x every persona x every method.

Endpoints are enumerated from ``django.urls.get_resolver()``; an endpoint without an entry
in ``MATRIX`` (or the admin site's rule) fails ``test_every_endpoint_has_an_entry``, so a new
view cannot escape the matrix. Personas: anonymous, and the analyst, reviewer and admin of
two organisations (Acme and Borealis, each with its own objects: tests/reliability/_objects).

For each endpoint, method and persona the walk asserts:
- anonymous: the login redirect (pages) or 401 (API), unless the endpoint is public;
- own organisation's objects: the endpoint's rule (members, reviewers and admins, or admins
  only); a permitted write changes the database, a refused one (403) changes nothing;
- the other organisation's objects: the same answer as for an id no row has (no id
  guessing): 404, or 403 where the persona's role is refused the endpoint whatever the id;
  nothing changes;
- methods an endpoint does not take: 405 (or the page itself, for plain read views), and
  nothing changes;
- no answer to a member ever holds the other organisation's marker (lists never leak), and
  API lists return only the persona's organisation's ids.

Each request runs in a savepoint that is rolled back, so every check sees the same objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ingestion.models import Dataset
from tests.reliability._objects import (  # noqa: F401 - fixtures
    PICTURE,
    ROWS,
    MissingWorld,
    World,
    finance_bytes,
    scoring_csv,
    scoring_rows,
    serving_artifact_fixture,
    worlds_fixture,
)
from training.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ADMIN_SITE_METHODS = ("GET", "POST")
ROLES = ("analyst", "reviewer", "admin")

PUBLIC, MEMBER, REVIEWER, ADMIN = "public", "member", "reviewer", "admin"
MAY = {
    PUBLIC: {"anonymous", *ROLES},
    MEMBER: set(ROLES),
    REVIEWER: {"reviewer", "admin"},
    ADMIN: {"admin"},
}
# Databases rows these apps hold; a write is seen as a change in any of them.
TRACKED_APPS = ("accounts", "ingestion", "training", "audits", "governance",
                "django_celery_beat")


def _no_kwargs(world: World) -> dict:
    return {}


@dataclass(frozen=True)
class Case:
    """One way of calling an endpoint, and who may."""

    method: str
    who: str
    kwargs: Callable[[World], dict] = _no_kwargs
    query: Callable[[World], str] | None = None
    data: Callable[[World], dict] | None = None
    fmt: str | None = None  # API bodies: "json" or "multipart"
    ok: tuple[int, ...] = (200,)
    # Refers to an organisation's objects: also called with the other's and with missing ids.
    scoped: bool = True
    # A permitted call must change the database (a refused one never may).
    effect: bool = False
    # API list: every id answered belongs to the persona's organisation, all of them there.
    lists: type | None = None
    # The answer shows the persona's own organisation's marker (a list that is not empty).
    shows_own: bool = False


def obj(attribute: str, kwarg: str) -> Callable[[World], dict]:
    return lambda w: {kwarg: getattr(w, attribute).pk}


def slugs(w: World) -> dict:
    return {"vertical": "finance", "problem": "credit_risk"}


def csv_file(name: str = "rows.csv", data: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data if data is not None else finance_bytes(ROWS),
                              content_type="text/csv")


def get(who=MEMBER, kwargs=_no_kwargs, **extra) -> Case:
    scoped = extra.pop("scoped", kwargs is not _no_kwargs)
    return Case("GET", who, kwargs, scoped=scoped, **extra)


def post(who, kwargs=_no_kwargs, data=None, ok=(302,), effect=True, **extra) -> Case:
    scoped = extra.pop("scoped", kwargs is not _no_kwargs)
    return Case("POST", who, kwargs, data=data, ok=ok, effect=effect, scoped=scoped, **extra)


def api_post(who, kwargs=_no_kwargs, data=None, ok=(201,), effect=True, fmt="json",
             **extra) -> Case:
    return post(who, kwargs, data=data or (lambda w: {}), ok=ok, effect=effect, fmt=fmt,
                **extra)


def flagged(w: World) -> str:
    """The pending version's column flagged as a direct identifier (any name for an id no
    row has)."""
    found = getattr(w.version_pending, "identifiers", None) or [{"column": "checking"}]
    return found[0]["column"]


def first_column(w: World) -> str:
    """The version's first column (any name for an id no row has)."""
    return (getattr(w.version, "columns", None) or ["checking"])[0]


def audited_attribute(w: World) -> str:
    """A sensitive attribute of the serving model's report (any name where the persona's
    world has no such model)."""
    run = getattr(w.model_serving, "run", None)
    return next(iter(getattr(run, "fairness", None) or {"sex": None}))


MODEL = "model_version_id"
PK = "pk"
GATE_POLICY = {"require_fairness": "on", "require_privacy": "on", "max_epsilon": "9",
               "require_baseline": "on", "champion_tolerance": "0.05", "require_signoff": "on"}

MATRIX: dict[str, list[Case]] = {
    # --- public and account pages ----------------------------------------------------------
    "healthz": [get(PUBLIC, ok=(200, 503))],
    "login": [get(PUBLIC), post(PUBLIC, data=lambda w: {}, ok=(200,), effect=False)],
    "logout": [post(PUBLIC, effect=False)],
    "dashboard": [get(shows_own=True)],
    "audit_log": [get(shows_own=True)],
    # The organisation's sign-in lifetime: its admin only.
    "organisation_security": [get(ADMIN), post(ADMIN, data=lambda w: {"minutes": "600"})],
    "user_guides": [get()],
    "user_guide": [get(kwargs=lambda w: {"vertical": "finance"}, scoped=False)],
    "catalog": [get()],
    "problem": [get(kwargs=slugs, scoped=False)],
    # --- datasets ----------------------------------------------------------------------------
    "dataset_list": [get(shows_own=True)],
    "dataset_upload": [
        # ?dataset= names an existing dataset: another organisation's is not found.
        get(kwargs=slugs, query=lambda w: f"dataset={w.dataset.pk}", scoped=True),
        post(MEMBER, kwargs=slugs, query=lambda w: f"dataset={w.dataset.pk}", scoped=True,
             data=lambda w: {"file": csv_file(), "name": ""}),
    ],
    "dataset_version": [get(kwargs=obj("version", "version_id"), shows_own=True)],
    # Flagged identifier columns: admins only decide.
    "dataset_identifier": [post(ADMIN, kwargs=obj("version_pending", "version_id"),
                                data=lambda w: {"column": flagged(w), "allowed": "1",
                                                "reason": "needed"})],
    # Display names and code labels: any member of the version's organisation.
    "dataset_codebook": [
        get(kwargs=obj("version", "version_id")),
        post(MEMBER, kwargs=obj("version", "version_id"),
             data=lambda w: {"action": "names", "names-name-0": "renamed"}),
    ],
    # A contact-sheet thumbnail of an image version: this tabular version has none, so its
    # own organisation is answered 404 too; what is checked is that the other's is the same.
    "dataset_sample": [get(kwargs=lambda w: {"version_id": w.version.pk, "name": "x.png"},
                           ok=(404,))],
    "dataset_mapping": [
        get(kwargs=obj("version_pending", "version_id")),
        # An incomplete form is shown again; isolation is what this checks.
        post(MEMBER, kwargs=obj("version_pending", "version_id"), data=lambda w: {},
             ok=(200,), effect=False),
    ],
    # --- runs ------------------------------------------------------------------------------
    "run_list": [get(shows_own=True)],
    "run_start": [post(MEMBER, kwargs=obj("version", "version_id"),
                       data=lambda w: {"privacy_enabled": "on", "target_epsilon": "1",
                                       "seed": "0"})],
    "run_detail": [get(kwargs=obj("run_done", "run_id"), shows_own=True)],
    "run_progress": [get(kwargs=obj("run_done", "run_id"))],
    "run_progress_partial": [get(kwargs=obj("run_done", "run_id"))],
    "run_cancel": [post(MEMBER, kwargs=obj("run_queued", "run_id"))],
    # A picture of a run's report (decrypted, never cached): the run's organisation only.
    "run_picture": [get(kwargs=lambda w: {"run_id": w.run_pictured.pk, "name": PICTURE})],
    # --- reviews ---------------------------------------------------------------------------
    "review_queue": [get(REVIEWER, shows_own=True)],
    "review_detail": [
        get(kwargs=obj("model_pending", MODEL)),
        post(REVIEWER, kwargs=obj("model_pending", MODEL),
             data=lambda w: {"decision": "approve", "comment": "fine"}),
    ],
    "run_report": [get(kwargs=obj("run_done", "run_id"))],
    # --- governance --------------------------------------------------------------------------
    "governance:models": [get(shows_own=True)],
    "governance:compare": [get(query=lambda w: f"a={w.model_serving.pk}&b={w.model_approved.pk}",
                               scoped=False)],
    "governance:model": [get(kwargs=obj("model_serving", MODEL), shows_own=True)],
    "governance:promote": [
        post(REVIEWER, kwargs=obj("model_approved", MODEL), data=lambda w: {"reason": "better"}),
        # Overriding failing gates: admins only.
        post(ADMIN, kwargs=obj("model_pending", MODEL),
             data=lambda w: {"reason": "needed", "override_reason": "accepted risk"}),
    ],
    "governance:retire": [post(REVIEWER, kwargs=obj("model_approved", MODEL),
                               data=lambda w: {"reason": "old"})],
    # The attribute is named: the fixture's report may have no judged failing attribute
    # (small groups read "Not judged"), and this walk checks who may mitigate, not which.
    "governance:mitigate": [post(REVIEWER, kwargs=obj("model_serving", MODEL),
                                 data=lambda w: {"method": "threshold_optimizer",
                                                 "constraint": "demographic_parity",
                                                 "attribute": audited_attribute(w)})],
    # The empirical privacy audit: reviewers and admins queue it.
    "governance:privacy_audit": [post(REVIEWER, kwargs=obj("model_serving", MODEL),
                                      data=lambda w: {"confirm": "yes"})],
    # Its cancel: the same roles, on the audit's id.
    "governance:privacy_audit_cancel": [post(REVIEWER, kwargs=obj("audit_queued",
                                                                  "audit_id"))],
    "governance:card": [get(kwargs=obj("model_serving", MODEL), shows_own=True)],
    "governance:card_json": [get(kwargs=obj("model_serving", MODEL))],
    "governance:score": [post(MEMBER, kwargs=obj("model_serving", MODEL),
                              data=lambda w: {"file": csv_file("batch.csv", scoring_csv())})],
    "governance:job": [get(kwargs=obj("job", "job_id"), shows_own=True)],
    "governance:download": [get(kwargs=obj("job", "job_id"), shows_own=True)],
    "governance:job_cancel": [post(MEMBER, kwargs=obj("job_queued", "job_id"))],
    "governance:ledger": [
        get(kwargs=obj("dataset", "dataset_id"), shows_own=True),
        # The privacy budget: admins only.
        post(ADMIN, kwargs=obj("dataset", "dataset_id"),
             data=lambda w: {"budget_epsilon": "25", "personal_data": "on"}),
    ],
    "governance:problem": [
        get(kwargs=slugs, scoped=False),
        # Promotion gates: admins only.
        post(ADMIN, kwargs=slugs, scoped=False, data=lambda w: dict(GATE_POLICY)),
    ],
    "governance:schedule": [post(ADMIN, kwargs=slugs, scoped=False,
                                 data=lambda w: {"interval_hours": "12", "enabled": "on"})],
    # --- API ---------------------------------------------------------------------------------
    "api:token": [api_post(PUBLIC, ok=(200,), effect=False, fmt="json",
                           data=lambda w: {"username": w.analyst.username,
                                           "password": f"pw-{w.analyst.username}"})],
    "api:schema": [get(PUBLIC)],
    "api:docs": [get(PUBLIC)],
    "api:api-root": [get()],
    "api:vertical-list": [get()],
    "api:dataset-list": [
        get(lists=Dataset, shows_own=True),
        api_post(MEMBER, fmt="multipart",
                 data=lambda w: {"vertical": "finance", "problem": "credit_risk",
                                 "file": csv_file()}),
        # A new version of an existing dataset: another organisation's is not found.
        api_post(MEMBER, fmt="multipart", scoped=True,
                 data=lambda w: {"vertical": "finance", "problem": "credit_risk",
                                 "file": csv_file(), "dataset": w.dataset.pk}),
    ],
    "api:dataset-detail": [get(kwargs=obj("dataset", PK), shows_own=True)],
    "api:dataset-ledger": [get(kwargs=obj("dataset", PK))],
    "api:dataset-version-detail": [get(kwargs=obj("version", PK), shows_own=True)],
    "api:dataset-version-mapping": [api_post(MEMBER, kwargs=obj("version_pending", PK),
                                             ok=(200,))],
    # A given test file (same columns, target included) for a version awaiting its mapping.
    "api:dataset-version-companions": [
        api_post(MEMBER, kwargs=obj("version_pending", PK), fmt="multipart",
                 data=lambda w: {"kind": "test_set", "file": csv_file("test.csv")}),
    ],
    "api:dataset-version-codebook": [
        get(kwargs=obj("version", PK)),
        Case("PUT", MEMBER, obj("version", PK), fmt="json", ok=(200,), effect=True,
             data=lambda w: {"column_names": {first_column(w): "renamed"}}),
    ],
    "api:dataset-version-identifiers": [
        api_post(ADMIN, kwargs=obj("version_pending", PK), ok=(200,),
                 data=lambda w: {"column": flagged(w), "allowed": True,
                                 "reason": "needed"}),
    ],
    "api:run-list": [
        get(lists=TrainingRun),
        api_post(MEMBER, scoped=True,
                 data=lambda w: {"dataset_version": w.version.pk,
                                 "privacy": {"target_epsilon": 1.0}}),
    ],
    "api:run-detail": [get(kwargs=obj("run_done", PK))],
    "api:run-status": [get(kwargs=obj("run_done", PK))],
    "api:run-cancel": [api_post(MEMBER, kwargs=obj("run_queued", PK), ok=(200,))],
    "api:scoring-job-detail": [get(kwargs=obj("job", PK))],
    "api:scoring-job-cancel": [api_post(MEMBER, kwargs=obj("job_queued", PK), ok=(200,))],
    "api:model-version-list": [get(lists=ModelVersion)],
    "api:model-version-detail": [get(kwargs=obj("model_serving", PK))],
    "api:model-version-card": [get(kwargs=obj("model_serving", PK), shows_own=True)],
    "api:model-version-gates": [get(kwargs=obj("model_serving", PK))],
    "api:model-version-history": [get(kwargs=obj("model_serving", PK), shows_own=True)],
    "api:model-version-report": [get(kwargs=obj("model_pending", PK), shows_own=True)],
    "api:model-version-predict": [api_post(MEMBER, kwargs=obj("model_serving", PK), ok=(200,),
                                           effect=False,
                                           data=lambda w: {"rows": scoring_rows()})],
    "api:model-version-promote": [
        api_post(REVIEWER, kwargs=obj("model_approved", PK), data=lambda w: {"reason": "x"}),
        api_post(ADMIN, kwargs=obj("model_pending", PK),
                 data=lambda w: {"reason": "x", "override_reason": "accepted risk"}),
    ],
    "api:model-version-retire": [api_post(REVIEWER, kwargs=obj("model_approved", PK),
                                          data=lambda w: {"reason": "old"})],
    "api:model-version-review": [api_post(REVIEWER, kwargs=obj("model_pending", PK),
                                          data=lambda w: {"decision": "approve",
                                                          "comment": "fine"})],
}


# --- the resolver's endpoints -------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    key: str  # the URL name (namespaced), or the route for unnamed patterns
    route: str
    name: str | None
    has_format: bool
    admin_site: bool


def endpoints() -> list[Endpoint]:
    found: list[Endpoint] = []

    def walk(patterns, prefix: str, namespace: str | None):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                inner = ":".join(n for n in (namespace, pattern.namespace) if n) or None
                walk(pattern.url_patterns, route, inner)
            elif isinstance(pattern, URLPattern):
                name = f"{namespace}:{pattern.name}" if namespace and pattern.name else (
                    pattern.name)
                found.append(Endpoint(
                    key=name or route, route=route, name=name,
                    has_format="format" in pattern.pattern.regex.groupindex,
                    admin_site=(namespace or "").split(":")[0] == "admin"))

    walk(get_resolver().url_patterns, "", None)
    return found


def admin_site_path(endpoint: Endpoint) -> str:
    """A concrete path for an admin site pattern (its ids need not exist: nobody gets in)."""
    if endpoint.name and endpoint.name != "admin:app_list":
        from django.urls import NoReverseMatch

        try:
            return reverse(endpoint.name)
        except NoReverseMatch:
            pass
    route = endpoint.route
    if "app_label" in route:
        return "/admin/accounts/"
    if "(?P<url>" in route:
        return "/admin/no-such-page/"
    import re

    return "/" + re.sub(r"<[^>]+>", "1", route)


def path_of(endpoint: Endpoint, case: Case, world) -> str:
    kwargs = dict(case.kwargs(world))
    if endpoint.has_format:
        kwargs["format"] = "json"
    path = reverse(endpoint.name, kwargs=kwargs)
    if case.query:
        path += "?" + case.query(world)
    return path


def test_every_endpoint_has_an_entry():
    keys = {e.key for e in endpoints() if not e.admin_site}
    missing = sorted(keys - set(MATRIX))
    assert not missing, f"endpoints without an entry in the isolation matrix: {missing}"
    stale = sorted(set(MATRIX) - keys)
    assert not stale, f"matrix entries for endpoints that no longer exist: {stale}"
    admin_site = [e for e in endpoints() if e.admin_site]
    assert admin_site and all(e.route.startswith("admin/") for e in admin_site)


# --- the walk -------------------------------------------------------------------------------


# Beyond row counts, the fields a write may change without adding a row.
WATCHED_FIELDS = {
    "training.ModelVersion": ("status",),
    "training.TrainingRun": ("status", "cancel_requested"),
    "governance.ScoringJob": ("status", "cancel_requested"),
    "governance.PrivacyAudit": ("status", "cancel_requested"),
    "ingestion.DatasetVersion": ("status", "mapping"),
    "governance.DatasetPolicy": ("budget_epsilon", "personal_data", "nonprivate_allowed"),
    "governance.GatePolicy": ("require_fairness", "require_privacy", "max_epsilon",
                              "require_baseline", "champion_tolerance", "require_signoff"),
    "governance.RetrainSchedule": ("privacy_enabled", "retrain_on_drift", "config"),
    "django_celery_beat.PeriodicTask": ("enabled", "interval_id", "crontab_id"),
}


def _tracked_tables() -> list[str]:
    return [model._meta.db_table for model in apps.get_models()
            if model._meta.app_label in TRACKED_APPS and not model._meta.proxy]


def fingerprint() -> str:
    """A digest of the tracked apps' row counts and of the fields writes change in place."""
    from django.db import connection

    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(
            f"SELECT '{table}', COUNT(*) FROM {quote(table)}" for table in _tracked_tables()))
        parts = [sorted(cursor.fetchall())]
    for label, fields in WATCHED_FIELDS.items():
        model = apps.get_model(label)
        parts.append(list(model._default_manager.order_by("pk").values_list("pk", *fields)))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@dataclass
class Persona:
    label: str  # e.g. "acme analyst"
    role: str  # anonymous, analyst, reviewer, admin
    world: World | None
    other: World | None
    web: Client
    api: Client
    user: object = None


@dataclass
class Walk:
    worlds: dict
    baseline: str
    personas: list[Persona]
    failures: list[str] = field(default_factory=list)
    checks: Counter = field(default_factory=Counter)
    cells: set = field(default_factory=set)
    timing: Counter = field(default_factory=Counter)
    # Answers already seen: (persona, method, path) -> answer; ids no row has are the same
    # for both organisations, so those are kept per role.
    answers: dict = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def send(self, persona: Persona, endpoint: Endpoint, method: str, path: str,
             case: Case | None, world) -> tuple[int, str, bytes, bool]:
        self.cells.add((endpoint.route, persona.label, method))
        key = (persona.role if isinstance(world, MissingWorld) else persona.label, method,
               path)
        if key not in self.answers or case is not None and case.data is not None:
            self.answers[key] = self._request(persona, endpoint, method, path, case, world)
        return self.answers[key]

    def _request(self, persona, endpoint, method, path, case, world):
        api = (endpoint.key.startswith("api:"))
        client = persona.api if api else persona.web
        if persona.user is not None and not api:
            cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
            if cookie is None or not cookie.value:
                client.force_login(persona.user)  # signed out by the logout endpoint
        data = case.data(world) if case and case.data else None
        self.checks[method] += 1
        started = time.perf_counter()
        kind = "admin" if endpoint.admin_site else "api" if api else "web"
        try:
            return self._send(client, api, persona, method, path, case, data,
                              track=not endpoint.admin_site)
        finally:
            self.timing[(kind, method)] += time.perf_counter() - started

    def _send(self, client, api, persona, method, path, case, data, track=True):
        with transaction.atomic():
            try:
                if method == "GET":
                    response = client.get(path)
                elif method in ("POST", "PUT") and api and (method == "POST" or data):
                    send = client.post if method == "POST" else client.put
                    response = send(path, data or {}, format=case.fmt if case else None)
                elif method == "POST":
                    response = client.post(path, data or {})
                else:
                    response = client.generic(method, path)
                # (The test client closes the response itself: closing it again here would
                # send request_finished, which closes the database connection.)
                body = (b"".join(response.streaming_content) if response.streaming
                        else response.content)
            except Exception as exc:  # noqa: BLE001 - every error is a finding
                transaction.set_rollback(True)
                self.fail(f"{persona.label} {method} {path}: raised {exc!r}")
                return 500, "", b"", False
            changed = track and method != "GET" and fingerprint() != self.baseline
            transaction.set_rollback(True)
        return response.status_code, response.get("Location", ""), body, changed


def _personas(worlds) -> list[Persona]:
    personas = [Persona("anonymous", "anonymous", None, None, Client(), APIClient())]
    for key, other in (("a", "b"), ("b", "a")):
        world = worlds[key]
        for role, user in world.users.items():
            web = Client()
            web.force_login(user)
            api = APIClient()
            token, _ = Token.objects.get_or_create(user=user)
            api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
            personas.append(Persona(f"{world.org.slug} {role}", role, world, worlds[other],
                                    web, api, user))
    return personas


def check_body(walk: Walk, persona: Persona, what: str, body: bytes) -> None:
    """No answer to a member shows the other organisation's marker or name."""
    if persona.world is None:
        return
    text = body.decode("utf-8", "replace")
    for secret in (persona.other.mark, persona.other.org.name):
        if secret.lower() in text.lower():
            walk.fail(f"{what}: shows {secret!r} of the other organisation")


def check_list(walk: Walk, persona: Persona, what: str, case: Case, body: bytes) -> None:
    if persona.world is not None and case.shows_own and (
            persona.world.mark.lower().encode() not in body.lower()):
        walk.fail(f"{what}: does not show the organisation's own objects")
    if case.lists is None:
        return
    listed = {row["id"] for row in json.loads(body)["results"]}
    own = set(case.lists._default_manager.filter(
        organisation=persona.world.org).values_list("pk", flat=True))
    if listed != own:
        walk.fail(f"{what}: lists {sorted(listed)}, the organisation has {sorted(own)}")


def expect_anonymous(walk, persona, endpoint, case, method, status, location, what,
                     get_status=None) -> None:
    api = endpoint.key.startswith("api:")
    if case is not None and case.who == PUBLIC:
        if status not in case.ok:
            walk.fail(f"{what}: {status}, expected {case.ok}")
    elif case is None and public_endpoint(endpoint):
        if status not in (405, get_status):
            walk.fail(f"{what}: {status}, expected 405")
    elif api:
        if status != 401:
            walk.fail(f"{what}: {status}, expected 401")
    elif status != 302 or not location.startswith(resolve_url(settings.LOGIN_URL)):
        walk.fail(f"{what}: {status} {location}, expected the login redirect")


def public_endpoint(endpoint: Endpoint) -> bool:
    return any(c.who == PUBLIC for c in MATRIX.get(endpoint.key, []))


def walk_case(walk: Walk, endpoint: Endpoint, case: Case) -> None:
    worlds = walk.worlds
    for persona in walk.personas:
        own = persona.world or worlds["a"]
        path = path_of(endpoint, case, own)
        what = f"{persona.label} {case.method} {path}"
        status, location, body, changed = walk.send(persona, endpoint, case.method, path,
                                                    case, own)
        if persona.world is None:
            expect_anonymous(walk, persona, endpoint, case, case.method, status, location, what)
            if changed and case.who != PUBLIC:
                walk.fail(f"{what}: an anonymous request changed the database")
            continue
        check_body(walk, persona, what, body)
        allowed = persona.role in MAY[case.who]
        if allowed:
            if status not in case.ok:
                walk.fail(f"{what}: {status}, expected {case.ok}: {body[:300]!r}")
            elif case.effect and not changed:
                walk.fail(f"{what}: answered {status} but changed nothing")
            elif status in case.ok and case.method == "GET":
                check_list(walk, persona, what, case, body)
        else:
            if status != 403:
                walk.fail(f"{what}: {status}, expected 403 for a {persona.role}")
            if changed:
                walk.fail(f"{what}: refused, yet the database changed")
        if not case.scoped:
            continue
        foreign_path = path_of(endpoint, case, persona.other)
        missing_path = path_of(endpoint, case, MissingWorld())
        f_status, _, f_body, f_changed = walk.send(persona, endpoint, case.method,
                                                   foreign_path, case, persona.other)
        m_status, _, _, _ = walk.send(persona, endpoint, case.method, missing_path, case,
                                      MissingWorld())
        what = f"{persona.label} {case.method} {foreign_path} (other organisation's)"
        check_body(walk, persona, what, f_body)
        expected = {404} if allowed else {403, 404}
        if f_status not in expected or f_status != m_status:
            walk.fail(f"{what}: {f_status}, a missing id gives {m_status}; expected "
                      f"{sorted(expected)} for both")
        if f_changed:
            walk.fail(f"{what}: the other organisation's data changed")


def walk_undeclared(walk: Walk, endpoint: Endpoint, method: str) -> None:
    cases = MATRIX[endpoint.key]
    case = cases[0]
    template = Case(method, case.who, case.kwargs, query=case.query, scoped=case.scoped)
    roles_allowed = set().union(*(MAY[c.who] for c in cases))
    get_case = next((c for c in cases if c.method == "GET"), None)
    for persona in walk.personas:
        own = persona.world or walk.worlds["a"]
        path = path_of(endpoint, template, own)
        what = f"{persona.label} {method} {path}"
        status, location, body, changed = walk.send(persona, endpoint, method, path, None, own)
        get_status = None
        if get_case is not None and status not in (405, 401, 403, 404, 302):
            get_status = walk.send(persona, endpoint, "GET", path_of(endpoint, get_case, own),
                                   None, own)[0]
        if changed:
            walk.fail(f"{what}: a method the endpoint does not take changed the database")
        if persona.world is None:
            expect_anonymous(walk, persona, endpoint, None, method, status, location, what,
                             get_status)
            continue
        check_body(walk, persona, what, body)
        refused = 403 if persona.role not in roles_allowed else None
        if status not in (405, refused, get_status):
            walk.fail(f"{what}: {status}, expected 405")
        if not template.scoped:
            continue
        f_status, _, f_body, f_changed = walk.send(
            persona, endpoint, method, path_of(endpoint, template, persona.other), None,
            persona.other)
        m_status, _, _, _ = walk.send(persona, endpoint, method,
                                      path_of(endpoint, template, MissingWorld()), None,
                                      MissingWorld())
        check_body(walk, persona, what, f_body)
        if f_status != m_status or f_status not in (403, 404, 405):
            walk.fail(f"{what} (other organisation's): {f_status}, a missing id gives "
                      f"{m_status}")
        if f_changed:
            walk.fail(f"{what} (other organisation's): the database changed")


def walk_admin_site(walk: Walk, endpoint: Endpoint) -> None:
    """Nobody of the organisations is Django staff: the admin site shows only its login."""
    path = admin_site_path(endpoint)
    for persona in walk.personas:
        for method in ADMIN_SITE_METHODS:
            status, location, body, _ = walk.send(persona, endpoint, method, path, None,
                                                  persona.world)
            what = f"{persona.label} {method} {path}"
            if endpoint.name == "admin:login":
                if status != 200:
                    walk.fail(f"{what}: {status}, expected the admin login form")
            elif endpoint.name == "admin:logout" and persona.user is not None:
                # A signed-in non-staff user is sent to the admin index (and from there to
                # the admin login).
                if status != 302 or location != reverse("admin:index"):
                    walk.fail(f"{what}: {status} {location}, expected the admin index")
            elif status != 302 or "login" not in location:
                walk.fail(f"{what}: {status} {location}, expected a login redirect")


def test_isolation_and_role_matrix(worlds):
    walk = Walk(worlds=worlds, baseline=fingerprint(), personas=_personas(worlds))
    # Thousands of requests: their 403/404 warnings and access lines would only slow it down.
    logging.disable(logging.WARNING)
    try:
        run_walk(walk)
    finally:
        logging.disable(logging.NOTSET)
    assert not walk.failures, f"{len(walk.failures)} matrix failures:\n" + "\n".join(
        walk.failures[:150])


def run_walk(walk: Walk) -> None:
    found = endpoints()
    for endpoint in found:
        if endpoint.admin_site:
            walk_admin_site(walk, endpoint)
            continue
        cases = MATRIX[endpoint.key]
        for case in cases:
            walk_case(walk, endpoint, case)
        for method in sorted(set(METHODS) - {c.method for c in cases}):
            walk_undeclared(walk, endpoint, method)
    assert fingerprint() == walk.baseline
    routes = {cell[0] for cell in walk.cells}
    print(f"\nisolation matrix: {len(routes)} endpoints x {len(walk.personas)} personas x "
          f"methods {dict(walk.checks)}: {len(walk.cells)} (endpoint, persona, method) cells, "
          f"{sum(walk.checks.values())} requests")
    print({k: round(v, 1) for k, v in walk.timing.items()})
    assert len(routes) == len(found)
