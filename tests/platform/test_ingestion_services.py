"""Uploading, reading, mapping and validating datasets through ingestion.services."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import PermissionDenied

from audits.models import AuditLogEntry
from ingestion.models import Dataset, DatasetVersion
from ingestion.services import UploadError, confirm_mapping, load_frame, upload_dataset
from ingestion.storage import read_stored, stored_file
from ml_core.spec import ColumnMapping
from tests.conftest import csv_upload, finance_frame
from training.services import start_run

pytestmark = pytest.mark.django_db


def upload(user, data: bytes, name: str = "applications.csv", **kwargs) -> DatasetVersion:
    return upload_dataset(
        user=user, vertical="finance", problem="credit_risk", file=csv_upload(data, name), **kwargs
    )


def demo_bytes(*, sep: str = ",", header: bool = True, n_rows: int = 120) -> bytes:
    return finance_frame(n_rows).to_csv(index=False, sep=sep, header=header).encode()


def test_upload_stores_bytes_once_under_their_sha256(analyst, finance_csv, settings):
    version = upload(analyst, finance_csv)

    assert version.sha256 == hashlib.sha256(finance_csv).hexdigest()
    assert version.size_bytes == len(finance_csv)
    path = stored_file(version.stored_path)
    assert path == (settings.TESSERA_UPLOAD_DIR / str(analyst.membership.organisation_id)
                    / version.sha256).resolve()
    assert read_stored(version.stored_path) == finance_csv  # encrypted on disk
    again = upload(analyst, finance_csv, dataset=version.dataset)
    assert again.number == 2 and again.stored_path == version.stored_path
    assert [p.name for p in path.parent.iterdir()] == [version.sha256]  # no temp files left


def test_upload_reads_columns_and_suggests_the_mapping(analyst, finance_csv):
    version = upload(analyst, finance_csv, name="Q3 applications")

    assert version.status == DatasetVersion.Status.PENDING
    assert version.dataset.name == "Q3 applications"
    assert version.columns == list(finance_frame().columns)
    assert version.read_options["delimiter"] == ","
    assert version.read_options["header"] is True
    assert version.suggested_mapping["target"] == "default"
    assert version.number == 1
    assert not version.trainable


@pytest.mark.parametrize(
    ("data", "expected_delimiter"),
    [
        (demo_bytes(sep=";"), ";"),
        (demo_bytes(sep="\t"), "\t"),
        (b"\xef\xbb\xbf" + demo_bytes(), ","),  # UTF-8 with BOM
        (demo_bytes().replace(b"\n", b"\r\n"), ","),  # Windows line ends
        (demo_bytes().rstrip(b"\n"), ","),  # no final newline
    ],
    ids=["semicolon", "tab", "bom", "crlf", "no-final-newline"],
)
def test_csv_variants_read_alike(analyst, data, expected_delimiter):
    version = upload(analyst, data)

    assert version.status == DatasetVersion.Status.PENDING, version.errors
    assert version.read_options["delimiter"] == expected_delimiter
    assert version.columns[0] == "applicant_id"
    assert len(load_frame(version)) == 120


def test_file_without_header_gets_numbered_columns(analyst):
    version = upload(analyst, demo_bytes(header=False), header=False)

    assert version.status == DatasetVersion.Status.PENDING
    assert version.columns[:2] == ["column_1", "column_2"]


def test_oversize_upload_is_refused_and_nothing_is_stored(analyst, finance_csv, settings):
    settings.TESSERA_MAX_UPLOAD_BYTES = 1000

    with pytest.raises(UploadError) as caught:
        upload(analyst, finance_csv)

    assert caught.value.errors[0]["code"] == "file_too_large"
    assert "larger than the limit" in caught.value.message
    assert not Dataset.objects.exists() and not DatasetVersion.objects.exists()
    folder = settings.TESSERA_UPLOAD_DIR
    assert not any(p.is_file() for p in folder.rglob("*")) if folder.exists() else True


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x01\x02\x03" * 50, b"a,b\n1,2,3,4\n5\n"], ids=["empty", "binary", "ragged"]
)
def test_unreadable_file_is_kept_rejected_and_never_trainable(analyst, data):
    version = upload(analyst, data)

    assert version.status == DatasetVersion.Status.REJECTED
    assert version.errors and {"code", "message"} <= set(version.errors[0])
    with pytest.raises(ValueError, match="cannot be trained"):
        start_run(version=version, user=analyst)
    with pytest.raises(ValueError):
        confirm_mapping(version=version, user=analyst, mapping=ColumnMapping(target="a"))


def test_confirming_the_mapping_validates_and_profiles(analyst, finance_csv):
    version = upload(analyst, finance_csv)
    mapping = ColumnMapping(target="default", sensitive=("sex", "age"), id="applicant_id")

    version = confirm_mapping(version=version, user=analyst, mapping=mapping)

    assert version.status == DatasetVersion.Status.VALIDATED, version.errors
    assert version.trainable and version.validated_at is not None
    assert version.errors == []
    assert version.profile["rows"] == 400
    # Features default to every column without another role.
    assert "income" in version.mapping["features"]
    assert not {"default", "sex", "age", "applicant_id"} & set(version.mapping["features"])
    with pytest.raises(ValueError, match="already"):
        confirm_mapping(version=version, user=analyst, mapping=mapping)


def test_mapping_errors_reject_the_version_for_good(analyst, finance_csv):
    version = upload(analyst, finance_csv)

    version = confirm_mapping(
        version=version, user=analyst, mapping=ColumnMapping(target="no_such_column")
    )

    assert version.status == DatasetVersion.Status.REJECTED
    assert version.errors and all("message" in e for e in version.errors)
    with pytest.raises(ValueError):
        start_run(version=version, user=analyst)


def test_actions_are_audit_logged(analyst, finance_csv):
    version = upload(analyst, finance_csv)
    confirm_mapping(version=version, user=analyst, mapping=ColumnMapping(target="default"))

    actions = list(
        AuditLogEntry.objects.filter(object_id=str(version.pk)).values_list("action", "actor")
    )
    assert ("dataset.uploaded", analyst.pk) in actions
    assert ("dataset.validated", analyst.pk) in actions


def test_other_organisations_cannot_touch_a_dataset(analyst, other_analyst, finance_csv):
    version = upload(analyst, finance_csv)

    with pytest.raises(PermissionDenied):
        confirm_mapping(version=version, user=other_analyst,
                        mapping=ColumnMapping(target="default"))
    with pytest.raises(PermissionDenied):
        upload(other_analyst, finance_csv, dataset=version.dataset)


def test_unknown_problem_is_refused(analyst, finance_csv):
    with pytest.raises(UploadError) as caught:
        upload_dataset(user=analyst, vertical="finance", problem="nope",
                       file=csv_upload(finance_csv))
    assert caught.value.errors[0]["code"] == "unknown_problem"
