"""The plug-in contract: what a vertical declares.

A vertical is a Django app whose ``AppConfig.ready()`` calls
:func:`verticals.registry.register` with one :class:`Vertical`. It never imports platform
apps; it describes its problems with ``ml_core.spec`` dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ml_core.spec import ColumnMapping, ProblemSpec


@dataclass(frozen=True)
class Problem:
    """One job a vertical offers (credit default risk, note triage, ...)."""

    spec: ProblemSpec
    # sample_data(n_rows, seed) -> a realistic synthetic table for demos and the contract tests.
    sample_data: Callable[[int, int], pd.DataFrame]
    # The mapping that fits sample_data's columns.
    sample_mapping: ColumnMapping
    guide: str = ""  # what to upload, how to read the results (Markdown)

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass(frozen=True)
class Vertical:
    key: str
    name: str
    description: str
    problems: tuple[Problem, ...]

    def problem(self, key: str) -> Problem:
        for problem in self.problems:
            if problem.key == key:
                return problem
        raise KeyError(f"vertical {self.key!r} has no problem {key!r}")
