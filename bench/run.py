"""Command line: run the entry groups, write ``results.json``, print a table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from bench.registry import PENDING, Result, Settings, load_groups

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }
    for package in ("torch", "opacus", "fairlearn", "numpy", "pandas"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def run_all(settings_list: list[Settings], *, only: set[str] | None = None,
            log=print, after_group=None) -> list[Result]:  # noqa: ANN001
    """Every group on every device it supports among ``settings_list``;
    ``after_group(results so far)`` after each group."""
    results: list[Result] = []
    for group in load_groups():
        for settings in settings_list:
            if settings.device.split(":")[0] not in group.DEVICES:
                continue
            if only and not (only & set(group.NAMES)):
                continue
            start = time.perf_counter()
            log(f"-- {group.__name__.rsplit('.', 1)[-1]} on {settings.device} ...")
            group_results = group.run(settings)
            results += [r for r in group_results if not only or r.name.split("_cuda")[0] in only]
            log(f"   {time.perf_counter() - start:.1f} s")
            if after_group is not None:
                after_group(results)
    return results


def document(results: list[Result], *, settings: Settings, seconds: float) -> dict:
    measured = {r.name for r in results}
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "devices": sorted({"cpu", settings.device}),
        "seconds": round(seconds, 1),
        "machine": machine(),
        "entries": [r.to_dict() for r in results],
        "pending": [{"name": name, "what": what} for name, what in PENDING.items()
                    if name not in measured],
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.3g}"


def table(doc: dict) -> str:
    """The entries as a Markdown table (the README shows it)."""
    lines = ["| name | value | unit | target | passed | reference |", "|---|---|---|---|---|---|"]
    for entry in doc["entries"]:
        passed = {True: "yes", False: "**no**", None: "-"}[entry["passed"]]
        lines.append(
            f"| `{entry['name']}` | {_fmt(entry['value'])} | {entry['unit']} | "
            f"{entry['target']} | {passed} | {entry['reference']} |"
        )
    for entry in doc["pending"]:
        lines.append(f"| `{entry['name']}` | - | - | - | pending | {entry['what']} |")
    m = doc["machine"]
    lines.append("")
    lines.append(
        f"{m['cpu']}, {m['cpu_count']} CPUs, {m['torch_threads']} torch threads"
        + (f", {m['cuda']}" if m.get("cuda") else "")
        + f"; torch {m['torch']}, opacus {m['opacus']}, fairlearn {m['fairlearn']}"
        + ("; quick mode" if doc["quick"] else "")
        + ("" if doc.get("complete", True) else "; incomplete run (stopped early)")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (< 3 minutes)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda to add _cuda entries (auto: cuda when present)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", help="entry names to run (their groups run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes for the smoke test (the numbers mean nothing)")
    args = parser.parse_args(argv)

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    quick = args.quick or args.tiny
    settings_list = [Settings(quick=quick, device="cpu", seed=args.seed, tiny=args.tiny)]
    if device != "cpu":
        settings_list.append(
            Settings(quick=quick, device=device, seed=args.seed, tiny=args.tiny)
        )

    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def write(results: list[Result], *, complete: bool) -> dict:
        doc = document(results, settings=settings_list[-1],
                       seconds=time.perf_counter() - start)
        doc["complete"] = complete
        partial = args.out.with_suffix(".partial")
        partial.write_text(json.dumps(doc, indent=2) + "\n")
        partial.replace(args.out)
        return doc

    # Written after every group too, so a run stopped by a timeout keeps what it measured.
    results = run_all(settings_list, only=set(args.only) if args.only else None,
                      log=lambda text: print(text, file=sys.stderr, flush=True),
                      after_group=lambda done: write(done, complete=False))
    doc = write(results, complete=True)
    print(table(doc))
    print(f"\nwritten to {args.out}")
    return 0
