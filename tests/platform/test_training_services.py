"""Training runs through training.services: the state machine, progress, results, failures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied

from audits.models import AuditLogEntry, FairnessReport
from ingestion.storage import stored_file
from tests.conftest import FAST_TRAINING
from training.models import ModelVersion, TrainingRun
from training.progress import CancelCheck, RunProgress
from training.services import cancel_run, execute_run, start_run, train_config
from verticals.registry import get_problem

pytestmark = pytest.mark.django_db

SPEC = get_problem("finance", "credit_risk").spec


def queued_run(version, user, **kwargs) -> TrainingRun:
    kwargs.setdefault("config", dict(FAST_TRAINING))
    return start_run(version=version, user=user, **kwargs)


@pytest.mark.slow
def test_execute_run_trains_audits_and_awaits_review(validated_version, analyst, settings):
    run = queued_run(validated_version, analyst, target_epsilon=2.0)
    assert run.status == TrainingRun.Status.QUEUED
    assert run.config == {**FAST_TRAINING, "seed": 0}
    assert run.privacy_requested == {"enabled": True, "target_epsilon": 2.0, "delta": None}

    execute_run(run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.started_at and run.finished_at and run.finished_at >= run.started_at
    # Model quality is ml_core's to test; here the numbers must just be there and sane.
    assert 0 <= run.metrics["roc_auc"] <= 1
    assert run.privacy["enabled"] is True
    assert 0 < run.privacy["epsilon"] <= 2.0 + 1e-6
    assert run.epsilon_spent == pytest.approx(run.privacy["epsilon"])
    assert run.total_epochs == FAST_TRAINING["epochs"]
    assert 1 <= len(run.history) <= FAST_TRAINING["epochs"]
    assert run.device == "cpu" and run.progress_percent == 100
    assert set(run.fairness) == {"sex", "age", "foreign_worker"}
    assert run.result["baseline"]["metrics"]
    assert Path(run.artifact_path).parent == Path(settings.TESSERA_ARTIFACT_DIR)
    assert (Path(run.artifact_path) / "predictions.csv").is_file()

    model_version = run.model_version
    assert model_version.status == ModelVersion.Status.PENDING_REVIEW
    assert len(model_version.artifact_sha256) == 64
    report = FairnessReport.objects.get(run=run)
    assert report.report == run.fairness
    assert report.policy["min_group_size"] == SPEC.fairness.min_group_size
    assert report.nonprivate_report  # the non-private twin is audited too
    actions = set(AuditLogEntry.objects.values_list("action", flat=True))
    assert {"run.started", "run.succeeded", "model.created"} <= actions

    # A second delivery of the same message changes nothing.
    started_at = run.started_at
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.started_at == started_at and run.status == TrainingRun.Status.SUCCEEDED
    assert ModelVersion.objects.filter(run=run).count() == 1


def test_cancelling_a_queued_run_is_immediate_and_final(validated_version, analyst):
    run = queued_run(validated_version, analyst)

    run = cancel_run(run=run, user=analyst)

    assert run.status == TrainingRun.Status.CANCELLED and run.finished_at
    execute_run(run.pk)  # the message still arrives: nothing happens
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED and run.started_at is None
    with pytest.raises(ValueError, match="already"):
        cancel_run(run=run, user=analyst)
    assert AuditLogEntry.objects.filter(action="run.cancelled", actor=analyst).exists()


def test_cancelling_a_running_run_asks_it_to_stop(validated_version, analyst):
    run = queued_run(validated_version, analyst)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)

    run = cancel_run(run=run, user=analyst)

    assert run.status == TrainingRun.Status.RUNNING and run.cancel_requested


def test_cancel_seen_by_the_worker_stops_training_and_keeps_privacy_spent(
    validated_version, analyst
):
    run = queued_run(validated_version, analyst)
    # The cancel arrives just as a worker picks the run up.
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    execute_run(run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED, run.error
    assert isinstance(run.privacy, dict)
    assert not ModelVersion.objects.filter(run=run).exists()


def test_a_failing_run_reports_a_readable_error(validated_version, analyst):
    run = queued_run(validated_version, analyst)
    stored_file(validated_version.stored_path).unlink()  # the upload vanished from disk

    execute_run(run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("FileNotFoundError: ")
    assert "Traceback" not in run.error
    assert AuditLogEntry.objects.filter(action="run.failed").exists()


def test_execute_run_of_an_unknown_id_does_nothing():
    execute_run(987654)


def test_runs_are_for_the_own_organisation_only(validated_version, other_analyst, analyst):
    with pytest.raises(PermissionDenied):
        start_run(version=validated_version, user=other_analyst)
    run = queued_run(validated_version, analyst)
    with pytest.raises(PermissionDenied):
        cancel_run(run=run, user=other_analyst)


def test_start_run_refuses_bad_options(validated_version, analyst):
    with pytest.raises(ValueError, match="unknown training option"):
        start_run(version=validated_version, user=analyst, config={"epoch": 3})
    with pytest.raises(ValueError, match="epsilon"):
        start_run(version=validated_version, user=analyst, target_epsilon=0)
    with pytest.raises(ValueError, match="delta"):
        start_run(version=validated_version, user=analyst, delta=1.5)
    assert not TrainingRun.objects.exists()


def test_train_config_overrides():
    config = train_config(SPEC, {"epochs": "3", "hidden_sizes": [8, 4], "seed": 5})
    assert (config.epochs, config.hidden_sizes, config.seed) == (3, (8, 4), 5)
    assert config.batch_size == SPEC.train.batch_size


def test_progress_is_throttled_but_never_misses_an_epoch(validated_version, analyst):
    run = queued_run(validated_version, analyst)
    ticks = itertools.count()
    sink = RunProgress(run.pk, interval_s=0.5, clock=lambda: next(ticks) * 0.1)

    sink(stage="preparing", epoch=0, total_epochs=2, loss=None, val_metric=None, epsilon=None)
    for epoch in (1, 2):
        for step in range(10):
            sink(stage="training", epoch=epoch, total_epochs=2, loss=1.0 / (step + 1),
                 val_metric=0.6 + epoch / 10, epsilon=0.5 * epoch)
    sink(stage="auditing", epoch=0, total_epochs=2, loss=None, val_metric=None, epsilon=None)

    run.refresh_from_db()
    assert sink.writes < 22  # throttled
    assert [(h["stage"], h["epoch"]) for h in run.history] == [("training", 1), ("training", 2)]
    assert run.stage == "auditing"
    assert run.epoch == 2 and run.total_epochs == 2 and run.epsilon_spent == 1.0
    assert run.loss is not None
    assert run.progress_percent == 99  # 100 only once succeeded


def test_cancel_check_reads_the_database(validated_version, analyst):
    run = queued_run(validated_version, analyst)
    check = CancelCheck(run.pk, interval_s=0)
    assert check() is False
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert check() is True
