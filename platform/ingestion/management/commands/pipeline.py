"""Upload, validate, train and audit one table from the command line, through the services.

    python manage.py pipeline FILE --vertical finance --problem credit_risk --target COL \\
        [--sensitive COL]... [--exclude COL]... [--epsilon E | --no-privacy] [--sep S] \\
        [--no-header] [--inline] --json [--predictions-out PATH]

Prints one JSON object on stdout (logging goes to stderr). Exit code 1 when the file is
refused or the run does not succeed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.text import slugify

from accounts.models import Membership, Organisation, Role
from ingestion.models import DatasetVersion
from ingestion.services import UploadError, confirm_mapping, upload_dataset
from ml_core.spec import ColumnMapping
from training.models import TrainingRun
from training.services import execute_run, start_run

SYSTEM_USER = "pipeline"
SYSTEM_ORGANISATION = "cli"
PRIVACY_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant")


class PipelineFailed(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__(body.get("errors"))
        self.body = body


class Command(BaseCommand):
    help = "Upload a table, confirm its mapping, train and audit a model; print one JSON object."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--vertical", required=True)
        parser.add_argument("--problem", required=True)
        parser.add_argument("--target", required=True)
        parser.add_argument("--sensitive", action="append", default=[])
        parser.add_argument("--exclude", action="append", default=[])
        parser.add_argument("--id-column", dest="id_column", default=None,
                            help="the row identifier (default: the suggested one, if any)")
        parser.add_argument("--positive-label", default=None)
        privacy = parser.add_mutually_exclusive_group()
        privacy.add_argument("--epsilon", type=float, default=None, help="target epsilon")
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
        parser.add_argument("--user", default=None, help="an existing user with a membership")
        parser.add_argument(
            "--organisation", default=None,
            help=f"organisation for the system user (default {SYSTEM_ORGANISATION!r})",
        )

    def handle(self, *args, **options) -> None:
        # Libraries that print (progress bars, warnings) must not pollute the JSON on stdout.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                body = self._pipeline(options)
            failed = body["run"]["status"] != TrainingRun.Status.SUCCEEDED
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
            with path.open("rb") as handle:
                version = upload_dataset(
                    user=user, vertical=options["vertical"], problem=options["problem"],
                    file=File(handle, name=path.name), name=path.stem, sep=options["sep"],
                    header=False if options["no_header"] else None,
                )
        except UploadError as exc:
            raise PipelineFailed({"errors": exc.errors}) from None
        if version.status == DatasetVersion.Status.REJECTED:
            raise PipelineFailed({"errors": version.errors, "dataset": _dataset(version)})
        mapping = ColumnMapping(
            target=options["target"],
            sensitive=tuple(options["sensitive"]),
            exclude=tuple(options["exclude"]),
            id=options["id_column"] or _suggested_id(version, options),
            positive_label=options["positive_label"],
        )
        version = confirm_mapping(version=version, user=user, mapping=mapping)
        if version.status == DatasetVersion.Status.REJECTED:
            raise PipelineFailed({"errors": version.errors, "dataset": _dataset(version)})

        config = {"seed": options["seed"]}
        if options["epochs"] is not None:
            config["epochs"] = options["epochs"]
        with transaction.atomic():
            run = start_run(
                version=version, user=user, privacy_enabled=not options["no_privacy"],
                target_epsilon=options["epsilon"], delta=options["delta"], config=config,
                enqueue=not options["inline"],
            )
        if options["inline"]:
            execute_run(run.pk)
        else:
            self._wait(run, timeout=options["timeout"])
        run.refresh_from_db()
        if options["predictions_out"] is not None and run.status == TrainingRun.Status.SUCCEEDED:
            options["predictions_out"].parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(run.artifact_path) / "predictions.csv", options["predictions_out"])
        return {
            "dataset": _dataset(version),
            "run": _run(run),
            "model_version": _model_version(run),
        }

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
            user=user, defaults={"organisation": organisation, "role": Role.ANALYST}
        )
        if membership.organisation_id != organisation.pk:
            raise CommandError(f"user {username!r} belongs to another organisation")
        return user


def _suggested_id(version: DatasetVersion, options: dict) -> str | None:
    """The id column the upload suggested, unless the flags gave that column another role:
    an identifier is never a useful feature."""
    suggested = (version.suggested_mapping or {}).get("id")
    taken = {options["target"], *options["sensitive"], *options["exclude"]}
    return suggested if suggested and suggested not in taken else None


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
    }


def _run(run: TrainingRun) -> dict:
    privacy = run.privacy or {}
    return {
        "id": run.pk,
        "status": run.status,
        "error": run.error or None,
        "device": run.device,
        "metrics": run.metrics,
        "baseline": (run.result or {}).get("baseline"),
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
