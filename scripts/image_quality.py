"""Quality of the visual inspection problem on a folder of class folders (NEU surface
defects): one private run (its non-private twin is measured on the same split), figures
for docs/images.md.

    .venv/bin/python scripts/image_quality.py ../shared/data/images/neu_surface \\
        --epsilon 8 --cache /tmp/image-features --out /tmp/neu.json

Features are cached under ``--cache``: a second run on the same images (another epsilon)
skips extraction, which is most of the time on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

import pandas as pd  # noqa: E402

from ml_core.families.image import run  # noqa: E402
from ml_core.families.image.columns import IMAGE_BYTES_COLUMN  # noqa: E402
from verticals.manufacturing.vertical import VISUAL_INSPECTION  # noqa: E402


def folder_frame(root: Path) -> pd.DataFrame:
    rows = [{"file": str(path.relative_to(root)), "label": path.parent.name,
             IMAGE_BYTES_COLUMN: path.read_bytes()}
            for path in sorted(root.glob("*/*")) if path.is_file()]
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from ml_core.spec import ColumnMapping

    frame = folder_frame(args.folder)
    mapping = ColumnMapping(target="label",
                            roles=(("image", "file"), ("image_data", IMAGE_BYTES_COLUMN)))
    spec = VISUAL_INSPECTION
    privacy = replace(spec.privacy, enabled=True, target_epsilon=args.epsilon)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as artifact_dir:
        result = run(frame=frame, mapping=mapping, spec=spec, privacy=privacy,
                     artifact_dir=Path(artifact_dir), feature_cache=args.cache)
    body = {"images": len(frame), "epsilon_target": args.epsilon,
            "seconds": round(time.perf_counter() - started, 1),
            "metrics": result.metrics, "nonprivate_metrics": result.nonprivate_metrics,
            "baselines": result.baseline["baselines"], "privacy": result.privacy,
            "split": result.split, "history": result.history,
            "per_class": result.charts["per_class"]}
    emit(body, args.out)


def emit(body: dict, out: Path | None) -> None:
    """Print the figures as JSON, and write them to ``out`` when given."""
    text = json.dumps(body, indent=2, default=str)
    if out:
        out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
