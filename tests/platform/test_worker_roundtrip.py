"""A real Celery worker trains a run end to end, and a duplicate delivery changes nothing.

The worker is a subprocess with the test settings, pointed at the test database (a file
for SQLite, ``test_<name>`` on PostgreSQL) and at the broker CELERY_BROKER_URL names
(the test broker folder for ``filesystem://``, or Redis).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings

from tests.conftest import FAST_TRAINING, ROOT
from tests.support.worker import celery_worker, wait_for, worker_env
from training.models import ModelVersion, TrainingRun
from training.services import start_run

WAIT_S = 120


def test_settings_load_the_celery_app():
    """Web processes enqueue through the project's app (its broker), not Celery's default."""
    code = (
        "import django; django.setup(); from training.tasks import train_run; "
        "print(train_run.app.main, train_run.app.conf.broker_url)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=worker_env(), cwd=ROOT, capture_output=True,
        text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    main, broker = done.stdout.split()[-2:]
    assert main == "tessera"
    assert broker.split(":")[0] == settings.CELERY_BROKER_URL.split(":")[0]


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_trains_a_run_and_ignores_a_duplicate(validated_version, analyst, tmp_path):
    from training.tasks import train_run

    assert train_run.app.main == "tessera", "config.celery_app is not loaded with the settings"
    log = tmp_path / "worker.log"
    with celery_worker(log=log):
        # Committed at once (transactional test), so on_commit sends the task now.
        run = start_run(version=validated_version, user=analyst, target_epsilon=3.0,
                        config=dict(FAST_TRAINING))
        assert run.task_id

        def finished():
            run.refresh_from_db()
            return run.is_terminal

        wait_for(finished, timeout=WAIT_S, log=log, what=f"run {run.pk} to finish")
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error
        assert 0 < run.privacy["epsilon"] <= 3.0 + 1e-6
        assert run.epsilon_spent == pytest.approx(run.privacy["epsilon"])
        assert run.device == "cpu" or run.device.startswith("cuda")
        started_at, finished_at = run.started_at, run.finished_at

        # The same message again (a redelivery), then a fresh one: both must be no-ops.
        train_run.apply_async(args=[run.pk], queue="training", task_id=run.task_id)
        train_run.apply_async(args=[run.pk], queue="training").get(timeout=WAIT_S)

        run.refresh_from_db()
        assert run.status == TrainingRun.Status.SUCCEEDED
        assert (run.started_at, run.finished_at) == (started_at, finished_at)
        assert ModelVersion.objects.filter(run=run).count() == 1
