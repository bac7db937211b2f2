"""A private run's plan: who the person is, what each stage may spend, one report.

The run skeleton asks this plan three things: the noise for the released preprocessing
statistics (before encoding), the SGD share of the budget (for the private loop), and,
after training, the released decision threshold and the run's one composed privacy report.
Every family plans the same way (:meth:`PrivatePlan.for_frame` for tables,
:meth:`PrivatePlan.for_units` for the others, which name what they release) and charges
its training through :meth:`PrivatePlan.charged`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_core.data import column_kinds
from ml_core.privacy_composition import (
    BudgetShares,
    composed_report,
    gaussian_noise_multiplier,
    sgd_target_for,
    share_budget,
)
from ml_core.private_statistics import (
    REFINE_MIN_PERSONS,
    TREE_LEVELS,
    WHITENING_HISTOGRAMS,
    WHITENING_MAX_NOISE,
    PreprocessingNoise,
    contribution_weights,
    person_codes,
    private_threshold,
    whitening_noise,
)
from ml_core.spec import ColumnMapping, PrivacyConfig, ProblemSpec, TrainConfig
from ml_core.training_loop import TrainingCancelled

# What is released besides the model's weights, and how each is protected (for the report).
RELEASED = {
    "imputation values and centres": "DP median from a noisy histogram on a public grid",
    "scales": "DP interquartile range from the same histogram",
    "missing-value indicators": "chosen where the noisy count of gaps clears the threshold",
    "category vocabularies": "levels whose noisy person count clears the threshold",
    "decision threshold": "best F1 on a noisy histogram of validation scores by label",
}
# Released besides, on a large table whose numeric columns are decorrelated.
RELEASED_WHITENING = {
    "numeric decorrelation": "whitening from a noisy second-moment matrix of the clipped, "
                             "standardised numeric columns",
}
PUBLIC = ("column names and types (the confirmed mapping)", "the numeric grid and score bins",
          "the target's two labels", "training settings", "row and person counts of the split")
# At least this many batches per epoch in a person-level run over few persons: one batch
# would sample every person at every step (rate 1), which gets no privacy amplification.
MIN_BATCHES_PER_EPOCH = 4


def person_batch_size(batch_size: int, n_units: int) -> int:
    """Persons per batch: ``batch_size``, but at most ``n_units / MIN_BATCHES_PER_EPOCH``."""
    return max(1, min(int(batch_size), int(n_units) // MIN_BATCHES_PER_EPOCH))


CURATOR_ONLY = ("the logistic-regression baseline", "the non-private twin",
                "the fairness audit's per-group tables", "test metrics")


@dataclass(frozen=True)
class PrivatePlan:
    """How one private run spends its budget (see :mod:`ml_core.privacy_composition`)."""

    privacy: PrivacyConfig  # the run's whole target
    shares: BudgetShares
    noise: PreprocessingNoise | None  # None: no statistic of the rows is released
    unit_column: str | None
    max_rows: int  # rows per person per step and per histogram (1 when rows are persons)
    # What the report lists as released (with how), declared public and curator-only.
    released: Mapping[str, str] = field(default_factory=lambda: dict(RELEASED))
    public: tuple[str, ...] = PUBLIC
    curator_only: tuple[str, ...] = CURATOR_ONLY
    # Examples a person brings to one SGD step and how their gradient is bounded, where
    # they differ from the tabular rows (None: max_rows rows, the mean clipped as a whole).
    examples_per_step: int | None = None
    gradient: str | None = None

    def sgd(self, *, split, train: TrainConfig) -> PrivacyConfig:  # noqa: ANN001
        """The SGD stage's share for ``split``'s training persons, as the private loop
        takes it: what one composition with the preprocessing leaves of the target."""
        return self.sgd_for(n_units=split.n_train_units, train=train)

    def sgd_for(self, *, n_units: int, train: TrainConfig,
                batch_size: int | None = None) -> PrivacyConfig:
        """The SGD stage's share for ``n_units`` training persons sampled ``batch_size``
        (default ``train.batch_size``) a batch over ``train.epochs``, as the private loop
        will: what one composition with the preprocessing leaves of the target."""
        batch_size = train.batch_size if batch_size is None else int(batch_size)
        target = (self.shares.sgd_epsilon if self.noise is None else sgd_target_for(
            shares=self.shares, preprocessing_noise_multiplier=self.noise.noise_multiplier,
            n_units=n_units, batch_size=batch_size, epochs=train.epochs))
        return dataclasses.replace(self.privacy, target_epsilon=target,
                                   delta=self.shares.sgd_delta)

    def charged(self, fit: Callable[[PrivacyConfig], Any], *, sgd: PrivacyConfig,
                spec: ProblemSpec, mapping: ColumnMapping) -> Any:
        """``fit(sgd)`` (a trained model with a ``privacy`` report) with its report replaced
        by the run's one composed report. A cancelled training still spent the released
        statistics: its :class:`TrainingCancelled` carries the composed cost."""
        try:
            fitted = fit(sgd)
        except TrainingCancelled as cancelled:
            raise TrainingCancelled(privacy=self.report(
                cancelled.privacy, spec=spec, mapping=mapping)) from cancelled
        return dataclasses.replace(fitted, privacy=self.report(fitted.privacy, spec=spec,
                                                               mapping=mapping))

    @classmethod
    def for_units(cls, *, privacy: PrivacyConfig, unit_column: str | None, n_units: int,
                  n_histograms: int, n_categorical: int, max_rows: int,
                  released: Mapping[str, str] = RELEASED, public: tuple[str, ...] = PUBLIC,
                  curator_only: tuple[str, ...] = CURATOR_ONLY,
                  examples_per_step: int | None = None,
                  gradient: str | None = None, refine_numeric: bool = False,
                  whiten_numeric: bool = False) -> PrivatePlan:
        """The plan of a run over ``n_units`` persons (all of them: delta is sized for
        these) releasing ``n_histograms`` noisy histograms, ``n_categorical`` of them
        thresholded vocabularies, each person weighing at most ``max_rows`` rows in each.
        ``n_histograms=0``: nothing but the weights is released; SGD gets the whole target.
        ``refine_numeric``: numeric columns also release a refined histogram (counted in
        ``n_histograms``); ``whiten_numeric``: and their second-moment matrix (also counted)."""
        shares = share_budget(privacy, n_units=n_units, preprocessing=n_histograms > 0)
        noise = None if n_histograms <= 0 else PreprocessingNoise.plan(
            noise_multiplier=gaussian_noise_multiplier(epsilon=shares.preprocessing_epsilon,
                                                       delta=shares.gaussian_delta),
            n_categorical=n_categorical, n_histograms=n_histograms,
            refine_numeric=refine_numeric, whiten_numeric=whiten_numeric,
            threshold_delta=shares.threshold_delta, max_rows=max_rows)
        return cls(privacy=privacy, shares=shares, noise=noise, unit_column=unit_column,
                   max_rows=max_rows, released=dict(released), public=tuple(public),
                   curator_only=tuple(curator_only), examples_per_step=examples_per_step,
                   gradient=gradient)

    @classmethod
    def for_frame(cls, *, frame: pd.DataFrame, columns: tuple[str, ...],
                  privacy: PrivacyConfig, unit_column: str | None,
                  column_types: Mapping[str, str] | None = None,
                  hierarchies: Mapping[str, str] | None = None) -> PrivatePlan:
        """The plan for training on ``frame``'s ``columns`` with ``privacy``'s target. Delta
        is sized for all persons in ``frame`` (more than the training ones: a smaller, so
        stronger, delta than the training split alone would give). ``column_types`` are the
        analyst's column kinds; columns with declared ``hierarchies`` are hashed by the
        private encoder and release no histogram."""
        if unit_column is not None:
            n_units = person_codes(frame[unit_column].to_numpy())[1]
            max_rows = int(privacy.max_rows_per_person)
        else:
            n_units, max_rows = len(frame), 1
        columns = tuple(column for column in columns if column not in (hierarchies or {}))
        n_numeric, n_categorical = column_kinds(frame, columns, column_types=column_types)
        # On a large table a numeric column releases its coarse histogram and a refined,
        # hierarchical one around its median of TREE_LEVELS levels, each charged as a
        # histogram (ml_core.private_statistics.private_refined).
        refine = n_units >= REFINE_MIN_PERSONS
        n_histograms = len(columns) + (n_numeric * TREE_LEVELS if refine else 0)
        # And, where its noise is small enough (public counts only), the numeric columns'
        # second-moment matrix, for their decorrelation (private_whitening).
        shares = share_budget(privacy, n_units=n_units, preprocessing=n_histograms > 0)
        whiten = refine and n_numeric >= 2 and whitening_noise(
            noise_multiplier=gaussian_noise_multiplier(
                epsilon=shares.preprocessing_epsilon, delta=shares.gaussian_delta),
            n_histograms=n_histograms, n_numeric=n_numeric,
            n_units=n_units) <= WHITENING_MAX_NOISE
        return cls.for_units(privacy=privacy, unit_column=unit_column, n_units=n_units,
                             n_histograms=n_histograms + (WHITENING_HISTOGRAMS if whiten
                                                          else 0),
                             n_categorical=n_categorical, max_rows=max_rows,
                             released={**RELEASED, **(RELEASED_WHITENING if whiten else {})},
                             public=PUBLIC, refine_numeric=refine, whiten_numeric=whiten)

    def threshold(self, *, split, scores: np.ndarray, seed: int) -> float:  # noqa: ANN001
        """The released decision threshold from the validation persons' scores, under DP
        (validation persons touch only this histogram: see ml_core.private_statistics)."""
        weights = contribution_weights(split.persons_val, max_rows=self.max_rows, seed=seed)
        generator = np.random.Generator(np.random.PCG64([seed, 0x7E5]))
        return private_threshold(scores, split.y_val, weights, noise=self.noise,
                                 generator=generator)

    def report(self, sgd: dict, *, spec: ProblemSpec, mapping: ColumnMapping,
               released: Mapping[str, str] | None = None,
               public: tuple[str, ...] | None = None,
               curator_only: tuple[str, ...] | None = None) -> dict:
        """The run's one privacy report: composed epsilon and delta, unit, bound, stages.
        ``released``, ``public`` and ``curator_only`` override the plan's own lists."""
        if released is not None or public is not None or curator_only is not None:
            return dataclasses.replace(
                self, released=dict(self.released if released is None else released),
                public=tuple(self.public if public is None else public),
                curator_only=tuple(self.curator_only if curator_only is None
                                   else curator_only)).report(sgd, spec=spec, mapping=mapping)
        contribution = {
            "max_rows_per_person": (self.max_rows if self.examples_per_step is None
                                    else self.examples_per_step),
            "gradient": self.gradient or (
                "the mean of the person's drawn rows' gradients, clipped once as a whole to "
                "max_grad_norm" if self.unit_column else
                "each row's gradient clipped to max_grad_norm"),
            # The bound the SGD steps clipped at (a class-weighted tabular training
            # clips at a multiple of the configured one: ml_core.trainer.private_clipping).
            "max_grad_norm": sgd.get("max_grad_norm") or self.privacy.max_grad_norm,
            "preprocessing_weight_per_person": 1.0,
            "preprocessing_rows_per_person": self.max_rows,
        }
        return composed_report(
            sgd=sgd, shares=self.shares,
            preprocessing=self._preprocessing_report(),
            unit=spec.privacy_unit.describe(mapping), contribution=contribution)

    def _preprocessing_report(self) -> dict:
        released = {"estimated_privately": dict(self.released),
                    "declared_public": list(self.public),
                    "curator_only": list(self.curator_only)}
        if self.noise is not None:
            return self.noise.report(released)
        return {"sigma": None, "noise_multiplier": None, "n_histograms": 0, "threshold": None,
                "threshold_delta": 0.0, "max_rows": self.max_rows, "released": released}
