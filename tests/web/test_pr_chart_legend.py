"""The precision-recall chart's legend gives the model's PR AUC (from the stored metrics),
not the curve's last point, which is only the precision at recall 1."""

from __future__ import annotations

import re

import pytest

from training.models import TrainingRun


@pytest.mark.django_db
def test_pr_legend_shows_pr_auc_not_the_last_point(client, analyst, validated_version):
    curve = {"recall": [0.0, 0.5, 1.0], "precision": [1.0, 0.8, 0.309], "chance": 0.3}
    run = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation, dataset_version=validated_version,
        vertical="finance", problem="credit_risk", status=TrainingRun.Status.SUCCEEDED,
        metrics={"pr_auc": 0.647, "roc_auc": 0.78},
        result={"task_type": "binary_classification",
                "charts": {"kind": "precision_recall", "pr_curve": curve}},
        created_by=analyst)
    client.force_login(analyst)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    chart = page.split("Precision-recall curve on the test split", 1)[1].split("</svg>", 1)[0]
    legends = re.findall(r'class="series-label"[^>]*>([^<]*)<', chart)
    assert legends == ["model (PR AUC 0.647)", "chance (positive rate) 0.300"]
    assert "0.309" not in " ".join(legends)
