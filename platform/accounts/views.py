"""Sign-in, sign-out and the organisation's dashboard."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import render

from accounts import scoping
from governance.ledger import ledger_status
from ingestion.models import Dataset
from training.models import ModelVersion, TrainingRun

login_view = login_not_required(auth_views.LoginView.as_view(template_name="accounts/login.html"))
# Signing out of an expired session must not bounce through the login page first.
logout_view = login_not_required(auth_views.LogoutView.as_view())


def dashboard(request):
    membership = scoping.membership_for(request.user)
    user = request.user
    active_runs = scoping.for_user(
        TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED,
                                               TrainingRun.Status.RUNNING]), user
    )
    recent_runs = scoping.for_user(TrainingRun.objects.all(), user)
    pending = scoping.for_user(
        ModelVersion.objects.filter(status__in=ModelVersion.UNDECIDED), user
    )
    datasets = scoping.for_user(Dataset.objects.all(), user).prefetch_related("versions")[:5]
    return render(request, "accounts/dashboard.html", {
        "membership": membership,
        # Each with its privacy budget: the ledger keeps the composed total, so this reads.
        "datasets": [(dataset, ledger_status(dataset)) for dataset in datasets],
        "active_runs": active_runs[:10],
        "recent_runs": recent_runs.exclude(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])[:5],
        "pending_count": pending.count(),
    })
