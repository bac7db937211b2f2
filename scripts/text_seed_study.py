"""The text family against its TF-IDF + logistic regression baseline over several seeds.

Trains each text problem (note triage, complaint sentiment) on its vertical's sample data,
drawn with several data seeds, at the contract battery's size (the rows and epochs of
``tests/test_contract_battery.py``'s ``FAMILY_SIZE``, unless given), and prints macro F1
on the test split of the model, of the baseline and, with ``--private``, of the private
model (the spec's epsilon), with the wins, the mean margin and the seconds per run. With
``--fresh N`` the saved model and the baseline (refitted on the same training rows) are
also scored on N fresh rows drawn with the battery's ``TEXT_FRESH_SAMPLE`` data seed, as
the battery's ``test_text_model_beats_tfidf_on_fresh_rows`` does::

    .venv/bin/python scripts/text_seed_study.py --fresh 1500    # battery size, 5 seeds
    .venv/bin/python scripts/text_seed_study.py --private --rows 2000 --seeds 0 1 2

Only the test split and the fresh rows are reported; every choice inside training (the
epoch kept, early stopping) reads the validation split.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATTERY = ROOT / "tests" / "test_contract_battery.py"


def battery_constant(name: str):
    """A literal constant of the contract battery (read, not imported: the battery module
    needs Django's settings)."""
    tree = ast.parse(BATTERY.read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == name):
            return ast.literal_eval(node.value)
    raise LookupError(f"no {name} in {BATTERY}")


def battery_size() -> tuple[int, int]:
    """(rows, epochs) the contract battery trains the text family with."""
    return tuple(battery_constant("FAMILY_SIZE")["text_encoder"])


def problems() -> dict:
    from verticals.finance.complaints import COMPLAINT_SENTIMENT
    from verticals.healthcare.vertical import VERTICAL as HEALTHCARE

    return {"note_triage": HEALTHCARE.problem("note_triage"),
            "complaint_sentiment": COMPLAINT_SENTIMENT}


def run_once(problem, *, rows: int, epochs: int, seed: int, private: bool,
             fresh=None) -> tuple:
    """(result, seconds to train, the fresh-rows comparison or None)."""
    from ml_core.families.text import compare_on_fresh_rows
    from ml_core.pipeline import run_training

    spec = problem.spec
    frame = problem.sample_data(rows, seed)
    train = dataclasses.replace(spec.train, epochs=epochs)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as artifacts:
        result = run_training(
            frame=frame, mapping=problem.sample_mapping, spec=spec,
            privacy=dataclasses.replace(spec.privacy, enabled=private),
            train=train, artifact_dir=Path(artifacts),
        )
        took = time.perf_counter() - started
        compared = None if fresh is None else compare_on_fresh_rows(
            result.artifact_path, frame=frame, mapping=problem.sample_mapping, spec=spec,
            train=train, fresh=fresh)
    return result, took, compared


def main(argv: list[str] | None = None) -> int:
    rows, epochs = battery_size()
    fresh_rows, fresh_seed = battery_constant("TEXT_FRESH_SAMPLE")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=rows)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--problems", nargs="+", default=list(problems()))
    parser.add_argument("--private", action="store_true",
                        help="also train the private model (spec's epsilon)")
    parser.add_argument("--fresh", type=int, default=0, metavar="N",
                        help=f"also score model and baseline on N fresh rows (data seed "
                             f"{fresh_seed}, as the battery; it checks {fresh_rows})")
    args = parser.parse_args(argv)
    if args.fresh and fresh_seed in args.seeds:
        parser.error(f"data seed {fresh_seed} draws the fresh rows: train on other seeds")
    # Opacus' advice on secure RNG and RDP orders, once per private run: not results.
    warnings.filterwarnings("ignore", category=UserWarning, module="opacus")
    print(f"rows {args.rows}, epochs {args.epochs}, data seeds {args.seeds}"
          + (f", {args.fresh} fresh rows (data seed {fresh_seed})" if args.fresh else ""),
          flush=True)
    header = f"{'problem':<20} {'seed':>4} {'model':>6} {'tfidf':>6} {'diff':>7}"
    if args.fresh:
        header += f" {'fresh':>6} {'tfidf':>6} {'diff':>7}"
    header += f" {'best':>4} {'s':>6}"
    if args.private:
        header += f" {'priv':>6} {'s':>6}"
    print(header, flush=True)
    summary = []
    for key in args.problems:
        problem = problems()[key]
        fresh = problem.sample_data(args.fresh, fresh_seed) if args.fresh else None
        diffs, models, bases, privates, seconds = [], [], [], [], []
        fresh_diffs, fresh_models, fresh_bases = [], [], []
        for seed in args.seeds:
            result, took, compared = run_once(problem, rows=args.rows, epochs=args.epochs,
                                              seed=seed, private=False, fresh=fresh)
            model = result.metrics["macro_f1"]
            base = result.baseline["metrics"]["macro_f1"]
            best = max(result.history, key=lambda r: r["val_metric"])["epoch"]
            line = f"{key:<20} {seed:>4} {model:6.3f} {base:6.3f} {model - base:+7.3f}"
            if compared is not None:
                fresh_models.append(compared["model"]["macro_f1"])
                fresh_bases.append(compared["baseline"]["macro_f1"])
                fresh_diffs.append(fresh_models[-1] - fresh_bases[-1])
                line += f" {fresh_models[-1]:6.3f} {fresh_bases[-1]:6.3f} {fresh_diffs[-1]:+7.3f}"
            line += f" {best:>4} {took:6.1f}"
            models.append(model)
            bases.append(base)
            diffs.append(model - base)
            seconds.append(took)
            if args.private:
                private, took, _ = run_once(problem, rows=args.rows, epochs=args.epochs,
                                            seed=seed, private=True)
                privates.append(private.metrics["macro_f1"])
                line += f" {privates[-1]:6.3f} {took:6.1f}"
            print(line, flush=True)
        wins = sum(d > 0 for d in diffs)
        text = (f"{key}: test split: model {statistics.mean(models):.3f}, tfidf "
                f"{statistics.mean(bases):.3f}, mean diff {statistics.mean(diffs):+.3f}, "
                f"min diff {min(diffs):+.3f}, wins {wins}/{len(diffs)}")
        if fresh_diffs:
            text += (f"; fresh rows: model {statistics.mean(fresh_models):.3f}, tfidf "
                     f"{statistics.mean(fresh_bases):.3f}, mean diff "
                     f"{statistics.mean(fresh_diffs):+.3f}, min diff {min(fresh_diffs):+.3f}, "
                     f"wins {sum(d > 0 for d in fresh_diffs)}/{len(fresh_diffs)}")
        text += f"; {statistics.mean(seconds):.1f} s per run"
        if privates:
            text += f"; private {statistics.mean(privates):.3f} (min {min(privates):.3f})"
        summary.append(text)
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
