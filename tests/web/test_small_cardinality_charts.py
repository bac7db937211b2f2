"""Numeric columns with few distinct values (codes, grades) chart as categories in numeric
order, not as ten-bin histograms."""

from __future__ import annotations

import re

import pandas as pd

from audits.templatetags.tessera_charts import column_chart
from ml_core.profiling import _numeric_profile


def test_a_coded_numeric_column_charts_as_categories_in_numeric_order():
    series = pd.Series([10, 2, 1, 2, 3, 10, 1, 1, None])
    profile = {"name": "dependants", **_numeric_profile(series)}
    assert profile["value_counts"] == [["1", 3], ["2", 2], ["3", 1], ["10", 2]]
    svg = str(column_chart(profile))
    assert "Values of dependants" in svg
    assert re.findall(r'class="category"[^>]*>([^<]+)<', svg) == ["1", "2", "3", "10"]


def test_a_continuous_column_keeps_its_histogram():
    profile = {"name": "amount", **_numeric_profile(pd.Series(range(100)))}
    assert "value_counts" not in profile
    assert "Distribution of amount" in str(column_chart(profile))
