"""Ingestion through the platform's own service, against ``pandas.read_csv`` alone.

One ingest is what an analyst's upload sets off: :func:`ingestion.services.upload_dataset`
(store the bytes, read the table, suggest a mapping) then
:func:`ingestion.services.confirm_mapping` (re-read, validate, profile, save) with the
finance vertical's sample mapping, on a 30-column credit table (the finance demo columns
and 14 numeric bureau attributes). The reference is ``pandas.read_csv`` of the same file,
timed in the same rounds. It runs in a throw-away installation
(:mod:`bench.platform_env`); the peak memory is measured in a fresh process, and one more
ingest runs under cProfile so that the details say which step costs what.
"""

from __future__ import annotations

from bench.platform_env import shared_env
from bench.registry import Result, Settings, Target
from bench.timing import loglog_slope, median, round_ratio

NAMES = ("ingest_ratio", "ingest_peak_memory_ratio", "scaling_slope_ingest")
DEVICES = ("cpu",)


def sizes(settings: Settings) -> dict:
    # The last scaling size is the one the ratios are measured at. An ingest has an honest
    # fixed cost of ~0.1-0.2 s (two database transactions, the key, 1,000-row samples for
    # header and identifier detection, ~30 pandas calls per column): the smallest size
    # must take several times that, or the slope measures the constant, not the rows.
    if settings.tiny:
        return {"scaling": (250, 1_000, 4_000), "repeats": 1}
    if settings.quick:
        # 50k, not 25k: the product got fast enough that 25k rows took under twice the
        # fixed cost (0.18 s against ~0.1 s), breaking the rule above.
        return {"scaling": (50_000, 200_000, 800_000), "repeats": 2}
    return {"scaling": (62_500, 250_000, 1_000_000), "repeats": 3}


def run(settings: Settings) -> list[Result]:
    s = sizes(settings)
    rows = s["scaling"][-1]
    env = shared_env()
    timing = env.run("ingest", rows=list(s["scaling"]), repeats=s["repeats"],
                     seed=settings.seed)
    memory = env.run("ingest_memory", rows=rows, seed=settings.seed, breakdown=True)
    at_size = timing[str(rows)]
    seconds = [median(timing[str(n)]["ingest"]) for n in s["scaling"]]
    read_csv_s = median(at_size["read_csv"])
    ratio = round_ratio(at_size, "ingest", "read_csv")
    details = {
        "rows": rows, "file_mb": at_size["file_mb"], "ingest_s": at_size["ingest"],
        "read_csv_s": at_size["read_csv"], "breakdown_s": memory.get("breakdown", {}),
    }
    frame_mb = memory["frame_bytes"] / 2**20
    return [
        Result("ingest_ratio", ratio, "x",
               f"pandas.read_csv of the same {rows:,}-row, 30-column file "
               f"({read_csv_s:.3g} s; ingest {seconds[-1]:.3g} s)",
               Target(high=1.5), details=details),
        Result("ingest_peak_memory_ratio", memory["peak_growth_bytes"] / memory["frame_bytes"],
               "x", f"the loaded DataFrame ({frame_mb:.3g} MiB, memory_usage(deep=True))",
               Target(high=3), details={k: v for k, v in memory.items() if k != "breakdown"}),
        Result("scaling_slope_ingest", loglog_slope(list(s["scaling"]), seconds),
               "log-log slope",
               "ingest time at " + ", ".join(f"{n:,}" for n in s["scaling"]) + " rows: "
               + ", ".join(f"{t:.3g} s" for t in seconds),
               Target(low=0.9, high=1.1), details={"rows": list(s["scaling"]),
                                                   "seconds": seconds}),
    ]
