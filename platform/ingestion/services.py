"""Upload, read, map and validate datasets. Views, the API and commands call only these."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.scoping import membership_for
from audits.services import log_action
from ingestion.models import Dataset, DatasetVersion
from ingestion.storage import UploadTooLarge, store_upload, stored_file
from ml_core.spec import ColumnMapping, ProblemSpec
from verticals.registry import RegistryError, get_problem

logger = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload refused before anything was stored (too large, unknown problem, ...)."""

    def __init__(self, message: str, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or [{"code": "upload_refused", "message": message}]


def problem_spec(vertical: str, problem: str) -> ProblemSpec:
    return get_problem(vertical, problem).spec


def upload_dataset(
    *,
    user,
    vertical: str,
    problem: str,
    file,
    name: str = "",
    sep: str | None = None,
    header: bool | None = None,
    dataset: Dataset | None = None,
) -> DatasetVersion:
    """Store ``file`` and read it as a table for ``vertical``/``problem``.

    Returns a ``pending`` version with its columns and suggested mapping, or a ``rejected``
    one carrying the read errors (kept for the report, never trainable). Raises UploadError
    when nothing could be stored: unknown problem, a dataset of another problem, too large.
    """
    membership = membership_for(user)
    organisation = membership.organisation
    try:
        spec = problem_spec(vertical, problem)
    except RegistryError as exc:
        raise UploadError(str(exc), [{"code": "unknown_problem", "message": str(exc)}]) from None
    if dataset is not None:
        if dataset.organisation_id != organisation.pk:
            raise PermissionDenied("this dataset belongs to another organisation")
        if (dataset.vertical, dataset.problem) != (vertical, problem):
            message = f"dataset {dataset.name!r} is for {dataset.vertical}/{dataset.problem}"
            raise UploadError(message, [{"code": "problem_mismatch", "message": message}])
    filename = Path(getattr(file, "name", "") or "upload").name
    try:
        stored = store_upload(
            file, organisation_id=organisation.pk, max_bytes=settings.TESSERA_MAX_UPLOAD_BYTES
        )
    except UploadTooLarge as exc:
        raise UploadError(str(exc), [{"code": "file_too_large", "message": str(exc)}]) from None

    version_fields = _read_upload(
        stored_file(stored.relative_path), spec=spec, sep=sep, header=header
    )
    with transaction.atomic():
        if dataset is None:
            dataset = Dataset.objects.create(
                organisation=organisation,
                vertical=vertical,
                problem=problem,
                name=(name or Path(filename).stem or "dataset")[:200],
                created_by=user,
            )
        else:
            # Serialise numbering per dataset (a row lock on PostgreSQL; SQLite writes are serial).
            Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
        last = dataset.versions.aggregate(last=Max("number"))["last"] or 0
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=last + 1,
            original_filename=filename[:255],
            stored_path=stored.relative_path,
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
            uploaded_by=user,
            **version_fields,
        )
        log_action(
            organisation=organisation,
            actor=user,
            action="dataset.uploaded",
            obj=version,
            detail={
                "dataset": dataset.pk,
                "filename": filename,
                "sha256": stored.sha256,
                "size_bytes": stored.size_bytes,
                "status": version.status,
            },
        )
    return version


def _read_upload(path: Path, *, spec: ProblemSpec, sep: str | None, header: bool | None) -> dict:
    """Model fields for a fresh version: pending with columns, or rejected with errors."""
    from ml_core.validation import suggest_mapping

    from ml_core.tables import TableReadError, read_table

    try:
        frame, options = read_table(path, sep=sep, header=header)
    except TableReadError as exc:
        return {
            "status": DatasetVersion.Status.REJECTED,
            "errors": [_issue(exc.code, exc.message)],
            "read_options": _forced_options(sep, header),
        }
    except Exception as exc:  # a reader bug must not become a 500: keep the report instead
        logger.exception("reading upload %s failed", path)
        return {
            "status": DatasetVersion.Status.REJECTED,
            "errors": [_issue("unreadable", f"the file could not be read as a table: {exc}")],
            "read_options": _forced_options(sep, header),
        }
    return {
        "status": DatasetVersion.Status.PENDING,
        "read_options": options.to_dict(),
        "columns": [str(c) for c in frame.columns],
        "suggested_mapping": suggest_mapping(frame, spec).to_dict(),
    }


def _issue(code: str, message: str) -> dict:
    return {"code": code, "message": message, "column": None, "rows": [], "severity": "error"}


def _forced_options(sep: str | None, header: bool | None) -> dict:
    return {
        key: value for key, value in (("delimiter", sep), ("header", header)) if value is not None
    }


def complete_mapping(mapping: ColumnMapping, columns: list[str]) -> ColumnMapping:
    """Fill empty ``features`` with every column that has no other role."""
    if mapping.features:
        return mapping
    taken = {mapping.target, mapping.id, *mapping.sensitive, *mapping.exclude}
    return replace(mapping, features=tuple(c for c in columns if c not in taken))


def confirm_mapping(*, version: DatasetVersion, user, mapping: ColumnMapping) -> DatasetVersion:
    """Validate the version under ``mapping``: ``validated`` with a profile, or ``rejected``.

    A version is decided once; PermissionDenied for another organisation's version,
    ValueError when it is not awaiting a mapping.
    """
    membership = membership_for(user)
    if version.dataset.organisation_id != membership.organisation_id:
        raise PermissionDenied("this dataset belongs to another organisation")
    if version.status != DatasetVersion.Status.PENDING:
        raise ValueError(
            f"version {version.number} is already {version.get_status_display().lower()}; "
            "upload the file again to map it differently"
        )
    from ml_core.profiling import profile
    from ml_core.validation import validate

    spec = problem_spec(version.dataset.vertical, version.dataset.problem)
    frame = load_frame(version)
    mapping = complete_mapping(mapping, [str(c) for c in frame.columns])
    issues = [issue.to_dict() for issue in validate(frame, mapping, spec)]
    errors = [issue for issue in issues if issue.get("severity", "error") == "error"]
    warnings = [issue for issue in issues if issue.get("severity", "error") != "error"]
    version.mapping = mapping.to_dict()
    version.errors = errors
    version.warnings = warnings
    if errors:
        version.status = DatasetVersion.Status.REJECTED
    else:
        version.status = DatasetVersion.Status.VALIDATED
        version.profile = profile(frame, mapping, spec)
        version.validated_at = timezone.now()
    with transaction.atomic():
        version.save(
            update_fields=["mapping", "errors", "warnings", "status", "profile", "validated_at"]
        )
        log_action(
            organisation=membership.organisation,
            actor=user,
            action="dataset.validated" if version.trainable else "dataset.rejected",
            obj=version,
            detail={
                "mapping": version.mapping,
                "errors": len(errors),
                "warnings": len(warnings),
            },
        )
    return version


def load_frame(version: DatasetVersion) -> pd.DataFrame:
    """Re-read a stored version exactly as it was read at upload."""
    from ml_core.tables import read_table

    options = version.read_options or {}
    frame, _ = read_table(
        stored_file(version.stored_path),
        sep=options.get("delimiter"),
        header=options.get("header"),
        encoding=options.get("encoding"),
    )
    return frame
