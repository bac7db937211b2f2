"""Plain, frozen descriptions of a problem: what it needs, how it is judged.

Verticals build these; ``ml_core`` reads them. Nothing here imports the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol


class TaskType(StrEnum):
    BINARY_CLASSIFICATION = "binary_classification"
    TEXT_CLASSIFICATION = "text_classification"
    FORECASTING = "forecasting"
    RANKING = "ranking"
    SEQUENCE_PREDICTION = "sequence_prediction"
    SEQUENCE_REGRESSION = "sequence_regression"
    IMAGE_CLASSIFICATION = "image_classification"


class ColumnRole(StrEnum):
    TARGET = "target"
    ID = "id"
    TIME = "time"
    GROUP = "group"
    TEXT = "text"
    FEATURE = "feature"
    SENSITIVE = "sensitive"
    EXCLUDE = "exclude"
    # Task-specific roles, kept in ColumnMapping.roles.
    SERIES = "series"
    COVARIATE = "covariate"
    USER = "user"
    ITEM = "item"
    STUDENT = "student"
    SKILL = "skill"
    UNIT = "unit"
    CYCLE = "cycle"
    # The column identifying the person a row belongs to (patient_nbr, applicant id): the
    # unit differential privacy protects. Unmapped: each row is taken to be a person.
    PRIVACY_UNIT = "privacy_unit"


# Roles that live in ColumnMapping's own fields; every other role goes to ColumnMapping.roles.
TABULAR_ROLES = frozenset({ColumnRole.TARGET, ColumnRole.ID, ColumnRole.FEATURE,
                           ColumnRole.SENSITIVE, ColumnRole.EXCLUDE})


@dataclass(frozen=True)
class RoleHint:
    """Names that suggest a column plays ``role``; matched case- and punctuation-insensitively."""

    role: ColumnRole | str
    names: tuple[str, ...]
    required: bool = False


@dataclass(frozen=True)
class Banding:
    """How a numeric sensitive attribute is cut into groups: right-open intervals.

    ``edges=(25, 35, 50)`` gives groups ``<25``, ``25-34``, ``35-49``, ``50+``.
    """

    column_hint: str
    edges: tuple[float, ...]


@dataclass(frozen=True)
class PrivacyConfig:
    enabled: bool = True
    target_epsilon: float = 3.0
    # None: min(1e-5, 1 / (10 * n_train)), decided once n is known.
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    # Person-level DP-SGD: a sampled person contributes at most this many of their rows to
    # one step (a fresh random subset each step); their gradient is the mean over those rows,
    # clipped once as a whole.
    max_rows_per_person: int = 8
    # Share of target_epsilon (and of delta) spent on the released preprocessing statistics
    # (scales, imputation values, category vocabularies, the decision threshold); the rest
    # goes to the SGD steps. The two are composed in one accountant. 0.25 measured best of
    # 0.1 and 0.25 on the real German credit, Pima and student files (docs/privacy.md).
    preprocessing_fraction: float = 0.25


@dataclass(frozen=True)
class PrivacyUnit:
    """What one protected person is for a problem, and which mapped column identifies them.

    ``role`` is the mapping role whose column names the person: ``privacy_unit`` (mapped by
    the analyst), or a task role that already is the person (``student``, ``user``). When
    that column is not mapped, each row is taken to be a different person.
    """

    name: str  # "patient", "applicant", "student", "user", "machine"
    role: str = "privacy_unit"
    # Plain words for the pages, e.g. that a machine is protected, not a person.
    note: str = ""

    def column(self, mapping: ColumnMapping) -> str | None:
        """The mapped column identifying one unit, or None (then each row is one unit)."""
        return mapping.role(self.role)

    def describe(self, mapping: ColumnMapping) -> dict:
        """The unit as the run's privacy report states it."""
        column = self.column(mapping)
        return {
            "name": self.name if column else "row",
            "declared": self.name,
            "column": column,
            "note": self.note,
            "rows_are_persons": column is None,
            "text": (f"one {self.name} (all rows sharing a value of {column!r})" if column
                     else f"one row: no {self.name} column was mapped, so each row is taken "
                          f"to be a different {self.name}; a {self.name} with several rows "
                          "is protected less"),
        }


@dataclass(frozen=True)
class FavourableOutcome:
    """Which prediction is good for the person (or unit) it is about, in words.

    ``positive=True``: being predicted the positive class is favourable (recommended,
    flagged for support). ``positive=False``: the positive class is a harm (default), so the
    favourable outcome is *not* being predicted positive and the four-fifths rule compares
    the groups' shares of that outcome.
    """

    positive: bool = True
    text: str = "predicted positive"  # e.g. "predicted not to default"


@dataclass(frozen=True)
class FairnessPolicy:
    """Thresholds a model must meet for every sensitive attribute."""

    min_disparate_impact_ratio: float = 0.8  # the four-fifths rule
    max_demographic_parity_difference: float = 0.1
    max_equalized_odds_difference: float = 0.15
    min_group_size: int = 20  # smaller groups are reported but not judged
    kind: str = "personal"  # or "operational": groups are machine types or lines, not people
    # What the disparate-impact ratio and every "selection" chart and sentence are about.
    favourable: FavourableOutcome = field(default_factory=FavourableOutcome)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    hidden_sizes: tuple[int, ...] = (64, 32)
    patience: int = 5
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    # Task-family knobs; each family reads the ones it needs and ignores the rest.
    horizon: int = 8  # forecasting: steps ahead the analyst wants
    top_k: int = 10  # ranking: list length judged (NDCG@k, Recall@k, HitRate@k)
    window: int = 30  # sequence regression: sliding-window length
    rul_cap: int = 125  # remaining useful life: cap on the regression target
    max_length: int = 64  # text: tokens per example
    class_weighting: bool = False  # rare-event classification: weight positives
    # Bias mitigation by reweighing (Kamiran & Calders): the sensitive column whose (group,
    # label) cells are reweighted in the training loss; None trains unweighted.
    reweigh_attribute: str | None = None


@dataclass(frozen=True)
class ColumnMapping:
    """What each column of an uploaded table is for, as the analyst confirmed it."""

    target: str
    features: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    id: str | None = None
    positive_label: str | None = None  # None: the minority class of the target
    # Task-specific roles beyond the tabular ones, as (role, column) pairs: series, time,
    # user, item, student, skill, unit, cycle, text, covariate (repeatable roles repeat).
    roles: tuple[tuple[str, str], ...] = ()
    # The analyst's column kinds where the inferred ones are wrong, as (column, kind) pairs;
    # kinds: categorical, numeric, date, text (see ml_core.column_types).
    column_types: tuple[tuple[str, str], ...] = ()
    # A multi-class target made binary: these labels are the positive class, the rest the
    # negative one. Empty: the target's own two classes (and positive_label).
    positive_labels: tuple[str, ...] = ()
    # A numeric target made binary at a threshold the analyst confirmed (the problem
    # suggests its own); None: the target is used as it is.
    target_rule: TargetRule | None = None
    # Code columns and the public hierarchy each follows, as (column, kind) pairs; kinds:
    # icd9, postcode (see ml_core.code_hierarchies). Suggested from the problem's
    # ``code_hierarchies``.
    hierarchies: tuple[tuple[str, str], ...] = ()

    def role(self, name: str) -> str | None:
        """The column given ``name`` (the first, for repeatable roles), or None."""
        return next((column for role, column in self.roles if role == name), None)

    def role_columns(self, name: str) -> tuple[str, ...]:
        return tuple(column for role, column in self.roles if role == name)

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "features": list(self.features),
            "sensitive": list(self.sensitive),
            "exclude": list(self.exclude),
            "id": self.id,
            "positive_label": self.positive_label,
            "roles": [list(pair) for pair in self.roles],
            "column_types": dict(self.column_types),
            "positive_labels": list(self.positive_labels),
            "target_rule": None if self.target_rule is None else self.target_rule.to_dict(),
            "hierarchies": dict(self.hierarchies),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ColumnMapping:
        return cls(
            target=data["target"],
            features=tuple(data.get("features") or ()),
            sensitive=tuple(data.get("sensitive") or ()),
            exclude=tuple(data.get("exclude") or ()),
            id=data.get("id"),
            positive_label=data.get("positive_label"),
            roles=tuple((str(role), str(column)) for role, column in data.get("roles") or ()),
            column_types=tuple((str(column), str(kind)) for column, kind
                               in dict(data.get("column_types") or {}).items()),
            positive_labels=tuple(str(label) for label in data.get("positive_labels") or ()),
            target_rule=(TargetRule.from_dict(data["target_rule"]) if data.get("target_rule")
                         else None),
            hierarchies=tuple((str(column), str(kind)) for column, kind
                              in dict(data.get("hierarchies") or {}).items()),
        )

    def column_type(self, column: str) -> str | None:
        """The analyst's kind for ``column``, or None (then it is inferred)."""
        return dict(self.column_types).get(column)


@dataclass(frozen=True)
class TargetRule:
    """A numeric target turned into two classes at a threshold the problem declares.

    ``TargetRule(threshold=10, positive_below=True, positive_text="fail",
    negative_text="pass")`` reads a final grade G3 (0-20) as "fail" (the positive class, the
    event a risk model predicts) when ``G3 < 10`` and "pass" when ``G3 >= 10``. With
    ``positive_below=False`` the positive class is ``value >= threshold`` instead.
    """

    threshold: float
    positive_below: bool = False
    positive_text: str = "positive"
    negative_text: str = "negative"

    def describe(self, column: str = "target") -> str:
        """Plain words, e.g. "fail = G3 < 10, pass = G3 >= 10"."""
        low, high = ("<", ">=") if self.positive_below else (">=", "<")
        value = f"{self.threshold:g}"
        return (f"{self.positive_text} = {column} {low} {value}, "
                f"{self.negative_text} = {column} {high} {value}")

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "positive_below": self.positive_below,
                "positive_text": self.positive_text, "negative_text": self.negative_text}

    @classmethod
    def from_dict(cls, data: dict) -> TargetRule:
        """The rule from :meth:`to_dict`'s form; ``positive_below`` may also be given as
        ``direction`` ``"below"`` or ``"at_or_above"``. ValueError on a bad threshold."""
        threshold = float(data["threshold"])
        if threshold != threshold or threshold in (float("inf"), float("-inf")):
            raise ValueError("a target rule's threshold must be a finite number")
        below = data.get("positive_below")
        if below is None:
            below = str(data.get("direction", "at_or_above")).strip().lower() in ("below", "<")
        return cls(threshold=threshold, positive_below=bool(below),
                   positive_text=str(data.get("positive_text") or "positive"),
                   negative_text=str(data.get("negative_text") or "negative"))


@dataclass(frozen=True)
class CodeHierarchy:
    """A public hierarchy the codes of some columns follow (``kind``: ``icd9`` or
    ``postcode``), and the column names that suggest such a column."""

    kind: str
    column_hints: tuple[str, ...]


# The family a problem trains when it names none (ml_core.families.tabular).
DEFAULT_MODEL_FAMILY = "tabular_mlp"


@dataclass(frozen=True)
class ProblemSpec:
    """Everything the platform and the model core need to know about one problem."""

    key: str
    name: str
    description: str
    task_type: TaskType
    hints: tuple[RoleHint, ...]
    sensitive_hints: tuple[str, ...] = ()
    banding: tuple[Banding, ...] = ()
    metrics: tuple[str, ...] = ("roc_auc", "pr_auc", "accuracy", "f1", "brier", "ks")
    primary_metric: str = "roc_auc"
    baseline: str = "logistic_regression"
    model_family: str = DEFAULT_MODEL_FAMILY
    # The family's own options (its ``options_type``, a frozen dataclass: the text encoder's
    # model, layers to fine-tune...); None: the family's defaults.
    family_options: object | None = None
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    fairness: FairnessPolicy = field(default_factory=FairnessPolicy)
    train: TrainConfig = field(default_factory=TrainConfig)
    retrain_cron: str = "0 3 * * 1"  # Mondays 03:00
    # Total epsilon all private runs on one dataset may spend together (the dataset's
    # privacy ledger); admins may set another per dataset.
    dataset_budget_epsilon: float = 10.0
    min_rows: int = 50
    # Binary problems whose target is a number (a grade) declare how it becomes two classes;
    # None: the target column already holds the two classes.
    target_rule: TargetRule | None = None
    # Code columns with a public hierarchy (diagnosis codes, postcodes): grouped by it and
    # hashed, so that no vocabulary is learnt from the rows.
    code_hierarchies: tuple[CodeHierarchy, ...] = ()
    # What one protected person is (see PrivacyUnit); "row" until a vertical says.
    privacy_unit: PrivacyUnit = field(default_factory=lambda: PrivacyUnit("row"))

    def with_privacy(self, **changes: object) -> ProblemSpec:
        return replace(self, privacy=replace(self.privacy, **changes))

    def banding_for(self, column: str) -> Banding | None:
        norm = normalise_name(column)
        for band in self.banding:
            if normalise_name(band.column_hint) == norm or normalise_name(band.column_hint) in norm:
                return band
        return None


class ProgressSink(Protocol):
    """Where long work reports how far it is. The platform persists it; tests record it."""

    def __call__(
        self, *, stage: str, epoch: int, total_epochs: int, loss: float | None,
        val_metric: float | None, epsilon: float | None,
    ) -> None: ...


class StopCheck(Protocol):
    """Returns True when the caller wants training to stop (cancelled)."""

    def __call__(self) -> bool: ...


def normalise_name(name: str) -> str:
    """Lower-case a column name and drop everything but letters and digits."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())
