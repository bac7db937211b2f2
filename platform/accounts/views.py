"""Sign-in, sign-out and the organisation's dashboard."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect, render

from accounts import scoping
from accounts.models import Role
from accounts.permissions import role_required
from accounts.sessions import MAX_MINUTES, MIN_MINUTES, set_session_lifetime
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


class SessionLifetimeForm(forms.Form):
    minutes = forms.IntegerField(
        min_value=MIN_MINUTES, max_value=MAX_MINUTES, required=False,
        label="Sign-in lifetime (minutes)",
        help_text="From sign-in; blank: the platform's default. Applies to open sessions too.")


@role_required(Role.ADMIN)
def organisation_security(request):
    """An organisation admin sets how long their users stay signed in."""
    organisation = scoping.membership_for(request.user).organisation
    form = SessionLifetimeForm(request.POST or None,
                               initial={"minutes": organisation.session_lifetime_minutes})
    if request.method == "POST" and form.is_valid():
        set_session_lifetime(user=request.user, minutes=form.cleaned_data["minutes"])
        messages.success(request, "Sign-in lifetime saved.")
        return redirect("organisation_security")
    return render(request, "accounts/organisation_security.html",
                  {"form": form, "organisation": organisation})
