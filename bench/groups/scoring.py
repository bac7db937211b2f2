"""Batch scoring through the platform against a bare forward pass of the same model.

The platform side is what a batch-scoring job runs once its file is read:
:func:`governance.scoring.validate_frame` and :func:`governance.scoring.score_in_batches`
(column-wise encoding with the model's saved encoder, one forward pass per batch under
``torch.inference_mode``, probabilities and 0/1 predictions). The reference is the same
model's forward pass over the already encoded rows as one tensor. Same rows, one torch
thread each, alternating rounds; the 30-column credit table of :mod:`bench.groups.ingest`
and the finance vertical's MLP (random weights: speed does not depend on them).
"""

from __future__ import annotations

from bench.platform_env import shared_env
from bench.registry import Result, Settings, Target
from bench.timing import median, round_ratio

NAMES = ("scoring_ratio",)
DEVICES = ("cpu",)


def sizes(settings: Settings) -> dict:
    if settings.tiny:
        return {"rows": 4_000, "repeats": 2}
    if settings.quick:
        return {"rows": 100_000, "repeats": 5}
    return {"rows": 1_000_000, "repeats": 7}


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    out = shared_env().run("scoring", rows=s["rows"], repeats=s["repeats"], seed=settings.seed)
    platform_s, bare_s = median(out["platform"]), median(out["bare"])
    return [
        Result("scoring_ratio", round_ratio(out, "platform", "bare"), "x",
               f"bare forward pass of the same model on the encoded {s['rows']:,} rows "
               f"({bare_s:.3g} s; platform {platform_s:.3g} s)", Target(high=1.25),
               details={"rows": s["rows"], "platform_s": out["platform"],
                        "bare_s": out["bare"], "features": out["features"],
                        "encode_only_s": out["encode"],
                        "batch_rows": out["batch_rows"], "threads": 1,
                        "max_abs_score_diff": out["max_abs_score_diff"]}),
    ]
