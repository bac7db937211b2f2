"""Fairness reports, the review queue and decisions, and the audit log."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render

from accounts import scoping
from accounts.permissions import can_review, reviewer_required
from audits import services, verdicts
from audits.forms import ReviewForm
from audits.log_sentences import sentence
from audits.models import AuditLogEntry, FairnessReport
from audits.report_display import attribute_sections, policy_rows
from governance.decision import decision_for
from ingestion.codebook import Codebook
from ml_core.privacy_statement import guarantee
from training.models import ModelVersion, TrainingRun
from verticals import registry


def _report_context(run: TrainingRun) -> dict:
    stored = FairnessReport.objects.filter(run=run).first()
    report = stored.report if stored else (run.fairness or {})
    twin = stored.nonprivate_report if stored else (run.result or {}).get("nonprivate_fairness")
    policy = stored.policy if stored and stored.policy else {}
    if not policy:
        try:
            policy = asdict(registry.get_problem(run.vertical, run.problem).spec.fairness)
        except registry.RegistryError:
            policy = {}
    shown = Codebook.of_run(run)  # attributes and groups as the analyst named them
    return {
        "report_run": run, "report_exists": bool(report),
        "report_verdict": verdicts.for_report(report),
        "privacy_cost": _privacy_cost(run),
        "sections": attribute_sections(report=shown.fairness(report),
                                       nonprivate_report=shown.fairness(twin), policy=policy),
        "policy_rows": policy_rows(policy),
    }


def _privacy_cost(run: TrainingRun) -> dict:
    """Private models only: per group, accuracy beside the non-private twin's, groups whose
    drop exceeds the overall drop flagged (governance.cards computes it for the card too)."""
    from governance.cards import privacy_cost_by_group

    model_version = ModelVersion.objects.filter(run=run).first()
    if model_version is None or not (run.privacy or {}).get("enabled"):
        return {}
    return privacy_cost_by_group(model_version)


def run_report(request, run_id: int):
    runs = scoping.for_user(TrainingRun.objects.all(), request.user)
    run = get_object_or_404(runs, pk=run_id)
    return render(request, "audits/report.html", {
        "run": run, "model_version": ModelVersion.objects.filter(run=run).first(),
        **_report_context(run),
    })


@reviewer_required
def review_queue(request):
    pending = scoping.for_user(
        ModelVersion.objects.filter(status__in=ModelVersion.UNDECIDED)
        .select_related("run__dataset_version__dataset", "run__fairness_report"),
        request.user,
    )
    decided = scoping.for_user(
        ModelVersion.objects.exclude(status__in=ModelVersion.UNDECIDED)
        .select_related("run"), request.user,
    )[:20]
    return render(request, "audits/queue.html", {
        "pending": pending, "rows": [decision_for(mv, with_gates=False) for mv in pending],
        "decided": decided})


def review_detail(request, model_version_id: int):
    versions = scoping.for_user(ModelVersion.objects.select_related("run"), request.user)
    model_version = get_object_or_404(versions, pk=model_version_id)
    reviewer = can_review(request.user)
    if request.method == "POST" and not reviewer:
        # Analysts read the report; deciding is the reviewers' job.
        raise PermissionDenied("Only reviewers and admins can review models.")
    form = None
    if reviewer and model_version.status in ModelVersion.UNDECIDED:
        form = ReviewForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.review_model(
                    model_version=model_version, user=request.user,
                    decision=form.cleaned_data["decision"], comment=form.cleaned_data["comment"],
                )
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Decision recorded.")
                return redirect("review_detail", model_version_id=model_version.pk)
    elif request.method == "POST":
        messages.info(request, "This model has already been decided.")
        return redirect("review_detail", model_version_id=model_version.pk)
    return render(request, "audits/review.html", {
        "model_version": model_version, "run": model_version.run, "form": form,
        "decision": decision_for(model_version),
        "reviews": model_version.reviews.select_related("reviewer"),
        "privacy": model_version.run.privacy or {},
        "guarantee": guarantee(model_version.run.privacy or {}),
        **_report_context(model_version.run),
    })


def audit_log(request):
    entries = scoping.for_user(AuditLogEntry.objects.select_related("actor"), request.user)
    page = Paginator(entries, 25).get_page(request.GET.get("page"))
    return render(request, "audits/audit_log.html", {
        "page": page, "rows": [(entry, sentence(entry)) for entry in page.object_list]})
