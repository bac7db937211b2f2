"""A run's test-set predictions (row ids, labels, scores, sensitive groups): personal data,
so kept encrypted at rest like uploads (ingestion.storage) and decrypted only for the code
that needs them (mitigation) or an authorised export (``manage.py pipeline``)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ingestion.storage import read_encrypted, write_encrypted

PREDICTIONS_FILE = "predictions.csv"


def predictions_path(artifact_dir: Path | str) -> Path:
    return Path(artifact_dir) / PREDICTIONS_FILE


def save_predictions(frame: pd.DataFrame, artifact_dir: Path | str) -> None:
    write_encrypted(predictions_path(artifact_dir), frame.to_csv(index=False).encode("utf-8"))


def predictions_csv(artifact_dir: Path | str) -> bytes:
    """The decrypted CSV; FileNotFoundError when the run wrote none."""
    return read_encrypted(predictions_path(artifact_dir))


def read_predictions(artifact_dir: Path | str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(predictions_csv(artifact_dir)))
