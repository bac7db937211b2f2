"""The one validation of a run's options, for the web form, the API and ``manage.py pipeline``.

Every option a run may set has a range (:data:`OPTION_RANGES`). A DRF serializer built
from that table parses and checks the run's training overrides and its privacy request,
strictly: a boolean is ``true``/``false`` (``"false"`` is False, ``"maybe"`` is refused),
numbers are finite and never booleans. A refusal is an :class:`InvalidRunOptions` naming
each option and its range; the API answers it with 400, the form shows it, the command
prints it. Whether the run's *work* fits the deployment is the other half
(:mod:`training.budgets`).
"""

from __future__ import annotations

import dataclasses
import math

from rest_framework import serializers

from ml_core.spec import PrivacyConfig, ProblemSpec, TrainConfig


@dataclasses.dataclass(frozen=True)
class OptionRange:
    """What values one option takes: ``kind`` is int, float, bool, str or "sizes" (a list
    of layer widths); ``low``/``high`` bound the number (each width, for sizes)."""

    name: str
    kind: object
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed (a learning rate of 0 learns nothing)
    max_items: int | None = None
    nullable: bool = False

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return f"a column name of at most {int(self.high)} characters" + (
                " or null" if self.nullable else "")
        low = "above" if self.low_open else "from"
        span = f"{low} {_figure(self.low)} to {_figure(self.high)}"
        if self.kind == "sizes":
            return f"a list of 1 to {self.max_items} layer widths, each {span}"
        noun = "an integer" if self.kind is int else "a number"
        return f"{noun} {span}"


def _figure(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# Why these ceilings: each is far above every problem's default and what any of the shipped
# problems needs, and each bounds what one request can make a worker allocate or compute.
# Together with the work budgets they keep one run from taking a worker down.
OPTION_RANGES: dict[str, OptionRange] = {r.name: r for r in (
    OptionRange("epochs", int, 1, 500),
    OptionRange("batch_size", int, 1, 8192),
    OptionRange("learning_rate", float, 0.0, 10.0, low_open=True),
    OptionRange("hidden_sizes", "sizes", 1, 2048, max_items=8),
    OptionRange("patience", int, 1, 500),
    OptionRange("seed", int, 0, 2**31 - 1),
    OptionRange("test_fraction", float, 0.05, 0.5),
    OptionRange("val_fraction", float, 0.05, 0.5),
    OptionRange("horizon", int, 1, 365),
    OptionRange("top_k", int, 1, 1000),
    OptionRange("window", int, 2, 1000),
    OptionRange("rul_cap", int, 1, 100_000),
    OptionRange("max_length", int, 8, 512),
    OptionRange("class_weighting", bool),
    OptionRange("reweigh_attribute", str, high=200, nullable=True),
)}
# The privacy request: the epsilon budget, delta, and the per-person clipping bound.
PRIVACY_RANGES: dict[str, OptionRange] = {r.name: r for r in (
    OptionRange("enabled", bool),
    OptionRange("target_epsilon", float, 0.01, 100.0),
    OptionRange("delta", float, 0.0, 1e-3, low_open=True),
    OptionRange("max_grad_norm", float, 0.01, 100.0),
)}
# "device" stays the worker's choice.
OVERRIDABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "device")
assert set(OVERRIDABLE) == set(OPTION_RANGES), "every TrainConfig field needs a range"
# Together the held-out splits leave at least this share of rows for training.
MAX_HELD_OUT = 0.8


class InvalidRunOptions(ValueError):
    """Options out of range: ``errors`` maps each option to why, ``str()`` says it all."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {why}" for name, why in self.errors.items()))


class _StrictBoolean(serializers.BooleanField):
    """DRF's boolean without its null values: an option is true or false."""

    def to_internal_value(self, data):
        if data is None or (isinstance(data, str) and data.strip().lower() in ("", "null", "none")):
            self.fail("invalid", input=data)
        return super().to_internal_value(data)


class _StrictNumber:
    """No booleans for numbers (DRF reads True as 1), no NaN or infinity."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail("invalid")
        return value


class _Integer(_StrictNumber, serializers.IntegerField):
    pass


class _Float(_StrictNumber, serializers.FloatField):
    pass


def _field(option: OptionRange) -> serializers.Field:
    if option.kind is bool:
        return _StrictBoolean(required=False)
    if option.kind is str:
        return serializers.CharField(required=False, allow_null=option.nullable,
                                     max_length=int(option.high))
    if option.kind == "sizes":
        return serializers.ListField(
            child=_Integer(min_value=int(option.low), max_value=int(option.high)),
            min_length=1, max_length=option.max_items, required=False)
    if option.kind is int:
        return _Integer(required=False, min_value=int(option.low), max_value=int(option.high))
    # An open lower bound is checked in validate_<name>, DRF's min_value is inclusive.
    return _Float(required=False, min_value=None if option.low_open else option.low,
                  max_value=option.high, allow_null=option.nullable)


def _serializer_class(name: str, ranges: dict[str, OptionRange]) -> type[serializers.Serializer]:
    fields = {option.name: _field(option) for option in ranges.values()}
    for option in ranges.values():
        if option.low_open:
            def check(self, value, _option=option):
                if value is not None and not value > _option.low:
                    raise serializers.ValidationError(f"must be above {_figure(_option.low)}")
                return value
            fields[f"validate_{option.name}"] = check
    return type(name, (serializers.Serializer,), fields)


TrainingOptionsSerializer = _serializer_class("TrainingOptionsSerializer", OPTION_RANGES)
PrivacyOptionsSerializer = _serializer_class("PrivacyOptionsSerializer", PRIVACY_RANGES)


def _refuse(errors: dict, ranges: dict[str, OptionRange]) -> InvalidRunOptions:
    said = {}
    for name, details in errors.items():
        first = details[0] if isinstance(details, list) else details
        if isinstance(first, dict) or isinstance(details, dict):  # a list item's error
            first = next(iter((details if isinstance(details, dict) else first).values()))
            first = first[0] if isinstance(first, list) else first
        option = ranges.get(name)
        expected = f" (allowed: {option.describe()})" if option else ""
        said[name] = f"{first}{expected}"
    return InvalidRunOptions(said)


def clean_training_options(overrides: dict | None) -> dict:
    """The run's training overrides, parsed and range-checked (JSON-ready: lists, not
    tuples); InvalidRunOptions otherwise, unknown names included."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise InvalidRunOptions({name: f"unknown training option; allowed: {', '.join(OVERRIDABLE)}"
                                 for name in unknown})
    form = TrainingOptionsSerializer(data=overrides)
    if not form.is_valid():
        raise _refuse(form.errors, OPTION_RANGES)
    cleaned = dict(form.validated_data)
    return cleaned


def clean_privacy_options(requested: dict | None) -> dict:
    """The run's privacy request, parsed and range-checked; None values mean the default."""
    requested = {k: v for k, v in dict(requested or {}).items() if v is not None}
    unknown = sorted(set(requested) - set(PRIVACY_RANGES))
    if unknown:
        raise InvalidRunOptions({name: f"unknown privacy option; allowed: "
                                 f"{', '.join(PRIVACY_RANGES)}" for name in unknown})
    form = PrivacyOptionsSerializer(data=requested)
    if not form.is_valid():
        raise _refuse(form.errors, PRIVACY_RANGES)
    return dict(form.validated_data)


def train_config(spec: ProblemSpec, overrides: dict | None) -> TrainConfig:
    """The problem's TrainConfig with the run's overrides, validated; JSON lists -> tuples."""
    cleaned = clean_training_options(overrides)
    if "hidden_sizes" in cleaned:
        cleaned["hidden_sizes"] = tuple(cleaned["hidden_sizes"])
    config = dataclasses.replace(spec.train, **cleaned)
    if config.test_fraction + config.val_fraction > MAX_HELD_OUT:
        raise InvalidRunOptions({"test_fraction": (
            f"test_fraction + val_fraction is {config.test_fraction + config.val_fraction:g}; "
            f"together they must be at most {MAX_HELD_OUT:g}")})
    return config


def privacy_config(spec: ProblemSpec, requested: dict) -> PrivacyConfig:
    """The problem's PrivacyConfig with what the run asked for."""
    cleaned = clean_privacy_options(requested)
    changes: dict = {"enabled": bool(cleaned.get("enabled", True))}
    for name in ("target_epsilon", "delta", "max_grad_norm"):
        if cleaned.get(name) is not None:
            changes[name] = float(cleaned[name])
    return dataclasses.replace(spec.privacy, **changes)
