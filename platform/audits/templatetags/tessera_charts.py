"""Template tags that draw the shared SVG charts (training.charts) from stored JSON."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from audits import figures
from training import charts

register = template.Library()

# Profile-table charts carry no legend, so they need less room above the plot.
PROFILE_FRAME = charts.Frame(width=360, height=170, top=26, bottom=40)


def training_curve_svg(history: list[dict]) -> SafeString:
    """Loss and validation metric per epoch; used by the run page and its progress JSON."""
    loss = [(float(h["epoch"]), h.get("loss")) for h in history if "epoch" in h]
    val = [(float(h["epoch"]), h.get("val_metric")) for h in history if "epoch" in h]
    return mark_safe(  # noqa: S308 - charts escapes every text it writes
        charts.line_chart(
            title="Training curve",
            series=[("loss", loss), ("validation metric", val)],
            x_label="epoch",
            y_label="value",
        )
    )


@register.simple_tag
def training_curve(history) -> SafeString:
    return training_curve_svg(history or [])


@register.simple_tag
def column_chart(column: dict) -> SafeString:
    """A histogram for numeric columns, top values for categorical ones; empty otherwise."""
    name = str(column.get("name", ""))
    counts = column.get("value_counts")
    if counts:
        # Few distinct numbers (codes, grades): one bar per value, in numeric order.
        return mark_safe(charts.bar_chart(  # noqa: S308
            title=f"Values of {name}", bars=[(str(v), float(n)) for v, n in counts],
            y_label="rows", x_label=name, value_format=".0f", frame=PROFILE_FRAME,
        ))
    hist = column.get("histogram")
    if hist and hist.get("counts"):
        return mark_safe(charts.histogram(  # noqa: S308
            title=f"Distribution of {name}", bins=hist.get("bins", []),
            counts=hist["counts"], x_label=name, frame=PROFILE_FRAME,
        ))
    top = column.get("top_values")
    if top and max(count for _, count in top) <= 1:
        return mark_safe('<span class="muted">every value is distinct</span>')
    if top:
        return mark_safe(charts.bar_chart(  # noqa: S308
            title=f"Most frequent values of {name}",
            bars=[(str(value), float(count)) for value, count in top[:8]],
            y_label="rows", x_label=name, value_format=".0f",
            frame=PROFILE_FRAME,
        ))
    return mark_safe("")


@register.simple_tag
def missing_bar(column: dict) -> SafeString:
    return mark_safe(charts.share_bar(  # noqa: S308
        label=f"Missing share of {column.get('name', '')}", share=column.get("missing_share"),
    ))


@register.simple_tag
def group_sizes(attribute: str, groups: dict, min_group_size: int | None = None) -> SafeString:
    """Rows per sensitive group, with the smallest judged group size drawn as a line."""
    return mark_safe(charts.bar_chart(  # noqa: S308
        title=f"Group sizes for {attribute}",
        bars=[(str(g), float(n)) for g, n in groups.items()],
        y_label="rows", x_label=str(attribute), value_format=".0f",
        threshold=float(min_group_size) if min_group_size else None,
        threshold_label="minimum judged size",
        flagged=[str(g) for g, n in groups.items() if min_group_size and n < min_group_size],
    ))


@register.simple_tag
def target_balance(balance: dict) -> SafeString:
    return mark_safe(charts.bar_chart(  # noqa: S308
        title="Target balance", bars=[(str(k), float(v)) for k, v in balance.items()],
        y_label="rows", x_label="target value", value_format=".0f",
    ))


@register.filter
def svg(markup: str) -> SafeString:
    """Marks chart markup built in Python (already escaped by training.charts) safe."""
    return mark_safe(markup)  # noqa: S308


@register.filter
def metric(value, digits: int = 3) -> str:
    """A number to ``digits`` decimals, or an en dash when absent."""
    return figures.number(value, digits)


@register.filter
def epsilon(value) -> str:
    """An epsilon at the one precision every page uses (audits.figures)."""
    return figures.epsilon(value)


@register.filter
def shown_column(name, codebook) -> str:
    """A column's display name from a dataset version's codebook (ingestion.codebook), for
    the few places a template names a stored column itself."""
    return codebook.column(name) if codebook else str(name)


@register.filter
def get_item(mapping, key):
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None
