"""Mitigating a failed fairness report: fairlearn's ThresholdOptimizer on the model's scores.

Reviewers and admins start it from the model's page. The thresholds are fitted on the rows
outside the run's test split and judged on the test rows, so the new report sits beside the
original on the same rows, with the utility cost.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from django.core.exceptions import PermissionDenied

from accounts.scoping import membership_for
from audits.models import FairnessReport
from audits.services import log_action
from governance.models import Mitigation
from governance.scoring import loaded_model
from ingestion.services import load_frame
from ml_core.artifacts import predict_proba
from ml_core.data import label_text
from ml_core.fairness import sensitive_frame
from ml_core.mitigation import CONSTRAINTS, threshold_optimizer
from ml_core.spec import ColumnMapping
from training.models import ModelVersion
from verticals.registry import get_problem


def _worst_attribute(report: dict) -> str:
    failing = [(name, part) for name, part in report.items() if not part.get("passed", True)]
    candidates = failing or list(report.items())
    if not candidates:
        raise ValueError("the model's fairness report has no sensitive attribute")

    def spread(item):
        disparities = item[1].get("disparities") or {}
        return max((v for v in disparities.values() if isinstance(v, int | float)), default=0)

    return max(candidates, key=spread)[0]


def mitigate(*, model_version: ModelVersion, user, constraint: str = "demographic_parity",
             attribute: str | None = None) -> Mitigation:
    """Reviewers and admins: post-process a model whose fairness report failed."""
    membership = membership_for(user)
    if membership.organisation_id != model_version.organisation_id or not membership.can_review:
        raise PermissionDenied("only a reviewer or admin of this organisation can mitigate")
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {list(CONSTRAINTS)}")
    run = model_version.run
    stored = FairnessReport.objects.filter(run=run).first()
    if stored is None:
        raise ValueError("this model has no fairness report")
    if stored.passed:
        raise ValueError("the fairness report passed: there is nothing to mitigate")
    attribute = attribute or _worst_attribute(stored.report)
    loaded = loaded_model(model_version)
    frame = load_frame(run.dataset_version)
    if not frame.index.is_unique:
        frame = frame.reset_index(drop=True)
    mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
    if attribute not in mapping.sensitive:
        raise ValueError(f"{attribute!r} is not a sensitive column of this model")
    spec = get_problem(model_version.vertical, model_version.problem).spec
    test = pd.read_csv(Path(run.artifact_path) / "predictions.csv")
    frame = frame[frame[mapping.target].notna()]
    positive = label_text(loaded.metadata["positive_label"])
    y = (frame[mapping.target].map(label_text) == positive).astype(int).to_numpy()
    scores = predict_proba(loaded, frame)
    groups = sensitive_frame(frame, mapping, spec)
    is_test = frame.index.isin(test["row_id"])
    by_row = test.set_index("row_id")
    eval_index = frame.index[is_test]
    result = threshold_optimizer(
        scores_fit=scores[~is_test], y_fit=y[~is_test],
        groups_fit=groups.loc[~is_test, attribute],
        scores_eval=scores[is_test], y_eval=by_row.loc[eval_index, "y_true"].to_numpy(),
        groups_eval=groups.loc[is_test].reset_index(drop=True),
        attribute=attribute, original_pred_eval=by_row.loc[eval_index, "y_pred"].to_numpy(),
        constraint=constraint, policy=spec.fairness, seed=int(model_version.seed or 0),
    )
    mitigation = Mitigation.objects.create(
        organisation=model_version.organisation, model_version=model_version,
        method=result.method, constraint=constraint, attribute=attribute,
        result=_json(result.to_dict()), created_by=user)
    log_action(organisation=model_version.organisation, actor=user, action="model.mitigated",
               obj=model_version, detail={"mitigation": mitigation.pk, "constraint": constraint,
                                          "attribute": attribute,
                                          "passed": result.mitigated["passed"]})
    return mitigation


def _json(value):
    from ml_core.pipeline import json_ready

    return json_ready(value)


__all__ = ["mitigate"]
