"""Upload, validate, train and audit one table from the command line, through the services.

    python manage.py pipeline FILE --vertical V --problem P [--target COL] \\
        [--column ROLE=COL]... [--sensitive COL]... [--exclude COL]... \\
        [--horizon N] [--epochs N] [--set KEY=VALUE]... \\
        [--attributes FILE] [--test-file FILE [--test-truth FILE]] [--labels FILE] \\
        [--catalogue FILE] \\
        [--column-type COL=KIND]... [--positive-label LABEL]... [--target-rule RULE] \\
        [--epsilon E | --privacy | --no-privacy] [--sep S] [--no-header] [--inline] --json \\
        [--predictions-out PATH] [--allow-identifier COL]... [--validate-only]

``--column ROLE=COL`` maps a column to a role: target (or label), id, feature, sensitive,
exclude, or a task role (series, time, covariate, user, item, student, skill, unit, cycle,
text, privacy_unit: the column naming the person, e.g. ``privacy_unit=patient_nbr``, so the
epsilon protects a person with all their rows, not one row); series, covariate, feature,
sensitive and exclude repeat. Roles not given keep the suggested mapping (from the problem's
column-name hints); excluded columns add to the suggested ones (which hold, e.g., the
columns that leak the target). ``--attributes`` joins a per-user or per-student table on
that key before validation, so its columns can be mapped as sensitive; ``--test-file`` gives
a held-out test set with the same columns, target included (forecasting: the later periods
of the same series; sequence problems: other students or units); for remaining useful life
also held-out series cut before failure with ``--test-truth`` (the true values); refused by
problems whose test split comes from the data. ``--catalogue`` (recommendation) declares the item
catalogue public: one item id per row (e.g. a products or restaurants table; the column named
like the item column, else the first); the model's items are then the catalogue's, with no
privacy budget spent on them, and interactions on other items are dropped.
``--column-type COL=KIND`` (categorical, numeric, date, text) overrides an inferred column
type; ``--positive-label`` names the positive class (repeat it to group several labels of a
multi-class outcome); ``--target-rule '<10'`` (or ``'>=10'``, or ``none``) confirms or edits
the threshold a numeric target is cut at (the problem suggests one).
``--labels`` gives the CSV of labels (and group columns) of a ZIP of images (visual
inspection; a ZIP of class folders needs none).
Columns flagged as direct identifiers (names, e-mail, phone, national ids) are kept out of
training; ``--allow-identifier COL`` allows one (the user must be an admin; audited).
``--validate-only`` stops after validation: nothing is trained.

Prints one JSON object on stdout (logging goes to stderr): the dataset, the run (metrics
beside ``baseline``, ``task_type``, ``split``, ``notes``, privacy, fairness) and the model
version. Exit code 1 when a file is refused or the run does not succeed.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import zipfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
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
# --column ROLE=COL: "label" is the text problems' word for the target.
ROLE_ALIASES = {"label": "target"}
TASK_ROLES = ("series", "time", "covariate", "user", "item", "student", "skill", "unit",
              "cycle", "text", "privacy_unit", "image")
ROLES = (*sorted(r.value for r in TABULAR_ROLES), *TASK_ROLES)
SINGLE_ROLES = ("target", "id", "time", "user", "item", "student", "skill", "unit", "cycle",
                "text", "privacy_unit", "image")


class PipelineFailed(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__(body.get("errors"))
        self.body = body


def _require_migrated_database() -> None:
    """On a fresh checkout the database has no tables: say what to run instead of failing
    later with an OperationalError traceback."""
    from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[DEFAULT_DB_ALIAS]
    where = connection.settings_dict.get("NAME")
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        raise CommandError(f"cannot open the database {where} ({exc}): run "
                           "`make migrate` (or `python manage.py migrate`) first") from None
    if pending:
        raise CommandError(f"the database {where} is not set up ({len(pending)} migrations "
                           "not applied): run `make migrate` (or `python manage.py migrate`) "
                           "first, then this command again")


class Command(BaseCommand):
    help = "Upload a table, confirm its mapping, train and audit a model; print one JSON object."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--vertical", required=True)
        parser.add_argument("--problem", required=True)
        parser.add_argument("--target", default=None,
                            help="the column to predict (default: the suggested one)")
        parser.add_argument("--column", action="append", default=[], metavar="ROLE=COL",
                            help=f"map a column to a role; roles: {', '.join(ROLES)}, label")
        parser.add_argument("--sensitive", action="append", default=[])
        parser.add_argument("--exclude", action="append", default=[])
        parser.add_argument("--attributes", type=Path, default=None,
                            help="per-user or per-student attributes, joined on that key")
        parser.add_argument("--test-file", dest="test_file", type=Path, default=None,
                            help="a given test set: the same columns, target included "
                                 "(remaining useful life: or cut series with --test-truth)")
        parser.add_argument("--test-truth", dest="test_truth", type=Path, default=None,
                            help="true values for --test-file, one per test unit")
        parser.add_argument("--catalogue", type=Path, default=None,
                            help="the public item catalogue, one item id per row "
                                 "(recommendation): declared public, its items are the "
                                 "model's vocabulary")
        parser.add_argument("--labels", type=Path, default=None,
                            help="a CSV naming each image's file, label and groups (a ZIP of "
                                 "images)")
        parser.add_argument("--horizon", type=int, default=None,
                            help="forecast steps ahead (demand forecasting)")
        parser.add_argument("--set", dest="train_options", action="append", default=[],
                            metavar="KEY=VALUE",
                            help=f"a training option: {', '.join(OVERRIDABLE)}")
        parser.add_argument("--id-column", dest="id_column", default=None,
                            help="the row identifier (default: the suggested one, if any)")
        parser.add_argument("--positive-label", dest="positive_labels", action="append",
                            default=[], metavar="LABEL",
                            help="the positive class; repeat to group labels of a "
                                 "multi-class target (e.g. Dropout)")
        parser.add_argument("--column-type", dest="column_types", action="append", default=[],
                            metavar="COL=KIND",
                            help="read a column as categorical, numeric, date or text")
        parser.add_argument("--target-rule", dest="target_rule", default=None,
                            metavar="RULE",
                            help="cut a numeric target: '<10' (positive below 10), '>=10', "
                                 "or 'none' (use the target as it is)")
        privacy = parser.add_mutually_exclusive_group()
        privacy.add_argument("--epsilon", type=float, default=None,
                             help="target epsilon (turns differential privacy on)")
        privacy.add_argument("--privacy", action="store_true",
                             help="differential privacy on at the problem's epsilon")
        privacy.add_argument("--no-privacy", action="store_true")
        parser.add_argument("--delta", type=float, default=None)
        parser.add_argument("--sep", default=None, help="delimiter; sniffed when absent")
        parser.add_argument("--no-header", action="store_true")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--epochs", type=int, default=None, help="override the problem's")
        parser.add_argument("--inline", action="store_true", help="train in this process")
        parser.add_argument("--timeout", type=float, default=3600.0,
                            help="seconds to wait for a worker (without --inline)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument("--predictions-out", type=Path, default=None)
        parser.add_argument("--allow-identifier", dest="allow_identifiers", action="append",
                            default=[], metavar="COL",
                            help="let a column flagged as a direct identifier be a model "
                                 "input (admins only; recorded in the audit log)")
        parser.add_argument("--validate-only", action="store_true",
                            help="upload and validate, then stop: train nothing")
        parser.add_argument("--user", default=None, help="an existing user with a membership")
        parser.add_argument(
            "--organisation", default=None,
            help=f"organisation for the system user (default {SYSTEM_ORGANISATION!r})",
        )

    def handle(self, *args, **options) -> None:
        _require_migrated_database()
        # Libraries that print (progress bars, warnings) must not pollute the JSON on stdout.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                body = self._pipeline(options)
            failed = "run" in body and body["run"]["status"] != TrainingRun.Status.SUCCEEDED
        except PipelineFailed as exc:
            body, failed = exc.body, True
        self._emit(body, as_json=options["json"])
        if failed:
            sys.exit(1)

    def _emit(self, body: dict, *, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(body, indent=2, sort_keys=True, default=str))
            return
        if "errors" in body:
            for error in body["errors"]:
                self.stdout.write(f"error: {error.get('message')}")
            return
        if "run" not in body:
            dataset = body["dataset"]
            self.stdout.write(f"dataset version {dataset['version_id']}: {dataset['status']}")
            for warning in dataset.get("warnings") or ():
                self.stdout.write(f"warning: {warning.get('message')}")
            return
        run = body["run"]
        self.stdout.write(f"run {run['id']}: {run['status']}")
        for name, value in sorted((run.get("metrics") or {}).items()):
            self.stdout.write(f"  {name}: {value}")
        if run.get("privacy", {}).get("epsilon") is not None:
            self.stdout.write(f"  epsilon: {run['privacy']['epsilon']}")

    def _pipeline(self, options: dict) -> dict:
        path: Path = options["file"]
        if not path.is_file():
            raise PipelineFailed({"errors": [{"code": "not_found",
                                              "message": f"no such file: {path}"}]})
        user = self._user(options)
        try:
            with _upload_file(path, options["labels"]) as handle:
                version = upload_dataset(
                    user=user, vertical=options["vertical"], problem=options["problem"],
                    file=File(handle, name=path.name), name=path.stem, sep=options["sep"],
                    header=False if options["no_header"] else None,
                )
        except UploadError as exc:
            raise PipelineFailed({"errors": exc.errors}) from None
        if version.status == DatasetVersion.Status.REJECTED:
            raise PipelineFailed({"errors": version.errors, "dataset": _dataset(version)})
        given = _given_roles(options)
        self._attach_companions(version, user=user, options=options)
        version.refresh_from_db()
        for column in options["allow_identifiers"]:
            try:
                version = set_identifier_allowed(
                    version=version, user=user, column=column, allowed=True,
                    reason="allowed with manage.py pipeline --allow-identifier")
            except (ValueError, PermissionDenied) as exc:
                raise PipelineFailed({"errors": [{"code": "identifier_refused",
                                                  "message": f"--allow-identifier {column}: "
                                                             f"{exc}"}],
                                      "dataset": _dataset(version)}) from None
        mapping = mapping_from(version.suggested_mapping or {}, given,
                               positive_labels=options["positive_labels"],
                               column_types=_column_types(options["column_types"]),
                               target_rule=_target_rule(options["target_rule"], version))
        version = confirm_mapping(version=version, user=user, mapping=mapping)
        if version.status == DatasetVersion.Status.REJECTED:
            raise PipelineFailed({"errors": version.errors, "dataset": _dataset(version)})
        if options["validate_only"]:
            return {"dataset": _dataset(version)}

        config = {**_train_options(options["train_options"]), "seed": options["seed"]}
        if options["epochs"] is not None:
            config["epochs"] = options["epochs"]
        if options["horizon"] is not None:
            config["horizon"] = options["horizon"]
        try:
            with transaction.atomic():
                run = start_run(
                    version=version, user=user, privacy_enabled=_privacy_enabled(version, options),
                    target_epsilon=options["epsilon"], delta=options["delta"], config=config,
                    enqueue=not options["inline"],
                )
        except (ValueError, PermissionDenied) as exc:
            # Refused before any run exists: a bad option, the dataset's privacy budget, or
            # a non-private run on personal data without an admin.
            raise PipelineFailed({"errors": [{"code": "run_refused", "message": str(exc)}],
                                  "dataset": _dataset(version)}) from None
        if options["inline"]:
            execute_run(run.pk)
        else:
            self._wait(run, timeout=options["timeout"])
        run.refresh_from_db()
        if options["predictions_out"] is not None and run.status == TrainingRun.Status.SUCCEEDED:
            # Decrypted for the operator who asked for them (the stored copy stays encrypted).
            options["predictions_out"].parent.mkdir(parents=True, exist_ok=True)
            options["predictions_out"].write_bytes(predictions_csv(run.artifact_path))
        return {
            "dataset": _dataset(version),
            "run": _run(run),
            "model_version": _model_version(run),
        }

    def _attach_companions(self, version: DatasetVersion, *, user, options: dict) -> None:
        """The second files, through the same service as the UI; refusals end the command."""
        if options["test_truth"] is not None and options["test_file"] is None:
            raise _refused("--test-truth needs --test-file: the true values belong to a "
                           "given test set")
        files = ((CompanionFile.Kind.ATTRIBUTES, options["attributes"]),
                 (CompanionFile.Kind.TEST_SET, options["test_file"]),
                 (CompanionFile.Kind.TEST_TRUTH, options["test_truth"]),
                 (CompanionFile.Kind.CATALOGUE, options["catalogue"]))
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
                raise PipelineFailed({"errors": exc.errors, "dataset": _dataset(version)}
                                     ) from None

    def _wait(self, run: TrainingRun, *, timeout: float) -> None:
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

    def _user(self, options: dict):
        users = get_user_model()
        if options["user"]:
            try:
                user = users.objects.get(username=options["user"])
            except users.DoesNotExist:
                raise CommandError(f"no user {options['user']!r}") from None
            if not Membership.objects.filter(user=user).exists():
                raise CommandError(f"user {options['user']!r} belongs to no organisation")
            return user
        slug = slugify(options["organisation"] or SYSTEM_ORGANISATION)
        organisation, _ = Organisation.objects.get_or_create(
            slug=slug, defaults={"name": options["organisation"] or SYSTEM_ORGANISATION}
        )
        username = SYSTEM_USER if slug == SYSTEM_ORGANISATION else f"{SYSTEM_USER}@{slug}"
        user, created = users.objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        membership, _ = Membership.objects.get_or_create(
            # Whoever runs manage.py operates the deployment: the system user administers
            # its own organisation, so an explicit --no-privacy is allowed on personal data
            # (governance asks an admin for that). --user runs under that user's own role.
            user=user, defaults={"organisation": organisation, "role": Role.ADMIN}
        )
        if membership.organisation_id != organisation.pk:
            raise CommandError(f"user {username!r} belongs to another organisation")
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


def _privacy_enabled(version: DatasetVersion, options: dict) -> bool:
    """--no-privacy off, --privacy or --epsilon on; else the problem's default (on for data
    about people, off for machine sensors and store-level sales)."""
    if options["no_privacy"]:
        return False
    if options["privacy"] or options["epsilon"] is not None:
        return True
    return get_problem(version.dataset.vertical, version.dataset.problem).spec.privacy.enabled


def _refused(message: str) -> PipelineFailed:
    return PipelineFailed({"errors": [{"code": "bad_arguments", "message": message}]})


def _given_roles(options: dict) -> list[tuple[str, str]]:
    """(role, column) pairs from --target, --id-column, --sensitive, --exclude, --column."""
    given: list[tuple[str, str]] = []
    if options["target"]:
        given.append(("target", options["target"]))
    if options["id_column"]:
        given.append(("id", options["id_column"]))
    given += [("sensitive", c) for c in options["sensitive"]]
    given += [("exclude", c) for c in options["exclude"]]
    for item in options["column"]:
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


def _column_types(items: list[str]) -> tuple[tuple[str, str], ...]:
    """--column-type COL=KIND pairs; refused naming the kinds when one is not."""
    from ml_core.column_types import parse_override

    try:
        return tuple(parse_override(item) for item in items)
    except ValueError as exc:
        raise _refused(f"--column-type: {exc}") from None


def _target_rule(text: str | None, version: DatasetVersion) -> TargetRule | None | str:
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


def _train_options(items: list[str]) -> dict:
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


def _dataset(version: DatasetVersion) -> dict:
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


def _run(run: TrainingRun) -> dict:
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


def _model_version(run: TrainingRun) -> dict | None:
    model_version = getattr(run, "model_version", None)
    if model_version is None:
        return None
    return {"id": model_version.pk, "status": model_version.status}
