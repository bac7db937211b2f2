"""The catalog: which verticals and problems exist, and each problem's guide and the
privacy–fairness–utility trade-off of the organisation's runs of it."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from catalog.guide import render_guide
from governance.schedule_words import schedule_status
from training.tradeoff import tradeoff
from verticals import registry


def catalog_index(request):
    return render(request, "catalog/index.html", {"verticals": registry.verticals()})


def problem_detail(request, vertical: str, problem: str):
    try:
        vert = registry.get_vertical(vertical)
        prob = registry.get_problem(vertical, problem)
    except registry.RegistryError:
        raise Http404("no such problem") from None
    spec = prob.spec
    return render(request, "catalog/problem.html", {
        "vertical": vert, "problem": prob, "spec": spec, "guide": render_guide(prob.guide),
        "hints": [(str(h.role), ", ".join(h.names), h.required) for h in spec.hints],
        "tradeoff": tradeoff(user=request.user, vertical=vertical, problem=problem,
                             primary_metric=spec.primary_metric),
        # The same answer as the governance page: the organisation's schedule, else the
        # problem's default (and that it is not active yet).
        "schedule": schedule_status(organisation=_organisation(request.user),
                                    vertical=vertical, problem=problem,
                                    default_cron=spec.retrain_cron),
    })


def _organisation(user):
    from accounts.scoping import membership_for

    try:
        return membership_for(user).organisation
    except (PermissionDenied, AttributeError, LookupError):
        return None
