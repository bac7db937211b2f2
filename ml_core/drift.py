"""Data drift: the population stability index (PSI) per feature and per sensitive group.

PSI compares the distribution of one column in new data with the data a model was trained
on: ``sum((cur - ref) * ln(cur / ref))`` over bins. Numeric columns are cut at the
reference's deciles (so each reference bin holds about a tenth of the rows), categorical
columns by level. Common reading: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 a
major shift. Empty bins are floored at a small share so the logarithm stays finite.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ml_core import cancellation

DEFAULT_THRESHOLD = 0.25
DEFAULT_BINS = 10
PSEUDO_COUNT = 0.5
# Within groups, a PSI is judged only when its noise floor is under this share of the
# threshold (overall columns: a quarter).
GROUP_NOISE_SHARE = 0.1
MIN_GROUP_ROWS = 20
MISSING = "missing"


def noise_floor(*, bins: int, n_reference: int, n_current: int) -> float:
    """PSI expected from sampling alone when nothing shifted: about
    ``(bins - 1) * (1/n_ref + 1/n_cur)`` (PSI behaves like a chi-square statistic)."""
    if n_reference <= 0 or n_current <= 0:
        return math.inf
    return (bins - 1) * (1 / n_reference + 1 / n_current)


def bins_for(*, n_reference: int, n_current: int, threshold: float, most: int,
             noise_share: float = 0.25) -> int:
    """The most numeric bins (up to ``most``) whose noise floor stays within ``noise_share``
    of the threshold; below 2, the samples are too small to judge (0 is returned)."""
    if n_reference <= 0 or n_current <= 0:
        return 0
    allowed = int((threshold * noise_share) / (1 / n_reference + 1 / n_current)) + 1
    bins = min(most, allowed)
    return bins if bins >= 2 else 0


@dataclass(frozen=True)
class DriftPolicy:
    threshold: float = DEFAULT_THRESHOLD
    bins: int = DEFAULT_BINS
    min_group_rows: int = MIN_GROUP_ROWS  # smaller groups are reported, not judged

    def to_dict(self) -> dict:
        return asdict(self)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _psi_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    # Half a row added to every bin (Jeffreys' prior) keeps ln() finite for empty bins
    # without the huge values a tiny fixed share gives a level seen on one side only.
    ref = (reference + PSEUDO_COUNT) / (reference.sum() + PSEUDO_COUNT * len(reference))
    cur = (current + PSEUDO_COUNT) / (current.sum() + PSEUDO_COUNT * len(current))
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _counts(reference: pd.Series, current: pd.Series, bins: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Counts per bin of both sides: numeric by the reference's quantiles, else by level.
    Missing values are a bin of their own; bins empty on both sides are dropped."""
    if _is_numeric(reference) and _is_numeric(current):
        ref = pd.to_numeric(reference, errors="coerce").astype(float)
        cur = pd.to_numeric(current, errors="coerce").astype(float)
        present = ref.dropna().to_numpy()
        edges = (np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
                 if len(present) and bins > 1 else np.array([]))

        def counts(values: pd.Series) -> np.ndarray:
            # searchsorted "right": bin i holds values in [edge_{i-1}, edge_i).
            positions = np.searchsorted(edges, values.dropna().to_numpy(), side="right")
            binned = np.bincount(positions, minlength=len(edges) + 1)
            return np.append(binned, values.isna().sum())

        ref_counts, cur_counts = counts(ref), counts(cur)
    else:
        ref = reference.astype("object").where(reference.notna(), MISSING).astype(str)
        cur = current.astype("object").where(current.notna(), MISSING).astype(str)
        levels = sorted(set(ref.unique()) | set(cur.unique()))
        ref_counts = ref.value_counts().reindex(levels, fill_value=0).to_numpy()
        cur_counts = cur.value_counts().reindex(levels, fill_value=0).to_numpy()
    used = (ref_counts + cur_counts) > 0
    return ref_counts[used].astype(float), cur_counts[used].astype(float)


def psi(reference: pd.Series, current: pd.Series, *, bins: int = DEFAULT_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (0: identical).

    Missing values form their own bin. Numeric columns use the reference's quantile edges;
    others compare level shares (levels unseen in the reference count as their own bins).
    """
    if len(reference) == 0 or len(current) == 0:
        return math.nan
    return _psi_from_counts(*_counts(reference, current, bins))


def _column_psi(reference: pd.Series, current: pd.Series, *, bins: int, threshold: float,
                noise_share: float = 0.25) -> tuple[float | None, bool]:
    """PSI and whether it can be judged: its sampling-noise floor for the bins actually
    used must stay within ``noise_share`` of the threshold."""
    if len(reference) == 0 or len(current) == 0:
        return None, False
    ref_counts, cur_counts = _counts(reference, current, bins)
    floor = noise_floor(bins=len(ref_counts), n_reference=len(reference),
                        n_current=len(current))
    return _clean(_psi_from_counts(ref_counts, cur_counts)), floor <= threshold * noise_share


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def drift_report(
    *, reference: pd.DataFrame, current: pd.DataFrame, columns: list[str],
    groups_reference: pd.DataFrame | None = None, groups_current: pd.DataFrame | None = None,
    predictions_reference: np.ndarray | None = None,
    predictions_current: np.ndarray | None = None, policy: DriftPolicy | None = None,
) -> dict:
    """JSON-ready drift of ``current`` against ``reference``.

    ``features``: PSI per column. ``groups``: per sensitive attribute, the PSI of the group
    shares and, per group with enough rows on both sides, the PSI of each column within the
    group and the shift in predicted positive rate (when 0/1 predictions are given for both
    frames, aligned with their rows). ``drifted`` is true when any judged PSI reaches the
    threshold.
    """
    policy = policy or DriftPolicy()
    bins = bins_for(n_reference=len(reference), n_current=len(current),
                    threshold=policy.threshold, most=policy.bins) or 2
    features: dict = {}
    judged: list[float] = []
    unjudged: list[str] = []
    # A cancel (ml_core.cancellation) is honoured between columns and between groups.
    for column in cancellation.checked(columns):
        if column not in reference.columns or column not in current.columns:
            continue
        value, judge = _column_psi(reference[column], current[column], bins=bins,
                                   threshold=policy.threshold)
        features[column] = value
        if value is not None and judge:
            judged.append(value)
        elif value is not None:
            unjudged.append(column)
    groups: dict = {}
    if groups_reference is not None and groups_current is not None:
        for attribute in groups_reference.columns:
            if attribute not in groups_current.columns:
                continue
            ref_groups = groups_reference[attribute].astype(str).to_numpy()
            cur_groups = groups_current[attribute].astype(str).to_numpy()
            share_psi, judge = _column_psi(pd.Series(ref_groups), pd.Series(cur_groups),
                                           bins=bins, threshold=policy.threshold)
            if share_psi is not None and judge:
                judged.append(share_psi)
            by_group = {}
            for group in cancellation.checked(sorted(set(ref_groups) | set(cur_groups))):
                in_ref, in_cur = ref_groups == group, cur_groups == group
                n_ref, n_cur = int(in_ref.sum()), int(in_cur.sum())
                group_bins = bins_for(n_reference=n_ref, n_current=n_cur,
                                      threshold=policy.threshold, most=policy.bins,
                                      noise_share=GROUP_NOISE_SHARE)
                # A group too small for its PSI to stand out of sampling noise is reported,
                # never judged.
                entry: dict = {"rows_reference": n_ref, "rows_current": n_cur,
                               "bins": group_bins,
                               "judged": bool(group_bins)
                               and min(n_ref, n_cur) >= policy.min_group_rows}
                if entry["judged"]:
                    entry["features"], entry["unjudged"] = {}, []
                    for column in features:
                        # Many groups x columns are compared: only PSIs well clear of their
                        # sampling noise are judged, or chance alone would trip the check.
                        value, judge = _column_psi(
                            reference[column][in_ref], current[column][in_cur],
                            bins=group_bins, threshold=policy.threshold,
                            noise_share=GROUP_NOISE_SHARE)
                        entry["features"][column] = value
                        if value is not None and judge:
                            judged.append(value)
                        elif value is not None:
                            entry["unjudged"].append(column)
                    values = [v for v in entry["features"].values() if v is not None]
                    entry["max_psi"] = max(values) if values else None
                if predictions_reference is not None and predictions_current is not None:
                    ref_rate = float(np.mean(predictions_reference[in_ref])) if n_ref else None
                    cur_rate = float(np.mean(predictions_current[in_cur])) if n_cur else None
                    entry["positive_rate_reference"] = ref_rate
                    entry["positive_rate_current"] = cur_rate
                    entry["positive_rate_shift"] = (cur_rate - ref_rate
                                                    if None not in (ref_rate, cur_rate) else None)
                by_group[group] = entry
            groups[attribute] = {"share_psi": share_psi, "by_group": by_group}
    max_psi = max(judged) if judged else None
    return {
        "features": features,
        "groups": groups,
        "max_psi": max_psi,
        "threshold": policy.threshold,
        "drifted": bool(max_psi is not None and max_psi >= policy.threshold),
        "rows_reference": int(len(reference)),
        "rows_current": int(len(current)),
        "bins": bins,
        "unjudged": unjudged,
        "policy": policy.to_dict(),
    }
