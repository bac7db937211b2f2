"""Both organisations' objects for the security tests (isolation matrix, CSRF, API fuzzing).

Each organisation gets a dataset with a validated and a pending version, a queued run, a
finished run whose model awaits review, an approved model whose gates pass, a champion that
serves predictions, a finished scoring job, a retraining schedule and the audit trail all
of that leaves. Nothing trains per test: one tiny private model is trained once per session
with ``ml_core`` (no database) and both organisations' serving models point at it.

Every object carries its organisation's marker (``World.mark``) in a name, a file name, a
comment or a reason, so a page or an answer that shows another organisation's data is
caught by looking for the other marker.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import csv_upload, finance_frame
from tests.reliability.conftest import finance_bytes

MARKS = {"acme": "ACMEMARK", "borealis": "BOREALISMARK"}
ROWS = 400


def scoring_rows(n: int = 5) -> list[dict]:
    """Rows with the serving model's input columns (the demo table without its target)."""
    import json

    frame = finance_frame(ROWS).drop(columns=["default"]).head(n)
    return json.loads(frame.to_json(orient="records"))


def scoring_csv(n: int = 5) -> bytes:
    buffer = io.StringIO()
    finance_frame(ROWS).drop(columns=["default"]).head(n).to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


@pytest.fixture(scope="session", name="serving_artifact")
def serving_artifact_fixture(tmp_path_factory):
    """One tiny private model on the finance demo table, trained once per session with
    ml_core (no database): its artifact folder (with predictions.csv) and its summary."""
    import torch

    from ml_core.pipeline import run_training
    from training.services import privacy_config, train_config
    from verticals.registry import get_problem

    torch.set_num_threads(1)
    problem = get_problem("finance", "credit_risk")
    spec = problem.spec
    directory = tmp_path_factory.mktemp("serving-model")
    result = run_training(
        frame=finance_frame(ROWS), mapping=problem.sample_mapping, spec=spec,
        privacy=privacy_config(spec, {"enabled": True, "target_epsilon": 3.0}),
        train=train_config(spec, {"epochs": 2, "batch_size": 64}), artifact_dir=directory,
    )
    result.predictions.to_csv(directory / "predictions.csv", index=False)
    return {"path": str(directory), "summary": _json_safe(result.to_dict()),
            "sha256": result.artifact_sha256}


def _json_safe(value):
    from training.results import json_safe

    return json_safe(value)


@dataclass
class World:
    """One organisation's personas and objects."""

    org: object
    mark: str
    analyst: object
    reviewer: object
    admin: object
    dataset: object
    version: object  # validated
    version_pending: object  # uploaded, mapping not confirmed
    run_queued: object
    run_done: object  # succeeded, its model awaits review
    model_pending: object  # awaiting review; fairness failed, no sign-off: gates fail
    model_approved: object  # approved, every gate passes
    model_serving: object  # the champion, a real artifact: predicts, scores, mitigates
    job: object  # a finished scoring job with its output file
    job_queued: object  # a scoring job waiting for a worker (cancellable)
    audit_queued: object  # an empirical privacy audit of the serving model, queued
    schedule: object
    run_pictured: object  # a succeeded run whose report holds a picture (PICTURE)

    @property
    def users(self) -> dict:
        return {"analyst": self.analyst, "reviewer": self.reviewer, "admin": self.admin}


class _Missing:
    pk = 987654321


class MissingWorld:
    """Stands in for a World whose every object has an id no row has (id guessing)."""

    mark = "NOMARK"

    def __getattr__(self, name):
        return _Missing()


def build_world(*, org, analyst, reviewer, admin, artifact: dict, upload_dir: Path) -> World:
    from audits.models import FairnessReport
    from audits.services import review_model
    from governance import ledger, registry
    from governance.models import PrivacyAudit, ScoringJob
    from governance.schedules import set_schedule
    from ingestion.models import DatasetVersion
    from ingestion.services import confirm_mapping, upload_dataset
    from tests.web.factories import make_succeeded_run
    from training.models import ModelVersion, TrainingRun
    from verticals.registry import get_problem

    mark = MARKS[org.slug]
    data = finance_bytes(ROWS)
    version = upload_dataset(
        user=analyst, vertical="finance", problem="credit_risk",
        file=csv_upload(data, f"{mark.lower()}-applications.csv"), name=f"{mark} applications",
    )
    version = confirm_mapping(version=version, user=analyst,
                              mapping=get_problem("finance", "credit_risk").sample_mapping)
    assert version.status == "validated", version.errors
    dataset = version.dataset
    pending = upload_dataset(
        user=analyst, vertical="finance", problem="credit_risk",
        file=csv_upload(data, f"{mark.lower()}-applications-v2.csv"), dataset=dataset,
    )
    # One column flagged as a direct identifier, for the admins' decision endpoints.
    first_column = data.decode().split("\n", 1)[0].split(",")[0].strip()
    DatasetVersion.objects.filter(pk=pending.pk).update(identifiers=[{
        "column": first_column, "kind": "national id", "evidence": "name",
        "message": f"{first_column!r} looks like a national id"}])
    pending.refresh_from_db()
    queued = TrainingRun.objects.create(
        organisation=org, dataset_version=version, vertical="finance", problem="credit_risk",
        created_by=analyst, privacy_requested={"enabled": True, "target_epsilon": 3.0},
    )
    done = make_succeeded_run(version=version, user=analyst, group_name=f"{mark}-group")
    model_pending = done.model_version

    approved_run = make_succeeded_run(version=version, user=analyst)
    TrainingRun.objects.filter(pk=approved_run.pk).update(
        metrics={"roc_auc": 0.99, "accuracy": 0.95, "f1": 0.9})
    stored = FairnessReport.objects.get(run=approved_run)
    stored.report = {name: part for name, part in stored.report.items() if part["passed"]}
    stored.passed = True
    stored.save()
    model_approved = ModelVersion.objects.get(run=approved_run)
    review_model(model_version=model_approved, user=reviewer, decision="approve",
                 comment=f"{mark} approved: sound")

    summary = artifact["summary"]
    serving_run = TrainingRun.objects.create(
        organisation=org, dataset_version=version, vertical="finance", problem="credit_risk",
        status=TrainingRun.Status.SUCCEEDED, created_by=analyst, stage="done",
        privacy_requested={"enabled": True, "target_epsilon": 3.0},
        metrics=summary["metrics"], privacy=summary["privacy"], fairness=summary["fairness"],
        result={k: v for k, v in summary.items()
                if k not in ("metrics", "privacy", "fairness", "history")},
        history=summary["history"], artifact_path=artifact["path"],
    )
    # Failed on purpose, so reviewers may mitigate it.
    FairnessReport.objects.create(run=serving_run, passed=False, report=summary["fairness"],
                                  nonprivate_report=summary.get("nonprivate_fairness") or {})
    model_serving = ModelVersion.objects.create(
        organisation=org, run=serving_run, vertical="finance", problem="credit_risk",
        artifact_sha256=artifact["sha256"])
    review_model(model_version=model_serving, user=reviewer, decision="approve",
                 comment=f"{mark} serving model")
    registry.promote(model_version=model_serving, user=admin, reason=f"{mark} first champion",
                     override_reason=f"{mark} accepted for the demo")
    model_serving.refresh_from_db()

    output = upload_dir / f"{mark.lower()}-scored.csv"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(f"score,prediction,note\n0.4,0,{mark}\n")
    job = ScoringJob.objects.create(
        organisation=org, model_version=model_serving, status=ScoringJob.Status.SUCCEEDED,
        original_filename=f"{mark.lower()}-batch.csv", input_path="scoring/none.csv",
        output_path=str(output), rows_total=1, rows_done=1, created_by=analyst,
    )
    job_queued = ScoringJob.objects.create(
        organisation=org, model_version=model_serving, original_filename="queued.csv",
        input_path="scoring/none.csv", rows_total=1, created_by=analyst)
    audit_queued = PrivacyAudit.objects.create(
        organisation=org, model_version=model_serving, target_epsilon=0.5, created_by=reviewer)
    schedule = set_schedule(user=admin, vertical="finance", problem="credit_risk",
                            interval_hours=24)
    # Pages create these on first view; made here, reading a page writes nothing.
    ledger.policy_for(dataset)
    registry.gate_policy_for(organisation=org, vertical="finance", problem="credit_risk")
    for obj in (model_pending, model_approved):
        obj.refresh_from_db()
    run_pictured = _run_with_picture(org=org, version=version, analyst=analyst,
                                     directory=upload_dir / f"{mark.lower()}-pictured")
    return World(
        org=org, mark=mark, analyst=analyst, reviewer=reviewer, admin=admin, dataset=dataset,
        version=version, version_pending=pending, run_queued=queued, run_done=done,
        model_pending=model_pending, model_approved=model_approved,
        model_serving=model_serving, job=job, job_queued=job_queued,
        audit_queued=audit_queued, schedule=schedule, run_pictured=run_pictured,
    )


# The one picture of World.run_pictured's report (training.pictures names it by its place).
PICTURE = "pictures-0.png"


def _run_with_picture(*, org, version, analyst, directory: Path):
    """A succeeded run whose report holds one picture, stored as runs store them."""
    import base64
    import io

    from PIL import Image

    from training.models import TrainingRun
    from training.pictures import DATA_URL, store_pictures

    png = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(png, format="PNG")
    charts = store_pictures({"pictures": [DATA_URL + base64.b64encode(png.getvalue()).decode()]},
                            directory)
    return TrainingRun.objects.create(
        organisation=org, dataset_version=version, vertical="finance", problem="credit_risk",
        status=TrainingRun.Status.SUCCEEDED, created_by=analyst, stage="done",
        result={"charts": charts}, artifact_path=str(directory))


@pytest.fixture(name="worlds")
def worlds_fixture(org_a, org_b, analyst, reviewer, admin, other_analyst, other_reviewer,
                   other_admin, serving_artifact, settings):
    """{"a": World of Acme (alice, rita, adam), "b": World of Borealis (bob, berta, boris)}."""
    upload_dir = Path(settings.TESSERA_UPLOAD_DIR)
    return {
        "a": build_world(org=org_a, analyst=analyst, reviewer=reviewer, admin=admin,
                         artifact=serving_artifact, upload_dir=upload_dir),
        "b": build_world(org=org_b, analyst=other_analyst, reviewer=other_reviewer,
                         admin=other_admin, artifact=serving_artifact, upload_dir=upload_dir),
    }
