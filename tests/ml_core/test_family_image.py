"""The image family end to end on small generated images: a private run (its epsilon
checked against dp-accounting), the fast clipping path over the fine-tuned layers, the
report (confusion matrix, mistakes, Grad-CAM), the group audit checked against fairlearn,
and a reload that scores the same."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from dp_accounting import dp_event, pld
from fairlearn.metrics import MetricFrame
from sklearn.metrics import recall_score

from ml_core.families.image import load, predict, run
from ml_core.families.image.backbone import Trunk, load_backbone
from ml_core.spec import ColumnMapping, FairnessPolicy, PrivacyConfig
from verticals.manufacturing.demo_images import CLASSES, image_frame
from verticals.manufacturing.vertical import VISUAL_INSPECTION

MAPPING = ColumnMapping(target="label", sensitive=("line",), roles=(("image", "file"),))
SPEC = dataclasses.replace(
    VISUAL_INSPECTION, fairness=FairnessPolicy(kind="operational", min_group_size=2),
    train=dataclasses.replace(VISUAL_INSPECTION.train, epochs=3, batch_size=16))


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    frame = image_frame(14, seed=3)
    directory = tmp_path_factory.mktemp("image-model")
    result = run(frame=frame, mapping=MAPPING, spec=SPEC,
                 privacy=PrivacyConfig(enabled=True, target_epsilon=8.0),
                 artifact_dir=directory)
    return frame, result


def test_the_trunk_keeps_frozen_statistics_in_training_mode() -> None:
    trunk = Trunk(load_backbone(pretrained=False)).train()
    assert not trunk.training and not any(m.training for m in trunk.modules())
    assert not any(p.requires_grad for p in trunk.parameters())


@pytest.mark.slow
def test_private_run_spends_its_budget_as_dp_accounting_counts(private_run) -> None:
    _, result = private_run
    privacy = result.privacy
    assert privacy["enabled"] and 0 < privacy["epsilon"] <= 8.0 + 1e-6
    assert privacy["clipping"]["fast_path"] is True
    # The last block's 1x1 convolutions, the head's and the classifier (depthwise frozen).
    assert privacy["clipping"]["layers"] == ["blocks.0.expand", "blocks.0.project", "project",
                                             "classifier"]
    event = dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(
        privacy["sample_rate"], dp_event.GaussianDpEvent(privacy["noise_multiplier"])),
        privacy["steps"])
    independent = pld.PLDAccountant(value_discretization_interval=1e-3).compose(
        event).get_epsilon(privacy["delta"])
    assert independent == pytest.approx(privacy["epsilon"], rel=0.05, abs=0.05)
    assert result.nonprivate_metrics is not None
    assert set(result.baseline["baselines"]) == {"frozen_logistic", "majority"}


@pytest.mark.slow
def test_report_shows_confusion_mistakes_and_saliency(private_run) -> None:
    _, result = private_run
    charts = result.charts
    n_test = result.split["test"]
    assert charts["confusion"]["labels"] == list(CLASSES)
    assert sum(map(sum, charts["confusion"]["matrix"])) == n_test
    assert charts["per_class"]["support"] == [sum(row) for row in charts["confusion"]["matrix"]]
    assert len(charts["saliency"]) == len(CLASSES)
    assert all(item["overlay"].startswith("data:image/png;base64,")
               for item in charts["saliency"])
    wrong = int((result.predictions["y_true"] != result.predictions["y_pred"]).sum())
    assert len(charts["confident_mistakes"]) == min(wrong, 8)
    table = result.predictions
    assert list(table.columns[:4]) == ["row_id", "y_true", "y_pred", "y_score"]
    assert {f"prob_{c}" for c in CLASSES} <= set(table.columns) and "line" in table.columns
    assert np.allclose(table[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_per_class_recall_by_line_matches_fairlearn(private_run) -> None:
    _, result = private_run
    table = result.predictions
    reference = MetricFrame(
        metrics={c: (lambda t, p, c=c: recall_score(t == c, p == c, zero_division=0))
                 for c in CLASSES},
        y_true=table["y_true"].to_numpy(), y_pred=table["y_pred"].to_numpy(),
        sensitive_features=table["line"].to_numpy()).by_group
    for group, values in result.fairness["line"]["by_group"].items():
        present = set(table.loc[table["line"] == group, "y_true"])
        for label in CLASSES:
            if label in present:
                assert values["recall_by_class"][label] == pytest.approx(
                    reference.loc[group, label])
        assert values["worst_class_recall"] == pytest.approx(
            min(reference.loc[group, label] for label in present))


@pytest.mark.slow
def test_the_saved_model_reloads_and_scores_the_same(private_run) -> None:
    frame, result = private_run
    loaded = load(result.artifact_path)
    assert loaded.classes == CLASSES
    test_rows = frame[frame["file"].isin(result.predictions["row_id"])]
    scored = predict(loaded, test_rows).set_index("row_id")
    expected = result.predictions.set_index("row_id").loc[scored.index]
    assert (scored["y_pred"] == expected["y_pred"]).all()
    columns = [f"prob_{c}" for c in CLASSES]
    assert np.allclose(scored[columns].to_numpy(), expected[columns].to_numpy(), atol=1e-5)


def test_the_twin_fine_tunes_one_block_more_than_the_private_model(tmp_path, monkeypatch):
    """The non-private twin fine-tunes further (issue 17): one more block, and augmented
    views; the private model trains the default part, from the same single extraction."""
    from ml_core.families.image import family

    trained: dict[str, tuple[int, int]] = {}
    real_fit = family.fit

    def recording_fit(**kwargs):
        fitted = real_fit(**kwargs)
        trained[kwargs["stage"]] = (kwargs["trainable_blocks"], len(fitted.module.blocks))
        return fitted

    monkeypatch.setattr(family, "fit", recording_fit)
    run(frame=image_frame(14, seed=3), mapping=MAPPING, spec=SPEC,
        privacy=PrivacyConfig(enabled=True, target_epsilon=8.0), artifact_dir=tmp_path)
    blocks = family.TRAINABLE_BLOCKS
    assert trained == {"training": (blocks, blocks), "training_twin": (blocks + 1, blocks + 1)}
