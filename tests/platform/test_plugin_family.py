"""Must hold (issue 12): a model family added from outside ml_core, and a problem that uses
it added as one entry of a vertical, train, audit, save, reload and serve through the
platform with no platform file edited. The family is tests/support/plugin_family.py."""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from django.core import checks
from django.urls import reverse

from audits.models import FairnessReport
from catalog.checks import check_registry
from ml_core.families import get_family
from ml_core.families.base import unregister_family
from ml_core.spec import ColumnMapping
from tests.conftest import FAST_TRAINING, csv_upload, finance_frame
from verticals import registry
from verticals.base import Problem, Vertical

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def plugin() -> Iterator[object]:
    """The plug-in family registered (by importing its module) and a vertical whose one
    problem uses it; both gone afterwards."""
    from tests.support import plugin_family

    saved = dict(registry._VERTICALS)
    finance = registry.get_problem("finance", "credit_risk")
    spec = dataclasses.replace(
        finance.spec, key="approval", name="Loan approval (plug-in family)",
        model_family=plugin_family.NAME,
        family_options=plugin_family.NarrowOptions(hidden_sizes=(3,)),
        metrics=("roc_auc", "accuracy"), primary_metric="roc_auc")
    registry.register(Vertical(key="plugins", name="Plug-ins", description="",
                               problems=(Problem(spec=spec, sample_data=finance.sample_data,
                                                 sample_mapping=finance.sample_mapping,
                                                 guide="Test plug-in."),)))
    try:
        yield plugin_family
    finally:
        registry._VERTICALS.clear()
        registry._VERTICALS.update(saved)
        unregister_family(plugin_family.NAME)
        sys.modules.pop(plugin_family.__name__, None)


def test_a_family_from_outside_ml_core_trains_audits_and_serves(
        plugin, analyst, reviewer, api_client, client) -> None:
    from audits.services import review_model
    from ingestion.services import confirm_mapping, upload_dataset
    from training.services import execute_run, start_run

    family = get_family(plugin.NAME)
    assert type(family) is plugin.NarrowMLPFamily
    assert [m for m in check_registry() if m.level >= checks.ERROR] == []
    # The mapping form and services read its declared roles: features offered and required.
    from ingestion.forms import role_choices
    from ingestion.services import complete_mapping

    spec = registry.get_problem("plugins", "approval").spec
    assert "feature" in dict(role_choices(spec))
    filled = complete_mapping(ColumnMapping(target="default"), ["default", "income"], spec)
    assert filled.features == ("income",)

    # Upload and map through the ingestion services, as the web pages do.
    buffer = io.StringIO()
    finance_frame(300, 3).to_csv(buffer, index=False)
    version = upload_dataset(user=analyst, vertical="plugins", problem="approval",
                             file=csv_upload(buffer.getvalue().encode()), name="Approvals")
    version = confirm_mapping(version=version, user=analyst,
                              mapping=registry.get_problem("plugins", "approval").sample_mapping)
    assert version.status == "validated", version.errors

    # Train (privately, the problem's default) through training.services.
    run = start_run(version=version, user=analyst, config=dict(FAST_TRAINING))
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.privacy["enabled"] and run.privacy["epsilon"] > 0
    assert run.result["charts"]["kind"] == "precision_recall"
    # The spec's family options reached the family: three hidden units, not the default four.
    loaded = family.load(run.artifact_path)
    assert loaded.metadata["train_config"]["hidden_sizes"] == [3]

    # Audited: the fairness report exists and the results page draws the declared kind.
    assert FairnessReport.objects.filter(run=run).exists()
    client.force_login(analyst)
    page = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "Precision-recall curve on the test split" in page

    # Approved, then served by the prediction API from the reloaded artifact.
    model = run.model_version
    review_model(model_version=model, user=reviewer, decision="approve", comment="Sound.")
    rows = finance_frame(20, 9).drop(columns=["default"]).head(4)
    body = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in rows.to_dict(orient="records")]
    response = api_client(analyst).post(f"/api/v1/models/{model.pk}/predict/",
                                        {"rows": body}, format="json")
    assert response.status_code == 200, response.json()
    served = response.json()["predictions"]
    expected = family.predict(family.load(run.artifact_path), rows)
    assert np.allclose([p["score"] for p in served], expected["score"])
    assert [p["prediction"] for p in served] == expected["prediction"].tolist()
    # The training-time scores of the test rows equal the reloaded model's.
    test_rows = version_frame(version).loc[run_predictions(run)["row_id"]]
    np.testing.assert_allclose(
        family.predict(loaded, test_rows)["score"].to_numpy(),
        run_predictions(run)["y_score"].to_numpy(), atol=1e-6)


def version_frame(version):
    from ingestion.services import load_frame

    frame = load_frame(version)
    return frame if frame.index.is_unique else frame.reset_index(drop=True)


def run_predictions(run):
    from training.predictions import read_predictions

    return read_predictions(run.artifact_path)  # encrypted at rest
