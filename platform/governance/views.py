"""Governance pages: a model's standing and gates, its card, a dataset's ledger, a problem's
gates, batch scoring. Views are thin: scope, call a service, render."""

from __future__ import annotations

import io

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import scoping
from accounts.models import Role
from accounts.permissions import can_review, require_role
from catalog.families import family_of_model
from governance import cards, ledger, registry, scoring
from governance.drift_display import drift_view
from governance.forms import (
    DatasetPolicyForm,
    GatePolicyForm,
    PromoteForm,
    RetireForm,
    ScheduleForm,
    ScoringUploadForm,
)
from governance.models import PrivacyAudit, ScoringJob
from ingestion.codebook import Codebook
from ingestion.models import Dataset
from training.models import ModelVersion


def _model_or_404(user, model_version_id: int) -> ModelVersion:
    versions = scoping.for_user(
        ModelVersion.objects.select_related("run__dataset_version__dataset", "organisation"), user)
    return get_object_or_404(versions, pk=model_version_id)


# The Models list's sortable columns: key -> (how a Decision sorts, missing values last).
SORTS = {
    "created": lambda d: d.model_version.created_at.timestamp(),
    "metric": lambda d: d.metric_value,
    "epsilon": lambda d: d.epsilon if d.private else None,
    "verdict": lambda d: d.verdict.code if d.verdict else None,
    "status": lambda d: d.model_version.status,
    "gates": lambda d: len(d.failing_gates),
}


def models_index(request):
    """Per problem, every model version with its primary metric, epsilon, fairness verdict,
    status and gates, sortable by any of them (``?sort=metric&dir=asc``)."""
    from governance.decision import decision_for

    sort = request.GET.get("sort", "created")
    sort = sort if sort in SORTS else "created"
    descending = request.GET.get("dir", "desc") != "asc"
    versions = scoping.for_user(
        ModelVersion.objects.select_related("run__dataset_version__dataset",
                                            "run__fairness_report"), request.user)
    problems: dict[tuple[str, str], list] = {}
    for model_version in versions:
        problems.setdefault((model_version.vertical, model_version.problem), []).append(
            decision_for(model_version))
    key = SORTS[sort]
    for rows in problems.values():
        present = [d for d in rows if key(d) is not None]
        missing = [d for d in rows if key(d) is None]
        rows[:] = sorted(present, key=key, reverse=descending) + missing
    return render(request, "governance/models.html", {
        "problems": sorted(problems.items()), "sort": sort,
        "dir": "desc" if descending else "asc", "columns": [
            ("metric", "Primary metric"), ("epsilon", "ε spent"), ("verdict", "Fairness"),
            ("status", "Status"), ("gates", "Gates"), ("created", "Trained")]})


def models_compare(request):
    """Two model versions side by side (``?a=ID&b=ID``): metrics, privacy, fairness per
    attribute, gates and the training configuration."""
    from governance.decision import decision_for

    picked = request.GET.getlist("pick") or [request.GET.get("a"), request.GET.get("b")]
    try:
        ids = [int(pk) for pk in picked]
    except (TypeError, ValueError):
        ids = []
    if len(ids) != 2:
        messages.error(request, "Tick exactly two model versions to compare.")
        return redirect("governance:models")
    pair = [decision_for(_model_or_404(request.user, pk)) for pk in ids]
    runs = [d.model_version.run for d in pair]
    metric_names = list(dict.fromkeys(n for run in runs for n in (run.metrics or {})))
    configs = [dict(run.config or {}) for run in runs]
    config_names = sorted(set(configs[0]) | set(configs[1]))
    attributes = list(dict.fromkeys(n for d in pair for n, _ in d.attributes))
    return render(request, "governance/compare.html", {
        "a": pair[0], "b": pair[1],
        "metrics": [(n, (runs[0].metrics or {}).get(n), (runs[1].metrics or {}).get(n))
                    for n in metric_names],
        "attributes": [(n, dict(pair[0].attributes).get(n), dict(pair[1].attributes).get(n))
                       for n in attributes],
        "gates": list(zip(pair[0].gates, pair[1].gates, strict=False)),
        "config": [(n, configs[0].get(n), configs[1].get(n)) for n in config_names],
    })


def model_detail(request, model_version_id: int):
    from governance.mitigation import refresh_reweighing

    model_version = _model_or_404(request.user, model_version_id)
    reviewer = can_review(request.user)
    mitigations = [refresh_reweighing(m) for m in
                   model_version.mitigations.select_related("created_by")[:5]]
    return render(request, "governance/model.html", {
        "model_version": model_version, "run": model_version.run,
        "summary": registry.gate_summary(model_version),
        "history": model_version.promotion_events.select_related("actor").order_by("-id"),
        # Two forms on one page: their fields get distinct ids (both post "reason").
        "promote_form": PromoteForm(auto_id="promote_%s") if reviewer else None,
        "retire_form": RetireForm(auto_id="retire_%s") if reviewer else None,
        "scoring_form": ScoringUploadForm(images=scoring.takes_images(model_version))
        if model_version.status in ModelVersion.SERVING else None,
        "jobs": model_version.scoring_jobs.order_by("-created_at")[:10],
        "drift_views": [drift_view(r) for r in
                        model_version.drift_reports.order_by("-created_at")[:5]],
        "mitigations": mitigations,
        "codebook": Codebook.of_run(model_version.run),
        "can_mitigate": reviewer and model_version.run.fairness_report.passed is False
        and family_of_model(model_version).supports.mitigation
        if hasattr(model_version.run, "fairness_report") else False,
        "champion": registry.champion_of(organisation=model_version.organisation,
                                         vertical=model_version.vertical,
                                         problem=model_version.problem),
    })


@require_POST
def model_promote(request, model_version_id: int):
    model_version = _model_or_404(request.user, model_version_id)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a reason for the promotion.")
        return redirect("governance:model", model_version_id=model_version.pk)
    try:
        registry.promote(model_version=model_version, user=request.user,
                         reason=form.cleaned_data["reason"],
                         override_reason=form.cleaned_data["override_reason"] or None)
    except registry.GateFailure as exc:
        for failure in exc.failures:
            messages.error(request, f"Blocked by the {failure['name']} gate: {failure['message']}")
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Model {model_version.pk} is now the champion.")
    return redirect("governance:model", model_version_id=model_version.pk)


@require_POST
def model_retire(request, model_version_id: int):
    model_version = _model_or_404(request.user, model_version_id)
    form = RetireForm(request.POST)
    try:
        if not form.is_valid():
            raise ValueError("say why this model is retired")
        registry.retire(model_version=model_version, user=request.user,
                        reason=form.cleaned_data["reason"])
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Model {model_version.pk} is retired.")
    return redirect("governance:model", model_version_id=model_version.pk)


@require_POST
def model_mitigate(request, model_version_id: int):
    from governance.mitigation import mitigate

    model_version = _model_or_404(request.user, model_version_id)
    try:
        mitigation = mitigate(
            model_version=model_version, user=request.user,
            constraint=request.POST.get("constraint") or "demographic_parity",
            attribute=request.POST.get("attribute") or None,
            method=request.POST.get("method") or "threshold_optimizer")
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Reweighed run queued: its report appears below when it has "
                                  "finished." if mitigation.method == "reweighing" else
                         "Mitigation computed: see it beside the original below.")
    return redirect("governance:model", model_version_id=model_version.pk)


@require_POST
def model_privacy_audit(request, model_version_id: int):
    """The audit spends the dataset's privacy budget: the first POST only shows what it
    would charge and asks; the confirmation form's POST (``confirm=yes``) queues it."""
    from governance.privacy_audit import audit_cost, check_auditable, request_audit

    model_version = _model_or_404(request.user, model_version_id)
    if not can_review(request.user):
        raise PermissionDenied("only a reviewer or admin of this organisation can audit")
    if request.POST.get("confirm") != "yes":
        try:
            check_auditable(model_version)
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("governance:card", model_version_id=model_version.pk)
        return render(request, "governance/privacy_audit_confirm.html", {
            "model_version": model_version, "cost": audit_cost(model_version)})
    try:
        request_audit(model_version=model_version, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Privacy audit queued: it retrains this configuration once "
                                  "with canaries; the result appears on this card.")
    return redirect("governance:card", model_version_id=model_version.pk)


@require_POST
def privacy_audit_cancel(request, audit_id: int):
    from governance.privacy_audit import cancel_privacy_audit

    audit = scoping.get_scoped_or_404(PrivacyAudit, request.user, pk=audit_id)
    if not can_review(request.user):
        raise PermissionDenied("only a reviewer or admin of this organisation can cancel an "
                               "audit")
    _cancel(request, lambda: cancel_privacy_audit(audit=audit, user=request.user),
            done="Privacy audit cancelled before it trained: nothing was charged.",
            asked="Cancellation requested: the audit stops at its training's next step and "
                  "is charged the steps it took.")
    return redirect("governance:card", model_version_id=audit.model_version_id)


def _cancel(request, cancel, *, done: str, asked: str) -> None:
    """Call a cancel service and say what happened (the run page's words for a cancel)."""
    try:
        cancelled = cancel()
    except ValueError as exc:  # it finished between the page load and the click
        messages.info(request, str(exc))
    else:
        messages.success(request, done if cancelled.status == "cancelled" else asked)


def model_card(request, model_version_id: int):
    from governance.privacy_audit import auditable, in_flight

    model_version = _model_or_404(request.user, model_version_id)
    return render(request, "governance/card.html", {
        "model_version": model_version, "card": cards.model_card(model_version),
        "can_audit": can_review(request.user) and auditable(model_version),
        "can_review": can_review(request.user), "audit_in_flight": in_flight(model_version)})


def model_card_json(request, model_version_id: int):
    model_version = _model_or_404(request.user, model_version_id)
    return JsonResponse(cards.model_card(model_version), json_dumps_params={"indent": 2})


def dataset_ledger(request, dataset_id: int):
    dataset = scoping.get_scoped_or_404(Dataset, request.user, pk=dataset_id)
    membership = scoping.membership_for(request.user)
    if request.method == "POST" and not membership.is_admin:
        raise PermissionDenied("only admins change a dataset's privacy budget")
    policy = ledger.policy_for(dataset)
    form = None
    if membership.is_admin:
        form = DatasetPolicyForm(request.POST or None, initial={
            "budget_epsilon": policy.budget_epsilon, "personal_data": policy.personal_data,
            "nonprivate_allowed": policy.nonprivate_allowed})
        if request.method == "POST" and form.is_valid():
            ledger.set_dataset_policy(dataset=dataset, user=request.user, **form.cleaned_data)
            messages.success(request, "Dataset policy saved.")
            return redirect("governance:ledger", dataset_id=dataset.pk)
    return render(request, "governance/ledger.html", {
        "dataset": dataset, "policy": policy, "status": ledger.ledger_status(dataset),
        "form": form})


def problem_gates(request, vertical: str, problem: str, *, schedule_form=None):
    membership = scoping.membership_for(request.user)
    if request.method == "POST" and not membership.is_admin:
        raise PermissionDenied("only admins change the promotion gates")
    try:
        policy = registry.gate_policy_for(organisation=membership.organisation,
                                          vertical=vertical, problem=problem)
    except LookupError:
        raise Http404("no such problem") from None
    form = None
    if membership.is_admin:
        posted = request.method == "POST" and schedule_form is None
        form = GatePolicyForm(request.POST if posted else None, instance=policy)
        if posted and form.is_valid():
            registry.update_gate_policy(user=request.user, vertical=vertical, problem=problem,
                                        **form.cleaned_data)
            messages.success(request, "Promotion gates saved.")
            return redirect("governance:problem", vertical=vertical, problem=problem)
    from governance.schedule_words import schedule_status
    from verticals.registry import get_problem

    return render(request, "governance/problem.html", {
        "vertical": vertical, "problem": problem, "policy": policy, "form": form,
        "champion": registry.champion_of(organisation=membership.organisation,
                                         vertical=vertical, problem=problem),
        "history": registry.history(organisation=membership.organisation, vertical=vertical,
                                    problem=problem)[:50],
        "schedule": schedule_status(
            organisation=membership.organisation, vertical=vertical, problem=problem,
            default_cron=get_problem(vertical, problem).spec.retrain_cron),
        "schedule_form": schedule_form or (ScheduleForm() if membership.is_admin else None),
    }, status=400 if schedule_form is not None else 200)


@require_POST
def problem_schedule(request, vertical: str, problem: str):
    from governance.schedules import set_schedule

    require_role(request.user, Role.ADMIN)  # before the form: its errors are for admins
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            set_schedule(user=request.user, vertical=vertical, problem=problem,
                         cron=form.cleaned_data["cron"] or None,
                         interval_hours=form.cleaned_data["interval_hours"],
                         enabled=form.cleaned_data["enabled"],
                         retrain_on_drift=form.cleaned_data["retrain_on_drift"])
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Retraining schedule saved.")
            return redirect("governance:problem", vertical=vertical, problem=problem)
    # The page again, with the errors beside the fields and what was typed kept.
    return problem_gates(request, vertical, problem, schedule_form=form)


@require_POST
def scoring_start(request, model_version_id: int):
    model_version = _model_or_404(request.user, model_version_id)
    form = ScoringUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose a file to score.")
        return redirect("governance:model", model_version_id=model_version.pk)
    try:
        job = scoring.start_scoring_job(model_version=model_version, user=request.user,
                                        file=form.cleaned_data["file"])
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("governance:model", model_version_id=model_version.pk)
    return redirect("governance:job", job_id=job.pk)


def scoring_job(request, job_id: int):
    job = scoping.get_scoped_or_404(ScoringJob.objects.select_related("model_version"),
                                    request.user, pk=job_id)
    if request.headers.get("accept", "").startswith("application/json"):
        return JsonResponse({"status": job.status, "percent": job.progress_percent,
                             "rows_done": job.rows_done, "rows_total": job.rows_total})
    return render(request, "governance/job.html", {"job": job})


@require_POST
def scoring_cancel(request, job_id: int):
    job = scoping.get_scoped_or_404(ScoringJob, request.user, pk=job_id)
    _cancel(request, lambda: scoring.cancel_scoring_job(job=job, user=request.user),
            done="Scoring job cancelled.",
            asked="Cancellation requested: the job stops before its next batch; what it "
                  "scored is discarded.")
    return redirect("governance:job", job_id=job.pk)


def scoring_download(request, job_id: int):
    job = scoping.get_scoped_or_404(ScoringJob, request.user, pk=job_id)
    if job.status != ScoringJob.Status.SUCCEEDED or not job.output_path:
        raise Http404("no scored file yet")
    name = job.original_filename.rsplit(".", 1)[0] + "-scored.csv"
    # Decrypted for this authorised download only; personal data: never cached.
    response = FileResponse(io.BytesIO(scoring.scored_file(job)), as_attachment=True,
                            filename=name, content_type="text/csv")
    response["Cache-Control"] = "no-store"
    return response
