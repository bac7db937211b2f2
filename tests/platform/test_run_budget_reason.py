"""A private run that ends with budget left says why on its page (issue 13): stopped early,
cancelled, or the budget cap; and how much of the target epsilon it spent and left. No
tabular run on the problems' sample tables ends with more than 10 % of its target unspent
without such a sentence."""

from __future__ import annotations

import html

import pytest

from ingestion.services import confirm_mapping, upload_dataset
from tests.conftest import FAST_TRAINING, csv_upload
from training.models import TrainingRun
from training.progress import UNSPENT_SHARE, epsilon_left
from training.services import execute_run, start_run
from verticals.registry import all_problems

pytestmark = pytest.mark.django_db


def _reason(page: str) -> str:
    return html.unescape(page.split('data-field="stop_reason">', 1)[1].split("<", 1)[0])


def _private(spent: float, *, steps: int, planned: int) -> dict:
    return {"enabled": True, "epsilon": spent, "target_epsilon": 3.0, "delta": 1e-5,
            "steps": steps, "planned_steps": planned}


@pytest.mark.parametrize(("status", "epoch", "privacy", "says"), [
    (TrainingRun.Status.SUCCEEDED, 4, _private(1.62, steps=40, planned=100),
     "Stopped early at epoch 4 of 10: the validation metric had not improved for 3 epochs "
     "in a row (early stopping); the model kept is its best epoch on the validation split. "
     "ε spent: 1.62 of the target 3; 1.38 (46%) was left unspent because training stopped "
     "before the steps its noise was set for."),
    (TrainingRun.Status.CANCELLED, 2, _private(0.9, steps=20, planned=100),
     "Cancelled at epoch 2 of 10. ε spent: 0.90 of the target 3; 2.10 (70%) was left unspent "
     "because the run was cancelled."),
    (TrainingRun.Status.SUCCEEDED, 10, _private(2.4, steps=90, planned=100),
     "Stopped at the budget cap after 90 of 100 planned steps: one more epoch would have "
     "taken more steps than the noise was set for. ε spent: 2.40 of the target 3; 0.60 (20%) "
     "was left unspent because a whole further epoch did not fit in the budget."),
    (TrainingRun.Status.SUCCEEDED, 10, _private(2.97, steps=100, planned=100),
     "Ran every planned epoch (10). ε spent: 2.97 of the target 3 (0.03 left)."),
])
def test_the_run_page_says_why_budget_was_left(validated_version, analyst, client, status,
                                               epoch, privacy, says):
    run = start_run(version=validated_version, user=analyst, config=dict(FAST_TRAINING))
    history = [{"epoch": e, "loss": 1.0 / e, "val_metric": 0.7, "epsilon": None}
               for e in range(1, epoch + 1)]
    TrainingRun.objects.filter(pk=run.pk).update(
        status=status, epoch=epoch, total_epochs=10, history=history, privacy=privacy,
        config={**run.config, "epochs": 10, "patience": 3})
    client.force_login(analyst)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert _reason(page) == says
    progress = client.get(f"/runs/{run.pk}/progress.json").json()
    assert progress["stop_reason"] == says


TABULAR = [(vertical.key, problem.spec.key) for vertical, problem in all_problems()
           if problem.spec.model_family == "tabular_mlp"]


@pytest.mark.parametrize(("vertical", "problem"), TABULAR)
def test_no_tabular_run_leaves_budget_unspent_without_a_reason(vertical, problem, analyst,
                                                               client):
    entry = next(p for v, p in all_problems() if (v.key, p.spec.key) == (vertical, problem))
    frame = entry.sample_data(400, 0)
    version = upload_dataset(user=analyst, vertical=vertical, problem=problem,
                             file=csv_upload(frame.to_csv(index=False).encode(), "sample.csv"),
                             name="Sample")
    version = confirm_mapping(version=version, user=analyst, mapping=entry.sample_mapping)
    assert version.status == "validated", version.errors
    run = start_run(version=version, user=analyst, target_epsilon=3.0,
                    config=dict(FAST_TRAINING))
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    spent, target = epsilon_left(run.privacy)
    client.force_login(analyst)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    reason = _reason(page)
    # What the page states is the stored report's figure (an independent reading of it).
    assert f"ε spent: {spent:.2f} of the target {target:g}" in reason
    if target - spent > UNSPENT_SHARE * target:
        assert "was left unspent because" in reason, reason
