"""Progress reports between epochs: the stage a run is in."""

from __future__ import annotations

from ml_core.spec import ProgressSink


def report_stage(progress: ProgressSink | None, stage: str, total_epochs: int) -> None:
    """Tell ``progress`` (if any) that a run entered ``stage`` (preparing, baseline, ...)."""
    if progress is not None:
        progress(stage=stage, epoch=0, total_epochs=total_epochs, loss=None, val_metric=None,
                 epsilon=None)
