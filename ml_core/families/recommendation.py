"""Implicit-feedback product recommendation (task RANKING, family "recommender").

Upload: one row per interaction. Roles: ``user``, ``item``, ``time`` (optional: row order
otherwise); the target is optional: a ``rating``/``clicked``/``purchased`` column when
present (binary: its positive value counts; ratings: at or above that user's own mean
rating count, a rule that reads one user's rows only), otherwise every row is a positive.
User attributes (age, sex, region) sit on the rows: the platform merges an
``--attributes`` FILE on the user key before calling :func:`run`, so ``mapping.sensitive``
names columns of the interactions table; they must be constant per user (the first value
is used).

Model: :class:`ml_core.models.recommender.ItemFactors`, item-side parameters only. A
user's vector is the mean of the context embeddings of that user's own history, computed
when they are scored (evaluation, :func:`predict`), never trained as a parameter nor
stored: the released artifact holds no per-user state (the joint-DP pattern of private
alternating least squares, Jain et al. 2018, Chien et al. 2021). Trained with BPR: each
history item is the positive for the mean of the user's other drawn items, against
``NEGATIVES`` items drawn uniformly at random inside the loss.

Privacy (the unit is the USER, the problem's ``privacy_unit``): a private run samples users
(Poisson, at the accountant's rate; :class:`ml_core.sampling.PersonRows`), a drawn user
brings at most ``PrivacyConfig.max_rows_per_person`` of their training interactions, their
loss is the mean over those and their whole gradient is clipped once, then Gaussian noise
(DP-SGD). The item vocabulary the artifact carries is the tabular family's noisy
thresholded histogram (:func:`ml_core.private_statistics.private_vocabulary`) at user
level: each user weighs 1 in L2 norm (``1 / sqrt(m)`` on each of up to that many distinct
items). Both are composed in one accountant (:mod:`ml_core.privacy_composition`). Items
outside the vocabulary are never recommended by the released model.

A declared public item catalogue (:func:`with_catalogue`: the platform's catalogue
companion file, one item id per row) replaces the private vocabulary: the model knows
exactly the catalogue's items, no budget is spent on them and the whole target goes to the
SGD steps (:class:`CataloguePlan`: one stage); positives on items outside it are dropped and
counted; no popularity prior is released (the item biases are trained under DP-SGD).
The catalogue file's other columns are public item attributes
(:mod:`ml_core.families.catalogue_features`): for each usable one, the share of the user's
own history sharing the candidate's value (numbers: lying near it) is a feature computed at
serving time like the user's vector, and the model adds them with one weight per attribute
trained in the same DP-SGD steps; the artifact holds the catalogue's level tables (public)
and those weights.

Split: per-user temporal hold-out ("leave-last-k-out"): each user's last positive(s) by
time form the test, the one before the validation; all earlier ones train. Every user is
evaluated on a future they did not train on, scored from their history before it. A given
test file (:func:`ml_core.data.attach_labelled_test`: the interactions' columns, a
published split) replaces the hold-out (:func:`split_given_test`): its positives are the
test, judged for users who have positives in the training file (their history; a test user
without one is refused by name), and each user's last training positive is validation.
Metrics NDCG@k, Recall@k and HitRate@k over all items not already in the user's history,
against the most-popular-items baseline (for the curator's eyes: not released).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ml_core import fairness, group_metrics
from ml_core.data import given_test_rows, listed
from ml_core.families.base import (
    MetricDeclaration,
    ModelFamily,
    Supports,
    register_family,
)
from ml_core.families.catalogue_features import (
    CatalogueAttributes,
    ContentColumns,
    content_columns,
)
from ml_core.families.forecast_windows import parse_dates
from ml_core.families.module_artifacts import load_module, save_module
from ml_core.families.tensor_training import FittedModule, fit_module
from ml_core.models.recommender import ItemFactors
from ml_core.person_privacy import PrivatePlan
from ml_core.privacy import resolve_delta
from ml_core.privacy_statement import privacy_notes
from ml_core.private_statistics import (
    PreprocessingNoise,
    contribution_weights,
    private_level_counts,
)
from ml_core.runner import (
    Baseline,
    Evaluation,
    FamilyHooks,
    FitCall,
    Fitted,
    RunInputs,
    Saved,
    family_runner,
    json_ready,
    with_groups,
)
from ml_core.sampling import PersonRows
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    ProblemSpec,
    TaskType,
    TrainConfig,
)
from ml_core.trainer import TrainingCancelled
from ml_core.validation import ValidationIssue

MODEL_FAMILY = "recommender"
NEGATIVES = 4
EMBEDDING_DIM = 16
CHART_USERS = 5
# The non-private model's per-user examples: up to this many of a user's interactions (the
# private one draws PrivacyConfig.max_rows_per_person, a fresh subset each step).
TWIN_MAX_ROWS = 64
# Users scored at once (a (users x vocabulary) score matrix each time).
SCORE_CHUNK = 1024
POSITIVE_WORDS = {"1", "1.0", "true", "yes", "y", "clicked", "purchased", "bought"}


# The frame attribute (``DataFrame.attrs``) that carries a declared public item catalogue:
# the platform sets it from a catalogue companion file (ingestion.companions).
CATALOGUE_ATTR = "item_catalogue"
# The catalogue's other columns (public item attributes), when the file has any.
ATTRIBUTES_ATTR = "item_catalogue_attributes"


def with_catalogue(frame: pd.DataFrame, items: pd.Series | list,
                   attributes: pd.DataFrame | None = None) -> pd.DataFrame:
    """``frame`` (a shallow copy) carrying ``items`` as the declared public catalogue: the
    ids as text, stripped, blanks dropped, each once. ``attributes`` (the catalogue file,
    rows aligned with ``items``): its other columns are the items' public attributes
    (:mod:`ml_core.families.catalogue_features`). ValueError when no id is left."""
    ids = pd.Series(list(items), dtype="object").astype("string").str.strip()
    names = tuple(sorted(set(ids[ids.notna() & (ids != "")].tolist())))
    if not names:
        raise ValueError("the catalogue file lists no item id")
    marked = frame.copy(deep=False)
    marked.attrs[CATALOGUE_ATTR] = names
    marked.attrs.pop(ATTRIBUTES_ATTR, None)
    if attributes is not None:
        described = CatalogueAttributes.of(pd.Series(list(items), name=getattr(
            items, "name", None)), attributes)
        if described is not None:
            marked.attrs[ATTRIBUTES_ATTR] = described
    return marked


def declared_catalogue(frame: pd.DataFrame) -> tuple[str, ...] | None:
    """The declared public item catalogue ``frame`` carries, or None (the default: the
    vocabulary is then estimated, privately for a private run)."""
    names = frame.attrs.get(CATALOGUE_ATTR)
    return tuple(names) if names else None


def catalogue_attributes(frame: pd.DataFrame) -> CatalogueAttributes | None:
    """The declared catalogue's public item attributes ``frame`` carries, or None."""
    return frame.attrs.get(ATTRIBUTES_ATTR)


# --- preparing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Interactions:
    """Positive interactions in time order per user, with integer ids (1-based)."""

    users: np.ndarray  # user index per positive
    items: np.ndarray  # item index per positive
    order: np.ndarray  # rank of the interaction within its user's history (0 = first)
    count: np.ndarray  # that user's number of positives
    row_ids: np.ndarray  # the frame's index per positive
    user_names: list[str]
    item_names: list[str]
    dropped_negatives: int
    duplicates: int
    how_positive: str
    # Positive interactions dropped because their item is outside a declared catalogue.
    outside_catalogue: int = 0
    # Per positive: whether it came from a given test file (None: no such file).
    given_test: np.ndarray | None = None


def _positive_rows(frame: pd.DataFrame, target: str | None, users: pd.Series,
                   known: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Which rows are positives, and the rule in words. ``known`` (rows of the training
    file, when a given test file follows it): a user's mean rating is taken over those,
    so the test file's ratings do not move which training rows are positives."""
    if not target or target not in frame.columns:
        return np.ones(len(frame), bool), "every row is a positive (implicit feedback)"
    values = frame[target]
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and numbers.nunique() > 2:
        # Each user's own mean: a global mean would let one user move everyone's positives.
        keys = users.to_numpy()
        own_mean = numbers.groupby(keys).transform("mean")
        if known is not None:
            means = numbers[known].groupby(keys[known]).mean()
            own_mean = pd.Series(keys, index=numbers.index).map(means).fillna(own_mean)
        return (numbers >= own_mean).to_numpy(), (
            "ratings at or above the user's own mean rating count as positives")
    text = values.astype("string").str.strip().str.lower()
    return text.isin(POSITIVE_WORDS).fillna(False).to_numpy(bool), (
        f"rows whose '{target}' is 1/yes/true count as positives")


def interactions(frame: pd.DataFrame, mapping: ColumnMapping) -> Interactions:
    """Positives ordered by (user, time, row order); repeated (user, item) pairs keep the
    first occurrence (a re-purchase is not a new item to recommend). With a declared
    catalogue (:func:`declared_catalogue`) every catalogue item is an item, interacted
    with or not, and positives on items outside it are dropped (counted)."""
    user_column, item_column = mapping.role("user"), mapping.role("item")
    if user_column is None or item_column is None:
        raise ValueError("recommendation needs columns with the 'user' and 'item' roles")
    given = given_test_rows(frame)
    positive, how = _positive_rows(frame, mapping.target,
                                   frame[user_column].astype("string").str.strip(),
                                   known=None if given is None else ~given)
    time_column = mapping.role("time")
    times = (parse_dates(frame[time_column])[0] if time_column
             else pd.Series(np.arange(len(frame)), index=frame.index))
    if not pd.api.types.is_datetime64_any_dtype(times) and time_column:
        times = pd.to_numeric(frame[time_column], errors="coerce")
    work = pd.DataFrame({
        "user": frame[user_column].astype("string").str.strip().to_numpy(),
        "item": frame[item_column].astype("string").str.strip().to_numpy(),
        "time": times.to_numpy(), "pos": np.arange(len(frame)),
        # A given test file's rows follow each user's training rows, whatever their time.
        "given": np.zeros(len(frame), bool) if given is None else given,
    })[positive]
    work = work.dropna(subset=["user", "item"])
    catalogue = declared_catalogue(frame)
    outside = 0
    if catalogue is not None:
        inside = work["item"].isin(set(catalogue)).to_numpy(bool)
        outside, work = int((~inside).sum()), work[inside]
    work = work.sort_values(["user", "given", "time", "pos"], kind="stable",
                            na_position="first")
    duplicated = work.duplicated(["user", "item"])
    work = work[~duplicated]
    user_names = sorted(work["user"].unique().tolist())
    item_names = sorted(set(work["item"].unique().tolist()) | set(catalogue or ()))
    user_index = {name: i + 1 for i, name in enumerate(user_names)}
    item_index = {name: i + 1 for i, name in enumerate(item_names)}
    users = work["user"].map(user_index).to_numpy(dtype=np.int64)
    order = work.groupby("user", sort=False).cumcount().to_numpy()
    count = work.groupby("user", sort=False)["item"].transform("size").to_numpy()
    return Interactions(
        users=users, items=work["item"].map(item_index).to_numpy(dtype=np.int64),
        order=order, count=count, row_ids=frame.index.to_numpy()[work["pos"].to_numpy()],
        user_names=user_names, item_names=item_names,
        dropped_negatives=int((~positive).sum()), duplicates=int(duplicated.sum()),
        how_positive=how, outside_catalogue=outside,
        given_test=None if given is None else work["given"].to_numpy(bool),
    )


def held_out_count(n_positives: np.ndarray) -> np.ndarray:
    """Test positives per user: 2 with at least 6 positives, 1 with 3-5, none below 3
    (those users only train)."""
    return np.where(n_positives >= 6, 2, np.where(n_positives >= 3, 1, 0))


@dataclass(frozen=True)
class UserSplit:
    train: np.ndarray  # boolean masks over Interactions rows
    val: np.ndarray
    test: np.ndarray
    summary: dict


def split_by_user_time(data: Interactions) -> UserSplit:
    """Each user's last k positives -> test, the one before -> validation, earlier -> train."""
    k = held_out_count(data.count)
    test = (k > 0) & (data.order >= data.count - k)
    val = (k > 0) & (data.order == data.count - k - 1)
    train = ~(test | val)
    summary = {
        "method": "per_user_time",
        "description": "each user's last positive interactions (by time) are the test, the "
                       "one before is validation",
        "train": int(train.sum()), "val": int(val.sum()), "test": int(test.sum()),
        "unit": "interactions",
        "test_users": int(len(np.unique(data.users[test]))),
        "users": len(data.user_names), "items": len(data.item_names),
    }
    return UserSplit(train=train, val=val, test=test, summary=summary)


def users_without_history(data: Interactions) -> list[str]:
    """The users with positives in a given test file but none in the training file."""
    if data.given_test is None:
        return []
    tested = set(data.users[data.given_test].tolist())
    trained = set(data.users[~data.given_test].tolist())
    return [data.user_names[u - 1] for u in sorted(tested - trained)]


def given_test_refusal(data: Interactions) -> str | None:
    """Why a given test file cannot be judged (None: it can): it has no positive
    interaction, or some of its users have no positive interaction in the training file."""
    if data.given_test is None:
        return None
    if not data.given_test.any():
        return ("the test file has no positive interaction on a known item to judge "
                f"({data.how_positive})")
    lacking = users_without_history(data)
    if lacking:
        return (f"{len(lacking)} users of the test file have no positive interaction in the "
                f"training file ({listed(lacking)}); a user's recommendations are computed "
                "from their training history, so each test user needs one there: remove "
                "them from the test file or add their history to the training file")
    return None


def split_given_test(data: Interactions) -> UserSplit:
    """A given test file's positives -> test (each test user's held-out items); in the
    training file, each user's last positive -> validation when they have 3 or more there,
    the earlier ones train. ValueError (:func:`given_test_refusal`) when it cannot be
    judged."""
    refusal = given_test_refusal(data)
    if refusal:
        raise ValueError(refusal)
    test = data.given_test
    trained = np.bincount(data.users[~test], minlength=len(data.user_names) + 1)[data.users]
    # Training positives come first in each user's order (interactions sorts them so).
    val = ~test & (trained >= 3) & (data.order == trained - 1)
    train = ~(test | val)
    summary = {
        "method": "given_test_file",
        "description": "the given test file's positive interactions are the test (each "
                       "test user's history is their training-file positives); each "
                       "user's last training positive is validation",
        "train": int(train.sum()), "val": int(val.sum()), "test": int(test.sum()),
        "unit": "interactions",
        "test_users": int(len(np.unique(data.users[test]))),
        "users": len(data.user_names), "items": len(data.item_names),
    }
    return UserSplit(train=train, val=val, test=test, summary=summary)


# --- ranking metrics ------------------------------------------------------------------


def rank_top_k(scores: np.ndarray, exclude: list[set[int]], k: int) -> np.ndarray:
    """Top-``k`` item indices (1-based) per row of ``scores`` (columns = items 1..n),
    skipping each row's ``exclude`` set; ties broken by the lower item index."""
    scores = scores.astype(float).copy()
    for row, seen in enumerate(exclude):
        if seen:
            scores[row, np.fromiter(seen, int) - 1] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order + 1


def user_ranking_metrics(top: np.ndarray, relevant: list[set[int]], k: int
                         ) -> dict[str, np.ndarray]:
    """Per-user NDCG@k, Recall@k and HitRate@k with binary relevance."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg, recall, hit = (np.zeros(len(relevant)) for _ in range(3))
    for row, wanted in enumerate(relevant):
        gains = np.array([item in wanted for item in top[row, :k]], dtype=float)
        ideal = discounts[: min(len(wanted), k)].sum()
        ndcg[row] = (gains * discounts[: len(gains)]).sum() / ideal if ideal else 0.0
        recall[row] = gains.sum() / len(wanted) if wanted else 0.0
        hit[row] = float(gains.any())
    return {"ndcg": ndcg, "recall": recall, "hit_rate": hit}


def summarise(per_user: dict[str, np.ndarray], k: int) -> dict[str, float]:
    return {f"{name}@{k}": float(values.mean()) if len(values) else math.nan
            for name, values in per_user.items()}


def exposure_by_decile(top: np.ndarray, popularity: np.ndarray) -> list[dict]:
    """Share of recommended slots per item-popularity decile (1 = least popular tenth of
    the catalogue, 10 = most popular), next to that decile's share of the catalogue."""
    n_items = len(popularity)
    order = np.argsort(popularity, kind="stable")  # ascending popularity
    decile = np.empty(n_items, dtype=int)
    decile[order] = np.arange(n_items) * 10 // max(n_items, 1) + 1
    slots = top.ravel()
    slots = slots[slots > 0]  # 0: a slot left empty (the model's vocabulary ran out)
    recommended = np.bincount(decile[slots - 1], minlength=11)[1:]
    catalogue = np.bincount(decile, minlength=11)[1:]
    total = max(int(recommended.sum()), 1)
    return [{"decile": d + 1, "catalogue_share": float(catalogue[d] / max(n_items, 1)),
             "recommended_share": float(recommended[d] / total)} for d in range(10)]


# --- the item vocabulary and the user-level privacy plan --------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """The items a model knows (its index ``i`` is ``names[i - 1]``; 0 = none) with their
    user-weighted counts, and where each of the run's items (:class:`Interactions`
    indices) sits in it."""

    names: tuple[str, ...]
    counts: np.ndarray  # per name: its (noisy, for a private run) user-weighted count
    of_item: np.ndarray  # run item index (1-based; 0 unused) -> model index, 0 = outside
    to_item: np.ndarray  # model index (0 = none) -> run item index (0 = none)

    @classmethod
    def of(cls, counts: dict[str, float], data: Interactions) -> Vocabulary:
        names = tuple(sorted(counts))
        position = {name: i + 1 for i, name in enumerate(names)}
        of_item = np.array([0, *(position.get(name, 0) for name in data.item_names)],
                           dtype=np.int64)
        run_index = {name: i + 1 for i, name in enumerate(data.item_names)}
        to_item = np.array([0, *(run_index[name] for name in names)], dtype=np.int64)
        return cls(names=names, counts=np.array([counts[name] for name in names]),
                   of_item=of_item, to_item=to_item)

    def prior(self) -> torch.Tensor:
        """The model's popularity prior: log of each item's count (index 0: none)."""
        return torch.from_numpy(np.log(np.r_[1.0, np.maximum(self.counts, 1.0)]))


def _user_weights(data: Interactions, mask: np.ndarray, *, max_rows: int, seed: int
                  ) -> np.ndarray:
    """Per interaction of ``mask``: ``1 / sqrt(m)`` on up to ``max_rows`` of each user's
    (distinct) items, a seeded subset, 0 on the rest: one user moves the item histogram by
    at most 1 in L2 norm, and each item by at most 1. (The tabular weights ``1 / m`` are
    their square: the same mechanism, more signal for sets of items.)"""
    return np.sqrt(contribution_weights(data.users[mask], max_rows=max_rows, seed=seed))


def _item_names(data: Interactions, mask: np.ndarray) -> np.ndarray:
    return np.asarray(data.item_names, dtype=object)[data.items[mask] - 1]


# What a private recommender releases, how each part is protected, and what is not released.
RELEASED = {
    "item vocabulary": "items whose noisy user-weighted count clears the threshold "
                       "(Gaussian histogram, each user weighing 1 in L2 norm)",
    "item embeddings and item biases": "DP-SGD over users (Poisson-sampled users, each "
                                       "user's gradient clipped once)",
}
SERVING = ("No user vector is released: a user's vector is the mean of the released "
           "context embeddings of that user's own history, computed when they are scored")
PUBLIC = ("column names and roles (the confirmed mapping)", "the positive rule",
          "training settings", "user and interaction counts of the split")
CURATOR_ONLY = ("the popularity baseline", "the non-private twin",
                "the audit's NDCG by user group", "test metrics")


@dataclass(frozen=True)
class UserLevelPlan:
    """How a private recommender spends its budget, per user: the item vocabulary (one
    Gaussian histogram with thresholds) and the SGD steps, composed in one accountant: the
    tabular family's :class:`ml_core.person_privacy.PrivatePlan` with one histogram."""

    plan: PrivatePlan

    @property
    def noise(self) -> PreprocessingNoise:
        return self.plan.noise

    @property
    def max_rows(self) -> int:
        """Interactions per user per step, and distinct items per user counted."""
        return self.plan.max_rows

    @classmethod
    def for_users(cls, *, privacy: PrivacyConfig, n_users: int,
                  user_column: str | None = None) -> UserLevelPlan:
        return cls(PrivatePlan.for_units(
            privacy=privacy, n_units=n_users, n_histograms=1, n_categorical=1,
            unit_column=user_column, max_rows=int(privacy.max_rows_per_person)))

    def vocabulary(self, data: Interactions, mask: np.ndarray, *, seed: int
                   ) -> dict[str, float]:
        """The items of ``mask``'s interactions whose noisy user weight
        (:func:`_user_weights`) clears the threshold, with those noisy weights."""
        generator = np.random.Generator(np.random.PCG64([seed, 0x5EED]))
        return private_level_counts(
            _item_names(data, mask),
            _user_weights(data, mask, max_rows=self.max_rows, seed=seed),
            noise=self.noise, generator=generator)

    def sgd(self, *, n_users: int, train: TrainConfig) -> PrivacyConfig:
        """The SGD stage's share for ``n_users`` training users."""
        return self.plan.sgd_for(n_units=n_users, train=train)

    def report(self, sgd: dict, *, spec: ProblemSpec, mapping: ColumnMapping) -> dict:
        """The run's one privacy report: composed epsilon per user, the bound, the stages,
        and what is computed at serving time instead of released."""
        report = self.plan.report(sgd, spec=spec, mapping=mapping, released=RELEASED,
                                  public=PUBLIC, curator_only=CURATOR_ONLY)
        report["unit"]["note"] = "; ".join(filter(None, (report["unit"].get("note"), SERVING)))
        report["contribution_bound"]["gradient"] = (
            "the mean of the user's drawn interactions' BPR gradients, clipped once as a "
            "whole to max_grad_norm")
        report["contribution_bound"]["preprocessing_weight_per_person"] = (
            f"1 in L2 norm (1/sqrt(m) on each of up to {self.max_rows} distinct items)")
        report["stages"][0]["stage"] = "item vocabulary"
        return {**report, "serving": SERVING}


CATALOGUE_RELEASED = {
    "item embeddings and item biases": "DP-SGD over users (Poisson-sampled users, each "
                                       "user's gradient clipped once)",
}
CATALOGUE_PUBLIC = ("the item catalogue ({n} items, declared public by the analyst: the "
                    "model's vocabulary)")
ATTRIBUTES_PUBLIC = ("the catalogue's item attributes {columns} (declared public with it: "
                     "the model's per-item attribute levels)")
ATTRIBUTES_RELEASED = ("one weight per catalogue attribute", "DP-SGD over users, with the "
                       "item factors (the same steps and clipping)")


@dataclass(frozen=True)
class CataloguePlan:
    """A private recommender whose item vocabulary is a declared public catalogue: nothing
    data-dependent is estimated besides the SGD steps, so the whole budget (epsilon and
    delta) goes to them; no popularity prior is released (the item biases are trained)."""

    privacy: PrivacyConfig
    n_items: int
    user_column: str | None
    # The catalogue attribute columns the model scores with (declared public with it).
    attribute_columns: tuple[str, ...] = ()

    @property
    def max_rows(self) -> int:
        return int(self.privacy.max_rows_per_person)

    def sgd(self, *, n_users: int, train: TrainConfig) -> PrivacyConfig:
        """The whole target for the SGD steps over ``n_users`` training users."""
        return dataclasses.replace(self.privacy,
                                   delta=resolve_delta(self.privacy.delta, n_users))

    def report(self, sgd: dict, *, spec: ProblemSpec, mapping: ColumnMapping) -> dict:
        """The run's privacy report: the SGD steps' epsilon is the whole figure (one
        stage), the catalogue listed as declared public."""
        public = [CATALOGUE_PUBLIC.format(n=self.n_items), *PUBLIC]
        released = dict(CATALOGUE_RELEASED)
        if self.attribute_columns:
            public.insert(1, ATTRIBUTES_PUBLIC.format(
                columns=", ".join(repr(c) for c in self.attribute_columns)))
            released[ATTRIBUTES_RELEASED[0]] = ATTRIBUTES_RELEASED[1]
        unit = spec.privacy_unit.describe(mapping)
        unit["note"] = "; ".join(filter(None, (unit.get("note"), SERVING)))
        sgd = dict(sgd or {})  # a run cancelled before its first step reports no steps
        epsilon = float(sgd.get("epsilon") or 0.0)
        return {
            **sgd, "epsilon": epsilon, "target_epsilon": float(self.privacy.target_epsilon),
            # One stage: its own accountant's figure (no preprocessing to compose with).
            "composition": str(sgd.get("accountant") or "prv"),
            "unit": unit,
            "contribution_bound": {
                "max_rows_per_person": self.max_rows,
                "gradient": "the mean of the user's drawn interactions' BPR gradients, "
                            "clipped once as a whole to max_grad_norm",
                "max_grad_norm": self.privacy.max_grad_norm},
            "stages": [{"stage": "sgd", "epsilon": epsilon, "delta": sgd.get("delta"),
                        "mechanism": "Poisson-subsampled Gaussian (DP-SGD)",
                        "noise_multiplier": sgd.get("noise_multiplier"),
                        "sample_rate": sgd.get("sample_rate"),
                        "steps": int(sgd.get("steps") or 0)}],
            "released": {"estimated_privately": released,
                         "declared_public": public, "curator_only": list(CURATOR_ONLY)},
            "declared_public": public, "serving": SERVING,
        }


# --- scoring from a user's own history --------------------------------------------------


def _padded(histories: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(items (n, h), weights (n, h)): each history's model indices, weights 1 / length
    (all 0 for an empty history), padded with item 0."""
    width = max([len(history) for history in histories] + [1])
    items = np.zeros((len(histories), width), dtype=np.int64)
    weights = np.zeros((len(histories), width), dtype=np.float32)
    for row, history in enumerate(histories):
        items[row, :len(history)] = history
        weights[row, :len(history)] = 1.0 / max(len(history), 1)
    return torch.from_numpy(items), torch.from_numpy(weights)


def rank_histories(model: ItemFactors, histories: list[list[int]], k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` model item indices and their scores for users known only by their
    histories (sorted lists of model indices, which are also skipped): ``(n, k)`` each,
    index 0 and score NaN where fewer than ``k`` items are left to recommend."""
    top = np.zeros((len(histories), k), dtype=np.int64)
    scores = np.full((len(histories), k), np.nan)
    width = min(k, model.n_items)
    for start in range(0, len(histories), SCORE_CHUNK):
        chunk = histories[start:start + SCORE_CHUNK]
        items, weights = _padded(chunk)
        all_scores = model.all_scores(model.user_vectors(items, weights),
                                      model.user_profiles(items, weights)).double().numpy()
        for row, history in enumerate(chunk):
            if history:
                all_scores[row, np.asarray(history) - 1] = -np.inf
        order = np.argsort(-all_scores, axis=1, kind="stable")[:, :width]
        chosen = np.take_along_axis(all_scores, order, axis=1)
        valid = np.isfinite(chosen)
        top[start:start + len(chunk), :width] = np.where(valid, order + 1, 0)
        scores[start:start + len(chunk), :width] = np.where(valid, chosen, np.nan)
    return top, scores


def _model_top(model: ItemFactors, vocabulary: Vocabulary, histories: list[set[int]], k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` run item indices (0: no item) and scores for run-indexed histories."""
    known = [sorted({int(vocabulary.of_item[item]) for item in history} - {0})
             for history in histories]
    top, scores = rank_histories(model, known, k)
    return vocabulary.to_item[top], scores


# --- training -------------------------------------------------------------------------


def _history_sets(data: Interactions, mask: np.ndarray, users: np.ndarray) -> list[set[int]]:
    by_user: dict[int, set[int]] = {}
    for user, item in zip(data.users[mask], data.items[mask], strict=True):
        by_user.setdefault(int(user), set()).add(int(item))
    return [by_user.get(int(u), set()) for u in users]


@dataclass(frozen=True)
class EvalSet:
    users: np.ndarray  # 1-based user indices
    seen: list[set[int]]  # the user's history: scored from, and excluded from ranking
    relevant: list[set[int]]


def _eval_set(data: Interactions, split: UserSplit, part: str) -> EvalSet:
    mask = split.test if part == "test" else split.val
    users = np.unique(data.users[mask])
    history = split.train | split.val if part == "test" else split.train
    return EvalSet(users=users, seen=_history_sets(data, history, users),
                   relevant=_history_sets(data, mask, users))


def bpr_loss(model: nn.Module, batch: tuple[torch.Tensor, ...], *, n_items: int
             ) -> torch.Tensor:
    """Mean over the batch's users of each user's BPR loss on their drawn interactions.

    ``batch`` is :class:`ml_core.sampling.PersonRows`' ``(items (B, k, 1), _, weights
    (B, k))``: each drawn item is the positive for the mean context of the user's other
    drawn items (none: the biases alone), against ``NEGATIVES`` items drawn uniformly
    (independent of the data), and the user's loss is the weighted (mean) sum over their
    items. So each user's gradient depends on that user's drawn rows only, and DP-SGD
    clips it once."""
    features, _, weights = batch
    items = features[..., 0].long()
    present = (weights > 0).to(weights.dtype)
    others = present.sum(dim=1) - 1
    k = items.shape[1]
    leave_one_out = 1 - torch.eye(k, dtype=weights.dtype, device=weights.device)
    mixture = (present[:, None, :] * leave_one_out[None]
               / others.clamp(min=1)[:, None, None])
    negatives = torch.randint(1, n_items + 1, (*items.shape, NEGATIVES), device=items.device)
    scores = model(items, mixture, torch.cat([items[..., None], negatives], dim=-1))
    per_row = -nn.functional.logsigmoid(scores[..., :1] - scores[..., 1:]).mean(dim=-1)
    per_user = (per_row * weights).sum(dim=1)
    # A mean over users (the examples Opacus' loss_reduction="mean" counts); an empty
    # Poisson batch gives 0, still connected to the weights so that the noise step runs.
    return per_user.sum() / max(len(per_user), 1)


@dataclass(frozen=True)
class TrainedRecommender:
    """One training's outcome and the vocabulary its model indexes."""

    fitted: FittedModule
    vocabulary: Vocabulary


def _build(vocabulary: Vocabulary, content: ContentColumns | None) -> ItemFactors:
    """The module for ``vocabulary``, with the catalogue's public attribute levels."""
    if content is None:
        return ItemFactors(len(vocabulary.names), dim=EMBEDDING_DIM, prior=vocabulary.prior())
    return ItemFactors(
        len(vocabulary.names), dim=EMBEDDING_DIM, prior=vocabulary.prior(),
        n_levels=content.n_levels, n_columns=len(content.names),
        profile=torch.from_numpy(content.profile), match=torch.from_numpy(content.match),
        level_column=torch.from_numpy(content.level_column))


def _fit(*, data: Interactions, split: UserSplit, val: EvalSet, vocabulary: Vocabulary,
         train: TrainConfig, call: FitCall, plan: UserLevelPlan | None,
         content: ContentColumns | None = None) -> TrainedRecommender:
    n_items, k = len(vocabulary.names), train.top_k
    mask = split.train & (vocabulary.of_item[data.items] > 0)
    items = vocabulary.of_item[data.items[mask]]
    users = data.users[mask]
    most = int(np.bincount(users).max())
    dataset = PersonRows(features=items[:, None].astype(np.float32),
                         labels=np.zeros(len(items), dtype=np.float32), persons=users,
                         max_rows=plan.max_rows if plan is not None
                         else min(most, TWIN_MAX_ROWS), seed=train.seed)

    def val_score(model: nn.Module) -> float:
        if len(val.users) == 0:
            return 0.0
        top, _ = _model_top(model, vocabulary, val.seen, k)
        return float(user_ranking_metrics(top, val.relevant, k)["ndcg"].mean())

    privacy = plan.sgd(n_users=len(dataset), train=train) if plan is not None else None
    fitted = fit_module(
        build=lambda: _build(vocabulary, content),
        tensors=(
            torch.from_numpy(users), torch.from_numpy(items)),
        loss_fn=lambda model, batch: bpr_loss(model, batch, n_items=n_items),
        val_score=val_score, train=train, privacy=privacy, stage=call.stage,
        progress=call.progress, should_stop=call.should_stop,
        checkpoint_path=call.checkpoint_path, dataset=dataset,
        # A private model is released as its last DP-SGD step left it: choosing the epoch
        # on the validation users would be a decision outside the accountant.
        select_on_validation=plan is None)
    return TrainedRecommender(fitted=fitted, vocabulary=vocabulary)


def _user_groups(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
                 data: Interactions, users: np.ndarray) -> pd.DataFrame:
    """One banded row per evaluated user: the first value of each sensitive column."""
    user_column = mapping.role("user")
    keys = frame[user_column].astype("string").str.strip()
    firsts = frame.assign(_user=keys.to_numpy()).drop_duplicates("_user").set_index("_user")
    names = [data.user_names[u - 1] for u in users]
    table = {}
    for column in mapping.sensitive:
        values = firsts[column].reindex(names).reset_index(drop=True)
        table[column] = fairness.band(values, spec.banding_for(column)).to_numpy()
    # One row per user even without sensitive columns.
    return pd.DataFrame(table, columns=list(mapping.sensitive), index=range(len(names)))


def _fairness(per_user_ndcg: np.ndarray, groups: pd.DataFrame, spec: ProblemSpec, k: int
              ) -> dict:
    return group_metrics.score_by_group(
        y_true=np.zeros(len(per_user_ndcg)), y_score=per_user_ndcg, sensitive=groups,
        metric=lambda _, values: float(np.mean(values)), name=f"ndcg@{k}", kind="personal",
        # The four-fifths idea applied to ranking quality: the worst group's NDCG at least
        # this share of the best group's.
        min_score_ratio=spec.fairness.min_disparate_impact_ratio,
        min_group_size=spec.fairness.min_group_size,
    )


@dataclass(frozen=True)
class RunData:
    """What the recommender's hooks share: the interactions, their split, the evaluated
    users (validation and test), the test users' groups, and the vocabularies."""

    data: Interactions
    split: UserSplit
    val: EvalSet
    test: EvalSet
    groups: pd.DataFrame  # banded sensitive attributes per test user, by position
    popularity: np.ndarray  # training positives per item (the baseline's scores)
    vocabulary: Vocabulary  # the released model's: private, or every training item
    full_vocabulary: Vocabulary  # every training item (the non-private twin's)
    plan: UserLevelPlan | CataloguePlan | None = None  # a private run's user-level budget
    catalogue: tuple[str, ...] | None = None  # the declared public catalogue, if any
    # The catalogue's public attribute levels, indexed like ``vocabulary`` (= the
    # catalogue), when it has attribute columns that qualify.
    content: ContentColumns | None = None


@dataclass(frozen=True)
class Ranked:
    per_user: dict[str, np.ndarray]
    top: np.ndarray  # run item indices, 0 where no item was left to recommend
    top_scores: np.ndarray


def _names(data: Interactions, items: np.ndarray) -> list[str]:
    return [data.item_names[i - 1] for i in items if i > 0]


class RecommenderHooks(FamilyHooks):
    """The recommender's hooks (see the module docstring)."""

    def prepare(self, inputs: RunInputs) -> RunData:
        data = interactions(inputs.frame, inputs.mapping)
        split = (split_by_user_time(data) if data.given_test is None
                 else split_given_test(data))
        if split.summary["test_users"] == 0:
            raise ValueError("no user has the 3 positive interactions a time hold-out needs")
        val, test = _eval_set(data, split, "val"), _eval_set(data, split, "test")
        popularity = np.bincount(data.items[split.train],
                                 minlength=len(data.item_names) + 1)[1:]
        groups = _user_groups(inputs.frame, inputs.mapping, inputs.spec, data, test.users)
        exact = pd.Series(_user_weights(
            data, split.train, max_rows=int(inputs.privacy.max_rows_per_person),
            seed=inputs.train.seed)).groupby(_item_names(data, split.train)).sum()
        catalogue = declared_catalogue(inputs.frame)
        if catalogue is not None:
            exact = exact.reindex(list(catalogue), fill_value=0.0)
        full = Vocabulary.of(exact.to_dict(), data)
        plan, vocabulary = None, full
        # Public item features, from the catalogue file alone (indexed like its items).
        attributes = catalogue_attributes(inputs.frame)
        content = (content_columns(attributes, full.names)
                   if catalogue is not None and attributes is not None else None)
        if inputs.privacy.enabled and catalogue is not None:
            # Public: every catalogue item, no budget spent; no popularity prior released.
            plan = CataloguePlan(privacy=inputs.privacy, n_items=len(catalogue),
                                 user_column=inputs.mapping.role("user"),
                                 attribute_columns=content.names if content else ())
            vocabulary = Vocabulary.of(dict.fromkeys(catalogue, 1.0), data)
        elif inputs.privacy.enabled:
            plan = UserLevelPlan.for_users(privacy=inputs.privacy,
                                           n_users=len(data.user_names),
                                           user_column=inputs.mapping.role("user"))
            vocabulary = Vocabulary.of(
                plan.vocabulary(data, split.train, seed=inputs.train.seed), data)
            if not vocabulary.names:
                raise ValueError(
                    f"No item is held by enough of the {len(data.user_names)} users to enter "
                    "the private item vocabulary at epsilon "
                    f"{inputs.privacy.target_epsilon:g} (a user-weighted count above "
                    f"{plan.noise.threshold:.1f} is needed, each user weighing at most 1): "
                    "upload more users (a few hundred at least) or raise the budget.")
        return RunData(data=data, split=split, val=val, test=test, groups=groups,
                       popularity=popularity, vocabulary=vocabulary, full_vocabulary=full,
                       plan=plan, catalogue=catalogue, content=content)

    def baseline(self, inputs: RunInputs, prepared: RunData) -> Baseline:
        k, test = int(inputs.train.top_k), prepared.test
        popular_scores = np.tile(prepared.popularity.astype(float), (len(test.users), 1))
        popular_top = rank_top_k(popular_scores, test.seen, k)
        metrics = summarise(user_ranking_metrics(popular_top, test.relevant, k), k)
        return Baseline(report={"name": "popularity", "metrics": metrics}, detail=popular_top)

    def fit(self, inputs: RunInputs, prepared: RunData, call: FitCall) -> Fitted:
        plan = prepared.plan if call.privacy is not None else None
        try:
            trained = _fit(data=prepared.data, split=prepared.split, val=prepared.val,
                           vocabulary=(prepared.vocabulary if plan is not None
                                       else prepared.full_vocabulary),
                           train=inputs.train, call=call, plan=plan,
                           content=prepared.content)
        except TrainingCancelled as cancelled:
            # The vocabulary was released to the training: its cost is spent too.
            if plan is None:
                raise
            raise TrainingCancelled(privacy=plan.report(
                cancelled.privacy, spec=inputs.spec, mapping=inputs.mapping)) from cancelled
        fitted = trained.fitted
        privacy = (plan.report(fitted.privacy, spec=inputs.spec, mapping=inputs.mapping)
                   if plan is not None else fitted.privacy)
        return Fitted(model=fitted.module, privacy=privacy, history=fitted.history,
                      best_epoch=fitted.best_epoch, device=fitted.device, trained=trained)

    def evaluate(self, inputs: RunInputs, prepared: RunData, fitted: Fitted) -> Evaluation:
        k, test = int(inputs.train.top_k), prepared.test
        top, top_scores = _model_top(fitted.model, fitted.trained.vocabulary, test.seen, k)
        per_user = user_ranking_metrics(top, test.relevant, k)
        return Evaluation(metrics=summarise(per_user, k),
                          fairness=_fairness(per_user["ndcg"], prepared.groups, inputs.spec, k),
                          detail=Ranked(per_user=per_user, top=top, top_scores=top_scores))

    def split(self, inputs: RunInputs, prepared: RunData) -> dict:
        return prepared.split.summary

    def save(self, inputs: RunInputs, prepared: RunData, model: Fitted,
             evaluation: Evaluation, *, directory: Path, metadata: dict) -> Saved:
        # No user name, count per item or other raw statistic: the item names are the
        # (private, for a private run) vocabulary, users are scored from their history.
        vocabulary = model.trained.vocabulary
        saved = save_module(module=model.model, directory=directory, metadata=json_ready({
            "model_family": MODEL_FAMILY, **metadata, "top_k": int(inputs.train.top_k),
            "items": list(vocabulary.names), "positives": prepared.data.how_positive,
            "vocabulary": _vocabulary_origin(prepared),
            "catalogue_attributes": list(prepared.content.names) if prepared.content else [],
            "user_vectors": SERVING, "device": model.device,
        }))
        return Saved(path=saved.path, sha256=saved.sha256)

    def predictions(self, inputs: RunInputs, prepared: RunData, baseline: Baseline,
                    evaluation: Evaluation) -> pd.DataFrame:
        k, data, test, ranked = int(inputs.train.top_k), prepared.data, prepared.test, \
            evaluation.detail
        last_test_row = _last_rows(data, prepared.split.test)
        predictions = pd.DataFrame({
            "row_id": [last_test_row[int(u)] for u in test.users],
            "user": [data.user_names[u - 1] for u in test.users],
            "top_k": ["|".join(_names(data, row)) for row in ranked.top],
            "held_out": ["|".join(sorted(data.item_names[i - 1] for i in wanted))
                         for wanted in test.relevant],
            f"ndcg@{k}": ranked.per_user["ndcg"], f"recall@{k}": ranked.per_user["recall"],
            f"hit_rate@{k}": ranked.per_user["hit_rate"], "top_score": ranked.top_scores[:, 0],
        })
        return with_groups(predictions, prepared.groups)

    def charts(self, inputs: RunInputs, prepared: RunData, baseline: Baseline, model: Fitted,
               evaluation: Evaluation) -> dict:
        data, test, top = prepared.data, prepared.test, evaluation.detail.top
        return {
            "top_k": [{"user": data.user_names[u - 1], "items": _names(data, top[row]),
                       "held_out": sorted(data.item_names[i - 1] for i in test.relevant[row])}
                      for row, u in enumerate(test.users[:CHART_USERS])],
            "exposure": _exposure(prepared, baseline, evaluation),
        }

    def notes(self, inputs: RunInputs, prepared: RunData, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        return _notes(data=prepared.data, prepared=prepared, privacy=model.privacy,
                      exposure=exposure_by_decile(evaluation.detail.top,
                                                  prepared.popularity),
                      fitted=model.trained.fitted)


def _vocabulary_origin(prepared: RunData) -> str:
    if prepared.catalogue is not None:
        return "the declared public item catalogue"
    if prepared.plan is not None:
        return "private: a noisy thresholded histogram at user level"
    return "every training item"


def _exposure(prepared: RunData, baseline: Baseline, evaluation: Evaluation) -> list[dict]:
    """Recommended slots per popularity decile of the catalogue, the model's and the
    popularity baseline's."""
    exposure = exposure_by_decile(evaluation.detail.top, prepared.popularity)
    for row, popular_row in zip(exposure,
                                exposure_by_decile(baseline.detail, prepared.popularity),
                                strict=True):
        row["popularity_baseline_share"] = popular_row["recommended_share"]
    return exposure


run = family_runner(RecommenderHooks(), doc="""Train, evaluate against popularity, audit NDCG
by user group and item exposure, save.

Same contract as :func:`ml_core.pipeline.run_training`; see the module docstring.
""")


def _last_rows(data: Interactions, mask: np.ndarray) -> dict[int, object]:
    rows: dict[int, object] = {}
    for user, row in zip(data.users[mask], data.row_ids[mask], strict=True):
        rows[int(user)] = row  # in time order, so the last one wins
    return rows


def _notes(*, data: Interactions, prepared: RunData, privacy: dict, exposure: list[dict],
           fitted: FittedModule) -> list[str]:
    top_share = sum(row["recommended_share"] for row in exposure[-1:])
    split = (
        "Split per user by time (leave-last-out): each user's last positive interactions "
        "are the test and the one before is validation, so the model is judged on what "
        "users did next, scored from their own earlier history."
        if data.given_test is None else
        f"Test: the given test file's {int(data.given_test.sum())} positive interactions "
        f"({prepared.split.summary['test_users']} users), each user scored from their "
        "positives in the training file; validation is each user's last training positive.")
    notes = [
        split,
        f"Positives: {data.how_positive}. Repeated (user, item) pairs count once "
        f"({data.duplicates} repeats); {data.dropped_negatives} non-positive rows were "
        "not used.",
        f"Ranking is over the {len(prepared.vocabulary.names)} items the model knows that "
        "the user has not interacted with yet; the baseline recommends the most popular of "
        f"all {len(data.item_names)} items.",
        f"Exposure: {top_share:.0%} of recommended slots go to the most popular tenth of the "
        "catalogue.",
        "The model holds item factors only: a user's vector is the mean of the item "
        "context embeddings of that user's own history, computed when they are scored.",
    ]
    if prepared.catalogue is not None:
        notes.append(
            f"The item vocabulary is the declared public catalogue ({len(prepared.catalogue)} "
            f"items, uploaded by the analyst): {data.outside_catalogue} positive "
            "interactions on items outside it were dropped.")
    if prepared.content is not None:
        notes.append(
            f"The catalogue's public attributes ({', '.join(prepared.content.names)}) score "
            "items too: for each, the share of the user's own history sharing the item's "
            "value (numbers: lying near it), computed when they are scored, weighed by one "
            "trained weight per attribute.")
    if prepared.plan is not None:
        vocabulary = (
            "the item vocabulary is the declared public catalogue (no budget spent on it; "
            "no popularity prior is released)" if prepared.catalogue is not None else
            "the item vocabulary is a noisy thresholded histogram at user level "
            f"({len(prepared.vocabulary.names)} of {len(prepared.full_vocabulary.names)} "
            "training items released)")
        notes.append(
            "Differential privacy protects each user (all their interactions): users are "
            f"sampled, at most {prepared.plan.max_rows} interactions per user per step, each "
            f"user's gradient clipped once; {vocabulary}.")
        notes.extend(privacy_notes(privacy))
    else:
        notes.append("Differential privacy is off for this run.")
    notes.extend(fitted.notes)
    return notes


# --- reloading and scoring ------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRecommender:
    model: ItemFactors
    metadata: dict


def load(path: Path | str) -> LoadedRecommender:
    """Restore a saved recommender (eval mode, CPU); checks the weights' sha256."""
    model, metadata = load_module(path, ItemFactors)
    return LoadedRecommender(model=model, metadata=metadata)


def predict(loaded: LoadedRecommender, frame: pd.DataFrame) -> pd.DataFrame:
    """Top-k items for every user in ``frame``'s user column, computed from that user's
    rows in ``frame`` (their history) and the released item factors: the user's vector is
    the mean context of their positive items the model knows (every row is a positive
    without the target column), and every item they have a row for is skipped. A user
    with no known history gets the items with the highest biases. Returns ``user``,
    ``rank`` (1..k, fewer when the vocabulary runs out), ``item``, ``score``."""
    meta = loaded.metadata
    mapping = ColumnMapping.from_dict(meta["mapping"])
    k = int(meta["top_k"])
    item_index = {name: i + 1 for i, name in enumerate(meta["items"])}
    users_text = frame[mapping.role("user")].astype("string").str.strip()
    items_text = frame[mapping.role("item")].astype("string").str.strip()
    positive, _ = _positive_rows(frame, mapping.target, users_text)
    names = list(dict.fromkeys(users_text.dropna().tolist()))
    seen: dict[str, set[int]] = {}
    history: dict[str, set[int]] = {}
    for user, item, is_positive in zip(users_text, items_text, positive, strict=True):
        if user is not pd.NA and item in item_index:
            seen.setdefault(user, set()).add(item_index[item])
            if is_positive:
                history.setdefault(user, set()).add(item_index[item])
    # Items the user has but does not like are skipped, not read into their vector.
    known = [sorted(history.get(name, set())) for name in names]
    skip = [seen.get(name, set()) - set(known[row]) for row, name in enumerate(names)]
    top, scores = _rank_skipping(loaded.model, known, skip, k)
    rows = []
    for row, name in enumerate(names):
        for rank, (item, score) in enumerate(zip(top[row], scores[row], strict=True), 1):
            if item > 0:
                rows.append({"user": name, "rank": rank, "item": meta["items"][item - 1],
                             "score": float(score)})
    return pd.DataFrame(rows, columns=["user", "rank", "item", "score"])


def _rank_skipping(model: ItemFactors, known: list[list[int]], skip: list[set[int]], k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank_histories`, also skipping each user's ``skip`` items (asking for enough
    more that ``k`` remain after them)."""
    extra = max([len(items) for items in skip] + [0])
    top, scores = rank_histories(model, known, k + extra)
    kept_top = np.zeros((len(known), k), dtype=np.int64)
    kept_scores = np.full((len(known), k), np.nan)
    for row, items in enumerate(skip):
        keep = [col for col in range(top.shape[1]) if top[row, col] not in items
                and top[row, col] > 0][:k]
        kept_top[row, :len(keep)] = top[row, keep]
        kept_scores[row, :len(keep)] = scores[row, keep]
    return kept_top, kept_scores


# --- validating -----------------------------------------------------------------------


def validate(frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
             ) -> list[ValidationIssue]:
    """Ranking checks: user and item roles mapped and present, the time parses, enough
    users with a history to hold out, sensitive attributes constant per user (warning)."""
    present = set(map(str, frame.columns))
    issues: list[ValidationIssue] = []
    for role in ("user", "item"):
        column = mapping.role(role)
        if column is None:
            issues.append(ValidationIssue(code=f"{role}_required",
                                          message=f"Choose the {role} column (role '{role}')."))
        elif column not in present:
            issues.append(ValidationIssue(code="unknown_column", column=column,
                                          message=f"The {role} column '{column}' is not in "
                                                  "the file."))
    time_column = mapping.role("time")
    if time_column is not None and time_column not in present:
        issues.append(ValidationIssue(code="unknown_column", column=time_column,
                                      message=f"The time column '{time_column}' is not in "
                                              "the file."))
    if issues:
        return issues
    if time_column is not None:
        parsed = parse_dates(frame[time_column])[0]
        numeric = pd.to_numeric(frame[time_column], errors="coerce")
        bad = parsed.isna() & numeric.isna() & frame[time_column].notna()
        if bad.any():
            rows = tuple(int(p) + 1 for p in np.flatnonzero(bad.to_numpy())[:20])
            issues.append(ValidationIssue(
                code="unparseable_dates", column=time_column, rows=rows,
                message=f"Column '{time_column}' has {int(bad.sum())} values that are "
                        "neither dates nor numbers.",
            ))
    data = interactions(frame, mapping)
    refusal = given_test_refusal(data)
    if refusal:
        issues.append(ValidationIssue(code="test_file_mismatch", column=mapping.role("user"),
                                      message=refusal[0].upper() + refusal[1:] + "."))
    if data.outside_catalogue:
        issues.append(ValidationIssue(
            code="outside_catalogue", column=mapping.role("item"), severity="warning",
            message=f"{data.outside_catalogue} positive interactions are on items outside "
                    "the declared catalogue; they are dropped.",
        ))
    held = int((held_out_count(np.bincount(data.users)[1:]) > 0).sum())
    if held < 10 and data.given_test is None:
        issues.append(ValidationIssue(
            code="too_few_histories",
            message=f"Only {held} users have the 3 or more positive interactions a time "
                    "hold-out needs; at least 10 are required.",
        ))
    user_column = mapping.role("user")
    for column in mapping.sensitive:
        if column in present:
            varying = frame.groupby(user_column)[column].nunique(dropna=False)
            if (varying > 1).any():
                issues.append(ValidationIssue(
                    code="attribute_varies", column=column, severity="warning",
                    message=f"'{column}' changes within {int((varying > 1).sum())} users; "
                            "each user's first value is used.",
                ))
    return issues


# --- registration -----------------------------------------------------------------------


@register_family
class RecommenderFamily(ModelFamily):
    name = MODEL_FAMILY
    task_types = (TaskType.RANKING,)
    # Implicit feedback: every row a positive unless a target column says otherwise.
    required_roles = (ColumnRole.USER.value, ColumnRole.ITEM.value)
    optional_roles = (ColumnRole.TARGET.value, ColumnRole.TIME.value)
    # At k = TrainConfig.top_k (10 by default); a random list's level depends on the catalogue.
    metrics = (
        MetricDeclaration("ndcg@10", higher_is_better=True),
        MetricDeclaration("recall@10", higher_is_better=True),
        MetricDeclaration("hit_rate@10", higher_is_better=True),
    )
    primary_metric = "ndcg@10"
    chart_kinds = ("top_k",)
    # A given test file with the interactions' columns: its users' held-out interactions
    # are the test, each user scored from their training-file history (split_given_test).
    supports = Supports(labelled_test_file=True)
    # No user state, user name or raw count: the item names are the private vocabulary (or
    # the declared catalogue), the prior buffer its noisy counts (post-processing).
    # With a catalogue's attributes: the attribute columns used and the per-item level
    # tables (profile, match, level_column), read from the declared public catalogue alone.
    artifact_public = frozenset({"top_k", "positives", "vocabulary", "user_vectors",
                                 "catalogue_attributes", "profile", "match", "level_column"})
    artifact_private = {"items": "item vocabulary", "prior": "item vocabulary"}
    implementation = __name__
