"""Drift on the model page: PSI per feature and per group, read against the 0.1 and 0.25
bands, as a chart and tables, with the time it was measured (not one number)."""

from __future__ import annotations

import re

import pytest

from governance.drift_display import psi_band

pytestmark = pytest.mark.django_db


def test_psi_bands():
    assert [psi_band(v) for v in (0.02, 0.1, 0.2, 0.25, 0.9, None)] == [
        "stable", "moderate shift", "moderate shift", "major shift", "major shift",
        "not measured"]


def test_model_page_shows_drift_per_feature_and_group(make_model, validated_version, client,
                                                      reviewer):
    from governance.models import DriftReport

    model = make_model()
    report = DriftReport.objects.create(
        organisation=model.organisation, model_version=model, dataset_version=validated_version,
        drifted=True, threshold=0.25, report={
            "features": {"amount": 0.31, "duration": 0.12, "savings": 0.01},
            "groups": {"age": {"share_psi": 0.05, "by_group": {
                "25-34": {"rows_reference": 150, "rows_current": 140, "judged": True,
                          "max_psi": 0.18, "positive_rate_shift": 0.04},
                "<25": {"rows_reference": 60, "rows_current": 55, "judged": True,
                        "max_psi": 0.4, "positive_rate_shift": -0.1},
                "65+": {"rows_reference": 5, "rows_current": 3, "judged": False}}}},
            "max_psi": 0.4, "threshold": 0.25})
    client.force_login(reviewer)
    page = client.get(f"/governance/models/{model.pk}/").content.decode()
    drift = page.split('id="drift-heading"', 1)[1]
    assert f'datetime="{report.created_at:%Y-%m-%d}' in drift
    assert "PSI per feature, measured" in drift  # the chart
    features = drift.split("<caption>PSI per feature</caption>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<th scope="row">(\w+)</th><td>([\d.]+)</td><td>([\w ]+)</td>', features)
    assert rows == [("amount", "0.310", "major shift"), ("duration", "0.120", "moderate shift"),
                    ("savings", "0.010", "stable")]
    groups = drift.split("<caption>PSI per group</caption>", 1)[1].split("</table>", 1)[0]
    order = re.findall(r'<th scope="row">([^<]+)</th>', groups)
    assert order == ["&lt;25", "25-34", "65+"]
    assert "too few rows to judge" in groups and "major shift" in groups
