"""The benchmark runs end to end at tiny sizes and writes the documented schema.

No timed assertions: speed is judged by ``make bench``, not by the test suite.
"""

from __future__ import annotations

import json
import math

import pytest

from bench import registry
from bench.registry import Result, Settings, Target
from bench.run import document, main, run_all, table
from bench.timing import interleaved, loglog_slope, round_ratio

pytestmark = pytest.mark.filterwarnings("ignore")

ENTRY_KEYS = {"name", "value", "unit", "reference", "target", "passed"}
TINY = Settings(tiny=True, quick=True)


@pytest.fixture(scope="module")
def results():
    return run_all([TINY], log=lambda text: None)


@pytest.mark.slow  # runs every entry group at tiny sizes (~10 s of CPU)
def test_every_group_produces_its_declared_entries(results):
    names = [r.name for r in results]
    assert len(names) == len(set(names))
    declared = [name for group in registry.load_groups() for name in group.NAMES]
    assert names == declared
    assert {"dp_step_ratio_mlp", "opacus_hooks_ratio_mlp", "opacus_ghost_ratio_mlp",
            "dp_memory_ratio_mlp", "dp_clip_max_rel_error", "audit_speedup_vs_fairlearn",
            "audit_max_abs_diff", "scaling_slope_audit", "scaling_slope_train_epoch"} <= set(names)
    assert not set(names) & set(registry.PENDING)


@pytest.mark.slow  # runs every entry group at tiny sizes (~10 s of CPU)
def test_entries_follow_the_schema(results):
    doc = json.loads(json.dumps(document(results, settings=TINY, seconds=1.0)))
    assert {"machine", "entries", "pending", "quick", "generated_at"} <= set(doc)
    for key in ("cpu", "cpu_count", "torch_threads", "torch", "opacus"):
        assert key in doc["machine"]
    for entry in doc["entries"]:
        assert ENTRY_KEYS <= set(entry)
        assert isinstance(entry["name"], str) and isinstance(entry["unit"], str)
        assert isinstance(entry["reference"], str) and entry["reference"]
        assert isinstance(entry["target"], str)
        assert entry["passed"] in (True, False, None)
        assert entry["value"] is None or math.isfinite(entry["value"])
    pending = {entry["name"] for entry in doc["pending"]}
    assert "ingest_ratio" in pending and "api_p95_ms" in pending
    text = table(doc)
    assert "| `dp_step_ratio_mlp` |" in text and "pending" in text


@pytest.mark.slow  # runs every entry group at tiny sizes (~10 s of CPU)
def test_correctness_entries_hold_even_at_tiny_sizes(results):
    by_name = {r.name: r for r in results}
    # Errors and exact agreement are size-independent; timings are not judged here.
    assert by_name["dp_clip_max_rel_error"].passed
    assert by_name["audit_max_abs_diff"].passed
    assert by_name["dp_memory_ratio_mlp"].value > 0


def test_targets_and_results():
    assert Target(high=1.5).check(1.2) and not Target(high=1.5).check(1.6)
    assert Target(low=0.9, high=1.1).check(1.0) and not Target(low=0.9, high=1.1).check(1.2)
    assert Target(low=20).check(25) and not Target(low=20).check(float("nan"))
    assert Target().check(3.0) is None and str(Target()) == "recorded"
    assert str(Target(low=0.9, high=1.1)) == "0.9 - 1.1"
    data = Result("x", float("nan"), "x", "ref", Target(high=1)).to_dict()
    assert data["value"] is None and data["passed"] is False


def test_timing_helpers():
    calls = {"a": 0, "b": 0}

    def bump(name):
        return lambda: calls.__setitem__(name, calls[name] + 1)

    times = interleaved({"a": bump("a"), "b": bump("b")}, rounds=3, inner={"a": 2, "b": 1},
                        warmup=1, rounds_for={"b": 2})
    assert len(times["a"]) == 3 and len(times["b"]) == 2
    assert calls == {"a": 1 + 6, "b": 1 + 2}
    assert round_ratio({"x": [2.0, 4.0], "y": [1.0, 1.0]}, "x", "y") == 3.0
    assert loglog_slope([1, 4, 16], [2.0, 8.0, 32.0]) == pytest.approx(1.0)


@pytest.mark.slow  # runs every entry group at tiny sizes (~10 s of CPU)
def test_command_line_writes_results_for_the_chosen_entries(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["--tiny", "--only", "audit_max_abs_diff", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [e["name"] for e in doc["entries"]] == ["audit_max_abs_diff"]
    assert doc["quick"] is True
    assert "audit_max_abs_diff" in capsys.readouterr().out
