"""The run page's headline (epoch, loss, validation metric) is the model's, never its
non-private twin's (trained after it), and a run that stopped before its planned epochs
says why."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_TRAINING
from training.models import TrainingRun
from training.progress import RunProgress
from training.services import execute_run, start_run

pytestmark = pytest.mark.django_db


def _field(page: str, name: str) -> str:
    return page.split(f'data-field="{name}">', 1)[1].split("<", 1)[0]


def test_twin_epochs_reach_the_curve_not_the_headline(validated_version, analyst):
    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING))
    sink = RunProgress(run.pk, interval_s=0)
    for epoch, loss in ((1, 0.9), (2, 0.7), (3, 0.6)):
        sink(stage="training", epoch=epoch, total_epochs=3, loss=loss,
             val_metric=round(0.6 + epoch / 100, 2),
             epsilon=0.4 * epoch)
    for epoch in (1, 2, 3, 4):
        sink(stage="training_twin", epoch=epoch, total_epochs=3, loss=0.1, val_metric=0.99,
             epsilon=None)
    run.refresh_from_db()
    assert (run.epoch, run.loss, run.val_metric) == (3, 0.6, 0.63)
    assert run.epsilon_spent == pytest.approx(1.2)
    assert run.stage == "training_twin"
    assert [h["stage"] for h in run.history].count("training_twin") == 4


def test_a_finished_private_run_shows_the_models_last_epoch(validated_version, analyst, client):
    run = start_run(version=validated_version, user=analyst, target_epsilon=2.0,
                    config=dict(FAST_TRAINING))
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    last = run.history[-1]  # the stored history is the model's own
    assert "stage" not in last or last["stage"] == "training"
    assert run.epoch == last["epoch"] and run.loss == last["loss"]
    assert run.val_metric == last["val_metric"]
    client.force_login(analyst)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert _field(page, "loss") == f"{last['loss']:.4f}"
    assert _field(page, "val_metric") == f"{last['val_metric']:.4f}"


def test_a_run_that_stopped_early_says_why(validated_version, analyst, client):
    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING))
    history = [{"epoch": e, "loss": 1.0 / e, "val_metric": 0.7, "epsilon": None}
               for e in (1, 2, 3, 4)]
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.SUCCEEDED, epoch=4, total_epochs=10, history=history,
        config={**run.config, "epochs": 10, "patience": 3})
    client.force_login(analyst)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    reason = _field(page, "stop_reason")
    assert reason.startswith("Stopped early at epoch 4 of 10")
    assert "not improved for 3 epochs" in reason
    finished = TrainingRun.objects.filter(pk=run.pk)
    finished.update(epoch=10, history=history * 2)
    assert 'data-field="stop_reason"' not in client.get(f"/runs/{run.pk}/").content.decode()
