"""What a benchmark entry is, and which entry groups exist.

A group is a module in ``bench/groups/`` with ``NAMES`` (the entry names it produces,
before any ``_cuda`` suffix), ``DEVICES`` (the devices it can run on) and
``run(settings) -> list[Result]``. Adding a group is adding a module and one line here.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, field
from types import ModuleType

GROUPS: tuple[str, ...] = (
    "bench.groups.dp_mlp",
    "bench.groups.dp_text",
    "bench.groups.dp_families",
    "bench.groups.dp_cnn",
    "bench.groups.image_run",
    "bench.groups.clip_error",
    "bench.groups.audit",
    "bench.groups.train_epoch",
    "bench.groups.ingest",
    "bench.groups.scoring",
    "bench.groups.api",
)

# Entries of the performance issue that no group measures yet (reported as pending).
PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class Target:
    """``value <= high``, ``value >= low``, ``low <= value <= high``, or neither: a figure
    recorded for comparison and not judged (``passed`` is then None)."""

    low: float | None = None
    high: float | None = None

    def check(self, value: float | None) -> bool | None:
        if self.low is None and self.high is None:
            return None
        if value is None or math.isnan(value):
            return False
        return (self.low is None or value >= self.low) and (
            self.high is None or value <= self.high
        )

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} - {self.high:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        if self.low is not None:
            return f">= {self.low:g}"
        return "recorded"


@dataclass(frozen=True)
class Settings:
    quick: bool = False
    device: str = "cpu"
    seed: int = 0
    # Tests shrink everything further; the entry functions read sizes from here.
    tiny: bool = False

    @property
    def suffix(self) -> str:
        return "_cuda" if self.device.startswith("cuda") else ""


@dataclass(frozen=True)
class Result:
    name: str
    value: float | None
    unit: str
    reference: str  # what it was compared with, as measured in this run
    target: Target
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        return self.target.check(self.value)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target"] = str(self.target)
        data["passed"] = self.passed
        value = self.value
        data["value"] = None if value is None or math.isnan(value) else float(value)
        return data


def load_groups() -> list[ModuleType]:
    return [importlib.import_module(name) for name in GROUPS]
