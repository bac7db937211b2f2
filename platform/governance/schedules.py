"""Scheduled retraining with django-celery-beat: one PeriodicTask per problem and organisation.

A tick retrains on the organisation's latest validated dataset version for the problem,
through ``training.services.start_run`` (so the privacy ledger can refuse it), and the model
enters as a challenger (``governance.registry.on_model_created``): never promoted without
the gates and a sign-off. A tick is identified by its minute: a second delivery of the same
tick, or a tick while the schedule's last retrain is still queued or running, starts nothing.
"""

from __future__ import annotations

import json
import logging

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from accounts.models import Role
from accounts.permissions import require_role
from audits.services import log_action
from governance.models import RetrainSchedule, ScheduledRetrain
from ingestion.models import DatasetVersion
from training.models import TrainingRun
from training.services import start_run
from verticals.registry import get_problem

logger = logging.getLogger(__name__)

TASK = "governance.tasks.scheduled_retrain"


def schedule_for(*, organisation, vertical: str, problem: str) -> RetrainSchedule | None:
    return RetrainSchedule.objects.filter(organisation=organisation, vertical=vertical,
                                          problem=problem).select_related("periodic_task").first()


def _crontab(cron: str) -> CrontabSchedule:
    from governance.schedule_words import validate_cron

    minute, hour, day_of_month, month_of_year, day_of_week = validate_cron(cron).split()
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
        day_of_week=day_of_week, timezone="UTC")
    try:
        schedule.schedule.remaining_estimate(timezone.now())
    except (ValueError, KeyError) as exc:
        raise ValueError(f"not a valid cron schedule: {cron!r} ({exc})") from None
    return schedule


def set_schedule(
    *, user, vertical: str, problem: str, cron: str | None = None,
    interval_hours: int | None = None, enabled: bool = True, privacy_enabled: bool = True,
    config: dict | None = None, retrain_on_drift: bool = False,
) -> RetrainSchedule:
    """Admins: create or change the retraining schedule of one problem (cron or interval;
    neither: the problem's ``retrain_cron``). Logged."""
    membership = require_role(user, Role.ADMIN)
    spec = get_problem(vertical, problem).spec
    if cron and interval_hours:
        raise ValueError("give a cron schedule or an interval, not both")
    with transaction.atomic():
        if interval_hours:
            if int(interval_hours) < 1:
                raise ValueError("the interval is at least one hour")
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=int(interval_hours), period=IntervalSchedule.HOURS)
            timing = {"interval": interval, "crontab": None}
        else:
            timing = {"crontab": _crontab(cron or spec.retrain_cron), "interval": None}
        schedule = schedule_for(organisation=membership.organisation, vertical=vertical,
                                problem=problem)
        name = f"retrain {membership.organisation.slug} {vertical}/{problem}"
        if schedule is None:
            task = PeriodicTask.objects.create(name=name, task=TASK, enabled=enabled,
                                               queue="default", **timing)
            schedule = RetrainSchedule.objects.create(
                organisation=membership.organisation, vertical=vertical, problem=problem,
                periodic_task=task, owner=user, privacy_enabled=privacy_enabled,
                config=dict(config or {}), retrain_on_drift=retrain_on_drift)
        else:
            task = schedule.periodic_task
            for key, value in timing.items():
                setattr(task, key, value)
            task.enabled = enabled
            schedule.owner = user
            schedule.privacy_enabled = privacy_enabled
            schedule.config = dict(config or {})
            schedule.retrain_on_drift = retrain_on_drift
            schedule.save()
        task.args = json.dumps([schedule.pk])
        task.save()
        log_action(organisation=membership.organisation, actor=user, action="schedule.set",
                   obj=schedule, detail={"cron": cron, "interval_hours": interval_hours,
                                         "enabled": enabled, "privacy": privacy_enabled})
    return schedule


def latest_validated_version(schedule: RetrainSchedule) -> DatasetVersion | None:
    return DatasetVersion.objects.filter(
        dataset__organisation=schedule.organisation, dataset__vertical=schedule.vertical,
        dataset__problem=schedule.problem, status=DatasetVersion.Status.VALIDATED,
    ).order_by("-validated_at", "-pk").first()


def _outcome(schedule: RetrainSchedule, text: str, *, action: str, run=None) -> None:
    RetrainSchedule.objects.filter(pk=schedule.pk).update(last_tick_at=timezone.now(),
                                                          last_outcome=text[:2000])
    log_action(organisation=schedule.organisation, actor=None, action=action,
               obj=run or schedule, detail={"schedule": schedule.pk, "outcome": text})


def retrain(schedule_id: int, *, tick_key: str | None = None) -> TrainingRun | None:
    """One beat tick: start a retrain, or record why not. Returns the run it started."""
    schedule = RetrainSchedule.objects.select_related("organisation", "owner").filter(
        pk=schedule_id).first()
    if schedule is None:
        logger.warning("retrain schedule %s no longer exists", schedule_id)
        return None
    tick_key = tick_key or timezone.now().strftime("%Y-%m-%dT%H:%M")
    if ScheduledRetrain.objects.filter(schedule=schedule, tick_key=tick_key).exists():
        return None  # this tick was already handled (a second delivery)
    busy = ScheduledRetrain.objects.filter(
        schedule=schedule, run__status__in=(TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING))
    if busy.exists():
        _outcome(schedule, "skipped: the previous retrain is still in progress",
                 action="retrain.skipped")
        return None
    version = latest_validated_version(schedule)
    if version is None:
        _outcome(schedule, "skipped: no validated dataset version", action="retrain.skipped")
        return None
    try:
        with transaction.atomic():
            run = start_run(version=version, user=schedule.owner,
                            privacy_enabled=schedule.privacy_enabled, config=schedule.config)
            ScheduledRetrain.objects.create(schedule=schedule, run=run, tick_key=tick_key)
    except IntegrityError:
        return None  # a concurrent delivery of the same tick won
    except (ValueError, PermissionDenied) as exc:
        _outcome(schedule, f"refused: {exc}", action="retrain.refused")
        return None
    _outcome(schedule, f"started run {run.pk} on {version}", action="retrain.started", run=run)
    return run
