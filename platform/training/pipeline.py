"""One table from a file to an audited model, through the services the web and the API use.

:func:`run_pipeline` uploads a file (a ZIP of images with its labels CSV put inside),
attaches its second files (attributes, a given test set and its true values, a public
catalogue), allows the direct identifiers asked for, lays the given roles over the
suggested mapping and confirms it, starts a run (in this process or on a worker, waiting
for it) and writes its predictions; it answers the JSON-ready summary ``manage.py
pipeline`` prints. A refusal at any step ends it with :class:`PipelineFailed`, whose
``body`` holds the errors (and the dataset or run as far as they got).

The request carries the arguments as the command line gave them (``ROLE=COL``,
``KEY=VALUE``, ``'<10'``): each is read at the step that needs it, so a refusal names the
step it belongs to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
import zipfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.db import transaction
from django.utils.text import slugify

from accounts.models import Membership, Organisation, Role
from ingestion.image_uploads import with_labels
from ingestion.models import CompanionFile, DatasetVersion
from ingestion.services import (
    UploadError,
    attach_companion,
    confirm_mapping,
    set_identifier_allowed,
    upload_dataset,
)
from ml_core.spec import TABULAR_ROLES, ColumnMapping, TargetRule
from training.models import TrainingRun
from training.options import OPTION_RANGES, OVERRIDABLE
from training.predictions import predictions_csv
from training.services import execute_run, start_run
from verticals.registry import get_problem

SYSTEM_USER = "pipeline"
SYSTEM_ORGANISATION = "cli"
PRIVACY_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant")
# ROLE=COL: "label" is the text problems' word for the target.
ROLE_ALIASES = {"label": "target"}
TASK_ROLES = ("series", "time", "covariate", "user", "item", "student", "skill", "unit",
              "cycle", "text", "privacy_unit", "image")
ROLES = (*sorted(r.value for r in TABULAR_ROLES), *TASK_ROLES)
SINGLE_ROLES = ("target", "id", "time", "user", "item", "student", "skill", "unit", "cycle",
                "text", "privacy_unit", "image")


class PipelineFailed(Exception):
    """A refusal that ends the pipeline; ``body`` is what to print."""

    def __init__(self, body: dict) -> None:
        super().__init__(body.get("errors"))
        self.body = body


class UnknownUser(ValueError):
    """The user named to run the pipeline cannot run it (missing, or in no organisation)."""


@dataclasses.dataclass(frozen=True)
class PipelineRequest:
    """What to upload, map and train, as the command line gave it."""

    file: Path
    vertical: str
    problem: str
    target: str | None = None
    id_column: str | None = None
    column: tuple[str, ...] = ()  # ROLE=COL
    sensitive: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    attributes: Path | None = None
    test_file: Path | None = None
    test_truth: Path | None = None
    catalogue: Path | None = None
    labels: Path | None = None
    horizon: int | None = None
    train_options: tuple[str, ...] = ()  # KEY=VALUE
    positive_labels: tuple[str, ...] = ()
    column_types: tuple[str, ...] = ()  # COL=KIND
    target_rule: str | None = None  # '<10', '>=10', 'none'
    epsilon: float | None = None
    # True or False as asked; None: the problem's default (on for data about people).
    privacy: bool | None = None
    delta: float | None = None
    sep: str | None = None
    no_header: bool = False
    seed: int = 0
    epochs: int | None = None
    inline: bool = False
    timeout: float = 3600.0
    predictions_out: Path | None = None
    allow_identifiers: tuple[str, ...] = ()
    validate_only: bool = False
    user: str | None = None
    organisation: str | None = None


def run_pipeline(request: PipelineRequest) -> dict:
    """Upload, validate, map, train and audit ``request``'s table: the summary of the
    dataset, the run and the model version (the dataset alone with ``validate_only``).
    :class:`PipelineFailed` on a refusal; :class:`UnknownUser` for a user who cannot run it."""
    path = request.file
    if not path.is_file():
        raise PipelineFailed({"errors": [{"code": "not_found",
                                          "message": f"no such file: {path}"}]})
    user = pipeline_user(request.user, request.organisation)
    try:
        with _upload_file(path, request.labels) as handle:
            version = upload_dataset(
                user=user, vertical=request.vertical, problem=request.problem,
                file=File(handle, name=path.name), name=path.stem, sep=request.sep,
                header=False if request.no_header else None,
            )
    except UploadError as exc:
        raise PipelineFailed({"errors": exc.errors}) from None
    if version.status == DatasetVersion.Status.REJECTED:
        raise PipelineFailed({"errors": version.errors, "dataset": dataset_summary(version)})
    given = given_roles(request)
    attach_companions(version, user=user, request=request)
    version.refresh_from_db()
    version = allow_identifiers(version, user=user, columns=request.allow_identifiers)
    mapping = mapping_from(version.suggested_mapping or {}, given,
                           positive_labels=request.positive_labels,
                           column_types=parse_column_types(request.column_types),
                           target_rule=parse_target_rule(request.target_rule, version))
    version = confirm_mapping(version=version, user=user, mapping=mapping)
    if version.status == DatasetVersion.Status.REJECTED:
        raise PipelineFailed({"errors": version.errors, "dataset": dataset_summary(version)})
    if request.validate_only:
        return {"dataset": dataset_summary(version)}

    run = start_training(version, user=user, request=request)
    if request.inline:
        execute_run(run.pk)
    else:
        wait_for_run(run, timeout=request.timeout)
    run.refresh_from_db()
    if request.predictions_out is not None and run.status == TrainingRun.Status.SUCCEEDED:
        # Decrypted for the operator who asked for them (the stored copy stays encrypted).
        request.predictions_out.parent.mkdir(parents=True, exist_ok=True)
        request.predictions_out.write_bytes(predictions_csv(run.artifact_path))
    return {
        "dataset": dataset_summary(version),
        "run": run_summary(run),
        "model_version": model_version_summary(run),
    }


def attach_companions(version: DatasetVersion, *, user, request: PipelineRequest) -> None:
    """The second files, through the same service as the UI; refusals end the pipeline."""
    if request.test_truth is not None and request.test_file is None:
        raise _refused("--test-truth needs --test-file: the true values belong to a "
                       "given test set")
    files = ((CompanionFile.Kind.ATTRIBUTES, request.attributes),
             (CompanionFile.Kind.TEST_SET, request.test_file),
             (CompanionFile.Kind.TEST_TRUTH, request.test_truth),
             (CompanionFile.Kind.CATALOGUE, request.catalogue))
    for kind, path in files:
        if path is None:
            continue
        if not path.is_file():
            raise PipelineFailed({"errors": [{"code": "not_found",
                                              "message": f"no such file: {path}"}]})
        try:
            with path.open("rb") as handle:
                attach_companion(version=version, user=user, kind=kind,
                                 file=File(handle, name=path.name))
        except UploadError as exc:
            raise PipelineFailed({"errors": exc.errors, "dataset": dataset_summary(version)}
                                 ) from None


def allow_identifiers(version: DatasetVersion, *, user, columns) -> DatasetVersion:
    """``version`` with each of ``columns`` (flagged as direct identifiers) allowed as a
    model input; refused unless ``user`` may (an admin; audited)."""
    for column in columns:
        try:
            version = set_identifier_allowed(
                version=version, user=user, column=column, allowed=True,
                reason="allowed with manage.py pipeline --allow-identifier")
        except (ValueError, PermissionDenied) as exc:
            raise PipelineFailed({"errors": [{"code": "identifier_refused",
                                              "message": f"--allow-identifier {column}: "
                                                         f"{exc}"}],
                                  "dataset": dataset_summary(version)}) from None
    return version


def start_training(version: DatasetVersion, *, user, request: PipelineRequest) -> TrainingRun:
    """Start the run ``request`` asks for on the confirmed ``version`` (queued for a worker
    unless ``inline``); refused before any run exists with :class:`PipelineFailed`."""
    config = {**parse_train_options(request.train_options), "seed": request.seed}
    if request.epochs is not None:
        config["epochs"] = request.epochs
    if request.horizon is not None:
        config["horizon"] = request.horizon
    try:
        with transaction.atomic():
            return start_run(
                version=version, user=user, privacy_enabled=privacy_enabled(version, request),
                target_epsilon=request.epsilon, delta=request.delta, config=config,
                enqueue=not request.inline,
            )
    except (ValueError, PermissionDenied) as exc:
        # Refused before any run exists: a bad option, the dataset's privacy budget, or
        # a non-private run on personal data without an admin.
        raise PipelineFailed({"errors": [{"code": "run_refused", "message": str(exc)}],
                              "dataset": dataset_summary(version)}) from None


def wait_for_run(run: TrainingRun, *, timeout: float) -> None:
    """Return once a worker has finished ``run``; :class:`PipelineFailed` after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db(fields=["status"])
        if run.is_terminal:
            return
        time.sleep(1.0)
    message = (f"run {run.pk} did not finish within {timeout:.0f} s: is a worker consuming "
               "the 'training' queue?")
    raise PipelineFailed({"errors": [{"code": "timeout", "message": message}],
                          "run": {"id": run.pk, "status": run.status}})


def pipeline_user(username: str | None, organisation: str | None):
    """The user the pipeline runs as: ``username`` (who must belong to an organisation), or
    the system user of ``organisation`` (default :data:`SYSTEM_ORGANISATION`), created with
    its organisation the first time."""
    users = get_user_model()
    if username:
        try:
            user = users.objects.get(username=username)
        except users.DoesNotExist:
            raise UnknownUser(f"no user {username!r}") from None
        if not Membership.objects.filter(user=user).exists():
            raise UnknownUser(f"user {username!r} belongs to no organisation")
        return user
    slug = slugify(organisation or SYSTEM_ORGANISATION)
    organisation_row, _ = Organisation.objects.get_or_create(
        slug=slug, defaults={"name": organisation or SYSTEM_ORGANISATION}
    )
    system_name = SYSTEM_USER if slug == SYSTEM_ORGANISATION else f"{SYSTEM_USER}@{slug}"
    user, created = users.objects.get_or_create(username=system_name)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    membership, _ = Membership.objects.get_or_create(
        # Whoever runs manage.py operates the deployment: the system user administers
        # its own organisation, so an explicit --no-privacy is allowed on personal data
        # (governance asks an admin for that). --user runs under that user's own role.
        user=user, defaults={"organisation": organisation_row, "role": Role.ADMIN}
    )
    if membership.organisation_id != organisation_row.pk:
        raise UnknownUser(f"user {system_name!r} belongs to another organisation")
    return user


@contextlib.contextmanager
def _upload_file(path: Path, labels: Path | None):
    """The file to upload: ``path`` itself, or a ZIP of images with ``labels`` inside."""
    if labels is None:
        with path.open("rb") as handle:
            yield handle
        return
    if not labels.is_file():
        raise PipelineFailed({"errors": [{"code": "not_found",
                                          "message": f"no such file: {labels}"}]})
    try:
        combined = with_labels(path.read_bytes(), labels.read_bytes())
    except zipfile.BadZipFile:
        raise _refused(f"--labels goes with a ZIP of images; {path.name} is not a ZIP") from None
    yield io.BytesIO(combined)


def privacy_enabled(version: DatasetVersion, request: PipelineRequest) -> bool:
    """As asked, else the problem's default (on for data about people, off for machine
    sensors and store-level sales)."""
    if request.privacy is not None:
        return request.privacy
    return get_problem(version.dataset.vertical, version.dataset.problem).spec.privacy.enabled


def _refused(message: str) -> PipelineFailed:
    return PipelineFailed({"errors": [{"code": "bad_arguments", "message": message}]})


def given_roles(request: PipelineRequest) -> list[tuple[str, str]]:
    """(role, column) pairs from --target, --id-column, --sensitive, --exclude, --column."""
    given: list[tuple[str, str]] = []
    if request.target:
        given.append(("target", request.target))
    if request.id_column:
        given.append(("id", request.id_column))
    given += [("sensitive", c) for c in request.sensitive]
    given += [("exclude", c) for c in request.exclude]
    for item in request.column:
        role, sep, column = item.partition("=")
        role = ROLE_ALIASES.get(role.strip().lower(), role.strip().lower())
        if not sep or not column.strip():
            raise _refused(f"--column {item!r}: write ROLE=COLUMN, e.g. --column time=Date")
        if role not in ROLES:
            raise _refused(f"--column {item!r}: unknown role {role!r}; roles: "
                           f"{', '.join(ROLES)}, label")
        given.append((role, column.strip()))
    for role in SINGLE_ROLES:
        columns = [c for r, c in given if r == role]
        if len(set(columns)) > 1:
            raise _refused(f"the {role} role was given {len(set(columns))} columns "
                           f"({', '.join(columns)}); it takes one")
    return given


def mapping_from(suggested: dict, given: list[tuple[str, str]], *,
                 positive_labels: list[str] | tuple[str, ...] = (),
                 column_types: tuple[tuple[str, str], ...] = (),
                 target_rule: TargetRule | None | str = "suggested") -> ColumnMapping:
    """The suggested mapping with the command line's roles laid over it.

    A role given on the command line replaces the suggestion for that role, except
    ``exclude``, which adds to it (suggested exclusions keep target leaks out). A column
    given a role loses any other role the suggestion gave it, so no column has two roles.
    One positive label names the positive class; several group the labels of a
    multi-class target. ``column_types`` add to the suggested ones. ``target_rule``:
    ``"suggested"`` keeps the suggested rule unless another target is given, None uses
    the target as it is.
    """
    base = ColumnMapping.from_dict({"target": "", **suggested})
    named = {column for _, column in given}
    given_roles = {role for role, _ in given}

    def suggestion(role: str) -> list[str]:
        if role == "target":
            columns = [base.target] if base.target else []
        elif role == "id":
            columns = [base.id] if base.id else []
        elif role in ("sensitive", "exclude", "feature"):
            columns = list({"sensitive": base.sensitive, "exclude": base.exclude,
                            "feature": base.features}[role])
        else:
            columns = list(base.role_columns(role))
        return [c for c in columns if c not in named]

    def columns_for(role: str) -> list[str]:
        mine = list(dict.fromkeys(c for r, c in given if r == role))
        if role == "exclude":
            return suggestion(role) + [c for c in mine if c not in suggestion(role)]
        return mine if role in given_roles else suggestion(role)

    task_roles = [role for role, _ in base.roles] + [r for r, _ in given if r in TASK_ROLES]
    roles = tuple((role, column) for role in dict.fromkeys(task_roles)
                  for column in columns_for(role))
    target, ids = columns_for("target"), columns_for("id")
    if target_rule == "suggested":
        # The suggestion's rule was made for the suggested target, not for another one.
        target_rule = base.target_rule if (target[:1] or [""])[0] == base.target else None
    labels = tuple(dict.fromkeys(str(label) for label in positive_labels))
    return ColumnMapping(
        target=target[0] if target else "",
        features=tuple(columns_for("feature")),
        sensitive=tuple(columns_for("sensitive")),
        exclude=tuple(columns_for("exclude")),
        id=ids[0] if ids else None,
        positive_label=labels[0] if len(labels) == 1 else base.positive_label,
        positive_labels=labels if len(labels) > 1 else base.positive_labels or labels,
        roles=roles,
        column_types=tuple({**dict(base.column_types), **dict(column_types)}.items()),
        target_rule=target_rule,
        hierarchies=base.hierarchies,
    )


def parse_column_types(items) -> tuple[tuple[str, str], ...]:
    """--column-type COL=KIND pairs; refused naming the kinds when one is not."""
    from ml_core.column_types import parse_override

    try:
        return tuple(parse_override(item) for item in items)
    except ValueError as exc:
        raise _refused(f"--column-type: {exc}") from None


def parse_target_rule(text: str | None, version: DatasetVersion) -> TargetRule | None | str:
    """--target-rule '<10', '>=10' or 'none' as a rule (labels from the problem's own
    rule); "suggested" when it is not given."""
    if text is None:
        return "suggested"
    text = text.strip().replace(" ", "")
    if text.lower() == "none":
        return None
    for sign, below in (("<", True), (">=", False)):
        if text.startswith(sign) and not (sign == "<" and text.startswith("<=")):
            try:
                threshold = float(text[len(sign):])
            except ValueError:
                break
            problem = get_problem(version.dataset.vertical, version.dataset.problem).spec
            rule = problem.target_rule or TargetRule(threshold=threshold)
            return TargetRule(threshold=threshold, positive_below=below,
                              positive_text=rule.positive_text, negative_text=rule.negative_text)
    raise _refused(f"--target-rule {text!r}: write '<10' (positive below 10), '>=10' "
                   "(positive at or above 10) or 'none'")


def parse_train_options(items) -> dict:
    """--set KEY=VALUE pairs as raw training overrides: the service parses and range-checks
    them with the web's and the API's validation (training.options); a list option
    (hidden_sizes) is comma-separated."""
    config: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in OVERRIDABLE:
            raise _refused(f"--set {item!r}: write KEY=VALUE with KEY one of "
                           f"{', '.join(OVERRIDABLE)}")
        if OPTION_RANGES[key].kind == "sizes":
            config[key] = [v for v in raw.replace(" ", "").split(",") if v]
        else:
            config[key] = raw.strip()
    return config


def dataset_summary(version: DatasetVersion) -> dict:
    return {
        "id": version.dataset_id,
        "version_id": version.pk,
        "version": version.number,
        "status": version.status,
        "sha256": version.sha256,
        "read_options": version.read_options,
        "profile": version.profile,
        "warnings": version.warnings,
        "identifiers": version.identifiers,
        "identifiers_allowed": version.identifiers_allowed,
        "mapping": version.mapping,
    }


def run_summary(run: TrainingRun) -> dict:
    privacy = run.privacy or {}
    result = run.result or {}
    return {
        "id": run.pk,
        "status": run.status,
        "error": run.error or None,
        "device": run.device,
        "task_type": result.get("task_type"),
        "metrics": run.metrics,
        "baseline": result.get("baseline"),
        "references": result.get("references") or {},
        "nonprivate_metrics": result.get("nonprivate_metrics"),
        "split": result.get("split"),
        "notes": result.get("notes") or [],
        "privacy": {key: privacy.get(key) for key in PRIVACY_KEYS} | {
            "enabled": privacy.get("enabled", run.privacy_requested.get("enabled")),
        },
        "fairness": {
            attribute: {key: report.get(key) for key in ("by_group", "disparities", "passed")}
            for attribute, report in (run.fairness or {}).items()
        },
        "artifact_path": run.artifact_path,
    }


def model_version_summary(run: TrainingRun) -> dict | None:
    model_version = getattr(run, "model_version", None)
    if model_version is None:
        return None
    return {"id": model_version.pk, "status": model_version.status}
