"""A model family as a registered plug-in, like a vertical: what it declares, and the registry.

A family is one class derived from :class:`ModelFamily`, decorated with
:func:`register_family` where it is defined (at the end of its module). It declares

* ``name`` (what a :class:`~ml_core.spec.ProblemSpec`'s ``model_family`` names) and the
  ``task_types`` it trains;
* the column roles it reads: ``required_roles`` and ``optional_roles`` (the sensitive and
  excluded columns every family honours, :data:`UNIVERSAL_ROLES`, need no declaring);
* ``options_type``: a frozen dataclass of the family's own options, which a problem may set
  in ``ProblemSpec.family_options`` (None there: the family's defaults);
* its ``metrics`` with their direction and naive level, and its ``primary_metric``;
* ``chart_kinds``: the ``kind`` of the chart data its results carry (``result.charts["kind"]``),
  by which the results page picks its renderer;
* ``supports``: what the platform may do with its models (:class:`Supports`).

Its entry points are methods: :meth:`ModelFamily.run` (the runner contract of
:func:`ml_core.pipeline.run_training`), :meth:`~ModelFamily.validate`, and, where declared,
:meth:`~ModelFamily.load` / :meth:`~ModelFamily.predict` and
:meth:`~ModelFamily.attach_test_set`. The platform reads these declarations and never
compares a family's name.
"""

from __future__ import annotations

import dataclasses
import pkgutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pandas as pd

from ml_core import cancellation
from ml_core.spec import (
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    ProblemSpec,
    ProgressSink,
    StopCheck,
    TaskType,
    TrainConfig,
)

if TYPE_CHECKING:  # the pipeline imports torch; declarations must stay light
    from ml_core.pipeline import TrainingResult
    from ml_core.validation import ValidationIssue

# Roles the platform handles for every family: sensitive columns are audited, excluded
# ones dropped; no family needs to declare them.
UNIVERSAL_ROLES = frozenset({ColumnRole.SENSITIVE.value, ColumnRole.EXCLUDE.value})
# Artifact entries every family's metadata holds, none of them a statistic of the rows: the
# run's settings and confirmed mapping, the privacy report, the weights' shape and hash (of
# DP-SGD weights), library versions.
COMMON_ARTIFACT_KEYS = frozenset({
    "model_family", "spec_key", "task_type", "seed", "mapping", "privacy", "epsilon",
    "delta", "best_epoch", "versions", "format_version", "architecture", "weights_sha256",
    "device",
})


class FamilyError(LookupError):
    """An unknown family name, or a family that is registered twice or declared wrongly."""


@dataclass(frozen=True)
class MetricDeclaration:
    """One metric a family reports on its test split."""

    name: str
    # None: a count that describes the model (coverage), with no better direction.
    higher_is_better: bool | None
    # What a trivial predictor scores (0.5 ROC AUC, MASE 1.0 for the seasonal naive
    # forecast); None where it depends on the data (RMSE, macro F1 with k classes).
    naive_level: float | None = None


@dataclass(frozen=True)
class Supports:
    """What the platform may do with a family's trained models."""

    # Rows scored one request at a time (the prediction API) and files scored as batch
    # jobs; both read the artifact through the family's ``load`` and serve binary scores
    # at the model's threshold (ml_core.artifacts' LoadedModel).
    online_prediction: bool = False
    batch_scoring: bool = False
    # The empirical canary audit of the privacy claim (ml_core.privacy_audit).
    privacy_audit: bool = False
    # Post-processing a failed fairness report with a threshold optimiser.
    mitigation: bool = False
    # Checkpoints every epoch and resumes a crashed run exactly (ml_core.checkpoints).
    resume: bool = True
    # A given test set uploaded as a companion file with a second file of true values
    # (``attach_test_set``: held-out run-to-failure series).
    test_file: bool = False
    # A given test file with the training file's columns, target included (a published
    # benchmark split), marked by ml_core.data.attach_labelled_test.
    labelled_test_file: bool = False


class ModelFamily:
    """Base of every model family; subclasses set the declarations and implement ``_run``.

    Methods the family does not support raise :class:`NotImplementedError`; the platform
    asks :attr:`supports` (or :meth:`reads`) before calling them.
    """

    name: ClassVar[str]
    task_types: ClassVar[tuple[TaskType, ...]]
    required_roles: ClassVar[tuple[str, ...]] = (ColumnRole.TARGET.value,)
    optional_roles: ClassVar[tuple[str, ...]] = ()
    # Features are numeric channels only (a sensor series): text columns are not offered.
    numeric_features_only: ClassVar[bool] = False
    options_type: ClassVar[type | None] = None
    metrics: ClassVar[tuple[MetricDeclaration, ...]]
    primary_metric: ClassVar[str]
    chart_kinds: ClassVar[tuple[str, ...]]
    supports: ClassVar[Supports] = Supports()
    # The role naming what a given test file holds apart from the training file (its
    # students): a value with rows in both files is refused when the test file is attached
    # and when the mapping is confirmed, not only at training. None: the files may share
    # them (forecasting's later periods of the same series).
    given_test_role: ClassVar[str | None] = None
    # What a private run's artifact holds besides COMMON_ARTIFACT_KEYS, entry by entry (the
    # top-level keys of its JSON files): ``artifact_public`` names entries declared public
    # (settings, column names, counts); ``artifact_private`` maps each entry estimated with
    # a DP mechanism to the name the run's privacy report lists it under (its preprocessing
    # stage's "estimated_privately"). Anything else computed from the rows is a leak; the
    # artifact test holds every family to these declarations.
    artifact_public: ClassVar[frozenset[str]] = frozenset()
    artifact_private: ClassVar[Mapping[str, str]] = {}
    # The module whose functions ``run``, ``validate``, ``load``, ``predict`` and
    # ``attach_test_set`` implement the entry points below, where it defines them (a family
    # module registers with ``implementation = __name__``); a family may override any.
    implementation: ClassVar[str | None] = None

    # --- declarations, read by the platform ---------------------------------------------

    def roles(self) -> frozenset[str]:
        """Every role this family reads, the universal ones included."""
        return frozenset({*self.required_roles, *self.optional_roles, *UNIVERSAL_ROLES})

    def reads(self, role: ColumnRole | str) -> bool:
        """Whether a column mapped to ``role`` is read by this family."""
        return str(getattr(role, "value", role)) in self.roles()

    def requires(self, role: ColumnRole | str) -> bool:
        """Whether a mapping must name a column for ``role``."""
        return str(getattr(role, "value", role)) in self.required_roles

    def metric(self, name: str) -> MetricDeclaration | None:
        """The declaration of metric ``name``, or None when the family does not report it."""
        return next((m for m in self.metrics if m.name == name), None)

    def options(self, spec: ProblemSpec) -> Any:
        """``spec.family_options``, or the family's default options; None without options."""
        if spec.family_options is not None:
            return spec.family_options
        return self.options_type() if self.options_type is not None else None

    # --- entry points -------------------------------------------------------------------

    def run(
        self, *, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec,
        privacy: PrivacyConfig | None = None, train: TrainConfig | None = None,
        artifact_dir: Path, progress: ProgressSink | None = None,
        should_stop: StopCheck | None = None, checkpoint_dir: Path | None = None,
    ) -> TrainingResult:
        """Train, evaluate, audit and save one model (the contract of
        :func:`ml_core.pipeline.run_training`); the result's charts carry their kind."""
        # Every long loop of the family asks this check (ml_core.cancellation).
        with cancellation.stop_when(should_stop):
            result = self._run(frame=frame, mapping=mapping, spec=spec, privacy=privacy,
                               train=train, artifact_dir=artifact_dir, progress=progress,
                               should_stop=should_stop, checkpoint_dir=checkpoint_dir)
        if result.charts and "kind" not in result.charts:
            # One kind per result: the first declared one. A family whose results differ in
            # kind sets result.charts["kind"] itself.
            result = dataclasses.replace(
                result, charts={"kind": self.chart_kinds[0], **result.charts})
        return result

    def _implemented(self, function: str) -> Any:
        """``function`` of the family's :attr:`implementation` module, or None."""
        if self.implementation is None:
            return None
        return getattr(import_module(self.implementation), function, None)

    def _run(self, **inputs: Any) -> TrainingResult:
        run = self._implemented("run")
        if run is None:
            raise NotImplementedError(f"family {self.name!r} does not implement _run")
        return run(**inputs)

    def validate(self, frame: pd.DataFrame, mapping: ColumnMapping, spec: ProblemSpec
                 ) -> list[ValidationIssue]:
        """Task-specific problems with ``frame`` beyond the shared checks; none by default."""
        validate = self._implemented("validate")
        return validate(frame, mapping, spec) if validate is not None else []

    def load(self, path: Path | str) -> Any:
        """The saved model at ``path``, ready for :meth:`predict`."""
        load = self._implemented("load")
        if load is None:
            raise NotImplementedError(f"family {self.name!r} cannot load its models")
        return load(path)

    def predict(self, loaded: Any, frame: pd.DataFrame) -> pd.DataFrame:
        """Predictions of a loaded model for ``frame``'s rows."""
        predict = self._implemented("predict")
        if predict is None:
            raise NotImplementedError(f"family {self.name!r} cannot predict")
        return predict(loaded, frame)

    def attach_test_set(
        self, frame: pd.DataFrame, test_frame: pd.DataFrame, truth: Sequence[float], *,
        unit: str, cycle: str, target: str | None = None,
    ) -> pd.DataFrame:
        """One frame of the training table and a given test set whose entities (``unit``)
        end at ``truth`` (``supports.test_file``); the test rows are marked for the split."""
        attach = self._implemented("attach_test_set")
        if attach is None:
            raise NotImplementedError(f"family {self.name!r} takes no given test set")
        return attach(frame, test_frame, truth, unit=unit, cycle=cycle, target=target)

    def __repr__(self) -> str:
        return f"<model family {self.name}>"


_FAMILIES: dict[str, ModelFamily] = {}
_Family = TypeVar("_Family", bound=type[ModelFamily])


def _declaration_errors(family: ModelFamily) -> list[str]:
    found = []
    for attribute in ("name", "task_types", "metrics", "primary_metric", "chart_kinds"):
        if not getattr(family, attribute, None):
            found.append(f"declares no {attribute}")
    if getattr(family, "metrics", None) and family.metric(family.primary_metric) is None:
        found.append(f"primary metric {family.primary_metric!r} is not one of its metrics")
    elif getattr(family, "metrics", None) and \
            family.metric(family.primary_metric).higher_is_better is None:
        found.append(f"primary metric {family.primary_metric!r} has no direction")
    options = family.options_type
    if options is not None and not (dataclasses.is_dataclass(options)
                                     and options.__dataclass_params__.frozen):
        found.append("options_type is not a frozen dataclass")
    overlap = set(family.required_roles) & set(family.optional_roles)
    if overlap:
        found.append(f"roles {sorted(overlap)} are both required and optional")
    return found


def register_family(cls: _Family) -> _Family:
    """Class decorator: register one instance of ``cls`` under ``cls.name``.

    Registering the same class again (a module imported twice) is a no-op; another class
    under a taken name is a :class:`FamilyError`.
    """
    family = cls()
    errors = _declaration_errors(family)
    if errors:
        raise FamilyError(f"family {getattr(cls, 'name', cls.__name__)!r}: "
                          + "; ".join(errors))
    existing = _FAMILIES.get(family.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise FamilyError(f"family {family.name!r} is already registered "
                          f"by {type(existing).__qualname__}")
    _FAMILIES[family.name] = family
    return cls


def unregister_family(name: str) -> None:
    """Drop ``name`` from the registry (tests that register a family of their own)."""
    _FAMILIES.pop(name, None)


def get_family(name: str) -> ModelFamily:
    """The registered family called ``name``; :class:`FamilyError` when there is none."""
    _discover()
    try:
        return _FAMILIES[name]
    except KeyError:
        raise FamilyError(f"unknown model family {name!r}; known: "
                          f"{', '.join(sorted(_FAMILIES))}") from None


def all_families() -> list[ModelFamily]:
    """Every registered family, by name."""
    _discover()
    return [_FAMILIES[name] for name in sorted(_FAMILIES)]


_discovery_lock = threading.RLock()
_discovered = False


def _discover() -> None:
    """Import every module of ``ml_core.families`` once, so that each built-in family has
    registered itself (families from outside ml_core register when their module is
    imported, e.g. by the app that uses them)."""
    global _discovered
    if _discovered:
        return
    with _discovery_lock:
        if _discovered:
            return
        package = import_module("ml_core.families")
        for module in pkgutil.iter_modules(package.__path__):
            import_module(f"{package.__name__}.{module.name}")
        _discovered = True
