"""Mitigating a failed fairness report, started by reviewers and admins from the model's page.

* ``threshold_optimizer``: fairlearn's ThresholdOptimizer on the model's scores. The thresholds
  are fitted on the rows outside the run's test split and judged on the test rows, so the new
  report sits beside the original on the same rows, with the utility cost.
* ``reweighing``: a new training run on the same dataset version, seed and privacy request,
  with the training rows reweighed for the attribute (``TrainConfig.reweigh_attribute``). It
  goes through the queue, the privacy ledger and the registry like any run; once it has
  succeeded, :func:`refresh_reweighing` sets its test report beside the original's (same
  seed, so the same test rows) with the utility cost.
"""

from __future__ import annotations

from accounts.models import REVIEWER_ROLES
from accounts.scoping import member_of
from audits import verdicts
from audits.models import FairnessReport
from audits.services import log_action
from catalog.families import family_of_model
from governance.models import Mitigation
from governance.scoring import loaded_model
from ingestion.services import load_frame
from ml_core.artifacts import predict_proba
from ml_core.data import binary_target, label_text
from ml_core.fairness import sensitive_frame
from ml_core.mitigation import CONSTRAINTS, threshold_optimizer
from ml_core.spec import ColumnMapping
from training.models import ModelVersion, TrainingRun
from training.predictions import read_predictions
from verticals.registry import get_problem


def _shortfall(part: dict) -> float:
    """How far an attribute's worst failing check is outside its threshold."""
    return max((abs(float(check["value"]) - float(check["threshold"]))
                for check in part.get("checks") or []
                if check.get("passed") is False and check.get("value") is not None
                and check.get("threshold") is not None), default=0.0)


def _worst_attribute(report: dict) -> str:
    """The failed attribute whose failing check misses its threshold by most. Only judged
    attributes that failed qualify (audits.verdicts): never one whose checks passed or whose
    groups were too small to judge; a ratio near 1 is no disparity, so raw disparity values
    are not compared."""
    failing = [(name, part) for name, part in report.items() if isinstance(part, dict)
               and verdicts.for_attribute(part).code == "failed"]
    if not failing:
        raise ValueError("no judged attribute of the model's fairness report failed")
    return max(failing, key=lambda item: _shortfall(item[1]))[0]


# Disparities where a larger value is worse; the ratios (lowest ÷ highest) are worse lower.
_WORSE_WHEN_LOWER = ("ratio",)


def disparity_changes(*, original: dict, mitigated: dict, attribute: str) -> dict:
    """Per disparity of ``attribute``: which got worse and which better after mitigation, and
    a warning sentence when it made them worse (all of them, or some)."""
    before = ((original or {}).get(attribute) or {}).get("disparities") or {}
    after = ((mitigated or {}).get(attribute) or {}).get("disparities") or {}
    worse, better = [], []
    for name, old in before.items():
        new = after.get(name)
        if not isinstance(old, int | float) or not isinstance(new, int | float):
            continue
        lower_is_worse = any(word in name for word in _WORSE_WHEN_LOWER)
        delta = (old - new) if lower_is_worse else (new - old)
        if round(delta, 3) > 0:
            worse.append(name.replace("_", " "))
        elif round(delta, 3) < 0:
            better.append(name.replace("_", " "))
    warning = ""
    if worse and not better:
        warning = (f"This mitigation made every disparity of {attribute} worse "
                   f"({', '.join(worse)}): do not use it.")
    elif worse:
        warning = (f"This mitigation made some disparities of {attribute} worse: "
                   f"{', '.join(worse)}.")
    return {"worse": worse, "better": better, "warning": warning}


METHODS = ("threshold_optimizer", "reweighing")
# Utility metrics compared between the original and the reweighed model (higher is better).
REWEIGHING_UTILITY = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "pr_auc")


def _failed_report(model_version: ModelVersion, user) -> FairnessReport:
    member_of(user, model_version, roles=REVIEWER_ROLES,
              refusal="only a reviewer or admin of this organisation can mitigate")
    family = family_of_model(model_version)
    if not family.supports.mitigation:
        raise ValueError(f"models of the {family.name} family cannot be mitigated here")
    stored = FairnessReport.objects.filter(run=model_version.run).first()
    if stored is None:
        raise ValueError("this model has no fairness report")
    if stored.passed:
        raise ValueError("the fairness report passed: there is nothing to mitigate")
    return stored


def mitigate(*, model_version: ModelVersion, user, constraint: str = "demographic_parity",
             attribute: str | None = None, method: str = "threshold_optimizer") -> Mitigation:
    """Reviewers and admins: mitigate a model whose fairness report failed, by
    post-processing its scores (``threshold_optimizer``) or by retraining it on reweighed
    data (``reweighing``, which queues a new run; see :func:`start_reweighing`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}")
    if method == "reweighing":
        return start_reweighing(model_version=model_version, user=user, attribute=attribute)
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {list(CONSTRAINTS)}")
    stored = _failed_report(model_version, user)
    run = model_version.run
    attribute = attribute or _worst_attribute(stored.report)
    loaded = loaded_model(model_version)
    frame = load_frame(run.dataset_version)
    if not frame.index.is_unique:
        frame = frame.reset_index(drop=True)
    mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
    if attribute not in mapping.sensitive:
        raise ValueError(f"{attribute!r} is not a sensitive column of this model")
    spec = get_problem(model_version.vertical, model_version.problem).spec
    test = read_predictions(run.artifact_path)
    frame = frame[frame[mapping.target].notna()]
    # The target as the run made it binary (a grade cut by its rule, grouped labels).
    binary = binary_target(frame[mapping.target], mapping, default_rule=spec.target_rule)
    positive = label_text(loaded.metadata["positive_label"])
    y = (binary.labels.map(label_text) == positive).astype(int).to_numpy()
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
    stored_result = result.to_dict()
    # "Original" is the model's own report (the same test rows and decisions), so its
    # numbers are the report page's; the mitigated side is judged on those rows too.
    stored_result["original"] = {**stored_result["original"], "fairness": stored.report,
                                 "passed": bool(stored.passed)}
    stored_result["changes"] = disparity_changes(
        original=stored.report, mitigated=result.mitigated["fairness"], attribute=attribute)
    mitigation = Mitigation.objects.create(
        organisation=model_version.organisation, model_version=model_version,
        method=result.method, constraint=constraint, attribute=attribute,
        result=_json(stored_result), created_by=user)
    log_action(organisation=model_version.organisation, actor=user, action="model.mitigated",
               obj=model_version, detail={"mitigation": mitigation.pk, "constraint": constraint,
                                          "attribute": attribute,
                                          "passed": result.mitigated["passed"]})
    return mitigation


def start_reweighing(*, model_version: ModelVersion, user, attribute: str | None = None,
                     enqueue: bool = True) -> Mitigation:
    """Queue a run like the model's own (dataset version, seed, options, privacy request)
    with the training rows reweighed for ``attribute`` (default: the worst failing one).

    The run is checked against the privacy budget and charged to the ledger like any other;
    ValueError when it is refused. ``enqueue=False`` leaves it for the caller to execute.
    """
    from training.services import start_run

    stored = _failed_report(model_version, user)
    run = model_version.run
    attribute = attribute or _worst_attribute(stored.report)
    mapping = ColumnMapping.from_dict(run.dataset_version.mapping)
    if attribute not in mapping.sensitive:
        raise ValueError(f"{attribute!r} is not a sensitive column of this model")
    requested = run.privacy_requested or {}
    new_run = start_run(
        version=run.dataset_version, user=user,
        privacy_enabled=bool(requested.get("enabled", True)),
        target_epsilon=requested.get("target_epsilon"), delta=requested.get("delta"),
        max_grad_norm=requested.get("max_grad_norm"),
        config={**(run.config or {}), "reweigh_attribute": attribute}, enqueue=enqueue,
    )
    mitigation = Mitigation.objects.create(
        organisation=model_version.organisation, model_version=model_version,
        method="reweighing", constraint="demographic_parity", attribute=attribute,
        result={"method": "reweighing", "attribute": attribute, "run": new_run.pk,
                "status": new_run.status,
                "notes": [f"A new run ({new_run.pk}) retrains the model with each training "
                          f"row weighted by P(group) P(label) / P(group, label) of "
                          f"{attribute}; its report appears here when it has finished."]},
        created_by=user)
    log_action(organisation=model_version.organisation, actor=user, action="model.mitigated",
               obj=model_version, detail={"mitigation": mitigation.pk, "method": "reweighing",
                                          "attribute": attribute, "run": new_run.pk})
    return mitigation


def _side(run: TrainingRun) -> dict:
    report = FairnessReport.objects.filter(run=run).first()
    return {"metrics": {name: (run.metrics or {}).get(name) for name in REWEIGHING_UTILITY
                        if (run.metrics or {}).get(name) is not None},
            "fairness": report.report if report is not None else {},
            "passed": bool(report.passed) if report is not None else None,
            "run": run.pk}


def refresh_reweighing(mitigation: Mitigation) -> Mitigation:
    """Once the reweighed run has finished, store its report beside the original's with the
    utility cost (original minus reweighed: positive means utility lost). Idempotent."""
    result = dict(mitigation.result or {})
    if mitigation.method != "reweighing" or "mitigated" in result or not result.get("run"):
        return mitigation
    new_run = TrainingRun.objects.filter(pk=result["run"]).first()
    if new_run is None:
        return mitigation
    if new_run.status != TrainingRun.Status.SUCCEEDED:
        if result.get("status") != new_run.status:
            result["status"] = new_run.status
            mitigation.result = result
            mitigation.save(update_fields=["result"])
        return mitigation
    original, mitigated = _side(mitigation.model_version.run), _side(new_run)
    cost = {name: original["metrics"][name] - mitigated["metrics"][name]
            for name in original["metrics"] if name in mitigated["metrics"]}
    split = (new_run.result or {}).get("split") or {}
    result.update({
        "status": new_run.status, "original": original, "mitigated": mitigated,
        "changes": disparity_changes(original=original["fairness"],
                                     mitigated=mitigated["fairness"],
                                     attribute=mitigation.attribute),
        "utility_cost": cost, "eval_rows": split.get("test"),
        "notes": [*result.get("notes", []),
                  "Both models were trained with the same seed on the same dataset version, "
                  "so both reports are on the same held-out test rows.",
                  "The weights come from the training rows' group and label counts without "
                  "differential privacy; a private run's per-row gradients are still clipped, "
                  "so its stated epsilon holds."],
    })
    mitigation.result = _json(result)
    mitigation.save(update_fields=["result"])
    return mitigation


def _json(value):
    from ml_core.pipeline import json_ready

    return json_ready(value)


__all__ = ["METHODS", "mitigate", "refresh_reweighing", "start_reweighing"]
