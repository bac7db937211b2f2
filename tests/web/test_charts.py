"""The shared SVG chart module: geometry, values as text, accessibility, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from audits.report_display import attribute_sections
from training import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # also proves the markup is well-formed XML


def texts(root: ET.Element) -> list[str]:
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def test_bar_chart_draws_threshold_at_the_right_height():
    frame = charts.Frame(width=400, height=200, left=40, right=10, top=10, bottom=40)
    markup = charts.bar_chart(
        title="Selection rate", bars=[("a", 0.5), ("b", 0.25)], y_max=1.0,
        threshold=0.4, threshold_label="four-fifths", frame=frame,
    )
    root = parse(markup)
    group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "threshold")
    line = group.find(f"{SVG}line")
    # plot height 150, baseline at 160: 0.4 of the axis sits 60 px above it.
    assert float(line.get("y1")) == pytest.approx(160 - 0.4 * 150)
    assert line.get("y1") == line.get("y2")
    assert float(group.get("data-value")) == pytest.approx(0.4)
    assert "four-fifths 0.40" in texts(root)


def test_bar_heights_and_values_are_written_as_text():
    frame = charts.Frame()
    root = parse(charts.bar_chart(title="t", bars=[("x", 0.75), ("y", None)], y_max=1.0,
                                  frame=frame))
    rect = next(r for r in root.iter(f"{SVG}rect") if "bar" in r.get("class", ""))
    assert float(rect.get("height")) == pytest.approx(0.75 * frame.plot_height, abs=0.01)
    assert "0.75" in texts(root)
    assert "n/a" in texts(root)  # a missing value is said, not silently dropped
    assert {"x", "y"} <= set(texts(root))


def test_chart_is_accessible():
    root = parse(charts.bar_chart(title="Rates by sex", bars=[("f", 0.3)], y_label="rate",
                                  x_label="sex"))
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id
    assert root.find(f"{SVG}title").text == "Rates by sex"
    assert root.find(f"{SVG}desc").get("id") == desc_id
    assert "f: 0.30" in root.find(f"{SVG}desc").text
    assert {"rate", "sex"} <= set(texts(root))


def test_group_names_are_escaped():
    evil = '<script>alert("x")</script>'
    for markup in (
        charts.bar_chart(title=evil, bars=[(evil, 0.5)], threshold=0.4, flagged=[evil]),
        charts.grouped_bar_chart(title="g", categories=[evil], series=[(evil, [0.1])]),
        charts.histogram(title=evil, bins=[0, 1], counts=[3], x_label=evil),
        charts.line_chart(title=evil, series=[(evil, [(1, 0.5)])]),
        charts.share_bar(label=evil, share=0.5),
    ):
        assert "<script>" not in markup
        assert "&lt;script&gt;" in markup
        parse(markup)


def test_flagged_bars_are_marked_in_text_not_only_colour():
    root = parse(charts.bar_chart(title="t", bars=[("ok", 0.9), ("low", 0.2)],
                                  threshold=0.72, flagged=["low"]))
    flagged = [r for r in root.iter(f"{SVG}rect") if "flagged" in r.get("class", "")]
    assert len(flagged) == 1
    assert any(t.startswith("0.20") and "✕" in t for t in texts(root))


def test_grouped_bars_have_a_legend_and_every_value():
    root = parse(charts.grouped_bar_chart(
        title="private vs non-private", categories=["a", "b"],
        series=[("private", [0.1, 0.2]), ("non-private", [0.3, None])], y_max=1.0,
    ))
    words = texts(root)
    assert {"private", "non-private", "0.10", "0.20", "0.30", "n/a"} <= set(words)
    assert len([r for r in root.iter(f"{SVG}rect") if "series-1" in r.get("class", "")]) == 2


def test_histogram_has_one_bar_per_bin_and_counts():
    root = parse(charts.histogram(title="age", bins=[0, 10, 20, 30], counts=[5, 0, 12]))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert len(bars) == 3
    assert {"5", "0", "12"} <= set(texts(root))


def test_line_chart_maps_points_into_the_frame():
    frame = charts.Frame()
    root = parse(charts.line_chart(title="curve", series=[("loss", [(1, 1.0), (3, 0.5)])],
                                   frame=frame))
    points = next(root.iter(f"{SVG}polyline")).get("points").split()
    (x0, y0), (x1, y1) = (tuple(map(float, p.split(","))) for p in points)
    assert x0 == pytest.approx(frame.left)
    assert x1 == pytest.approx(frame.width - frame.right)
    assert y0 == pytest.approx(frame.y_for(1.0, 1.0)) and y1 == pytest.approx(frame.y_for(0.5, 1.0))
    assert "loss 0.500" in texts(root)


def test_empty_line_chart_still_renders():
    root = parse(charts.line_chart(title="curve", series=[("loss", [])]))
    assert root.find(f"{SVG}desc").text


def test_report_sections_draw_the_four_fifths_line_of_the_policy():
    report = {"sex": {
        "by_group": {
            "female": {"count": 50, "selection_rate": 0.2, "tpr": 0.5, "fpr": 0.1,
                       "accuracy": 0.8},
            "male": {"count": 60, "selection_rate": 0.5, "tpr": 0.7, "fpr": 0.2,
                     "accuracy": 0.7},
            "<b>x</b>": {"count": 3, "selection_rate": 0.0, "tpr": None, "fpr": 0.0,
                         "accuracy": 1.0},
        },
        "judged_groups": ["female", "male"],
        "disparities": {"demographic_parity_ratio": 0.4},
        "checks": [{"name": "demographic_parity_ratio", "value": 0.4, "threshold": 0.8,
                    "passed": False}],
        "passed": False,
    }}
    twin = {"sex": {"by_group": {"female": {"selection_rate": 0.25},
                                 "male": {"selection_rate": 0.45}}}}
    (section,) = attribute_sections(report=report, nonprivate_report=twin,
                                    policy={"min_disparate_impact_ratio": 0.8,
                                            "max_equalized_odds_difference": 0.15})
    assert not section.passed and len(section.charts) == 4
    selection = parse(section.charts[0])
    line = next(g for g in selection.iter(f"{SVG}g") if g.get("class") == "threshold")
    # 0.8 x the highest judged selection rate (0.5); the tiny group is not judged.
    assert float(line.get("data-value")) == pytest.approx(0.4)
    flagged = [r for r in selection.iter(f"{SVG}rect") if "flagged" in r.get("class", "")]
    assert [r.find(f"{SVG}title").text for r in flagged] == ["female: 0.20"]
    assert "&lt;b&gt;" in section.charts[0] and "<b>" not in section.charts[0]
    assert re.search(r"non-private", section.charts[3])
    assert section.checks[0]["label"].startswith("Disparate impact")
