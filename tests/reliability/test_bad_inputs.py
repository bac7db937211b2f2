"""Every hostile or broken file of tests/data/bad, through all three upload paths.

The web upload form, the REST API and ``manage.py pipeline`` must each answer every file
of the corpus with a 4xx or a validation report that names what is wrong and where
(``manifest.json``: the code, a fragment of the message, the column and rows), never a
5xx or a traceback. No half-read table becomes trainable, nothing is trained, and a
dataset the organisation already has is untouched (its stored bytes, rows, mapping and
status compared before and after). Files accepted with warnings are checked for the
specific warning and handling: numbers with separators parsed, dates rewritten, HTML
stored inert and escaped on every page, formula cells escaped on export, the uploaded
file name stripped of its path, identifier columns kept out of training.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import html
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from ingestion.forms import roles_from_mapping
from ingestion.models import Dataset, DatasetVersion
from ingestion.services import confirm_mapping, load_frame, upload_dataset
from ingestion.storage import read_stored, stored_file, upload_root
from ml_core.spec import ColumnMapping
from tests.conftest import ROOT, csv_upload
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

BAD = ROOT / "tests" / "data" / "bad"
sys.path.insert(0, str(BAD))
import make_corpus  # noqa: E402  (the corpus generator lives beside its files)

MANIFEST: dict[str, dict] = json.loads((BAD / "manifest.json").read_text(encoding="utf-8"))
PATHS = ("web", "api", "command")
API = "/api/v1"
TARGET = "default"
BOUNDARY = "tessera-bad-input-7b1f0c2e9d"


def test_the_corpus_is_complete():
    """At least 30 cases, each with its file (or generator) and an expectation."""
    assert len(MANIFEST) >= 30
    for name, expected in MANIFEST.items():
        assert expected["stage"] in ("refused", "read", "mapping", "accepted"), name
        if expected.get("generated"):
            assert expected["generated"] in make_corpus.GENERATORS, name
        else:
            assert (BAD / name).is_file(), name
        if expected["stage"] != "accepted":
            assert expected["code"] and expected["message"], name


@functools.cache
def _generated(name: str, limit: int) -> bytes:
    if name == "over_size_limit":
        return make_corpus.over_size_limit(limit)
    return getattr(make_corpus, name)()


def corpus_bytes(name: str, settings) -> bytes:
    generator = MANIFEST[name].get("generated")
    if generator:
        return _generated(generator, settings.TESSERA_MAX_UPLOAD_BYTES)
    return (BAD / name).read_bytes()


def multipart(fields: dict, *, filename: str, content: bytes) -> tuple[bytes, str]:
    """A multipart body as a browser sends it, file name untouched (the test client would
    strip a path from it before the server sees it)."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
             .encode() for key, value in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
                 + content + b"\r\n")
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={BOUNDARY}"


def page_text(response) -> str:
    return html.unescape(response.content.decode("utf-8"))


# --- what a path answered ---------------------------------------------------------------


@dataclass
class Outcome:
    statuses: list[int] = field(default_factory=list)  # HTTP statuses or the exit code
    refused: bool = False  # a 4xx / exit code 1
    text: str = ""  # everything the user was shown, for message fragments
    issues: list[dict] = field(default_factory=list)  # errors and warnings as returned
    version: DatasetVersion | None = None


def _version_from_url(url: str) -> DatasetVersion | None:
    match = re.search(r"/versions/(\d+)/", url)
    return DatasetVersion.objects.get(pk=int(match[1])) if match else None


def via_web(client: Client, data: bytes, expected: dict, name: str) -> Outcome:
    outcome = Outcome()
    options = expected.get("options") or {}
    body, content_type = multipart({"name": "", "delimiter": options.get("sep", "")},
                                   filename=expected.get("upload_name", name), content=data)
    response = client.generic("POST", reverse("dataset_upload", args=["finance", "credit_risk"]),
                              body, content_type=content_type)
    outcome.statuses.append(response.status_code)
    if response.status_code != 302:
        outcome.refused = True
        outcome.text = page_text(response)
        return outcome
    outcome.version = _version_from_url(response["Location"])
    if "/mapping/" in response["Location"]:
        version = outcome.version
        roles = roles_from_mapping(version.columns, version.suggested_mapping, default="feature")
        form = {f"role_{i}": roles[column] for i, column in enumerate(version.columns)}
        response = client.post(reverse("dataset_mapping", args=[version.pk]),
                               {**form, "positive_label": ""})
        outcome.statuses.append(response.status_code)
        if response.status_code != 302:
            outcome.refused = True
            outcome.text = page_text(response)
            return outcome
    page = client.get(response["Location"])
    outcome.statuses.append(page.status_code)
    outcome.text = page_text(page)
    # Redirected to the version's page: refused when that page reports errors.
    outcome.refused = 'id="errors-heading"' in outcome.text
    return outcome


def via_api(client, data: bytes, expected: dict, name: str, dataset: Dataset) -> Outcome:
    """Uploaded as a new version of the organisation's existing dataset."""
    outcome = Outcome()
    options = expected.get("options") or {}
    fields = {"vertical": "finance", "problem": "credit_risk", "dataset": dataset.pk}
    if "sep" in options:
        fields["sep"] = options["sep"]
    body, content_type = multipart(fields, filename=expected.get("upload_name", name),
                                   content=data)
    response = client.generic("POST", f"{API}/datasets/", body, content_type=content_type)
    outcome.statuses.append(response.status_code)
    answer = response.json()
    if response.status_code == 201:
        outcome.version = DatasetVersion.objects.get(pk=answer["id"])
        response = client.post(f"{API}/dataset-versions/{answer['id']}/mapping/",
                               {"target": TARGET}, format="json")
        outcome.statuses.append(response.status_code)
        answer = response.json()
    elif answer.get("dataset_version"):
        outcome.version = DatasetVersion.objects.get(pk=answer["dataset_version"])
    outcome.refused = response.status_code >= 400
    outcome.issues = list(answer.get("errors") or []) + list(answer.get("warnings") or [])
    outcome.text = json.dumps(answer, ensure_ascii=False)
    return outcome


def via_command(tmp_path: Path, data: bytes, expected: dict, name: str, user) -> Outcome:
    outcome = Outcome()
    filename = Path(expected.get("upload_name", name)).name
    path = tmp_path / "incoming" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    argument = str(path)
    if "upload_name" in expected:  # the operator's own path, with its '..' parts
        (tmp_path / "incoming" / "a" / "b").mkdir(parents=True, exist_ok=True)
        argument = str(tmp_path / "incoming" / "a" / "b" / ".." / ".." / filename)
    args = [argument, "--vertical", "finance", "--problem", "credit_risk", "--target", TARGET,
            "--user", user.username, "--inline", "--json"]
    if "sep" in (expected.get("options") or {}):
        args += ["--sep", expected["options"]["sep"]]
    if expected["stage"] == "accepted":
        args.append("--validate-only")  # accepted files stop before training here
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("pipeline", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        code = exit_.code
    outcome.statuses.append(code)
    outcome.refused = code != 0
    body = json.loads(out.getvalue())
    outcome.issues = list(body.get("errors") or []) + list(
        (body.get("dataset") or {}).get("warnings") or [])
    outcome.text = json.dumps(body, ensure_ascii=False) + err.getvalue()
    if body.get("dataset"):
        outcome.version = DatasetVersion.objects.get(pk=body["dataset"]["version_id"])
    return outcome


# --- the organisation's data before the bad upload --------------------------------------


@pytest.fixture
def existing(analyst) -> DatasetVersion:
    data = make_corpus.table(make_corpus.base_rows(80, seed=11))
    version = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                             file=csv_upload(data, "existing.csv"), name="Existing")
    version = confirm_mapping(version=version, user=analyst, mapping=ColumnMapping(
        target=TARGET, sensitive=("sex",), id="applicant_id"))
    assert version.status == DatasetVersion.Status.VALIDATED, version.errors
    return version


def fingerprint(version: DatasetVersion) -> dict:
    version.refresh_from_db()
    frame = load_frame(version)
    return {
        "status": version.status, "sha256": version.sha256, "number": version.number,
        "plaintext": hashlib.sha256(read_stored(version.stored_path)).hexdigest(),
        "ciphertext": hashlib.sha256(stored_file(version.stored_path).read_bytes()).hexdigest(),
        "rows": len(frame), "columns": list(frame.columns), "mapping": version.mapping,
        "profile": version.profile, "validated_at": version.validated_at,
        "dataset_name": version.dataset.name,
    }


# --- the test ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_bad_input(name, path, existing, analyst, api_client, settings, tmp_path):
    expected = MANIFEST[name]
    data = corpus_bytes(name, settings)
    before = fingerprint(existing)
    versions_before = set(DatasetVersion.objects.values_list("pk", flat=True))
    web = Client()
    web.force_login(analyst)

    if path == "web":
        outcome = via_web(web, data, expected, name)
    elif path == "api":
        outcome = via_api(api_client(analyst), data, expected, name, existing.dataset)
    else:
        outcome = via_command(tmp_path, data, expected, name, analyst)

    # Never a server error, a traceback or a run.
    assert all(status < 500 for status in outcome.statuses), outcome.statuses
    assert "Traceback" not in outcome.text
    assert not TrainingRun.objects.exists()
    # The organisation's existing dataset is as it was.
    assert fingerprint(existing) == before
    new = DatasetVersion.objects.exclude(pk__in=versions_before)
    if outcome.version is not None:
        outcome.version.refresh_from_db()
    trainable = [v for v in new if v.trainable]

    stage = expected["stage"]
    if stage == "accepted":
        assert not outcome.refused, outcome.text
        assert outcome.version is not None and outcome.version.status == "validated", \
            outcome.text
        assert trainable == [outcome.version]
        _assert_warning(outcome, expected)
        CHECKS.get(expected.get("check"), lambda *a: None)(outcome.version, web, outcome)
        _assert_pages_escape(outcome.version, web)
        return

    # Refused or rejected: the user is told what and where; nothing became trainable.
    assert outcome.refused, outcome.text
    assert not trainable
    if path == "web" and expected.get("ui_message") and expected["ui_message"] in outcome.text:
        return  # the web form refused it first, saying so (no version, or one left pending)
    assert expected["message"] in outcome.text, outcome.text[:3000]
    if stage == "refused":
        assert not new.exists()
        if path != "web":
            assert outcome.issues[0]["code"] == expected["code"]
        return
    version = outcome.version or new.get()
    assert version.status == DatasetVersion.Status.REJECTED
    issue = next(i for i in version.errors if i["code"] == expected["code"])
    assert expected["message"] in issue["message"]
    if expected.get("column"):
        assert issue["column"] == expected["column"]
    if expected.get("rows"):
        assert issue["rows"] == expected["rows"]
    if path != "web":
        assert expected["code"] in {i["code"] for i in outcome.issues}


def _assert_warning(outcome: Outcome, expected: dict) -> None:
    """The expected warning is on the version and shown by the path that uploaded it."""
    if not expected.get("code"):
        return
    warnings = [w for w in outcome.version.warnings if w["code"] == expected["code"]
                and expected["message"] in w["message"]]
    assert warnings, outcome.version.warnings
    if expected.get("column"):
        assert warnings[0]["column"] == expected["column"]
    assert expected["message"] in outcome.text


def _assert_pages_escape(version: DatasetVersion, web: Client) -> None:
    """Whatever the cells and names hold, pages show it as text."""
    page = web.get(reverse("dataset_version", args=[version.pk]))
    assert page.status_code == 200
    raw = page.content.decode("utf-8")
    for payload in ("<script>alert(", "<img src=x", 'href="javascript:', "<b>note</b>"):
        assert payload not in raw


def _check_numbers_parsed(version, web, outcome):
    frame = load_frame(version)
    assert frame["income"].dtype.kind in "if"
    assert frame["income"].notna().all()


def _check_dates_iso(version, web, outcome):
    frame = load_frame(version)
    dates = frame["application_date"]
    assert dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert dates.iloc[0] == "2024-01-13"  # written 13/01/2024


def _check_html_escaped(version, web, outcome):
    frame = load_frame(version)
    assert "<script>alert('pwned')</script>" in set(frame["<b>note</b>"])  # stored as data
    version.refresh_from_db()
    if version.status == "validated":
        raw = web.get(reverse("dataset_version", args=[version.pk])).content.decode()
        assert "&lt;b&gt;note&lt;/b&gt;" in raw


def _check_formulas_escaped_on_export(version, web, outcome):
    from governance.scoring import scored_csv

    frame = load_frame(version)
    assert set(frame["purpose"]) == set(make_corpus.FORMULAS)  # stored verbatim
    exported = [row["purpose"] for row in csv.DictReader(
        io.StringIO(scored_csv(frame).decode("utf-8"), newline=""))]
    assert exported and all(cell == "'" + original for cell, original in
                            zip(exported, frame["purpose"], strict=True))


def _check_filename_sanitised(version, web, outcome):
    assert version.original_filename == "passwd.csv"
    stored = stored_file(version.stored_path)
    assert stored.parent.parent == Path(upload_root()).resolve()
    assert stored.name == version.sha256


def _check_identifiers_excluded(version, web, outcome):
    assert {item["column"] for item in version.identifiers} == {"contact", "mobile"}
    assert {"contact", "mobile"} <= set(version.mapping["exclude"])
    assert not {"contact", "mobile"} & set(version.mapping["features"])


def _check_same_as_plain(version, web, outcome):
    """A gzip-compressed upload reads as the plain table it holds."""
    from ml_core.tables import read_table

    plain, _ = read_table(make_corpus.table(make_corpus.base_rows()))
    load_frame(version).equals(plain) or pytest.fail("the .csv.gz read differently")
    assert version.original_filename.endswith(".csv.gz")


def _check_accents_kept(version, web, outcome):
    """A file mixing UTF-8 and Windows-1252 lines reads each line in its own encoding."""
    ids = set(load_frame(version)["applicant_id"])
    assert {"A0004-Zoë", "A0009-Müller"} <= ids


CHECKS = {
    "accents_kept": _check_accents_kept,
    "same_as_plain": _check_same_as_plain,
    "numbers_parsed": _check_numbers_parsed,
    "dates_iso": _check_dates_iso,
    "html_escaped": _check_html_escaped,
    "formulas_escaped_on_export": _check_formulas_escaped_on_export,
    "filename_sanitised": _check_filename_sanitised,
    "identifiers_excluded": _check_identifiers_excluded,
}
