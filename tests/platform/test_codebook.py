"""A headerless, coded file made readable: display names and code labels typed inline or
uploaded as a codebook, stored per dataset version, recorded in the audit log as a
sentence; bad input saves nothing and says which line is wrong."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from audits.log_sentences import sentence
from audits.models import AuditLogEntry
from ingestion.codebook import Codebook, CodebookError, parse_codebook
from ingestion.models import DatasetVersion
from ingestion.services import save_codebook, upload_dataset
from tests.conftest import SHARED_DATA, csv_upload
from tests.e2e.german_like import german_like_rows

pytestmark = pytest.mark.django_db

COLUMNS = [f"column_{i}" for i in range(1, 22)]


@pytest.fixture
def headerless(analyst) -> DatasetVersion:
    return upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                          file=csv_upload(german_like_rows(200), "german.data"),
                          name="German credit")


def test_parse_is_lenient_about_headers_and_merges_over_what_is_set():
    data = (b"Column;CODE;Label;notes\ncolumn_9;A91;male, divorced;x\n"
            b"personal status;A92;female;\n")
    current = Codebook(names={"column_9": "personal status"})
    book = parse_codebook(data, columns=COLUMNS, current=current)
    # The second line names the column by its display name; the extra column is ignored.
    assert book.names == {"column_9": "personal status"}
    assert book.labels == {"column_9": {"A91": "male, divorced", "A92": "female"}}
    both = parse_codebook(b"\xef\xbb\xbfcolumn,name,code,label\ncolumn_21,outcome,1,good\n"
                          b"column_21,,2,bad\n", columns=COLUMNS, current=Codebook())
    assert both.names == {"column_21": "outcome"}
    assert both.labels == {"column_21": {"1": "good", "2": "bad"}}


@pytest.mark.parametrize(("data", "expected"), [
    (b"variable_x,meaning_y\ncolumn_1,a\n", ["line 1: the header must name"]),
    (b"column,code,label\ncolumn_99,A1,x\ncolumn_1,A11,\n,A1,x\n",
     ["line 2: there is no column 'column_99'", "line 3: code 'A11' of 'column_1' has no "
      "label", "line 4: the column is empty"]),
    (b"column,name\ncolumn_1,status\ncolumn_2,Status\n",
     ["after this file: 'column_1' and 'column_2' would both be shown as 'Status'"]),
    (b"column,code,label\ncolumn_9,A91,male\ncolumn_9,A93,male\n",
     ["share the label 'male'; their groups would merge"]),
    (b"", ["the file is empty"]),
])
def test_bad_codebooks_are_refused_line_by_line(data, expected):
    with pytest.raises(CodebookError) as refused:
        parse_codebook(data, columns=COLUMNS, current=Codebook())
    assert len(refused.value.errors) == len(expected)
    for error, start in zip(refused.value.errors, expected, strict=True):
        assert start in error, (error, start)


def test_the_names_page_renames_inline_and_by_codebook(client, analyst, headerless):
    client.force_login(analyst)
    page = client.get(f"/datasets/versions/{headerless.pk}/names/")
    assert page.status_code == 200
    form = page.context["form"]
    rows = {row["name"]: row for row in form.rows}
    # Coded columns get a box per code; a continuous column (credit amount) none.
    assert [code for code, _ in rows["column_9"]["codes"]] == [
        "A91", "A92", "A93", "A94", "A95"]
    assert rows["column_5"]["codes"] == []
    nine = next(j for j, (code, _) in enumerate(rows["column_9"]["codes"]) if code == "A93")
    answer = client.post(f"/datasets/versions/{headerless.pk}/names/?next=mapping", {
        "action": "names", "next": "mapping", "names-name-8": "personal status and sex",
        "names-name-12": "age in years", f"names-label-8-{nine}": "male, single"})
    assert answer.status_code == 302 and answer["Location"].endswith("/mapping/")
    headerless.refresh_from_db()
    assert headerless.column_names == {"column_9": "personal status and sex",
                                       "column_13": "age in years"}
    assert headerless.value_labels == {"column_9": {"A93": "male, single"}}

    codebook = b"column,code,label\ncolumn_21,1,good\ncolumn_21,2,bad\n"
    answer = client.post(f"/datasets/versions/{headerless.pk}/names/", {
        "action": "upload", "codebook-file": csv_upload(codebook, "codes.csv")})
    assert answer.status_code == 302
    headerless.refresh_from_db()
    assert headerless.value_labels == {"column_9": {"A93": "male, single"},
                                       "column_21": {"1": "good", "2": "bad"}}
    # The original names stay everywhere the data is concerned.
    assert headerless.columns == COLUMNS
    mapping = client.get(f"/datasets/versions/{headerless.pk}/mapping/").content.decode()
    assert "personal status and sex" in mapping and "male, single" in mapping

    # The form again as a browser sends it (every box with what it shows), one label
    # cleared: that label goes, the rest stays.
    form = client.get(f"/datasets/versions/{headerless.pk}/names/").context["form"]
    data = {form.add_prefix(key): field.initial or "" for key, field in form.fields.items()}
    data[f"names-label-8-{nine}"] = ""
    answer = client.post(f"/datasets/versions/{headerless.pk}/names/",
                         {**data, "action": "names"})
    assert answer.status_code == 302
    headerless.refresh_from_db()
    assert headerless.value_labels == {"column_21": {"1": "good", "2": "bad"}}
    assert headerless.column_names["column_9"] == "personal status and sex"

    entries = AuditLogEntry.objects.filter(action="dataset.codebook_changed").order_by("pk")
    said = [sentence(e) for e in entries]
    assert said[0] == (f"{analyst.username} renamed columns or labelled codes of "
                       f"dataset version {headerless.pk}: changes column_13 named "
                       "'age in years', column_9 named 'personal status and sex', column_9 "
                       "code A93 labelled "
                       "'male, single'; source the form.")
    assert "column_21 code 1 labelled 'good'" in said[1] and "source codes.csv" in said[1]
    assert said[2].endswith(": changes column_9 code A93 unlabelled; source the form.")
    assert len(said) == 3


def test_bad_codebook_upload_saves_nothing_and_lists_each_line(client, analyst, headerless):
    client.force_login(analyst)
    bad = b"column,code,label\ncolumn_9,A91,divorced\ncolumn_77,A1,x\ncolumn_9,A92,\n"
    answer = client.post(f"/datasets/versions/{headerless.pk}/names/", {
        "action": "upload", "codebook-file": csv_upload(bad, "codes.csv")})
    assert answer.status_code == 400
    html = answer.content.decode()
    assert "Nothing was saved (2 problems)" in html
    assert "line 3: there is no column &#x27;column_77&#x27;" in html
    assert "line 4: code &#x27;A92&#x27; of &#x27;column_9&#x27; has no label" in html
    headerless.refresh_from_db()
    assert headerless.value_labels == {} and headerless.column_names == {}
    assert not AuditLogEntry.objects.filter(action="dataset.codebook_changed").exists()


def test_only_members_of_its_organisation_rename(other_analyst, headerless):
    book = Codebook(names={"column_1": "checking account"})
    with pytest.raises(PermissionDenied):
        save_codebook(version=headerless, user=other_analyst, codebook=book, source="the form")


GERMAN = SHARED_DATA / "german.data"


@pytest.mark.shared_data
@pytest.mark.skipif(not GERMAN.exists(), reason=f"{GERMAN} is absent")
def test_the_real_german_file_reads_with_its_documented_codes(client, analyst):
    """german.data with the codes german.doc gives for attribute 9 and the outcome: the
    profile's groups carry the labels, with the file's own counts."""
    from ingestion.services import confirm_mapping
    from ml_core.spec import ColumnMapping

    version = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                             file=csv_upload(GERMAN.read_bytes(), "german.data"),
                             name="Statlog German credit")
    codebook = (b"column,name,code,label\n"
                b"column_9,personal status and sex,A91,male: divorced/separated\n"
                b"column_9,,A92,female: divorced/separated/married\n"
                b"column_9,,A93,male: single\ncolumn_9,,A94,male: married/widowed\n"
                b"column_9,,A95,female: single\n"
                b"column_21,credit outcome,1,good\ncolumn_21,,2,bad\n")
    book = parse_codebook(codebook, columns=version.columns, current=Codebook())
    save_codebook(version=version, user=analyst, codebook=book, source="german.doc")
    version = confirm_mapping(version=version, user=analyst, mapping=ColumnMapping(
        target="column_21", sensitive=("column_9", "column_13"), positive_label="2"))
    assert version.status == "validated", version.errors
    client.force_login(analyst)
    page = client.get(f"/datasets/versions/{version.pk}/")
    profile = page.context["profile"]
    assert profile["groups"]["personal status and sex"] == {
        "male: divorced/separated": 50, "female: divorced/separated/married": 310,
        "male: single": 548, "male: married/widowed": 92}
    assert profile["target_balance"] == {"good": 700, "bad": 300}
    assert version.profile["groups"]["column_9"]["A93"] == 548  # stored as the file says
