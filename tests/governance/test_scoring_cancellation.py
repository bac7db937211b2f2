"""Batch scoring honours a cancel between its batches (ml_core.cancellation): a cancel that
arrives while one batch is scored lets no further batch start."""

from __future__ import annotations

import pandas as pd
import pytest

from governance import scoring
from ml_core import cancellation
from ml_core.cancellation import TrainingCancelled


def test_scoring_starts_no_batch_after_the_cancel(monkeypatch):
    stop = {"on": False}
    scored: list[int] = []

    def predict_decisions(loaded, chunk: pd.DataFrame) -> pd.DataFrame:
        scored.append(len(chunk))
        if len(scored) == 2:
            stop["on"] = True  # cancelled while the second batch is scored
        return pd.DataFrame({"score": 0.5, "prediction": 0}, index=chunk.index)

    # The model's forward pass is the edge replaced here; score_frame itself runs.
    monkeypatch.setattr(scoring, "input_schema", lambda loaded: {"x": "numeric"})
    monkeypatch.setattr(scoring, "predict_decisions", predict_decisions)
    frame = pd.DataFrame({"x": range(100)})
    # Outside a cancellable block every batch is scored.
    assert len(scoring.score_in_batches(None, frame, batch_rows=10)) == 100
    scored.clear()
    stop["on"] = False
    with cancellation.stop_when(lambda: stop["on"]), pytest.raises(TrainingCancelled):
        scoring.score_in_batches(None, frame, batch_rows=10)
    assert scored == [10, 10]  # of 10 batches: none after the cancel
