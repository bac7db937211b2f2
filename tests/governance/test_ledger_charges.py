"""Every private run charges its dataset's ledger: success, cancel and failure alike."""

from __future__ import annotations

import dp_accounting
import pytest

from governance.ledger import charge_run, ledger_status
from governance.models import LedgerEntry
from training.models import TrainingRun

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def pld(privacy: dict) -> float:
    """A run's epsilon by an independent PLD accountant, from the parameters its report
    states: the preprocessing Gaussian and the Poisson-subsampled Gaussian steps taken, at
    the run's delta less the vocabulary thresholds' share."""
    stages = {stage["stage"]: stage for stage in privacy["stages"]}
    events = [dp_accounting.GaussianDpEvent(stages["preprocessing"]["noise_multiplier"]),
              dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
                  privacy["sample_rate"],
                  dp_accounting.GaussianDpEvent(privacy["noise_multiplier"])),
                  privacy["steps"])]
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    accountant.compose(dp_accounting.ComposedDpEvent(events))
    return accountant.get_epsilon(privacy["delta"] - stages["preprocessing"]["threshold_delta"])


def test_private_runs_are_charged_and_composed(validated_version, run_private):
    first = run_private(validated_version, target_epsilon=1.0)
    assert first.status == "succeeded", first.error
    entry = first.ledger_entry
    assert entry.basis == "accounted" and entry.run_status == "succeeded"
    assert entry.epsilon == pytest.approx(first.privacy["epsilon"])
    assert entry.steps == first.privacy["steps"] > 0
    # A run whose epsilon composes its preprocessing with its SGD steps is charged that one
    # figure, without the SGD-only history (which would under-count it across runs).
    assert first.privacy["stages"][0]["stage"] == "preprocessing"
    assert entry.noise_multiplier is None and entry.sample_rate is None
    assert entry.total_epsilon_after == pytest.approx(entry.epsilon)
    assert entry.epsilon == pytest.approx(pld(first.privacy), rel=0.03)

    second = run_private(validated_version, target_epsilon=1.5, seed=3)
    status = ledger_status(validated_version.dataset)
    entries = list(LedgerEntry.objects.order_by("id"))
    assert len(entries) == 2 and status.spent.n_charges == 2
    # The composition across runs, not the last run's value: the sum of the composed
    # figures (each already tight within its run).
    assert status.spent.epsilon > second.privacy["epsilon"]
    assert status.spent.epsilon == pytest.approx(
        first.privacy["epsilon"] + second.privacy["epsilon"])
    assert status.spent.delta == pytest.approx(sum(e.delta for e in entries))
    assert status.remaining == pytest.approx(status.budget - status.spent.epsilon)
    # Charging twice is a no-op.
    assert charge_run(second.pk) is None
    assert LedgerEntry.objects.count() == 2


def test_a_cancelled_run_is_charged_for_the_steps_it_took(
    validated_version, run_private, analyst, monkeypatch
):
    from training import services
    from training.progress import CancelCheck

    class CancelAfterFirstEpoch(CancelCheck):
        """The analyst presses cancel once the first private epoch has ended."""

        def __call__(self) -> bool:
            run = TrainingRun.objects.get(pk=self.run_id)
            if run.stage == "training" and run.epoch >= 1 and not run.cancel_requested:
                services.cancel_run(run=run, user=analyst)
                self._last_check = float("-inf")
            return super().__call__()

    monkeypatch.setattr(services, "CancelCheck", CancelAfterFirstEpoch)
    run = run_private(validated_version, target_epsilon=2.0, epochs=4)
    assert run.status == "cancelled"
    entry = run.ledger_entry
    assert entry.basis == "accounted" and entry.run_status == "cancelled"
    assert 0 < entry.steps < run.privacy["planned_steps"]
    assert 0 < entry.epsilon < 2.0
    # The steps actually taken, by an independent accountant.
    assert entry.epsilon == pytest.approx(pld(run.privacy), rel=0.03)


def test_a_run_failing_after_training_started_is_charged_its_target(
    validated_version, run_private, monkeypatch
):
    import ml_core.pipeline

    def disk_full(**kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(ml_core.pipeline, "save_model", disk_full)
    run = run_private(validated_version, target_epsilon=1.25)
    assert run.status == "failed" and "No space left" in run.error
    entry = run.ledger_entry
    assert entry.basis == "upper_bound" and entry.run_status == "failed"
    assert entry.epsilon == 1.25 and entry.delta == 1e-5


def test_a_run_failing_before_training_is_not_charged(validated_version, run_private, settings):
    from pathlib import Path

    (Path(settings.TESSERA_UPLOAD_DIR) / validated_version.stored_path).unlink()
    run = run_private(validated_version)
    assert run.status == "failed"
    assert not LedgerEntry.objects.exists()


def test_non_private_runs_charge_nothing(validated_version, admin):
    from training.services import execute_run, start_run

    run = start_run(version=validated_version, user=admin, privacy_enabled=False,
                    config={"epochs": 1}, enqueue=False)
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert not LedgerEntry.objects.exists()
