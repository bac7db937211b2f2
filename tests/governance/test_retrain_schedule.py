"""Scheduled retraining: a real celery-beat tick (django-celery-beat's DatabaseScheduler)
starts exactly one retrain; missed ticks are not run twice; the ledger can refuse it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from governance.ledger import set_dataset_policy
from governance.models import RetrainSchedule, ScheduledRetrain
from governance.schedules import retrain, set_schedule
from training.models import ModelVersion, TrainingRun


@pytest.fixture
def eager_app():
    import governance.tasks  # noqa: F401  (registers the task with the app)
    from config.celery_app import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = before


def beat_ticks(app, n=3):
    from django_celery_beat.schedulers import DatabaseScheduler

    scheduler = DatabaseScheduler(app=app)
    for _ in range(n):
        scheduler.tick()
    scheduler.sync()


@pytest.mark.django_db
def test_only_admins_schedule(analyst, reviewer, admin):
    for user in (analyst, reviewer):
        with pytest.raises(PermissionDenied):
            set_schedule(user=user, vertical="finance", problem="credit_risk")
    schedule = set_schedule(user=admin, vertical="finance", problem="credit_risk")
    task = schedule.periodic_task
    assert task.task == "governance.tasks.scheduled_retrain" and task.args == f"[{schedule.pk}]"
    from verticals.registry import get_problem

    cron = get_problem("finance", "credit_risk").spec.retrain_cron.split()
    assert [task.crontab.minute, task.crontab.hour] == cron[:2]  # the vertical's default
    again = set_schedule(user=admin, vertical="finance", problem="credit_risk", interval_hours=6)
    assert again.pk == schedule.pk and RetrainSchedule.objects.count() == 1
    again.periodic_task.refresh_from_db()
    assert again.periodic_task.interval.every == 6 and again.periodic_task.crontab is None
    with pytest.raises(ValueError):
        set_schedule(user=admin, vertical="finance", problem="credit_risk", cron="every day")


# django-celery-beat's scheduler calls close_old_connections(), which closes a connection
# inside a test transaction: the beat test commits for real.
@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_beat_tick_starts_one_run_and_a_missed_tick_is_not_run_twice(
    eager_app, admin, validated_version
):
    schedule = set_schedule(user=admin, vertical="finance", problem="credit_risk",
                            interval_hours=1, config={"epochs": 1})
    # Five hourly ticks were missed (beat was down): the next start runs it once.
    PeriodicTask.objects.filter(pk=schedule.periodic_task_id).update(
        last_run_at=timezone.now() - timedelta(hours=5))
    # Eager Celery: the tick's task, and the training task it enqueues on commit, run here.
    beat_ticks(eager_app)
    runs = TrainingRun.objects.all()
    assert runs.count() == 1
    run = runs.get()
    assert run.dataset_version == validated_version and run.config["epochs"] == 1
    assert run.privacy_requested["enabled"] is True
    assert ScheduledRetrain.objects.get().run == run
    assert run.status == "succeeded", run.error
    assert run.model_version.status == ModelVersion.Status.CHALLENGER
    assert run.ledger_entry.epsilon > 0  # the retrain charged the dataset's ledger
    schedule.refresh_from_db()
    assert schedule.last_outcome.startswith(f"started run {run.pk}")

    beat_ticks(eager_app)  # not due again for an hour
    assert TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_a_second_delivery_or_an_overlap_starts_nothing(admin, validated_version):
    schedule = set_schedule(user=admin, vertical="finance", problem="credit_risk")
    first = retrain(schedule.pk, tick_key="2026-01-05T03:00")
    assert first is not None
    assert retrain(schedule.pk, tick_key="2026-01-05T03:00") is None  # same tick again
    assert retrain(schedule.pk, tick_key="2026-01-12T03:00") is None  # first still queued
    schedule.refresh_from_db()
    assert "still in progress" in schedule.last_outcome
    assert TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_the_ledger_refuses_a_retrain_over_budget(admin, validated_version):
    set_dataset_policy(dataset=validated_version.dataset, user=admin, budget_epsilon=1)
    schedule = set_schedule(user=admin, vertical="finance", problem="credit_risk")
    assert retrain(schedule.pk) is None
    schedule.refresh_from_db()
    assert schedule.last_outcome.startswith("refused:") and "remains" in schedule.last_outcome
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
@pytest.mark.slow
def test_a_retrain_enters_as_a_challenger_and_is_held_when_fairness_regressed(
    admin, reviewer, validated_version, make_model, approve
):
    from governance.registry import promote
    from training.services import execute_run

    # A champion with (almost) no disparity: any real retrain is worse on fairness.
    champion = approve(make_model(parity=0.0))
    promote(model_version=champion, user=reviewer, reason="baseline champion")
    # Non-private: a private retrain on these 400 demo rows chooses its threshold from a
    # noisy histogram of 60 validation rows and may decide one class for everyone, which
    # has no disparity at all; this test is about the hold, not about privacy.
    schedule = set_schedule(user=admin, vertical="finance", problem="credit_risk",
                            config={"epochs": 2, "batch_size": 64}, privacy_enabled=False)
    run = retrain(schedule.pk)
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    model = run.model_version
    assert model.status == ModelVersion.Status.CHALLENGER
    assert model.held_reason  # flagged for the review queue
    assert model.promotion_events.get().action == "held"
    champion.refresh_from_db()
    assert champion.status == ModelVersion.Status.CHAMPION  # never promoted by itself
