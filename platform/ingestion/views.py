"""Datasets: list, upload, column mapping and a version's page with its profile."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts import scoping
from accounts.models import Role
from accounts.permissions import has_role
from catalog.families import family_of
from ingestion import contact_sheets, services
from ingestion.codebook import (
    MAX_CODEBOOK_BYTES,
    MAX_CODED_VALUES,
    Codebook,
    CodebookError,
    parse_codebook,
)
from ingestion.forms import (
    TASK_ROLE_LABELS,
    CodebookForm,
    CodebookUploadForm,
    MappingForm,
    UploadForm,
    roles_from_mapping,
)
from ingestion.models import Dataset, DatasetVersion
from ingestion.storage import decrypted_png_response
from ml_core.column_types import infer_column_type
from ml_core.data import label_text
from ml_core.spec import ColumnRole
from training.forms import TrainForm
from verticals import registry


def _problem_or_404(vertical: str, problem: str):
    try:
        return registry.get_vertical(vertical), registry.get_problem(vertical, problem)
    except registry.RegistryError:
        raise Http404("no such problem") from None


def _version_or_404(user, version_id: int) -> DatasetVersion:
    versions = scoping.for_user(
        DatasetVersion.objects.select_related("dataset"), user
    )
    return get_object_or_404(versions, pk=version_id)


# Re-reading a big file only to show sample values would make the page slow.
SAMPLE_READ_MAX_BYTES = 20 * 1024 * 1024
SAMPLE_VALUES = 4
# A target with more labels than this is numeric or free text: no positive-class checkboxes.
MAX_LABEL_CHOICES = 30


def _sample_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_option_rows(options: dict) -> list[tuple[str, str]]:
    """How the file was read, for people: the delimiter shown unambiguously."""
    names = {"\t": "tab", " ": "spaces", ",": "comma", ";": "semicolon", "|": "pipe"}
    rows = []
    for key, value in (options or {}).items():
        if key == "archive":  # an image ZIP's profile: the page's Images section shows it
            continue
        if key == "delimiter":
            value = names.get(value, repr(value))
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            if not value:
                continue
            value = "; ".join(str(v) for v in value)
        rows.append((key.replace("_", " "), str(value)))
    return rows


def _column_rows(version: DatasetVersion) -> list[dict]:
    """Columns as {name, dtype, samples}; samples and types from the stored file when small."""
    names = [str(c) for c in version.columns or []]
    frame = None
    if version.size_bytes <= SAMPLE_READ_MAX_BYTES:
        try:
            frame = services.load_frame(version, files_pending=True)
        except Exception:  # samples are a convenience: the mapping works without them
            frame = None
    rows = []
    for name in names:
        if frame is not None and name in frame.columns:
            column = frame[name]
            samples = [_sample_text(v) for v in column.dropna().unique()[:SAMPLE_VALUES]]
            kind = infer_column_type(column)
            labels = column.dropna().map(label_text).unique()
            rows.append({"name": name, "dtype": kind.kind, "why": kind.reason,
                         "samples": samples,
                         "labels": sorted(labels) if len(labels) <= MAX_LABEL_CHOICES else []})
        else:
            rows.append({"name": name, "dtype": "", "why": "", "samples": [], "labels": []})
    return rows


def dataset_list(request):
    datasets = scoping.for_user(Dataset.objects.all(), request.user).prefetch_related("versions")
    return render(request, "ingestion/dataset_list.html", {"datasets": datasets})


@require_http_methods(["GET", "POST"])
def upload(request, vertical: str, problem: str):
    vert, prob = _problem_or_404(vertical, problem)
    dataset = None
    if request.GET.get("dataset"):
        dataset = scoping.get_scoped_or_404(Dataset, request.user, pk=request.GET["dataset"],
                                            vertical=vertical, problem=problem)
    upload_error = None
    form = UploadForm(request.POST or None, request.FILES or None, spec=prob.spec,
                      initial={"name": dataset.name if dataset else ""})
    if request.method == "POST" and form.is_valid():
        try:
            version = services.upload_dataset(
                user=request.user, vertical=vertical, problem=problem,
                file=form.cleaned_data["file"], name=form.cleaned_data["name"],
                dataset=dataset, **form.read_options(),
            )
        except services.UploadError as exc:
            upload_error = exc
        else:
            if version.status == DatasetVersion.Status.REJECTED:
                messages.error(request, "The file could not be read; see the error report.")
                return redirect("dataset_version", version_id=version.pk)
            for kind, file in form.companion_files():
                try:
                    services.attach_companion(version=version, user=request.user, kind=kind,
                                              file=file)
                except services.UploadError as exc:
                    # The main file is stored: map it, or upload again with a fitting file.
                    messages.error(request, f"{file.name} was not added: {exc.message}")
            return redirect("dataset_mapping", version_id=version.pk)
    refused = upload_error is not None or (request.method == "POST" and form.errors)
    return render(request, "ingestion/upload.html", {
        "vertical": vert, "problem": prob, "form": form, "dataset": dataset,
        "upload_error": upload_error,
    }, status=400 if refused else 200)


@require_http_methods(["GET", "POST"])
def mapping(request, version_id: int):
    version = _version_or_404(request.user, version_id)
    if version.status != DatasetVersion.Status.PENDING:
        messages.info(request, "This version's mapping is already confirmed.")
        return redirect("dataset_version", version_id=version.pk)
    spec = _spec_or_none(version)
    columns = _column_rows(version)
    names = [c["name"] for c in columns]
    suggested = version.mapping or version.suggested_mapping or {}
    target = next((c for c in columns if c["name"] == suggested.get("target")), None)
    target_labels = target["labels"] if target and len(target["labels"]) > 2 else []
    form = MappingForm(request.POST or None, columns=names, spec=spec,
                       initial_roles=_initial_roles(columns, suggested, spec),
                       initial={"positive_label": suggested.get("positive_label") or ""},
                       suggested=suggested, target_labels=target_labels,
                       inferred_kinds={c["name"]: c["dtype"] for c in columns if c["dtype"]})
    if request.method == "POST" and form.is_valid():
        try:
            version = services.confirm_mapping(version=version, user=request.user,
                                               mapping=form.mapping())
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("dataset_version", version_id=version.pk)
        if version.status == DatasetVersion.Status.VALIDATED:
            messages.success(request, "Mapping confirmed: the data is valid for training.")
        else:
            messages.error(request, "The data did not pass validation; see the errors below.")
        return redirect("dataset_version", version_id=version.pk)
    shown = Codebook.of(version)
    rows = [{**column, "field": field, "type_field": type_field,
             "display": shown.column(column["name"]),
             "samples": [shown.value(column["name"], v) for v in column["samples"]]}
            for column, field, type_field in zip(columns, form.role_fields(),
                                                 form.type_fields(), strict=True)]
    return render(request, "ingestion/mapping.html", {
        "version": version, "dataset": version.dataset, "form": form, "rows": rows,
        "spec": spec, "companions": version.companions.all(),
        "task_roles": [label for value, label in form.choices if value in TASK_ROLE_LABELS],
        "offers_features": any(value == "feature" for value, _ in form.choices),
        "identifiers": _identifier_rows(version),
        "can_allow_identifiers": has_role(request.user, Role.ADMIN),
        "codebook_form": _codebook_form(version, columns=columns),
        "codebook_upload_form": CodebookUploadForm(prefix="codebook"),
    })


def _identifier_rows(version: DatasetVersion) -> list[dict]:
    allowed = set(version.identifiers_allowed or ())
    shown = Codebook.of(version)
    return [{**item, "allowed": item["column"] in allowed, "display": shown.column(item["column"])}
            for item in version.identifiers or ()]


@require_http_methods(["POST"])
def identifier_decision(request, version_id: int):
    """An admin allows a flagged identifier column as a model input, or blocks it again."""
    version = _version_or_404(request.user, version_id)
    try:
        services.set_identifier_allowed(
            version=version, user=request.user, column=request.POST.get("column", ""),
            allowed=request.POST.get("allowed") == "1", reason=request.POST.get("reason", ""))
    except PermissionDenied:
        raise
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Decision recorded in the audit log.")
    if version.status == DatasetVersion.Status.PENDING:
        return redirect("dataset_mapping", version_id=version.pk)
    return redirect("dataset_version", version_id=version.pk)


def _spec_or_none(version: DatasetVersion):
    try:
        return registry.get_problem(version.dataset.vertical, version.dataset.problem).spec
    except registry.RegistryError:
        return None


def _initial_roles(columns: list[dict], suggested: dict, spec) -> dict[str, str]:
    """Each column's role as suggested; unsuggested columns are features where the model
    reads features (numeric ones only for sensor series), else not used."""
    names = [c["name"] for c in columns]
    family = family_of(spec)
    default = "feature" if family.reads(ColumnRole.FEATURE) else "exclude"
    roles = roles_from_mapping(names, suggested, default=default)
    if family.numeric_features_only:
        assigned = roles_from_mapping(names, suggested, default="")
        for column in columns:
            if not assigned[column["name"]] and column["dtype"] == "text":
                roles[column["name"]] = "exclude"
    return roles


def version_detail(request, version_id: int):
    version = _version_or_404(request.user, version_id)
    dataset = version.dataset
    try:
        problem = registry.get_problem(dataset.vertical, dataset.problem)
    except registry.RegistryError:
        problem = None
    train_form = None
    if version.trainable and problem is not None:
        spec = problem.spec
        train_form = TrainForm(initial={
            "privacy_enabled": spec.privacy.enabled,
            "target_epsilon": spec.privacy.target_epsilon, "seed": spec.train.seed,
        })
    shown = Codebook.of(version)
    profile = shown.profile(version.profile)
    return render(request, "ingestion/version.html", {
        "image_profile": contact_sheets.image_profile(version),
        "version": version, "dataset": dataset, "problem": problem, "profile": profile,
        "train_form": train_form, "read_options": _read_option_rows(version.read_options),
        "min_group_size": problem.spec.fairness.min_group_size if problem else None,
        "identifiers": _identifier_rows(version),
        "runs": version.runs.all()[:10],
        "other_versions": dataset.versions.exclude(pk=version.pk)[:10],
        "codebook": shown,
        "renamed": [(c, shown.column(c)) for c in version.columns or [] if c in shown.names],
        "labelled": [(shown.column(c), shown.labels[c]) for c in version.columns or []
                     if shown.labels.get(c)],
    })


@require_GET
def version_sample(request, version_id: int, name: str):
    """One thumbnail of an image version's contact sheet: the organisation only, decrypted
    for this answer, never cached."""
    version = _version_or_404(request.user, version_id)
    try:
        png = contact_sheets.sample_png(version, name)
    except FileNotFoundError:
        raise Http404("no such sample") from None
    return decrypted_png_response(png)


def _codebook_columns(version: DatasetVersion, columns: list[dict] | None = None) -> list[dict]:
    """Each column with the codes a label box is offered for: its distinct values when it
    has few (``MAX_CODED_VALUES``), read from the stored file."""
    rows = columns if columns is not None else _column_rows(version)
    return [{"name": row["name"],
             "codes": row["labels"] if len(row["labels"]) <= MAX_CODED_VALUES else []}
            for row in rows]


def _codebook_form(version: DatasetVersion, data=None, columns: list[dict] | None = None
                   ) -> CodebookForm:
    return CodebookForm(data, columns=_codebook_columns(version, columns),
                        codebook=Codebook.of(version), prefix="names")


@require_http_methods(["GET", "POST"])
def codebook(request, version_id: int):
    """Display names and value labels: typed in the form, or read from a codebook file.
    Bad input is answered with every problem and saves nothing."""
    version = _version_or_404(request.user, version_id)
    back = "dataset_mapping" if (request.POST.get("next") or request.GET.get("next")) \
        == "mapping" and version.status == DatasetVersion.Status.PENDING else "dataset_version"
    action = request.POST.get("action")
    errors: list[str] = []
    upload_form = CodebookUploadForm(request.POST if action == "upload" else None,
                                     request.FILES if action == "upload" else None,
                                     prefix="codebook")
    form = _codebook_form(version, request.POST if action == "names" else None)
    if request.method == "POST":
        current, columns = Codebook.of(version), version.columns or []
        try:
            if action == "upload":
                if not upload_form.is_valid():
                    raise CodebookError(["choose a codebook file (CSV) to upload"])
                file = upload_form.cleaned_data["file"]
                # One byte more than allowed is enough to refuse a file that is too big.
                new = parse_codebook(file.read(MAX_CODEBOOK_BYTES + 1), columns=columns,
                                     current=current)
                source = file.name
            elif action == "names":
                new, source = form.codebook(columns=columns, current=current), "the form"
            else:
                raise CodebookError(["nothing to save: send the names form or a codebook"])
            services.save_codebook(version=version, user=request.user, codebook=new,
                                   source=source)
        except CodebookError as exc:
            errors = exc.errors
        else:
            messages.success(request, "Names and labels saved; every page now shows them.")
            return redirect(back, version_id=version.pk)
    return render(request, "ingestion/codebook.html", {
        "version": version, "dataset": version.dataset, "form": form,
        "upload_form": upload_form, "errors": errors, "next": "mapping"
        if back == "dataset_mapping" else "version",
    }, status=400 if errors else 200)
