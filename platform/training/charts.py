"""Accessible inline SVG charts for the web pages: bars with a threshold line, grouped bars,
histograms and line charts.

Every chart carries a ``<title>`` and ``<desc>`` (named by ``aria-labelledby``), axis labels
and its values as text, so it reads without colour or a mouse. Text is escaped here, once:
group names come from users' files. The functions return markup strings; the
``tessera_charts`` template tags mark them safe.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

_ids = itertools.count(1)
LEGEND_Y = 34  # baseline of the legend row, under the visible title


@dataclass(frozen=True)
class Frame:
    """Where the plotting area sits inside the SVG (pixels)."""

    width: int = 480
    height: int = 240
    left: int = 52
    right: int = 16
    top: int = 48  # room for the visible title and the legend row above the plot
    bottom: int = 44

    @property
    def plot_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> float:
        return self.height - self.top - self.bottom

    @property
    def baseline_y(self) -> float:
        return self.height - self.bottom

    def y_for(self, value: float, y_max: float) -> float:
        """The pixel row of ``value`` on a 0..y_max axis (values outside are clamped)."""
        share = 0.0 if y_max <= 0 else min(max(value / y_max, 0.0), 1.0)
        return round(self.baseline_y - share * self.plot_height, 2)


DEFAULT_FRAME = Frame()


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def _num(value: float) -> str:
    """A bin edge for people: thousands separated, never scientific notation."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def _open(frame: Frame, *, title: str, desc: str, css_class: str) -> tuple[str, list[str]]:
    chart_id = f"chart-{next(_ids)}"
    parts = [
        f'<svg class="chart {css_class}" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="100%" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<text class="chart-title" x="4" y="14" aria-hidden="true">{escape(title)}</text>',
    ]
    return chart_id, parts


def _axes(parts: list[str], frame: Frame, *, y_max: float, y_label: str, x_label: str,
          y_fmt: str) -> None:
    x0, x1 = frame.left, frame.width - frame.right
    for tick in (0.0, 0.5, 1.0):
        value = y_max * tick
        if y_fmt.endswith("0f") and value != int(value):
            continue  # a count axis has no half rows
        y = frame.y_for(value, y_max)
        parts.append(f'<line class="grid" x1="{x0}" y1="{y}" x2="{x1}" y2="{y}"/>')
        parts.append(
            f'<text class="tick" x="{x0 - 6}" y="{y + 4}" text-anchor="end">'
            f"{escape(_fmt(value, y_fmt))}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{x0}" y1="{frame.top}" x2="{x0}" y2="{frame.baseline_y}"/>'
    )
    parts.append(
        f'<line class="axis" x1="{x0}" y1="{frame.baseline_y}" x2="{x1}" y2="{frame.baseline_y}"/>'
    )
    mid_y = frame.top + frame.plot_height / 2
    parts.append(
        f'<text class="axis-label" x="12" y="{mid_y}" text-anchor="middle" '
        f'transform="rotate(-90 12 {mid_y})">{escape(y_label)}</text>'
    )
    parts.append(
        f'<text class="axis-label" x="{frame.left + frame.plot_width / 2}" '
        f'y="{frame.height - 6}" text-anchor="middle">{escape(x_label)}</text>'
    )


def _threshold(parts: list[str], frame: Frame, *, value: float, y_max: float, label: str,
               y_fmt: str) -> None:
    """A dashed line across the plot; its label sits in the legend row, clear of the bars."""
    y = frame.y_for(value, y_max)
    x0, x1 = frame.left, frame.width - frame.right
    text = f"{label} {_fmt(value, y_fmt)}".strip()
    parts.append(
        f'<g class="threshold" data-value="{escape(repr(float(value)))}">'
        f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}"/>'
        f'<line class="key" x1="{x1 - 24}" y1="{LEGEND_Y - 4}" x2="{x1}" y2="{LEGEND_Y - 4}"/>'
        f'<text x="{x1 - 30}" y="{LEGEND_Y}" text-anchor="end">{escape(text)}</text></g>'
    )


def _band(parts: list[str], frame: Frame, *, low: float, high: float, y_max: float,
          label: str) -> None:
    """A shaded horizontal band between two values, named in the legend row."""
    top, bottom = frame.y_for(high, y_max), frame.y_for(low, y_max)
    x1 = frame.width - frame.right
    parts.append(
        f'<g class="band" data-low="{escape(repr(float(low)))}" '
        f'data-high="{escape(repr(float(high)))}"><rect x="{frame.left}" y="{top}" '
        f'width="{round(frame.plot_width, 2)}" height="{round(bottom - top, 2)}"/>'
        f'<rect class="key" x="{x1 - 24}" y="{LEGEND_Y - 9}" width="24" height="10"/>'
        f'<text x="{x1 - 30}" y="{LEGEND_Y}" text-anchor="end">{escape(label)}</text></g>'
    )


def _short(label: str, slot: float) -> str:
    """The label cut to fit its slot (about 7 px a character); the full name stays in the
    bar's tooltip and the chart's description."""
    limit = max(3, int(slot // 7))
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(
    *,
    title: str,
    bars: Sequence[tuple[str, float | None]],
    y_label: str = "",
    x_label: str = "",
    threshold: float | None = None,
    threshold_label: str = "threshold",
    y_max: float | None = None,
    value_format: str = ".2f",
    flagged: Sequence[str] = (),
    band: tuple[float, float] | None = None,
    band_label: str = "",
    highlighted: Sequence[str] = (),
    highlight_label: str = "",
    frame: Frame = DEFAULT_FRAME,
) -> str:
    """Vertical bars, one per ``(label, value)``, with an optional horizontal threshold line.

    ``flagged`` labels get the ``flagged`` class and a "(below threshold)"-style marker in
    text, so the verdict never depends on colour alone. ``band`` shades a range of values
    (e.g. the zone of proximal development, 0.5-0.85) behind the bars; ``highlighted`` labels
    (e.g. the recommended skill) get a ◆ marker and the ``highlighted`` class.
    """
    values = [v for _, v in bars if v is not None]
    top = y_max if y_max is not None else _nice_max(
        max(values + [threshold or 0.0, band[1] if band else 0.0, 0.0]))
    summary = "; ".join(f"{label}: {_fmt(v, value_format)}" for label, v in bars)
    desc = summary + (f". {threshold_label}: {_fmt(threshold, value_format)}" if threshold
                      is not None else "")
    if band is not None:
        desc += (f". {band_label or 'band'}: {_fmt(band[0], value_format)} to "
                 f"{_fmt(band[1], value_format)}")
    if highlighted:
        desc += f". ◆ {highlight_label or 'highlighted'}: {', '.join(highlighted)}"
    _, parts = _open(frame, title=title, desc=desc, css_class="bar-chart")
    if band is not None:
        _band(parts, frame, low=band[0], high=band[1], y_max=top, label=band_label)
    _axes(parts, frame, y_max=top, y_label=y_label, x_label=x_label, y_fmt=value_format)
    slot = frame.plot_width / max(len(bars), 1)
    width = min(slot * 0.6, 64)
    flagged_set = set(flagged)
    highlighted_set = set(highlighted)
    for index, (label, value) in enumerate(bars):
        cx = frame.left + slot * (index + 0.5)
        klass = "bar flagged" if label in flagged_set else "bar"
        marker = " ✕" if label in flagged_set else ""
        if label in highlighted_set:
            klass += " highlighted"
            marker += " ◆"
        if value is not None:
            y = frame.y_for(value, top)
            parts.append(
                f'<rect class="{klass}" x="{round(cx - width / 2, 2)}" y="{y}" '
                f'width="{round(width, 2)}" height="{round(frame.baseline_y - y, 2)}">'
                f"<title>{escape(label)}: {escape(_fmt(value, value_format))}</title></rect>"
            )
            text_y = y - 4
        else:
            text_y = frame.baseline_y - 4
        parts.append(
            f'<text class="value" x="{round(cx, 2)}" y="{text_y}" text-anchor="middle">'
            f"{escape(_fmt(value, value_format))}{marker}</text>"
        )
        parts.append(
            f'<text class="category" x="{round(cx, 2)}" y="{frame.baseline_y + 16}" '
            f'text-anchor="middle">{escape(_short(label, slot))}</text>'
        )
    if threshold is not None:
        _threshold(parts, frame, value=threshold, y_max=top, label=threshold_label,
                   y_fmt=value_format)
    parts.append("</svg>")
    return "".join(parts)


def grouped_bar_chart(
    *,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    y_label: str = "",
    x_label: str = "",
    y_max: float | None = None,
    value_format: str = ".2f",
    frame: Frame = DEFAULT_FRAME,
) -> str:
    """Bars grouped by category, one bar per series (e.g. private vs non-private per group).

    Series are told apart by pattern class and a legend in text, not by colour alone.
    """
    values = [v for _, vs in series for v in vs if v is not None]
    top = y_max if y_max is not None else _nice_max(max(values + [0.0]))
    desc = "; ".join(
        f"{cat}: " + ", ".join(f"{name} {_fmt(vs[i] if i < len(vs) else None, value_format)}"
                               for name, vs in series)
        for i, cat in enumerate(categories)
    )
    _, parts = _open(frame, title=title, desc=desc, css_class="grouped-bar-chart")
    _axes(parts, frame, y_max=top, y_label=y_label, x_label=x_label, y_fmt=value_format)
    slot = frame.plot_width / max(len(categories), 1)
    n_series = max(len(series), 1)
    width = min(slot * 0.8 / n_series, 40)
    for ci, cat in enumerate(categories):
        group_left = frame.left + slot * (ci + 0.5) - width * n_series / 2
        for si, (name, vs) in enumerate(series):
            value = vs[ci] if ci < len(vs) else None
            x = group_left + width * si
            if value is not None:
                y = frame.y_for(value, top)
                parts.append(
                    f'<rect class="bar series-{si}" x="{round(x, 2)}" y="{y}" '
                    f'width="{round(width - 2, 2)}" height="{round(frame.baseline_y - y, 2)}">'
                    f"<title>{escape(cat)}, {escape(name)}: "
                    f"{escape(_fmt(value, value_format))}</title></rect>"
                )
                text_y = y - 4
            else:
                text_y = frame.baseline_y - 4
            parts.append(
                f'<text class="value small" x="{round(x + width / 2 - 1, 2)}" y="{text_y}" '
                f'text-anchor="middle">{escape(_fmt(value, value_format))}</text>'
            )
        parts.append(
            f'<text class="category" x="{round(frame.left + slot * (ci + 0.5), 2)}" '
            f'y="{frame.baseline_y + 16}" text-anchor="middle">{escape(_short(cat, slot))}</text>'
        )
    legend_x = frame.left
    for si, (name, _) in enumerate(series):
        parts.append(
            f'<g class="legend"><rect class="bar series-{si}" x="{legend_x}" '
            f'y="{LEGEND_Y - 9}" width="10" height="10"/>'
            f'<text x="{legend_x + 14}" y="{LEGEND_Y}">{escape(name)}</text></g>'
        )
        legend_x += 14 + 7 * len(name) + 18
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    *,
    title: str,
    bins: Sequence[float],
    counts: Sequence[int],
    x_label: str = "",
    y_label: str = "rows",
    frame: Frame = DEFAULT_FRAME,
) -> str:
    """Adjacent bars for ``counts`` over bin edges ``bins`` (len(bins) == len(counts) + 1).

    Edges may also be one per count (bin starts); the labels then show the starts only.
    """
    top = _nice_max(max(list(counts) + [0]))
    n = len(counts)
    if len(bins) == n + 1:
        labels = [f"{_num(bins[i])}–{_num(bins[i + 1])}" for i in range(n)]
    else:
        labels = [_num(b) for b in list(bins)[:n]] + [""] * max(0, n - len(bins))
    desc = "; ".join(f"{label}: {count}" for label, count in zip(labels, counts, strict=False))
    _, parts = _open(frame, title=title, desc=desc, css_class="histogram")
    _axes(parts, frame, y_max=top, y_label=y_label, x_label=x_label, y_fmt=".0f")
    width = frame.plot_width / max(n, 1)
    for index, count in enumerate(counts):
        x = frame.left + width * index
        y = frame.y_for(count, top)
        parts.append(
            f'<rect class="bar" x="{round(x, 2)}" y="{y}" width="{round(max(width - 1, 1), 2)}" '
            f'height="{round(frame.baseline_y - y, 2)}"><title>{escape(labels[index])}: '
            f"{count}</title></rect>"
        )
        if n <= 12:
            parts.append(
                f'<text class="value small" x="{round(x + width / 2, 2)}" y="{y - 3}" '
                f'text-anchor="middle">{count}</text>'
            )
    if len(bins) >= 2:
        first, last = bins[0], bins[-1]
        parts.append(
            f'<text class="tick" x="{frame.left}" y="{frame.baseline_y + 14}" '
            f'text-anchor="start">{escape(_num(first))}</text>'
        )
        parts.append(
            f'<text class="tick" x="{frame.width - frame.right}" y="{frame.baseline_y + 14}" '
            f'text-anchor="end">{escape(_num(last))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    *,
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]],
    x_label: str = "",
    y_label: str = "",
    value_format: str = ".3f",
    x_tick_labels: tuple[str, str] | None = None,
    dashed: Sequence[str] = (),
    frame: Frame = DEFAULT_FRAME,
    legend: Mapping[str, str] | None = None,
) -> str:
    """Lines through ``(x, y)`` points, one per named series (e.g. loss and validation AUC
    per epoch), with each series' last value written at its end.

    ``legend`` replaces a series' legend text where its last point means nothing (the end
    of a precision-recall curve is not the model's score: its PR AUC is).

    ``x_tick_labels`` writes text (e.g. the first and last dates) under the ends of the x
    axis instead of the numbers; series named in ``dashed`` (a baseline, a chance level)
    are drawn dashed, so they read apart from the model without colour."""
    points = [(x, y) for _, pts in series for x, y in pts if y is not None]
    xs = [x for x, _ in points] or [0.0, 1.0]
    x_min, x_max = min(xs), max(xs)
    if x_max == x_min:
        x_max = x_min + 1
    top = _nice_max(max([y for _, y in points] + [0.0]))
    desc = "; ".join(
        f"{name}: " + ", ".join(f"{_fmt(x, 'g')}→{_fmt(y, value_format)}" for x, y in pts)
        for name, pts in series
    )
    _, parts = _open(frame, title=title, desc=desc or "no data yet", css_class="line-chart")
    _axes(parts, frame, y_max=top, y_label=y_label, x_label=x_label, y_fmt=value_format)

    def x_for(x: float) -> float:
        return round(frame.left + (x - x_min) / (x_max - x_min) * frame.plot_width, 2)

    legend_x = frame.left
    for si, (name, pts) in enumerate(series):
        coords = [(x_for(x), frame.y_for(y, top)) for x, y in pts if y is not None]
        if not coords:
            continue
        path = " ".join(f"{x},{y}" for x, y in coords)
        dash = " dashed" if name in dashed else ""
        parts.append(f'<polyline class="line series-{si}{dash}" points="{path}"/>')
        for x, y in coords:
            parts.append(f'<circle class="point series-{si}" cx="{x}" cy="{y}" r="2.5"/>')
        # The legend names each series and its latest value, so the line's colour is not
        # the only way to tell them apart.
        label = (legend or {}).get(name) or (
            f"{name} {_fmt([y for _, y in pts if y is not None][-1], value_format)}")
        parts.append(
            f'<g class="legend"><line class="line series-{si}" x1="{legend_x}" y1="{LEGEND_Y - 4}" '
            f'x2="{legend_x + 18}" y2="{LEGEND_Y - 4}"/><text class="series-label" '
            f'x="{legend_x + 22}" y="{LEGEND_Y}">{escape(label)}</text></g>'
        )
        legend_x += 22 + 7 * len(label) + 18
    first, last = x_tick_labels or (_fmt(x_min, "g"), _fmt(x_max, "g"))
    parts.append(
        f'<text class="tick" x="{frame.left}" y="{frame.baseline_y + 14}" text-anchor="start">'
        f"{escape(first)}</text>"
    )
    parts.append(
        f'<text class="tick" x="{frame.width - frame.right}" y="{frame.baseline_y + 14}" '
        f'text-anchor="end">{escape(last)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def confusion_matrix_table(
    *, title: str, labels: Sequence[object], matrix: Sequence[Sequence[int]],
    actual_label: str = "actual", predicted_label: str = "predicted",
) -> str:
    """A confusion matrix as an HTML table (rows: actual class, columns: predicted), each
    cell with its count and its share of the actual class; the diagonal is marked
    ``correct``. A table, not a picture: screen readers read it cell by cell."""
    names = [str(label) for label in labels]
    head = "".join(f'<th scope="col">{escape(predicted_label)} {escape(n)}</th>' for n in names)
    rows = []
    for i, (name, row) in enumerate(zip(names, matrix, strict=False)):
        total = sum(int(v) for v in row)
        cells = []
        for j, value in enumerate(row):
            share = f"{int(value) / total:.0%}" if total else "–"
            klass = ' class="correct"' if i == j else ""
            cells.append(f'<td{klass}>{int(value)} <span class="muted">({share})</span></td>')
        rows.append(f'<tr><th scope="row">{escape(actual_label)} {escape(name)}</th>'
                    f'{"".join(cells)}</tr>')
    return (f'<table class="confusion-matrix"><caption>{escape(title)}</caption>'
            f'<thead><tr><td></td>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def share_bar(*, label: str, share: float | None, title: str | None = None) -> str:
    """A small horizontal 0–100 % bar (missing share in profile tables), value in text."""
    value = 0.0 if share is None else min(max(float(share), 0.0), 1.0)
    text = _fmt(None if share is None else value * 100, ".1f") + ("" if share is None else " %")
    width = round(value * 100, 2)
    return (
        f'<svg class="chart share-bar" viewBox="0 0 160 16" width="160" height="16" role="img" '
        f'aria-label="{escape(title or label)}: {escape(text)}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect class="track" x="0" y="3" width="100" height="10"/>'
        f'<rect class="bar" x="0" y="3" width="{width}" height="10"/>'
        f'<text class="value small" x="106" y="12">{escape(text)}</text></svg>'
    )
