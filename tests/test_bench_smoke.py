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


ISSUE_ENTRIES = {
    "dp_step_ratio_mlp", "opacus_hooks_ratio_mlp", "opacus_ghost_ratio_mlp",
    "dp_memory_ratio_mlp", "dp_clip_max_rel_error", "dp_step_ratio_text",
    "audit_speedup_vs_fairlearn", "audit_max_abs_diff", "scaling_slope_audit",
    "scaling_slope_train_epoch", "ingest_ratio", "ingest_peak_memory_ratio",
    "scaling_slope_ingest", "scoring_ratio", "api_p95_ms",
}


@pytest.fixture(scope="module")
def results():
    # Every group at tiny sizes, the platform ones in a throw-away installation (a SQLite
    # database in a temporary folder, gunicorn on a free loopback port).
    return run_all([TINY], log=lambda text: None)


@pytest.mark.slow  # every entry group at tiny sizes (about a minute of CPU)
def test_every_group_produces_its_declared_entries(results):
    names = [r.name for r in results]
    assert len(names) == len(set(names))
    declared = [name for group in registry.load_groups() for name in group.NAMES]
    assert names == declared
    assert ISSUE_ENTRIES <= set(names)
    assert not set(names) & set(registry.PENDING)


@pytest.mark.slow  # every entry group at tiny sizes (about a minute of CPU)
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
    assert doc["pending"] == []
    text = table(doc)
    assert "| `dp_step_ratio_mlp` |" in text and "| `api_p95_ms` |" in text
    assert doc["machine"]["cpu"] in text


@pytest.mark.slow  # every entry group at tiny sizes (about a minute of CPU)
def test_correctness_entries_hold_even_at_tiny_sizes(results):
    by_name = {r.name: r for r in results}
    # Errors and exact agreement are size-independent; timings are not judged here.
    assert by_name["dp_clip_max_rel_error"].passed
    assert set(by_name["dp_clip_max_rel_error"].details) == {"mlp", "text_top"}
    assert by_name["audit_max_abs_diff"].passed
    assert by_name["dp_memory_ratio_mlp"].value > 0
    assert by_name["dp_step_ratio_text"].details["fast_path"]["fast_path"]
    # The platform entries went through the platform: validated ingests, scores equal to
    # the bare model's, every status request answered.
    assert by_name["ingest_ratio"].details["breakdown_s"]
    assert by_name["ingest_peak_memory_ratio"].value > 0
    assert by_name["scoring_ratio"].details["max_abs_score_diff"] < 1e-6
    assert by_name["api_p95_ms"].details["errors"] == 0
    assert by_name["api_p95_ms"].value > 0


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


@pytest.mark.slow  # one cheap group at tiny sizes
def test_command_line_writes_results_for_the_chosen_entries(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["--tiny", "--only", "audit_max_abs_diff", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [e["name"] for e in doc["entries"]] == ["audit_max_abs_diff"]
    assert doc["quick"] is True
    assert "audit_max_abs_diff" in capsys.readouterr().out


def test_alternating_rounds_and_pinned_threads():
    import torch

    from bench.timing import torch_threads

    order = []
    interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, rounds=3,
                inner=1, warmup=0)
    assert order == ["a", "b", "b", "a", "a", "b"]
    before = torch.get_num_threads()
    with torch_threads(1) as threads:
        assert threads == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with torch_threads(1, "cuda") as threads:
        assert threads == before == torch.get_num_threads()
