"""Training runs: start, list, a run's live page (htmx polls its progress partial), progress
JSON, cancel."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import scoping
from ingestion.models import DatasetVersion
from ingestion.storage import decrypted_png_response
from ml_core.privacy_statement import guarantee
from training import result_display, services
from training.forms import TrainForm
from training.models import TrainingRun
from training.progress import curve_data, stop_reason
from verticals import registry


def _run_or_404(user, run_id: int) -> TrainingRun:
    runs = scoping.for_user(TrainingRun.objects.select_related("dataset_version__dataset"), user)
    return get_object_or_404(runs, pk=run_id)


def progress_payload(run: TrainingRun) -> dict:
    """A run's progress: the progress partial renders it, progress.json returns it."""
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": run.get_status_display(),
        "terminal": run.is_terminal,
        "cancel_requested": run.cancel_requested,
        "stage": run.stage,
        "epoch": run.epoch,
        "total_epochs": run.total_epochs,
        "percent": run.progress_percent,
        "loss": run.loss,
        "val_metric": run.val_metric,
        "epsilon_spent": run.epsilon_spent,
        "history": run.history,
        # Per stage (the private model, its non-private twin): loss, validation metric and
        # epsilon per epoch, for the page's Chart.js training curve.
        "curve": curve_data(run.history or []),
        "stop_reason": stop_reason(run, patience=_patience(run)),
    }


def _patience(run: TrainingRun) -> int | None:
    try:
        spec = registry.get_problem(run.vertical, run.problem).spec
        return services.train_config(spec, run.config).patience
    except (registry.RegistryError, ValueError, TypeError):
        return None


def run_list(request):
    runs = scoping.for_user(TrainingRun.objects.select_related("dataset_version__dataset"),
                            request.user)
    return render(request, "training/run_list.html", {"runs": runs[:100]})


@require_POST
def run_start(request, version_id: int):
    versions = scoping.for_user(DatasetVersion.objects.select_related("dataset"), request.user)
    version = get_object_or_404(versions, pk=version_id)
    try:
        problem = registry.get_problem(version.dataset.vertical, version.dataset.problem)
    except registry.RegistryError:
        raise Http404("this dataset's problem is no longer installed") from None
    form = TrainForm(request.POST,
                     initial={"target_epsilon": problem.spec.privacy.target_epsilon})
    if not form.is_valid():
        messages.error(request, "Training was not started: " + "; ".join(
            f"{form.fields[k].label if k in form.fields else k}: {' '.join(v)}"
            for k, v in form.errors.items()))
        return redirect("dataset_version", version_id=version.pk)
    try:
        run = services.start_run(version=version, user=request.user, **form.service_kwargs())
    except ValueError as exc:
        messages.error(request, f"Training was not started: {exc}")
        return redirect("dataset_version", version_id=version.pk)
    messages.success(request, f"Run {run.pk} queued.")
    return redirect("run_detail", run_id=run.pk)


def run_detail(request, run_id: int):
    run = _run_or_404(request.user, run_id)
    model_version = getattr(run, "model_version", None) if run.status == "succeeded" else None
    return render(request, "training/run.html", {
        "run": run, "version": run.dataset_version, "dataset": run.dataset_version.dataset,
        "progress": progress_payload(run), "metric_rows": result_display.metric_rows(run),
        "other_baselines": result_display.baseline_names(run.result or {})[1:],
        "split_summary": result_display.split_summary((run.result or {}).get("split")),
        "task_results": result_display.task_results(run) if run.status == "succeeded"
        else None,
        "result": run.result or {}, "privacy": run.privacy or {},
        "guarantee": guarantee(run.privacy or {}),
        "model_version": model_version,
        "has_report": hasattr(run, "fairness_report") or bool(run.fairness),
    })


@require_GET
def run_picture(request, run_id: int, name: str):
    """One picture of a run's report (a test image's thumbnail, a saliency overlay): the
    run's organisation only, decrypted for this answer, never cached."""
    from training.pictures import read_picture

    run = _run_or_404(request.user, run_id)
    try:
        png = read_picture(run, name)
    except FileNotFoundError:
        raise Http404("no such picture") from None
    return decrypted_png_response(png)


@require_GET
def run_progress(request, run_id: int):
    run = _run_or_404(request.user, run_id)
    return JsonResponse(progress_payload(run))


PROGRESS_PARTS = {"section": "training/_progress.html", "bar": "includes/progress.html"}


@require_GET
def run_progress_partial(request, run_id: int):
    """The progress HTML that htmx swaps in every 2 s: the run page's progress section, or
    with ``?part=bar`` the compact bar of the dashboard. A terminal run's fragment carries no
    trigger, so polling stops; the run page then reloads once (``HX-Refresh``) to show the
    results."""
    run = _run_or_404(request.user, run_id)
    part = request.GET.get("part", "section")
    if part not in PROGRESS_PARTS:
        return HttpResponse(f"unknown part {part!r}: use one of {', '.join(PROGRESS_PARTS)}",
                            status=400, content_type="text/plain")
    response = render(request, PROGRESS_PARTS[part], {
        "run": run, "progress": progress_payload(run)})
    if part == "section" and run.is_terminal:
        response["HX-Refresh"] = "true"
    return response


@require_POST
def run_cancel(request, run_id: int):
    run = _run_or_404(request.user, run_id)
    if run.is_terminal:
        messages.info(request, "This run has already finished.")
    else:
        try:
            run = services.cancel_run(run=run, user=request.user)
        except ValueError as exc:  # it finished between the page load and the click
            messages.info(request, str(exc))
        else:
            messages.success(request, "Run cancelled." if run.is_terminal
                             else "Cancellation requested: the run stops at its next check.")
    return redirect("run_detail", run_id=run.pk)
