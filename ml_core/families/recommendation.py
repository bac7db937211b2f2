"""Implicit-feedback product recommendation (task RANKING, family "recommender").

Upload: one row per interaction. Roles: ``user``, ``item``, ``time`` (optional: row order
otherwise); the target is optional: a ``rating``/``clicked``/``purchased`` column when
present (binary: its positive value counts; ratings: at or above the mean rating count),
otherwise every row is a positive. User attributes (age, sex, region) sit on the rows:
the platform merges an ``--attributes`` FILE on the user key before calling :func:`run`,
so ``mapping.sensitive`` names columns of the interactions table; they must be constant
per user (the first value is used).

Model: :class:`ml_core.models.recommender.MatrixFactorisation` trained with BPR: for each
positive (user, item), ``NEGATIVES`` items drawn uniformly at random inside the loss; loss
``-log sigmoid(s(u, i) - s(u, j))`` averaged (mean-reduced, as Opacus' ``loss_reduction``
expects). Private runs use DP-SGD (Opacus' Embedding grad sampler); the privacy unit is
ONE INTERACTION, not one user: a user with n interactions is protected at the level of
``n`` grouped records (group privacy), which the notes state.

Split: per-user temporal hold-out ("leave-last-k-out"): each user's last positive(s) by
time form the test, the one before the validation; all earlier ones train. Every user is
evaluated on a future they did not train on; whole held-out users would be cold-start
(no embedding to score), which this model cannot serve and the brief's users are not.
Metrics NDCG@k, Recall@k and HitRate@k over all items not already in the user's history,
against the most-popular-items baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ml_core import fairness, group_metrics
from ml_core.families.base import MetricDeclaration, ModelFamily, register_family
from ml_core.families.forecast_windows import parse_dates
from ml_core.families.module_artifacts import load_module, save_module
from ml_core.families.tensor_training import FittedModule, fit_module
from ml_core.models.recommender import MatrixFactorisation
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
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    ProblemSpec,
    TaskType,
    TrainConfig,
)
from ml_core.validation import ValidationIssue

MODEL_FAMILY = "recommender"
NEGATIVES = 4
EMBEDDING_DIM = 16
CHART_USERS = 5
POSITIVE_WORDS = {"1", "1.0", "true", "yes", "y", "clicked", "purchased", "bought"}


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


def _positive_rows(frame: pd.DataFrame, target: str | None) -> tuple[np.ndarray, str]:
    if not target or target not in frame.columns:
        return np.ones(len(frame), bool), "every row is a positive (implicit feedback)"
    values = frame[target]
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and numbers.nunique() > 2:
        threshold = float(numbers.mean())
        return (numbers >= threshold).to_numpy(), (
            f"ratings at or above the mean ({threshold:.2f}) count as positives")
    text = values.astype("string").str.strip().str.lower()
    return text.isin(POSITIVE_WORDS).fillna(False).to_numpy(bool), (
        f"rows whose '{target}' is 1/yes/true count as positives")


def interactions(frame: pd.DataFrame, mapping: ColumnMapping) -> Interactions:
    """Positives ordered by (user, time, row order); repeated (user, item) pairs keep the
    first occurrence (a re-purchase is not a new item to recommend)."""
    user_column, item_column = mapping.role("user"), mapping.role("item")
    if user_column is None or item_column is None:
        raise ValueError("recommendation needs columns with the 'user' and 'item' roles")
    positive, how = _positive_rows(frame, mapping.target)
    time_column = mapping.role("time")
    times = (parse_dates(frame[time_column])[0] if time_column
             else pd.Series(np.arange(len(frame)), index=frame.index))
    if not pd.api.types.is_datetime64_any_dtype(times) and time_column:
        times = pd.to_numeric(frame[time_column], errors="coerce")
    work = pd.DataFrame({
        "user": frame[user_column].astype("string").str.strip().to_numpy(),
        "item": frame[item_column].astype("string").str.strip().to_numpy(),
        "time": times.to_numpy(), "pos": np.arange(len(frame)),
    })[positive]
    work = work.dropna(subset=["user", "item"])
    work = work.sort_values(["user", "time", "pos"], kind="stable", na_position="first")
    duplicated = work.duplicated(["user", "item"])
    work = work[~duplicated]
    user_names = sorted(work["user"].unique().tolist())
    item_names = sorted(work["item"].unique().tolist())
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
        how_positive=how,
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
    recommended = np.bincount(decile[top.ravel() - 1], minlength=11)[1:] if top.size \
        else np.zeros(10)
    catalogue = np.bincount(decile, minlength=11)[1:]
    total = max(int(recommended.sum()), 1)
    return [{"decile": d + 1, "catalogue_share": float(catalogue[d] / max(n_items, 1)),
             "recommended_share": float(recommended[d] / total)} for d in range(10)]


# --- training -------------------------------------------------------------------------


def _history_sets(data: Interactions, mask: np.ndarray, users: np.ndarray) -> list[set[int]]:
    by_user: dict[int, set[int]] = {}
    for user, item in zip(data.users[mask], data.items[mask], strict=True):
        by_user.setdefault(int(user), set()).add(int(item))
    return [by_user.get(int(u), set()) for u in users]


@dataclass(frozen=True)
class EvalSet:
    users: np.ndarray  # 1-based user indices
    seen: list[set[int]]  # excluded from ranking
    relevant: list[set[int]]


def _eval_set(data: Interactions, split: UserSplit, part: str) -> EvalSet:
    mask = split.test if part == "test" else split.val
    users = np.unique(data.users[mask])
    history = split.train | split.val if part == "test" else split.train
    return EvalSet(users=users, seen=_history_sets(data, history, users),
                   relevant=_history_sets(data, mask, users))


def _model_top(model: MatrixFactorisation, users: np.ndarray, seen: list[set[int]],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        scores = model.all_scores(torch.from_numpy(users.astype(np.int64))).double().numpy()
    top = rank_top_k(scores, seen, k)
    return top, np.take_along_axis(scores, top - 1, axis=1)


def _fit(*, data: Interactions, split: UserSplit, val: EvalSet, train: TrainConfig,
         call: FitCall) -> FittedModule:
    n_users, n_items, k = len(data.user_names), len(data.item_names), train.top_k

    def build() -> nn.Module:
        return MatrixFactorisation(n_users, n_items, dim=EMBEDDING_DIM)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        users, positives = batch
        # Negatives drawn independently of the data (uniform over the catalogue), so the
        # per-example gradient still depends on that one interaction only.
        negatives = torch.randint(1, n_items + 1, (len(users), NEGATIVES),
                                  device=users.device)
        scores = model(users, torch.cat([positives[:, None], negatives], dim=1))
        margin = scores[:, :1] - scores[:, 1:]
        # Per-example loss = mean over its negatives; batch loss = mean over examples.
        return -nn.functional.logsigmoid(margin).mean()

    def val_score(model: nn.Module) -> float:
        if len(val.users) == 0:
            return 0.0
        top, _ = _model_top(model, val.users, val.seen, k)
        return float(user_ranking_metrics(top, val.relevant, k)["ndcg"].mean())

    tensors = (torch.from_numpy(data.users[split.train]),
               torch.from_numpy(data.items[split.train]))
    return fit_module(build=build, tensors=tensors, loss_fn=loss_fn, val_score=val_score,
                      train=train, privacy=call.privacy, stage=call.stage,
                      progress=call.progress, should_stop=call.should_stop,
                      checkpoint_path=call.checkpoint_path)



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
    return pd.DataFrame(table, columns=list(mapping.sensitive))


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
    users (validation and test) and the test users' groups."""

    data: Interactions
    split: UserSplit
    val: EvalSet
    test: EvalSet
    groups: pd.DataFrame  # banded sensitive attributes per test user, by position
    popularity: np.ndarray  # training positives per item (the baseline's scores)


@dataclass(frozen=True)
class Ranked:
    per_user: dict[str, np.ndarray]
    top: np.ndarray
    top_scores: np.ndarray


class RecommenderHooks(FamilyHooks):
    """The recommender's hooks (see the module docstring)."""

    def prepare(self, inputs: RunInputs) -> RunData:
        data = interactions(inputs.frame, inputs.mapping)
        split = split_by_user_time(data)
        if split.summary["test_users"] == 0:
            raise ValueError("no user has the 3 positive interactions a time hold-out needs")
        val, test = _eval_set(data, split, "val"), _eval_set(data, split, "test")
        popularity = np.bincount(data.items[split.train],
                                 minlength=len(data.item_names) + 1)[1:]
        groups = _user_groups(inputs.frame, inputs.mapping, inputs.spec, data, test.users)
        return RunData(data=data, split=split, val=val, test=test, groups=groups,
                       popularity=popularity)

    def baseline(self, inputs: RunInputs, prepared: RunData) -> Baseline:
        k, test = int(inputs.train.top_k), prepared.test
        popular_scores = np.tile(prepared.popularity.astype(float), (len(test.users), 1))
        popular_top = rank_top_k(popular_scores, test.seen, k)
        metrics = summarise(user_ranking_metrics(popular_top, test.relevant, k), k)
        return Baseline(report={"name": "popularity", "metrics": metrics}, detail=popular_top)

    def fit(self, inputs: RunInputs, prepared: RunData, call: FitCall) -> Fitted:
        fitted = _fit(data=prepared.data, split=prepared.split, val=prepared.val,
                      train=inputs.train, call=call)
        return Fitted.of(fitted, model=fitted.module)

    def evaluate(self, inputs: RunInputs, prepared: RunData, fitted: Fitted) -> Evaluation:
        k, test = int(inputs.train.top_k), prepared.test
        top, top_scores = _model_top(fitted.model, test.users, test.seen, k)
        per_user = user_ranking_metrics(top, test.relevant, k)
        return Evaluation(metrics=summarise(per_user, k),
                          fairness=_fairness(per_user["ndcg"], prepared.groups, inputs.spec, k),
                          detail=Ranked(per_user=per_user, top=top, top_scores=top_scores))

    def split(self, inputs: RunInputs, prepared: RunData) -> dict:
        return prepared.split.summary

    def save(self, inputs: RunInputs, prepared: RunData, model: Fitted,
             evaluation: Evaluation, *, directory: Path, metadata: dict) -> Saved:
        data = prepared.data
        saved = save_module(module=model.model, directory=directory, metadata=json_ready({
            "model_family": MODEL_FAMILY, **metadata, "top_k": int(inputs.train.top_k),
            "users": data.user_names, "items": data.item_names,
            "popularity": prepared.popularity.tolist(), "positives": data.how_positive,
            "split": prepared.split.summary, "device": model.device,
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
            "top_k": ["|".join(data.item_names[i - 1] for i in row) for row in ranked.top],
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
            "top_k": [{"user": data.user_names[u - 1],
                       "items": [data.item_names[i - 1] for i in top[row]],
                       "held_out": sorted(data.item_names[i - 1] for i in test.relevant[row])}
                      for row, u in enumerate(test.users[:CHART_USERS])],
            "exposure": _exposure(prepared, baseline, evaluation),
        }

    def notes(self, inputs: RunInputs, prepared: RunData, model: Fitted, twin: Fitted | None,
              evaluation: Evaluation) -> list[str]:
        return _notes(data=prepared.data, privacy=inputs.privacy,
                      exposure=exposure_by_decile(evaluation.detail.top,
                                                  prepared.popularity),
                      fitted=model.trained)


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


def _notes(*, data: Interactions, privacy: PrivacyConfig, exposure: list[dict],
           fitted: FittedModule) -> list[str]:
    top_share = sum(row["recommended_share"] for row in exposure[-1:])
    notes = [
        "Split per user by time (leave-last-out): each user's last positive interactions "
        "are the test and the one before is validation, so the model is judged on what "
        "users did next. Holding out whole users instead would make them cold-start, which "
        "a matrix-factorisation model cannot rank for.",
        f"Positives: {data.how_positive}. Repeated (user, item) pairs count once "
        f"({data.duplicates} repeats); {data.dropped_negatives} non-positive rows were "
        "not used.",
        f"Ranking is over all {len(data.item_names)} items the user has not interacted with "
        "yet; the baseline recommends the most popular of them.",
        f"Exposure: {top_share:.0%} of recommended slots go to the most popular tenth of the "
        "catalogue.",
    ]
    if privacy.enabled:
        notes.append(
            "Differential privacy (DP-SGD) protects each interaction (one user-item event), "
            "not each user: a user with n interactions gets the guarantee of a group of n "
            "records (roughly n times epsilon)."
        )
    else:
        notes.append("Differential privacy is off for this run.")
    notes.extend(fitted.notes)
    return notes


# --- reloading and scoring ------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRecommender:
    model: MatrixFactorisation
    metadata: dict


def load(path: Path | str) -> LoadedRecommender:
    """Restore a saved recommender (eval mode, CPU); checks the weights' sha256."""
    model, metadata = load_module(path, MatrixFactorisation)
    return LoadedRecommender(model=model, metadata=metadata)


def predict(loaded: LoadedRecommender, frame: pd.DataFrame) -> pd.DataFrame:
    """Top-k items for every user in ``frame``'s user column, skipping the items that
    user already has in ``frame`` (their history). Unknown users get the most popular
    items. Returns ``user``, ``rank`` (1..k), ``item``, ``score``."""
    meta = loaded.metadata
    mapping = ColumnMapping.from_dict(meta["mapping"])
    k = int(meta["top_k"])
    user_index = {name: i + 1 for i, name in enumerate(meta["users"])}
    item_index = {name: i + 1 for i, name in enumerate(meta["items"])}
    users_text = frame[mapping.role("user")].astype("string").str.strip()
    items_text = frame[mapping.role("item")].astype("string").str.strip()
    names = list(dict.fromkeys(users_text.dropna().tolist()))
    seen: dict[str, set[int]] = {}
    for user, item in zip(users_text, items_text, strict=True):
        if user is not pd.NA and item in item_index:
            seen.setdefault(user, set()).add(item_index[item])
    indices = np.array([user_index.get(name, 0) for name in names], dtype=np.int64)
    with torch.no_grad():
        scores = loaded.model.all_scores(torch.from_numpy(indices)).double().numpy()
    popularity = np.asarray(meta["popularity"], dtype=float)
    scores[indices == 0] = popularity  # unknown users: most popular first
    top = rank_top_k(scores, [seen.get(name, set()) for name in names], k)
    rows = []
    for row, name in enumerate(names):
        for rank, item in enumerate(top[row], start=1):
            rows.append({"user": name, "rank": rank, "item": meta["items"][item - 1],
                         "score": float(scores[row, item - 1])})
    return pd.DataFrame(rows, columns=["user", "rank", "item", "score"])


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
    held = int((held_out_count(np.bincount(data.users)[1:]) > 0).sum())
    if held < 10:
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
    implementation = __name__
