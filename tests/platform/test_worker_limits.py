"""A run that kills its worker is not retried for ever (issue 16): workers are replaced when
they grow past a memory limit, and a run whose worker died twice fails with a message."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import FAST_TRAINING
from training.leases import claim_run
from training.models import TrainingRun
from training.services import start_run

pytestmark = pytest.mark.django_db


def test_workers_have_a_memory_limit():
    from config.celery_app import app

    assert app.conf.worker_max_memory_per_child == 8192 * 1024  # KiB, Celery's unit


def test_a_run_that_kills_its_worker_twice_fails_with_a_clear_message(validated_version,
                                                                      analyst):
    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING),
                    enqueue=False)

    def worker_dies() -> None:  # the attempt stops renewing its lease: killed, out of memory
        TrainingRun.objects.filter(pk=run.pk).update(
            stage="training", lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert claim_run(run.pk).attempt == 1
    worker_dies()
    assert claim_run(run.pk).attempt == 2  # resumed once on another worker
    worker_dies()
    assert claim_run(run.pk) is None  # not a third time
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "stopped 2 times" in run.error and "not retried again" in run.error
    assert "out of memory" in run.error


def test_the_command_refuses_a_run_over_the_work_budget(tmp_path, settings):
    import io
    import json

    from django.core.management import call_command

    from tests.conftest import finance_frame

    settings.TESSERA_MAX_RUN_STEPS = 100
    path = tmp_path / "applications.csv"
    finance_frame(300, seed=3).to_csv(path, index=False)
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("pipeline", str(path), "--vertical", "finance", "--problem", "credit_risk",
                     "--target", "default", "--inline", "--json", "--epochs", "50",
                     stdout=out)
    message = json.loads(out.getvalue())["errors"][0]["message"]
    assert "TESSERA_MAX_RUN_STEPS" in message and "optimiser steps" in message
    assert not TrainingRun.objects.exists()
