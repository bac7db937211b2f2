"""Saved models reload to identical scores; metadata records what reproduces them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ml_core.artifacts import (
    FORWARD_ROWS,
    ArtifactError,
    load_model,
    predict_proba,
    save_model,
    schema_fingerprint,
)
from ml_core.models import TabularMLP
from ml_core.privacy import make_private, prepare_module
from ml_core.trainer import make_loader


def test_reloaded_model_scores_the_test_rows_identically(private_run, frame):
    result, _ = private_run
    loaded = load_model(result.artifact_path)
    rows = frame.loc[result.predictions["row_id"]]
    np.testing.assert_array_equal(predict_proba(loaded, rows), result.predictions["y_score"])


def test_scoring_in_blocks_equals_one_forward_pass_over_all_rows(private_run, frame):
    loaded = load_model(private_run[0].artifact_path)
    rows = frame.sample(2 * FORWARD_ROWS + 123, replace=True, random_state=0)
    with torch.inference_mode():
        whole = torch.sigmoid(loaded.model(torch.from_numpy(loaded.encoder.transform(rows))))
    scores = predict_proba(loaded, rows)
    assert scores.shape == (len(rows),) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores, whole.reshape(-1).double().numpy())
    assert predict_proba(loaded, rows.head(0)).shape == (0,)


def test_load_model_unpacks_to_model_and_metadata(private_run, frame, spec, mapping):
    result, _ = private_run
    model, metadata = load_model(result.artifact_path)
    assert isinstance(model, TabularMLP) and not model.training
    assert metadata["weights_sha256"] == result.artifact_sha256
    assert metadata["spec_key"] == "test_credit"
    assert metadata["seed"] == spec.train.seed
    # The decision threshold is chosen on validation and drives the saved predictions.
    assert 0.0 < metadata["threshold"] < 1.0
    predictions = result.predictions
    assert (predictions["y_pred"] == (predictions["y_score"] >= metadata["threshold"])).all()
    assert metadata["epsilon"] == result.privacy["epsilon"]
    assert metadata["delta"] == result.privacy["delta"]
    assert metadata["mapping"] == mapping.to_dict()
    assert set(metadata["versions"]) >= {"torch", "opacus", "sklearn", "python"}
    columns = tuple(metadata["feature_columns"])
    assert metadata["schema_fingerprint"] == schema_fingerprint(frame, columns)


def test_scoring_ignores_extra_columns_and_needs_the_features(private_run, frame):
    loaded = load_model(private_run[0].artifact_path)
    rows = frame.head(5).assign(unrelated="x")
    assert predict_proba(loaded, rows).shape == (5,)
    with pytest.raises(KeyError):
        predict_proba(loaded, frame.drop(columns=["income"]).head(5))


def test_an_opacus_wrapped_model_is_saved_without_the_wrapper_prefix(spec, split, tmp_path):
    model = prepare_module(TabularMLP(split.n_features, (4,)))
    wrapped = make_private(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loader=make_loader(split.x_train, split.y_train, batch_size=64, seed=0),
        config=spec.privacy, epochs=spec.train.epochs,
    )
    assert any(key.startswith("_module.") for key in wrapped.module.state_dict())
    saved = save_model(model=wrapped.module, encoder=split.encoder, directory=tmp_path,
                       metadata={"seed": 0})
    state = torch.load(Path(saved.path) / "model.pt", weights_only=True)
    assert not any(key.startswith("_module") for key in state)
    restored, _ = load_model(saved.path)
    x = torch.from_numpy(split.x_test)
    assert torch.equal(restored(x), model(x))


def test_tampered_weights_are_refused(split, tmp_path):
    saved = save_model(model=TabularMLP(split.n_features, (4,)), encoder=split.encoder,
                       directory=tmp_path, metadata={})
    other = TabularMLP(split.n_features, (4,))
    torch.save(other.state_dict(), Path(saved.path) / "model.pt")
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(saved.path)
    (Path(saved.path) / "encoder.json").unlink()
    with pytest.raises(ArtifactError, match="encoder.json"):
        load_model(saved.path)


def test_metadata_is_plain_json(private_run):
    text = (Path(private_run[0].artifact_path) / "metadata.json").read_text()
    assert json.loads(text)["format_version"] == 1


def test_schema_fingerprint_ignores_order_but_not_kinds():
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert schema_fingerprint(frame) == schema_fingerprint(frame[["b", "a"]])
    assert schema_fingerprint(frame) == schema_fingerprint(frame.astype({"a": "Int64"}))
    assert schema_fingerprint(frame) != schema_fingerprint(frame.astype({"a": str}))
    assert schema_fingerprint(frame) != schema_fingerprint(frame.rename(columns={"a": "c"}))
