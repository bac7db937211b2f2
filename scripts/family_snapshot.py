"""Train every registered problem with a fixed seed and record its numbers.

A restructuring that must change no result is checked with this: record a snapshot on the
code before (``--out before.json``), another after, then compare them (``--compare
before.json after.json``). Each problem is trained on its own sample data, privately and
not, and the snapshot keeps what a user sees: metrics, baseline metrics, the twin's
metrics, epsilon, delta, noise, steps and every fairness disparity.

    .venv/bin/python scripts/family_snapshot.py --out var/snapshot.json [--only finance]
    .venv/bin/python scripts/family_snapshot.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS, EPOCHS = 600, 3
FAMILY_SIZE = {"text_encoder": (200, 2)}
PRIVACY_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps")
TOLERANCE = 1e-6


def _setup_django() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


def _numbers(result: dict) -> dict:
    fairness = {
        attribute: {"disparities": report.get("disparities"), "passed": report.get("passed")}
        for attribute, report in (result.get("fairness") or {}).items()
    }
    return _plain({
        "metrics": result.get("metrics"),
        "baseline": result.get("baseline"),
        "nonprivate_metrics": result.get("nonprivate_metrics"),
        "privacy": {k: (result.get("privacy") or {}).get(k) for k in PRIVACY_KEYS},
        "fairness": fairness,
        "split": result.get("split"),
    })


def snapshot(only: str | None) -> dict:
    _setup_django()
    from ml_core.pipeline import run_training
    from verticals.registry import all_problems

    out: dict = {}
    for vertical, problem in all_problems():
        key = f"{vertical.key}/{problem.key}"
        if only and not key.startswith(only):
            continue
        spec = problem.spec
        rows, epochs = FAMILY_SIZE.get(spec.model_family, (ROWS, EPOCHS))
        frame = problem.sample_data(rows, 7)
        for private in (True, False):
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result = run_training(
                    frame=frame,
                    mapping=problem.sample_mapping,
                    spec=spec,
                    privacy=dataclasses.replace(spec.privacy, enabled=private),
                    train=dataclasses.replace(spec.train, epochs=epochs),
                    artifact_dir=Path(tmp),
                )
            label = f"{key}/{'private' if private else 'nonprivate'}"
            out[label] = _numbers(result.to_dict())
            print(f"{label}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return out


def _diff(a: object, b: object, path: str, found: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(a.get(key), b.get(key), f"{path}.{key}", found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{path}[{i}]", found)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if abs(a - b) > TOLERANCE * max(1.0, abs(a)):
            found.append(f"{path}: {a} -> {b}")
    elif a != b:
        found.append(f"{path}: {a!r} -> {b!r}")


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    found: list[str] = []
    _diff(a, b, "", found)
    for line in found:
        print(line)
    print(f"{len(a)} runs before, {len(b)} after, {len(found)} differences")
    return 1 if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", help="a vertical or vertical/problem prefix")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    data = snapshot(args.only)
    text = json.dumps(data, indent=1, sort_keys=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
