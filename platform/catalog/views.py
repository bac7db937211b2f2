"""The catalog: which verticals and problems exist, and each problem's guide and the
privacy–fairness–utility trade-off of the organisation's runs of it."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from catalog.guide import render_guide
from catalog.tradeoff import tradeoff
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
    })
