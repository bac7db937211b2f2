"""A cancel reaches every long computation of a run: the noise calibration, and every stage
boundary (encoding, baselines, audits); a run cancelled after private training began is
charged its whole target when it reports no spend."""

from __future__ import annotations

import pytest

from governance.models import LedgerEntry
from ml_core import privacy as dp
from tests.conftest import FAST_TRAINING
from training.models import TrainingRun
from training.progress import RunProgress
from training.services import execute_run, start_run

pytestmark = pytest.mark.django_db


def test_the_noise_search_stops_at_the_next_accountant_evaluation():
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 3

    # A long schedule (the kind that took a worker down) with arguments no cache holds.
    with dp.stop_calibration_when(should_stop), pytest.raises(dp.CalibrationCancelled):
        dp.noise_multiplier_for(target_epsilon=2.9871, delta=1e-6, sample_rate=1 / 997,
                                steps=400_000)
    assert len(calls) == 3
    # Outside the block the search is as before.
    assert dp.noise_multiplier_for(target_epsilon=3.0, delta=1e-5, sample_rate=0.1,
                                   steps=10) > 0


def test_a_cancelled_run_stops_before_calibrating_its_noise(validated_version, analyst):
    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING),
                    enqueue=False)
    # The analyst cancels while the run is running (cancel_run on a running run sets this).
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    # Stopped at the first stage boundary: no noise calibrated, nothing trained or charged.
    assert run.privacy == {} and run.history == []
    assert not LedgerEntry.objects.filter(run=run).exists()


def test_the_progress_sink_raises_the_cancel_at_a_stage_boundary_only(validated_version,
                                                                      analyst):
    from ml_core.pipeline import TrainingCancelled

    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING),
                    enqueue=False)
    stop = [False]
    sink = RunProgress(run.pk, interval_s=0, should_stop=lambda: stop[0])
    sink(stage="baseline", epoch=0, total_epochs=3)
    stop[0] = True
    # Inside an epoch the training loop's own check decides (it reports what was spent).
    sink(stage="training", epoch=1, total_epochs=3, loss=0.5)
    with pytest.raises(TrainingCancelled):
        sink(stage="auditing", epoch=0, total_epochs=3)


def test_a_run_cancelled_after_training_without_a_report_is_charged_its_target(
        validated_version, analyst):
    from governance.ledger import charge_run

    run = start_run(version=validated_version, user=analyst, target_epsilon=2.0,
                    config=dict(FAST_TRAINING), enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.CANCELLED,
                                                 privacy={})
    entry = charge_run(run.pk, stage_before="training_twin")
    assert entry is not None and entry.epsilon == pytest.approx(2.0)
    assert entry.basis == LedgerEntry.Basis.UPPER_BOUND
