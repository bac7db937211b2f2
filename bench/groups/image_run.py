"""A private image run end to end: the NEU surface-defect set (1,800 images, 6 classes)
through the image family's ``run`` at epsilon 8, no cached features: decoding, the frozen
network's forward on every image and augmented view, the references, private fine-tuning,
the non-private twin, the report and the saved model.

``image_private_run_seconds``: wall seconds on ``THREADS`` torch threads (the issue: under
10 minutes on 2 CPU cores). The data comes from ``$TESSERA_SHARED_DATA/images/neu_surface``
(default ``../shared/data``); without it the entry has no value. Quick mode times one image
in ten (judged against nothing); tiny mode a few generated images. Seconds per stage and
the machine's load average are in the details: on a shared machine the figure is an upper
bound.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.registry import Result, Settings, Target
from bench.timing import torch_threads

NAMES = ("image_private_run_seconds",)
DEVICES = ("cpu", "cuda")
THREADS = 2
EPSILON = 8.0
ROOT = Path(__file__).resolve().parents[2]


def neu_folder() -> Path:
    shared = Path(os.environ.get("TESSERA_SHARED_DATA") or ROOT / ".." / "shared" / "data")
    return shared / "images" / "neu_surface"


def _frame(settings: Settings):
    from ml_core.families.image.columns import IMAGE_BYTES_COLUMN

    if settings.tiny:
        from verticals.manufacturing.demo_images import image_frame

        return image_frame(6, seed=1), "generated"
    import pandas as pd

    folder = neu_folder()
    if not folder.is_dir():
        return None, f"{folder} is absent"
    paths = sorted(p for p in folder.glob("*/*") if p.is_file())
    if settings.quick:
        paths = paths[::10]
    return pd.DataFrame([{"file": str(p.relative_to(folder)), "label": p.parent.name,
                          IMAGE_BYTES_COLUMN: p.read_bytes()} for p in paths]), str(folder)


def run(settings: Settings) -> list[Result]:
    from ml_core.families.image import run as run_image
    from ml_core.families.image.columns import IMAGE_BYTES_COLUMN
    from ml_core.spec import ColumnMapping
    from verticals.manufacturing.vertical import VISUAL_INSPECTION

    frame, source = _frame(settings)
    target = Target(high=600.0) if not (settings.quick or settings.tiny) else Target()
    name = f"image_private_run_seconds{settings.suffix}"
    if frame is None:
        return [Result(name, None, "s", f"not measured: {source}", target)]
    spec = VISUAL_INSPECTION
    if settings.tiny:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1,
                                                                   batch_size=8))
    mapping = ColumnMapping(target="label",
                            roles=(("image", "file"), ("image_data", IMAGE_BYTES_COLUMN)))
    stages: dict[str, float] = {}
    clock = {"stage": None, "since": time.perf_counter()}

    def progress(*, stage: str, **_) -> None:  # noqa: ANN003 - the ProgressSink protocol
        now = time.perf_counter()
        if clock["stage"] is not None:
            stages[clock["stage"]] = stages.get(clock["stage"], 0.0) + now - clock["since"]
        clock.update(stage=stage, since=now)

    load_before = os.getloadavg()[0]
    with torch_threads(THREADS, settings.device) as threads, \
            tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        result = run_image(
            frame=frame, mapping=mapping, spec=spec,
            privacy=dataclasses.replace(spec.privacy, enabled=True, target_epsilon=EPSILON),
            train=dataclasses.replace(spec.train, device=settings.device),
            artifact_dir=Path(directory), progress=progress)
        seconds = time.perf_counter() - started
    progress(stage="done")
    details = {
        "images": len(frame), "source": source, "threads": threads,
        "device": settings.device, "cuda": torch.cuda.is_available(),
        "load_average_before": round(load_before, 1),
        "load_average_after": round(os.getloadavg()[0], 1), "cpu_count": os.cpu_count(),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "epsilon": result.privacy.get("epsilon"), "macro_f1": result.metrics.get("macro_f1"),
        "twin_macro_f1": (result.nonprivate_metrics or {}).get("macro_f1"),
    }
    return [Result(name, round(seconds, 1), "s",
                   f"{len(frame)} images, private at epsilon {EPSILON:g} with its twin, "
                   f"{threads} threads, load average {load_before:.1f} at the start",
                   target, details=details)]
