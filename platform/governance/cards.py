"""Model cards: one JSON document per model version, rendered as a printable page.

What a model-risk office or a data-protection officer reads before signing: the intended use,
the data (rows, period, checksum), metrics beside the baseline, the privacy guarantee in full,
fairness by group, the approval record and the known limitations.
"""

from __future__ import annotations

from audits import figures, verdicts
from audits.models import FairnessReport
from governance.registry import evaluate_gates
from ingestion.codebook import Codebook
from ml_core.privacy_statement import guarantee
from training.models import ModelVersion
from verticals.registry import get_problem

CARD_VERSION = 1


def _data_section(model_version: ModelVersion) -> dict:
    version = model_version.run.dataset_version
    profile = version.profile or {}
    mapping = version.mapping or {}
    time_column = next((column for role, column in mapping.get("roles") or []
                        if role == "time"), None)
    period = None
    if time_column:
        for column in profile.get("columns") or []:
            if column.get("name") == time_column and column.get("histogram"):
                bins = column["histogram"].get("bins") or []
                if bins:
                    period = {"column": time_column, "start": bins[0], "end": bins[-1]}
    split = (model_version.run.result or {}).get("split") or {}
    shown = Codebook.of(version)
    return {
        "dataset": version.dataset.name,
        "dataset_id": version.dataset_id,
        "version": version.number,
        "file": version.original_filename,
        "sha256": version.sha256,
        "rows": profile.get("rows"),
        "columns": profile.get("n_columns"),
        "period": period,
        "uploaded_at": version.created_at.isoformat(),
        "target": shown.column(mapping["target"]) if mapping.get("target") else None,
        "features": [shown.column(c) for c in mapping.get("features") or []],
        "sensitive": [shown.column(c) for c in mapping.get("sensitive") or []],
        "excluded": [shown.column(c) for c in mapping.get("exclude") or []],
        "split": split,
        # The analyst's names and labels, keyed by the file's own names and codes.
        "codebook": shown.to_dict(),
    }


def _metrics_section(model_version: ModelVersion, primary: str) -> dict:
    result = model_version.run.result or {}
    baseline = result.get("baseline") or {}
    twin = result.get("nonprivate_metrics") or {}
    rows = []
    for name, value in (model_version.run.metrics or {}).items():
        rows.append({"metric": name, "model": value,
                     "baseline": (baseline.get("metrics") or {}).get(name),
                     "nonprivate_twin": twin.get(name)})
    return {"primary_metric": primary, "baseline_name": baseline.get("name"), "rows": rows,
            "evaluated_on": "the held-out test split"}


PRIVACY_FIELDS = ("enabled", "epsilon", "delta", "accountant", "sample_rate", "noise_multiplier",
                  "max_grad_norm", "steps", "planned_steps", "target_epsilon", "poisson_sampling")


def _privacy_section(model_version: ModelVersion) -> dict:
    privacy = model_version.run.privacy or {}
    section = {name: privacy.get(name) for name in PRIVACY_FIELDS}
    if privacy.get("enabled"):
        section["statement"] = (
            f"({figures.epsilon(privacy.get('epsilon'))}, {privacy.get('delta'):.2g})-"
            "differential privacy "
            f"for each record of the training data, by DP-SGD with Poisson sampling (rate "
            f"{privacy.get('sample_rate'):.4g}), noise multiplier "
            f"{privacy.get('noise_multiplier'):.4g}, per-sample clipping at "
            f"{privacy.get('max_grad_norm')}, {privacy.get('steps')} steps, accounted with the "
            f"{privacy.get('accountant')} accountant."
        )
        words = guarantee(privacy)
        if words:  # a run with a privacy unit and composed preprocessing
            section.update(statement=words["statement"], unit=words["unit"],
                           bound=words["bound"], breakdown=words["breakdown"],
                           curator_only=words["curator_only"])
    else:
        section["statement"] = "No differential privacy: the model may reveal training records."
    result = model_version.run.result or {}
    if privacy.get("enabled"):
        section["empirical_audit"] = _audit_summary(result.get("privacy_audit"),
                                                    refused=result.get("privacy_audit_refused"),
                                                    model_epsilon=privacy.get("epsilon"))
    entry = getattr(model_version.run, "ledger_entry", None)
    if entry is not None:
        section["dataset_ledger"] = {"charged_epsilon": entry.epsilon,
                                     "dataset_total_after": entry.total_epsilon_after,
                                     "composition": entry.composition}
    return section


def _audit_summary(audit: dict | None, *, refused: dict | None = None,
                   model_epsilon: float | None = None) -> dict:
    """The membership-inference audit (governance.privacy_audit) as the card states it."""
    refusal = f" The last request was {refused['refused']}." if refused else ""
    if not audit:
        return {"done": False, "statement": "No empirical audit yet (a reviewer can run one "
                                            "for tabular models)." + refusal}
    bound, claimed = audit.get("epsilon_lower_bound"), audit.get("claimed_epsilon")
    confidence = float(audit.get("confidence") or 0.95)
    # The reader judges this model: the bound is compared with the model's own epsilon; the
    # retraining's accountant (same configuration) is named only when it differs.
    own = float(model_epsilon) if model_epsilon is not None else float(claimed)
    statement = (f"Empirical epsilon lower bound {figures.epsilon(bound)} ({confidence:.0%} "
                 f"confidence) vs this model’s epsilon {figures.epsilon(own)}, from "
                 f"{audit.get('canaries')} canaries.")
    if figures.epsilon(claimed) != figures.epsilon(own):
        statement += (f" The audit's retraining (same configuration) was accounted at "
                      f"epsilon {figures.epsilon(claimed)}.")
    statement += (" Consistent with the claim: the audit found no more leakage than claimed."
                  if audit.get("consistent") else
                  " The bound EXCEEDS the claim: this training leaks more than its accountant "
                  "says; do not rely on the stated guarantee.")
    if audit.get("ledger"):
        statement += (f" Its retraining was charged ε "
                      f"{figures.epsilon(audit['ledger']['charged_epsilon'])} "
                      "to the dataset's privacy ledger.")
    statement += refusal
    return {"done": True, "epsilon_lower_bound": bound, "claimed_epsilon": claimed,
            "model_epsilon": own,
            "confidence": confidence, "consistent": audit.get("consistent"),
            "canaries": audit.get("canaries"), "method": audit.get("method"),
            "statement": statement}


def _fairness_section(model_version: ModelVersion) -> dict:
    report = FairnessReport.objects.filter(run=model_version.run).first()
    if report is None:
        return {"passed": None, "attributes": {}}
    attributes = {}
    for attribute, part in Codebook.of_run(model_version.run).fairness(report.report).items():
        attributes[attribute] = {
            "by_group": part.get("by_group") or {},
            "disparities": part.get("disparities") or {},
            "checks": part.get("checks") or [],
            "passed": part.get("passed"),
            **verdicts.for_attribute(part).to_dict(),
        }
    return {"passed": report.passed, **verdicts.for_report(report.report).to_dict(),
            "policy": report.policy, "attributes": attributes}


def privacy_cost_by_group(model_version: ModelVersion) -> dict:
    """Per group, accuracy of the private model beside its non-private twin. A group is
    flagged only for a real drop: it lost accuracy (at the three decimals shown) and lost more
    than the model did overall (DP hits small groups hardest). When the private model is
    better overall, the sentence says "higher", never a negative "lower"."""
    run = model_version.run
    report = FairnessReport.objects.filter(run=run).first()
    twin_metrics = (run.result or {}).get("nonprivate_metrics") or {}
    if report is None or not report.nonprivate_report or "accuracy" not in twin_metrics:
        return {}
    overall = float(twin_metrics["accuracy"]) - float((run.metrics or {}).get("accuracy", 0.0))
    # Compared at the precision the page shows, so a drop printed "0.000" is never flagged.
    shown_overall = max(round(overall, 3), 0.0)
    out = {"overall_accuracy_drop": overall, "overall_sentence": _overall_sentence(overall),
           "attributes": {}}
    for attribute, part in (report.report or {}).items():
        twin_groups = (report.nonprivate_report.get(attribute) or {}).get("by_group") or {}
        rows = {}
        for group, stats in (part.get("by_group") or {}).items():
            twin = twin_groups.get(group) or {}
            if stats.get("accuracy") is None or twin.get("accuracy") is None:
                continue
            drop = float(twin["accuracy"]) - float(stats["accuracy"])
            flagged = round(drop, 3) > shown_overall
            rows[group] = {"private_accuracy": stats["accuracy"],
                           "nonprivate_accuracy": twin["accuracy"], "drop": drop,
                           "count": stats.get("count"), "flagged": flagged,
                           "flag_text": ("lost more than the model overall" if overall > 0
                                         else "lost accuracy") if flagged else ""}
        out["attributes"][attribute] = rows
    out["attributes"] = Codebook.of_run(run).by_attribute(out["attributes"])
    return out


def _overall_sentence(overall_drop: float) -> str:
    """The overall comparison in words: the sign becomes "lower" or "higher"."""
    gap = abs(overall_drop)
    if round(gap, 3) == 0:
        return ("Overall the private model's accuracy equals its twin's (to three decimals); "
                "groups that lost accuracy are flagged.")
    if overall_drop > 0:
        return (f"Overall the private model's accuracy is {gap:.3f} lower than its twin's; "
                "groups that lost more than that are flagged, since differential privacy "
                "tends to cost small groups the most.")
    return (f"Overall the private model's accuracy is {gap:.3f} higher than its twin's; "
            "groups whose accuracy still dropped are flagged.")


def _approval_section(model_version: ModelVersion) -> dict:
    return {
        "status": model_version.status,
        "status_label": model_version.get_status_display(),
        "reviews": [
            {"reviewer": review.reviewer.get_username(), "decision": review.decision,
             "comment": review.comment, "at": review.created_at.isoformat()}
            for review in model_version.reviews.select_related("reviewer").order_by("created_at")
        ],
        "history": [
            {"action": event.action, "from": event.from_status, "to": event.to_status,
             "by": event.actor.get_username() if event.actor else "system",
             "reason": event.reason, "override": event.override,
             "at": event.created_at.isoformat()}
            for event in model_version.promotion_events.select_related("actor").order_by(
                "created_at", "id")
        ],
        "gates": evaluate_gates(model_version),
    }


def _limitations(model_version: ModelVersion, *, fairness: dict, privacy: dict) -> list[str]:
    notes = list((model_version.run.result or {}).get("notes") or [])
    policy = fairness.get("policy") or {}
    min_group = policy.get("min_group_size")
    small = sorted({
        f"{attribute}={group}"
        for attribute, part in fairness.get("attributes", {}).items()
        for group, stats in part.get("by_group", {}).items()
        if min_group and isinstance(stats, dict) and (stats.get("count") or 0) < min_group
    })
    if small:
        notes.append(f"Groups with fewer than {min_group} test rows were reported but not "
                     f"judged: {', '.join(small)}.")
    if privacy.get("enabled"):
        notes.append("The privacy guarantee covers this model. The non-private twin trained "
                     "for comparison is not released; only its metrics are shown.")
        notes.append("Differential privacy tends to cost small groups more accuracy than large "
                     "ones: compare the per-group numbers with the non-private twin's.")
    else:
        notes.append("Trained without differential privacy.")
    notes.append("Metrics come from one held-out split of one dataset; performance on other "
                 "populations or later periods is not measured here (see drift reports).")
    return notes


def model_card(model_version: ModelVersion) -> dict:
    """The card as a JSON-ready dict."""
    problem = get_problem(model_version.vertical, model_version.problem)
    spec = problem.spec
    fairness = _fairness_section(model_version)
    privacy = _privacy_section(model_version)
    return {
        "card_version": CARD_VERSION,
        "model": {
            "id": model_version.pk, "run": model_version.run_id,
            "vertical": model_version.vertical, "problem": model_version.problem,
            "created_at": model_version.created_at.isoformat(),
            "artifact_sha256": model_version.artifact_sha256,
            "code_version": model_version.code_version,
            "seed": model_version.seed, "config": model_version.config,
            "model_family": spec.model_family,
            "device": model_version.run.device,
        },
        "intended_use": {
            "problem": spec.name, "description": spec.description,
            "task_type": spec.task_type.value,
            "organisation": model_version.organisation.name,
            "out_of_scope": "Decisions about individuals without human review; populations "
                            "unlike the training data.",
        },
        "data": _data_section(model_version),
        "metrics": _metrics_section(model_version, spec.primary_metric),
        "privacy": privacy,
        "fairness": fairness,
        "fairness_under_privacy": privacy_cost_by_group(model_version),
        "approval": _approval_section(model_version),
        "limitations": _limitations(model_version, fairness=fairness, privacy=privacy),
    }
