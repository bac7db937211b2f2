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
import dataclasses
import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.models import TrainingRun
from training.options import OVERRIDABLE
from training.pipeline import (
    ROLES,
    SYSTEM_ORGANISATION,
    PipelineFailed,
    PipelineRequest,
    UnknownUser,
    run_pipeline,
)


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
                body = run_pipeline(_request(options))
            failed = "run" in body and body["run"]["status"] != TrainingRun.Status.SUCCEEDED
        except PipelineFailed as exc:
            body, failed = exc.body, True
        except UnknownUser as exc:
            raise CommandError(str(exc)) from None
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


def _request(options: dict) -> PipelineRequest:
    """The parsed command line as the service's request: --no-privacy, --privacy and
    --epsilon as one choice (None: the problem's default)."""
    privacy = (False if options["no_privacy"]
               else True if options["privacy"] or options["epsilon"] is not None else None)
    given = {field.name: options[field.name] for field in dataclasses.fields(PipelineRequest)
             if field.name in options and field.name != "privacy"}
    return PipelineRequest(**{
        key: tuple(value) if isinstance(value, list) else value for key, value in given.items()
    }, privacy=privacy)
