"""Upload, read, map and validate datasets. Views, the API and commands call only these."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import Role
from accounts.permissions import require_role
from accounts.scoping import member_of, membership_for, organisation_id_of
from catalog.families import family_of
from ingestion import companions, image_uploads
from ingestion.codebook import Codebook, changes
from ingestion.models import CompanionFile, Dataset, DatasetVersion
from ingestion.storage import UploadTooLarge, read_stored, store_upload
from ml_core.spec import ColumnMapping, ColumnRole, ProblemSpec
from observability.audit_trail import log_action
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
        member_of(user, dataset)
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
        read_stored(stored.relative_path), spec=spec, sep=sep, header=header
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


# The last table read in this request or task: an upload is read when it arrives and again,
# with the options found then, by the checks and the profile of that request; one parse
# serves them all, and it is dropped when the request or task ends (forget_plaintext).
# Keyed by the bytes themselves (compared in full, which costs a memcmp), so a changed file
# is never answered from here; one entry bounds the memory.
_LAST_READ: dict = {}
_LAST_READ_LOCK = threading.Lock()


def read_upload_table(data: bytes, *, sep: str | None = None, header: bool | None = None,
                      encoding: str | None = None, reuse: bool = True):
    """``ml_core.tables.read_table`` under the platform's limits: (frame, options).

    The frame is the caller's own (copy-on-write); reading the same bytes again with the
    same options (or with the options the first read found) reuses the last parse unless
    ``reuse`` is False (an upload is always parsed: each ingest reads its file once).
    """
    from ml_core.tables import read_table

    limit = settings.TESSERA_MAX_COLUMNS
    key = (sep, header, encoding, limit)
    with _LAST_READ_LOCK:
        last = dict(_LAST_READ) if reuse else {}
    if last and key in last["keys"] and last["data"] == data:
        return last["frame"].copy(deep=False), last["options"]
    frame, options = read_table(data, sep=sep, header=header, encoding=encoding,
                                max_columns=limit,
                                # A gzip-compressed upload may grow to what a plain one may be.
                                max_uncompressed_bytes=settings.TESSERA_MAX_UPLOAD_BYTES)
    check_header(frame.columns)
    found = (options.delimiter, options.header, options.encoding, limit)
    with _LAST_READ_LOCK:
        _LAST_READ.clear()
        _LAST_READ.update(data=bytes(data), keys={key, found}, frame=frame, options=options)
    return frame.copy(deep=False), options


def forget_plaintext(**_signal) -> None:
    """Drop the last parse and the last decrypted upload (:mod:`ingestion.storage`): called
    when each request and each Celery task ends, so decrypted personal data never outlives
    the request or task that needed it."""
    from ingestion.storage import forget_plaintext as forget_stored

    with _LAST_READ_LOCK:
        _LAST_READ.clear()
    forget_stored()


def check_header(columns) -> None:
    """TableReadError when a column name or the whole header is longer than the platform
    allows: every mapping page, form and API answer lists the names (an 8 MB name made each
    of them 8 MB)."""
    from ml_core.tables import TableReadError

    name_limit = int(settings.TESSERA_MAX_COLUMN_NAME_CHARS)
    header_limit = int(settings.TESSERA_MAX_HEADER_CHARS)
    for position, column in enumerate(columns, start=1):
        if len(str(column)) > name_limit:
            raise TableReadError(
                "column_name_too_long",
                f"Column {position}'s name is {len(str(column)):,} characters long; the limit "
                f"is {name_limit:,} (TESSERA_MAX_COLUMN_NAME_CHARS). Shorten it and upload "
                "again.", column=str(column)[:80])
    total = sum(len(str(column)) for column in columns)
    if total > header_limit:
        raise TableReadError(
            "header_too_long",
            f"The column names add up to {total:,} characters; the limit is "
            f"{header_limit:,} (TESSERA_MAX_HEADER_CHARS).")


def _suggestions(frame: pd.DataFrame, spec: ProblemSpec) -> dict:
    """The suggested mapping and the flagged identifiers of a table, as model fields.

    Identifier columns are suggested as excluded; confirm_mapping enforces it.
    """
    from ml_core.identifiers import exclude_identifiers, find_identifiers
    from ml_core.validation import suggest_mapping

    findings = [finding.to_dict() for finding in find_identifiers(frame)]
    suggested, _ = exclude_identifiers(suggest_mapping(frame, spec),
                                       [item["column"] for item in findings])
    return {"suggested_mapping": suggested.to_dict(), "identifiers": findings}


def _read_upload(data: bytes, *, spec: ProblemSpec, sep: str | None, header: bool | None) -> dict:
    """Model fields for a fresh version: pending with columns, or rejected with errors."""
    from ml_core.tables import TableReadError

    if image_uploads.reads_archives(spec):
        return _read_image_upload(data, spec=spec)
    try:
        frame, options = read_upload_table(data, sep=sep, header=header, reuse=False)
    except TableReadError as exc:
        return {
            "status": DatasetVersion.Status.REJECTED,
            "errors": [{**_issue(exc.code, exc.message), **exc.to_dict()}],
            "read_options": _forced_options(sep, header),
        }
    except Exception as exc:  # a reader bug must not become a 500: keep the report instead
        logger.exception("reading an upload failed")
        return {
            "status": DatasetVersion.Status.REJECTED,
            "errors": [_issue("unreadable", f"the file could not be read as a table: {exc}")],
            "read_options": _forced_options(sep, header),
        }
    return {
        "status": DatasetVersion.Status.PENDING,
        "read_options": options.to_dict(),
        "columns": [str(c) for c in frame.columns],
        "warnings": _read_warnings(options.to_dict()),
        **_suggestions(frame, spec),
    }


def _read_image_upload(data: bytes, *, spec: ProblemSpec) -> dict:
    """Model fields for a fresh image ZIP (see :mod:`ingestion.image_uploads`)."""
    try:
        frame, options = image_uploads.read_archive(data, spec)
    except image_uploads.ArchiveRefused as exc:
        return {"status": DatasetVersion.Status.REJECTED,
                "errors": [_issue(exc.code, exc.message)],
                "read_options": {"format": image_uploads.ARCHIVE_FORMAT}}
    visible = companions.visible_columns(frame)
    # The bytes column is internal: no person maps it, and no table check reads it.
    fields = _suggestions(frame[visible], spec)
    internal = [str(c) for c in frame.columns if str(c) not in visible]
    fields["suggested_mapping"]["exclude"] = [
        *fields["suggested_mapping"]["exclude"], *internal]
    return {
        "status": DatasetVersion.Status.PENDING,
        "read_options": options,
        "columns": visible,
        "warnings": _read_warnings(options),
        **fields,
    }


def _issue(code: str, message: str, *, severity: str = "error", column: str | None = None
           ) -> dict:
    return {"code": code, "message": message, "column": column, "rows": [],
            "severity": severity}


def _read_warnings(read_options: dict) -> list[dict]:
    """What reading repaired or converted (thousands separators, dates, names), as warnings."""
    return [_issue("read_note", note, severity="warning")
            for note in (read_options or {}).get("notes") or ()]


def _identifier_warnings(version: DatasetVersion, excluded: list[str]) -> list[dict]:
    allowed = set(version.identifiers_allowed or ())
    warnings = []
    for item in version.identifiers or ():
        column = item["column"]
        if column in excluded:
            warnings.append(_issue(
                "identifier_excluded", f"{item['message']} It is not used for training; "
                "only an admin can allow it.", severity="warning", column=column))
        elif column in allowed:
            warnings.append(_issue(
                "identifier_allowed", f"{item['message']} An admin allowed it as a model "
                "input (see the audit log).", severity="warning", column=column))
    return warnings


def _forced_options(sep: str | None, header: bool | None) -> dict:
    return {
        key: value for key, value in (("delimiter", sep), ("header", header)) if value is not None
    }


def complete_mapping(
    mapping: ColumnMapping, columns: list[str], spec: ProblemSpec | None = None
) -> ColumnMapping:
    """Fill empty ``features`` with every column that has no other role, for a family that
    requires features (tabular problems; the default without a problem).

    Other task families read ``features`` in their own way (forecasting: extra covariates;
    remaining useful life: the sensor channels, numeric only), so for them an empty list
    stays empty and the family chooses.
    """
    if mapping.features or not family_of(spec).requires(ColumnRole.FEATURE):
        return mapping
    taken = {mapping.target, mapping.id, *mapping.sensitive, *mapping.exclude,
             *(column for _, column in mapping.roles)}
    return replace(mapping, features=tuple(
        c for c in columns if c not in taken and not c.startswith(companions.INTERNAL_PREFIX)))


def _with_test_target(mapping: ColumnMapping, version: DatasetVersion) -> ColumnMapping:
    """A given test set with true values fills a target column: name it when the mapping
    names none."""
    spec = problem_spec(version.dataset.vertical, version.dataset.problem)
    if mapping.target or not companions.needs_truth(spec) or not version.companions.filter(
            kind=CompanionFile.Kind.TEST_TRUTH).exists():
        return mapping
    return replace(mapping, target=companions.DEFAULT_TEST_TARGET)


def confirm_mapping(*, version: DatasetVersion, user, mapping: ColumnMapping) -> DatasetVersion:
    """Validate the version under ``mapping``: ``validated`` with a profile, or ``rejected``.

    A version is decided once; PermissionDenied for another organisation's version,
    ValueError when it is not awaiting a mapping.
    """
    membership = member_of(user, version.dataset)
    if version.status != DatasetVersion.Status.PENDING:
        raise ValueError(
            f"version {version.number} is already {version.get_status_display().lower()}; "
            "upload the file again to map it differently"
        )
    from ml_core.identifiers import exclude_identifiers
    from ml_core.profiling import profile
    from ml_core.tables import ColumnCodes
    from ml_core.validation import validate

    spec = problem_spec(version.dataset.vertical, version.dataset.problem)
    mapping = _with_test_target(mapping, version)
    if image_uploads.is_archive_options(version.read_options):
        mapping = image_uploads.with_internal_excluded(mapping, version.suggested_mapping)
    try:
        frame = load_frame(version, mapping=mapping)
    except ValueError as exc:  # companion files that do not fit this mapping
        frame = None
        issues = [_issue("companion_mismatch", str(exc))]
    # Direct identifiers never reach a model unless an admin allowed them, whatever the
    # analyst mapped.
    mapping, excluded = exclude_identifiers(mapping, version.blocked_identifiers)
    if frame is not None:
        mapping = complete_mapping(mapping, [str(c) for c in frame.columns], spec)
        # The checks and the profile share each text column's factorisation.
        codes = ColumnCodes(frame)
        issues = [issue.to_dict() for issue in validate(frame, mapping, spec, codes=codes)]
    issues = (_read_warnings(version.read_options) + _identifier_warnings(version, excluded)
              + issues)
    errors = [issue for issue in issues if issue.get("severity", "error") == "error"]
    warnings = [issue for issue in issues if issue.get("severity", "error") != "error"]
    version.mapping = mapping.to_dict()
    version.errors = errors
    version.warnings = warnings
    if errors:
        version.status = DatasetVersion.Status.REJECTED
    else:
        version.status = DatasetVersion.Status.VALIDATED
        version.profile = profile(frame[companions.visible_columns(frame)], mapping, spec,
                                  codes=codes)
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


def _read_stored(stored_path: str, options: dict | None, spec: ProblemSpec | None = None
                 ) -> pd.DataFrame:
    options = options or {}
    if image_uploads.is_archive_options(options) and spec is not None:
        frame, _ = image_uploads.read_archive(read_stored(stored_path), spec)
        return frame
    frame, _ = read_upload_table(
        read_stored(stored_path),
        sep=options.get("delimiter"),
        header=options.get("header"),
        encoding=options.get("encoding"),
    )
    return frame


def load_frame(version: DatasetVersion, *, mapping: ColumnMapping | None = None,
               files_pending: bool = False) -> pd.DataFrame:
    """Re-read a stored version exactly as it was read at upload, with its companion files.

    Attributes are joined on the mapping's user or student (or unit) column; a given test
    set with its true values is attached by the problem's family (rows marked as test).
    ``mapping`` defaults to the confirmed one, else the suggested one. ValueError when the
    companions do not fit the mapping (a test set without unit and cycle columns, true
    values for another number of units, a test file without the training file's columns).
    ``files_pending``: more files may still come, so series cut before failure wait for
    their true values instead of being refused.
    """
    spec = problem_spec(version.dataset.vertical, version.dataset.problem)
    frame = _read_stored(version.stored_path, version.read_options, spec)
    stored = {companion.kind: companion for companion in version.companions.all()}
    if not stored:
        return frame
    if mapping is None:
        mapping = ColumnMapping.from_dict(
            version.mapping or version.suggested_mapping or {"target": ""})
    attributes = stored.get(CompanionFile.Kind.ATTRIBUTES)
    on = companions.entity_column(mapping, spec)
    if attributes is not None and on and on in frame.columns:
        frame = companions.merge_attributes(
            frame, _read_stored(attributes.stored_path, attributes.read_options),
            on=on, key=attributes.key_column)
    catalogue = stored.get(CompanionFile.Kind.CATALOGUE)
    if catalogue is not None:
        frame = companions.attach_catalogue(
            frame, _read_stored(catalogue.stored_path, catalogue.read_options),
            key=catalogue.key_column, mapping=mapping)
    test_set = stored.get(CompanionFile.Kind.TEST_SET)
    truth = stored.get(CompanionFile.Kind.TEST_TRUTH)
    if test_set is not None and truth is not None:
        frame = companions.attach_test(
            frame, _read_stored(test_set.stored_path, test_set.read_options),
            _read_stored(truth.stored_path, truth.read_options), mapping=mapping, spec=spec)
    elif test_set is not None and companions.takes_labelled_test(spec):
        frame = companions.attach_labelled(
            frame, _read_stored(test_set.stored_path, test_set.read_options), spec=spec,
            mapping=mapping, truth_may_follow=files_pending)
    return frame


COMPANION_LABELS = {
    CompanionFile.Kind.ATTRIBUTES: "an attributes file",
    CompanionFile.Kind.TEST_SET: "a given test set",
    CompanionFile.Kind.TEST_TRUTH: "true values for a given test set",
    CompanionFile.Kind.CATALOGUE: "an item catalogue",
}


def _companion_refusal(kind: str, spec: ProblemSpec, present: set[str]) -> str | None:
    """Why ``spec`` cannot take a companion of ``kind`` now; None when it can."""
    if kind == CompanionFile.Kind.ATTRIBUTES:
        if not companions.supports_attributes(spec):
            return (f"{spec.name} takes no attributes file: it has no user or student "
                    "column to join one on; put the attributes in the main file instead.")
        return None
    if kind == CompanionFile.Kind.CATALOGUE:
        if not companions.takes_catalogue(spec):
            return (f"{spec.name} takes no item catalogue: it recommends no items.")
        return None
    if not companions.takes_test_set(spec):
        return (f"{spec.name} takes no given test set: its test split is drawn from the "
                "uploaded data itself, so upload the test rows with the rest.")
    if kind == CompanionFile.Kind.TEST_TRUTH and not companions.needs_truth(spec):
        return (f"{spec.name} takes no file of true values: its given test file carries its "
                "own target column.")
    if kind == CompanionFile.Kind.TEST_TRUTH and CompanionFile.Kind.TEST_SET not in present:
        return "Attach the test set before its true values."
    return None


def _require_pending_of(version: DatasetVersion, membership, why: str) -> None:
    """PermissionDenied unless ``version`` is the member's organisation's; ValueError, ending
    with ``why``, unless its mapping is still to be confirmed."""
    if membership.organisation_id != organisation_id_of(version.dataset):
        raise PermissionDenied("this dataset belongs to another organisation")
    if version.status != DatasetVersion.Status.PENDING:
        raise ValueError(f"version {version.number} is already "
                         f"{version.get_status_display().lower()}; {why}")


def attach_companion(
    *,
    version: DatasetVersion,
    user,
    kind: str,
    file,
    sep: str | None = None,
    header: bool | None = None,
) -> CompanionFile:
    """Store a second file with a version still awaiting its mapping (see
    :class:`ingestion.models.CompanionFile`), hashed like the main one.

    The version's columns and suggested mapping are recomputed on the combined table, so an
    attributes file's columns can be mapped (sensitive ones suggested). UploadError when the
    problem takes no such file, the file is unreadable or too large, or it does not fit;
    PermissionDenied for another organisation's version; ValueError when the version is
    no longer pending.
    """
    from ml_core.tables import TableReadError

    membership = membership_for(user)
    _require_pending_of(version, membership, "files can only be added before the mapping "
                        "is confirmed")
    if kind not in CompanionFile.Kind.values:
        raise UploadError(f"unknown kind of file {kind!r}")
    spec = problem_spec(version.dataset.vertical, version.dataset.problem)
    present = set(version.companions.values_list("kind", flat=True))
    refusal = _companion_refusal(kind, spec, present)
    if refusal is None and kind in present:
        refusal = f"This version already has {COMPANION_LABELS[kind]}."
    if refusal:
        raise UploadError(refusal, [{"code": "companion_refused", "message": refusal}])
    filename = Path(getattr(file, "name", "") or kind).name
    try:
        stored = store_upload(
            file, organisation_id=membership.organisation_id,
            max_bytes=settings.TESSERA_MAX_UPLOAD_BYTES,
        )
    except UploadTooLarge as exc:
        raise UploadError(str(exc), [{"code": "file_too_large", "message": str(exc)}]) from None
    try:
        table, options = read_upload_table(read_stored(stored.relative_path), sep=sep,
                                           header=header, reuse=False)
    except TableReadError as exc:
        message = f"{filename}: {exc.message}"
        raise UploadError(message, [_issue(exc.code, message)]) from None
    columns = [str(c) for c in table.columns]
    key = ""
    if kind == CompanionFile.Kind.ATTRIBUTES:
        suggested = ColumnMapping.from_dict(version.suggested_mapping or {"target": ""})
        key = companions.attributes_key(columns, companions.entity_column(suggested, spec))
    elif kind == CompanionFile.Kind.CATALOGUE:
        suggested = ColumnMapping.from_dict(version.suggested_mapping or {"target": ""})
        key = companions.attributes_key(columns, suggested.role("item"))
    with transaction.atomic():
        companion = CompanionFile.objects.create(
            version=version, kind=kind, original_filename=filename[:255],
            stored_path=stored.relative_path, sha256=stored.sha256,
            size_bytes=stored.size_bytes, read_options=options.to_dict(), columns=columns,
            key_column=key, uploaded_by=user,
        )
        try:
            frame = load_frame(version, files_pending=True)
        except ValueError as exc:  # raised inside atomic(): the companion row is rolled back
            message = f"{filename} does not fit the uploaded table: {exc}"
            raise UploadError(message, [{"code": "companion_mismatch",
                                         "message": message}]) from None
        version.columns = companions.visible_columns(frame)
        fields = _suggestions(frame, spec)
        version.suggested_mapping = fields["suggested_mapping"]
        version.identifiers = fields["identifiers"]
        version.save(update_fields=["columns", "suggested_mapping", "identifiers"])
        log_action(
            organisation=membership.organisation,
            actor=user,
            action="dataset.companion_attached",
            obj=version,
            detail={"kind": kind, "filename": filename, "sha256": stored.sha256,
                    "size_bytes": stored.size_bytes, "key_column": key or None},
        )
    return companion


def set_identifier_allowed(*, version: DatasetVersion, user, column: str, allowed: bool,
                           reason: str) -> DatasetVersion:
    """An admin's decision that a flagged identifier column may (or may not) be a model
    input, recorded in the audit log with its reason.

    Decided before the mapping is confirmed, like the rest of the mapping. PermissionDenied
    for anyone but an admin of the version's organisation; ValueError when the version is
    no longer pending, the column is not flagged, or the reason is blank.
    """
    membership = require_role(user, Role.ADMIN)
    _require_pending_of(version, membership, "identifier columns are decided before the "
                        "mapping is confirmed")
    finding = next((item for item in version.identifiers or () if item["column"] == column),
                   None)
    if finding is None:
        raise ValueError(f"column {column!r} is not flagged as an identifier")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required: say why this identifier may be used")
    with transaction.atomic():
        locked = DatasetVersion.objects.select_for_update().get(pk=version.pk)
        current = [c for c in locked.identifiers_allowed or () if c != column]
        locked.identifiers_allowed = [*current, column] if allowed else current
        # The suggestion excluded the column for being an identifier: follow the decision.
        suggested = dict(locked.suggested_mapping or {})
        excluded = [c for c in suggested.get("exclude") or () if c != column]
        suggested["exclude"] = excluded if allowed else [*excluded, column]
        locked.suggested_mapping = suggested
        locked.save(update_fields=["identifiers_allowed", "suggested_mapping"])
        log_action(
            organisation=membership.organisation, actor=user,
            action="dataset.identifier_allowed" if allowed else "dataset.identifier_blocked",
            obj=locked,
            detail={"column": column, "kind": finding["kind"], "evidence": finding["evidence"],
                    "reason": reason},
        )
    version.identifiers_allowed = locked.identifiers_allowed
    version.suggested_mapping = locked.suggested_mapping
    return version


def save_codebook(*, version: DatasetVersion, user, codebook, source: str) -> DatasetVersion:
    """Store a version's display names and value labels (an ``ingestion.codebook.Codebook``
    already validated), and say in the audit log what changed, in words.

    Any member of the version's organisation, at any status (as the mapping): names are
    presentation only, so renaming never touches the file, the mapping or a result.
    ``source`` is where the change came from ("the form", a codebook file's name).
    """
    membership = member_of(user, version.dataset)
    with transaction.atomic():
        locked = DatasetVersion.objects.select_for_update().get(pk=version.pk)
        said = changes(Codebook.of(locked), codebook)
        if not said:
            return locked
        stored = codebook.to_dict()
        locked.column_names, locked.value_labels = stored["column_names"], stored["value_labels"]
        locked.save(update_fields=["column_names", "value_labels"])
        log_action(organisation=membership.organisation, actor=user,
                   action="dataset.codebook_changed", obj=locked,
                   detail={"changes": said, "source": source})
    version.column_names, version.value_labels = locked.column_names, locked.value_labels
    return version
