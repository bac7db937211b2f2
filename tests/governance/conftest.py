"""Fixtures for governance tests: private runs executed in-process at tiny sizes."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_TRAINING

TINY = {**FAST_TRAINING, "epochs": 2}


@pytest.fixture
def run_private(analyst):
    """run_private(version, user=analyst, target_epsilon=1.0, **config) -> finished run."""
    from training.services import execute_run, start_run

    def run(version, *, user=None, target_epsilon: float = 1.0, **config):
        started = start_run(version=version, user=user or analyst, target_epsilon=target_epsilon,
                            config={**TINY, **config}, enqueue=False)
        execute_run(started.pk)
        started.refresh_from_db()
        return started

    return run


PASSING_GROUP = {"count": 200, "selection_rate": 0.3, "tpr": 0.7, "fpr": 0.2, "accuracy": 0.75}


def fairness_report(*, parity_difference: float, limit: float = 0.1) -> dict:
    passed = parity_difference <= limit
    return {"sex": {
        "by_group": {"female": PASSING_GROUP,
                     "male": {**PASSING_GROUP, "selection_rate": 0.3 + parity_difference}},
        "disparities": {"demographic_parity_difference": parity_difference,
                        "demographic_parity_ratio": 0.3 / (0.3 + parity_difference),
                        "equalized_odds_difference": 0.05},
        "checks": [{"name": "demographic_parity_difference", "value": parity_difference,
                    "threshold": limit, "passed": passed}],
        "judged_groups": ["female", "male"], "passed": passed,
    }}


@pytest.fixture
def make_model(validated_version, analyst):
    """make_model(roc_auc=0.74, baseline=0.72, parity=0.05, epsilon=2.9, status=...) -> a
    ModelVersion with a succeeded run and fairness report, made without training."""
    from audits.models import FairnessReport
    from training.models import ModelVersion, TrainingRun

    def make(*, roc_auc=0.74, baseline=0.72, parity=0.05, epsilon=2.9, private=True,
             status=ModelVersion.Status.PENDING_REVIEW):
        report = fairness_report(parity_difference=parity)
        run = TrainingRun.objects.create(
            organisation=validated_version.dataset.organisation,
            dataset_version=validated_version, vertical="finance", problem="credit_risk",
            status=TrainingRun.Status.SUCCEEDED, metrics={"roc_auc": roc_auc},
            privacy=({"enabled": True, "epsilon": epsilon, "delta": 1e-5, "steps": 30,
                      "noise_multiplier": 1.1, "sample_rate": 0.2, "accountant": "prv",
                      "max_grad_norm": 1.0, "target_epsilon": 3.0}
                     if private else {"enabled": False, "epsilon": None}),
            fairness=report, result={"baseline": {"name": "logistic_regression",
                                                  "metrics": {"roc_auc": baseline}}},
            created_by=analyst,
        )
        FairnessReport.objects.create(run=run, passed=report["sex"]["passed"], report=report)
        return ModelVersion.objects.create(
            organisation=run.organisation, run=run, vertical="finance", problem="credit_risk",
            artifact_sha256="0" * 64, status=status,
        )

    return make


@pytest.fixture
def approve(reviewer):
    from audits.services import review_model

    def do(model_version, comment="Looks sound."):
        review_model(model_version=model_version, user=reviewer, decision="approve",
                     comment=comment)
        model_version.refresh_from_db()
        return model_version

    return do
