"""Builders for web page tests: a finished run made directly, with result JSON shaped like
training.services writes it, so page tests stay fast (test_pages.py also renders a real run)."""

from __future__ import annotations

import hashlib

from django.utils import timezone

from audits.models import FairnessReport
from ingestion.models import Dataset, DatasetVersion
from training.models import ModelVersion, TrainingRun

POLICY = {"min_disparate_impact_ratio": 0.8, "max_demographic_parity_difference": 0.1,
          "max_equalized_odds_difference": 0.15, "min_group_size": 20}


def _groups(rates: dict[str, float]) -> dict:
    return {g: {"count": 100, "selection_rate": r, "tpr": min(1.0, r + 0.3), "fpr": r / 2,
                "accuracy": 0.75} for g, r in rates.items()}


def _attribute(rates: dict[str, float]) -> dict:
    top, low = max(rates.values()), min(rates.values())
    ratio, diff = low / top, top - low
    checks = [
        {"name": "demographic_parity_ratio", "value": ratio, "threshold": 0.8,
         "passed": ratio >= 0.8},
        {"name": "demographic_parity_difference", "value": diff, "threshold": 0.1,
         "passed": diff <= 0.1},
        {"name": "equalized_odds_difference", "value": diff, "threshold": 0.15,
         "passed": diff <= 0.15},
    ]
    return {"by_group": _groups(rates), "judged_groups": list(rates),
            "disparities": {"demographic_parity_difference": diff,
                            "demographic_parity_ratio": ratio,
                            "equalized_odds_difference": diff},
            "checks": checks, "passed": all(c["passed"] for c in checks)}


def make_version(*, organisation, user, status=DatasetVersion.Status.VALIDATED,
                 name="applications") -> DatasetVersion:
    dataset = Dataset.objects.create(organisation=organisation, vertical="finance",
                                     problem="credit_risk", name=name, created_by=user)
    return DatasetVersion.objects.create(
        dataset=dataset, number=1, original_filename="applications.csv",
        sha256=hashlib.sha256(name.encode()).hexdigest(), size_bytes=10, status=status,
        read_options={"delimiter": ",", "encoding": "utf-8", "header": True},
        columns=["applicant_id", "age", "sex", "income", "default"],
        suggested_mapping={"target": "default", "features": [], "sensitive": ["sex", "age"],
                           "exclude": [], "id": "applicant_id", "positive_label": None},
        uploaded_by=user,
    )


def make_succeeded_run(*, version: DatasetVersion, user, group_name: str = "female"
                       ) -> TrainingRun:
    """A succeeded private run with its model version and fairness report."""
    fairness = {"sex": _attribute({group_name: 0.2, "male": 0.4}),
                "age": _attribute({"<25": 0.30, "25-34": 0.32})}
    twin = {"sex": _attribute({group_name: 0.25, "male": 0.38}),
            "age": _attribute({"<25": 0.31, "25-34": 0.33})}
    privacy = {"enabled": True, "epsilon": 2.93, "delta": 1e-5, "noise_multiplier": 1.1234,
               "sample_rate": 0.08, "steps": 250, "accountant": "prv", "target_epsilon": 3.0,
               "max_grad_norm": 1.0}
    run = TrainingRun.objects.create(
        organisation=version.dataset.organisation, dataset_version=version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.SUCCEEDED,
        config={"seed": 0, "epochs": 2}, privacy_requested={"enabled": True,
                                                           "target_epsilon": 3.0},
        stage="done", epoch=2, total_epochs=2, loss=0.51, val_metric=0.74, epsilon_spent=2.93,
        history=[{"epoch": 1, "loss": 0.6, "val_metric": 0.7, "epsilon": 2.0},
                 {"epoch": 2, "loss": 0.51, "val_metric": 0.74, "epsilon": 2.93}],
        metrics={"roc_auc": 0.7412, "accuracy": 0.71, "f1": 0.52},
        privacy=privacy, fairness=fairness,
        result={"baseline": {"name": "logistic_regression",
                             "metrics": {"roc_auc": 0.7301, "accuracy": 0.7, "f1": 0.5}},
                "nonprivate_metrics": {"roc_auc": 0.7655, "accuracy": 0.73, "f1": 0.55},
                "nonprivate_fairness": twin, "fairness_passed": False,
                "split": {"method": "stratified", "train": 650, "val": 150, "test": 200,
                          "seed": 0}},
        device="cpu", created_by=user, started_at=timezone.now(), finished_at=timezone.now(),
    )
    ModelVersion.objects.create(organisation=run.organisation, run=run, vertical=run.vertical,
                                problem=run.problem, artifact_sha256="0" * 64)
    FairnessReport.objects.create(run=run, passed=False, report=fairness,
                                  nonprivate_report=twin, policy=POLICY)
    return run
