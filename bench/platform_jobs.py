"""Jobs that run inside a Django process set up by :mod:`bench.platform_env`.

``python -m bench.platform_jobs JOB '{"json": "arguments"}'`` prints the job's JSON answer
on its last line. Every job measures the platform's own public functions (the ingestion
service, the batch-scoring path), never a re-implementation of them.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ORGANISATION = "bench"
USERNAME = "bench-analyst"
VERTICAL, PROBLEM = "finance", "credit_risk"
# The finance demo table has 16 columns; credit files carry many bureau attributes besides.
EXTRA_NUMERIC = 14
MISSING_SHARE = 0.02


# --- data -----------------------------------------------------------------------------------


def credit_table(rows: int, seed: int) -> pd.DataFrame:
    """``rows`` synthetic credit applications with 30 columns: the finance vertical's demo
    columns (id, sensitive attributes, categorical and numeric application data, the
    ``default`` label) plus 14 numeric bureau attributes with 2% missing values."""
    from verticals.finance.demo_data import credit_applications

    frame = credit_applications(rows, seed)
    rng = np.random.default_rng([seed, 2])
    for k in range(EXTRA_NUMERIC):
        values = np.round(rng.normal(0.0, 1.0 + k, rows), 3)
        values[rng.random(rows) < MISSING_SHARE] = np.nan
        frame[f"bureau_{k + 1:02d}"] = values
    return frame


def csv_file(folder: Path, rows: int, seed: int) -> Path:
    """The CSV file of :func:`credit_table` (written once per folder, then reused)."""
    path = Path(folder) / "data" / f"credit_{rows}_{seed}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        credit_table(rows, seed).to_csv(partial, index=False)
        partial.replace(path)
    return path


# --- platform ---------------------------------------------------------------------------


def _django() -> None:
    import django

    django.setup()


def _user():
    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Organisation

    organisation, _ = Organisation.objects.get_or_create(
        slug=ORGANISATION, defaults={"name": "Benchmark"})
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    Membership.objects.get_or_create(user=user, defaults={"organisation": organisation,
                                                          "role": "analyst"})
    return user


def _mapping():
    from verticals.registry import get_problem

    return get_problem(VERTICAL, PROBLEM).sample_mapping


def ingest_once(path: Path, user):
    """Upload (store, read, suggest a mapping), then confirm the mapping (validate,
    profile, save): the ingestion service's public functions, as the web UI calls them."""
    from ingestion.services import confirm_mapping, upload_dataset

    with open(path, "rb") as handle:
        version = upload_dataset(user=user, vertical=VERTICAL, problem=PROBLEM, file=handle,
                                 name=path.stem)
    version = confirm_mapping(version=version, user=user, mapping=_mapping())
    if not version.trainable:
        raise RuntimeError(f"the benchmark table was not validated: {version.errors}")
    return version


# --- jobs -----------------------------------------------------------------------------------


def setup(args: dict) -> dict:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    _user()
    return {"ok": True}


def ingest(args: dict) -> dict:
    """Seconds of each ingest and of ``pandas.read_csv`` of the same file, interleaved."""
    from bench.timing import interleaved

    user = _user()
    folder, seed = Path(args["folder"]), int(args["seed"])
    paths = {rows: csv_file(folder, rows, seed) for rows in args["rows"]}
    first = paths[args["rows"][0]]
    ingest_once(first, user)  # imports and first-call costs land here, not in a figure
    pd.read_csv(first)
    out = {}
    for rows, path in paths.items():
        times = interleaved(
            {"read_csv": lambda path=path: pd.read_csv(path),
             "ingest": lambda path=path: ingest_once(path, user)},
            rounds=int(args["repeats"]), inner=1, warmup=0,
        )
        out[str(rows)] = {**times, "file_mb": path.stat().st_size / 2**20}
    return out


BREAKDOWN = ("upload_dataset", "store_upload", "encrypt_chunks", "read_stored", "decrypt",
             "read_table", "_decode", "_check_shape", "_looks_like_header", "_parse",
             "_clean_column", "find_identifiers", "suggest_mapping", "confirm_mapping",
             "load_frame", "validate", "_check_numeric_text", "_check_constant",
             "_check_target", "band_counts", "profile", "_column_profile",
             "_numeric_profile", "_label_counts", "log_action")


def breakdown(path: Path, user) -> dict:
    """Cumulative seconds per step of one ingest of ``path`` (cProfile: the steps' shares
    are what matters, cProfile's own overhead inflates the total)."""
    profiler = cProfile.Profile()
    profiler.enable()
    ingest_once(path, user)
    profiler.disable()
    out: dict[str, dict] = {}
    for (filename, _, function), (_, calls, _, cumulative, _) in pstats.Stats(
            profiler).stats.items():
        if function in BREAKDOWN and any(part in filename for part in
                                         ("ingestion", "ml_core", "audits")):
            key = f"{Path(filename).parent.name}/{Path(filename).name}:{function}"
            out[key] = {"calls": calls, "seconds": round(cumulative, 3)}
    return dict(sorted(out.items(), key=lambda item: -item[1]["seconds"]))


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def ingest_memory(args: dict) -> dict:
    """Peak resident memory growth of one ingest over the process's resident memory just
    before it (everything imported, a small table ingested first), vs the loaded
    DataFrame's own size (``memory_usage(deep=True)``)."""
    from ingestion.services import load_frame

    user = _user()
    folder, seed = Path(args["folder"]), int(args["seed"])
    path = csv_file(folder, int(args["rows"]), seed)
    ingest_once(csv_file(folder, 1000, seed), user)
    gc.collect()
    before = _proc_status_kib("VmRSS")
    try:
        # Linux: writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM after clear_refs=5, minus VmRSS before"
    except OSError:
        method = "VmHWM (not reset), minus VmRSS before"
    version = ingest_once(path, user)
    peak = _proc_status_kib("VmHWM")
    frame = load_frame(version)
    frame_bytes = int(frame.memory_usage(deep=True, index=True).sum())
    out = {"peak_growth_bytes": (peak - before) * 1024, "rss_before_bytes": before * 1024,
           "frame_bytes": frame_bytes, "method": method,
           "file_bytes": path.stat().st_size, "rows": len(frame)}
    del frame, version
    if args.get("breakdown"):
        out["breakdown"] = breakdown(path, user)
    return out


def scoring(args: dict) -> dict:
    """The platform's batch scoring (:func:`governance.scoring.validate_frame` and
    :func:`~governance.scoring.score_in_batches`) vs a bare forward pass of the same model
    on the already encoded tensor, interleaved, one torch thread each."""
    import torch

    from bench.timing import interleaved
    from governance.scoring import BATCH_ROWS, score_in_batches, validate_frame
    from ml_core.artifacts import LoadedModel
    from ml_core.data import TabularEncoder, feature_columns
    from ml_core.models import TabularMLP
    from verticals.registry import get_problem

    torch.set_num_threads(1)
    rows, seed = int(args["rows"]), int(args["seed"])
    frame = pd.read_csv(csv_file(Path(args["folder"]), rows, seed))
    spec = get_problem(VERTICAL, PROBLEM).spec
    train = frame.iloc[: min(rows, 50_000)]
    encoder = TabularEncoder.fit(train, feature_columns(train, _mapping()))
    torch.manual_seed(seed)
    model = TabularMLP(encoder.n_features, spec.train.hidden_sizes).eval()
    loaded = LoadedModel(model=model, metadata={"threshold": 0.5}, encoder=encoder)
    tensor = torch.from_numpy(np.ascontiguousarray(encoder.transform(frame)))

    def platform() -> pd.DataFrame:
        if validate_frame(loaded, frame):
            raise RuntimeError("the benchmark table does not fit the model")
        return score_in_batches(loaded, frame)

    def bare() -> torch.Tensor:
        with torch.inference_mode():
            return model(tensor)

    with torch.inference_mode():
        reference = torch.sigmoid(model(tensor)).double().numpy()
    agree = float(np.abs(platform()["score"].to_numpy() - reference).max())
    times = interleaved({"platform": platform, "bare": bare,
                         "encode": lambda: encoder.transform(frame)},
                        rounds=int(args["repeats"]), inner=1, warmup=1)
    return {**times, "features": encoder.n_features, "max_abs_score_diff": agree,
            "batch_rows": BATCH_ROWS}


def api_fixture(args: dict) -> dict:
    """A validated dataset and a training run in progress (12 of 30 epochs logged), and a
    token for the analyst: what the run-status endpoint serves while a run trains."""
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from training.models import TrainingRun
    from training.services import start_run

    user = _user()
    version = ingest_once(csv_file(Path(args["folder"]), 2000, int(args["seed"])), user)
    run = start_run(version=version, user=user, enqueue=False)
    history = [{"epoch": e, "loss": 0.7 - 0.01 * e, "val_metric": 0.6 + 0.005 * e,
                "epsilon": 0.1 * e} for e in range(1, 13)]
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, stage="training", epoch=12, total_epochs=30,
        loss=history[-1]["loss"], val_metric=history[-1]["val_metric"], epsilon_spent=1.2,
        history=history, started_at=timezone.now(), device="cpu")
    token, _ = Token.objects.get_or_create(user=user)
    return {"run_id": run.pk, "token": token.key}


JOBS = {"setup": setup, "ingest": ingest, "ingest_memory": ingest_memory, "scoring": scoring,
        "api_fixture": api_fixture}


def main(argv: list[str]) -> int:
    job, arguments = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    start = time.perf_counter()
    _django()
    result = JOBS[job](arguments)
    result = {"job": job, "seconds": time.perf_counter() - start, **result}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
