"""Synthetic tabular data with a planted signal, a problem spec, and shared training runs.

Everything is offered as fixtures (tests never import this module). The private run is
trained once per session and shared by the pipeline, privacy and artifact tests, so the
suite stays fast on two cores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_core.data import encode_and_split
from ml_core.pipeline import run_training
from ml_core.spec import (
    Banding,
    ColumnMapping,
    ColumnRole,
    PrivacyConfig,
    ProblemSpec,
    RoleHint,
    TaskType,
    TrainConfig,
)

N_ROWS = 600
# Enough to learn the planted signal under DP in a few epochs, fast on two cores.
FAST_TRAIN = TrainConfig(epochs=5, batch_size=64, learning_rate=0.02, hidden_sizes=(16,),
                         patience=5, seed=7)
PRIVACY = PrivacyConfig(enabled=True, target_epsilon=3.0)


def planted_frame(n_rows: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """Credit-like rows: ``default`` ("yes" is the minority, positive class) depends
    strongly on ``income`` and ``debt`` and on the ``purpose`` category. ``sex`` and ``age``
    are sensitive. Some incomes are missing; the index starts at 1000 so row ids differ
    from positions."""
    rng = np.random.default_rng(seed)
    income = rng.normal(0, 1, n_rows)
    debt = rng.normal(0, 1, n_rows)
    purpose = rng.choice(["car", "house", "education", "travel"], n_rows, p=[.4, .3, .25, .05])
    sex = rng.choice(["female", "male"], n_rows)
    age = rng.integers(19, 75, n_rows)
    logit = -1.0 - 2.0 * income + 1.8 * debt + 1.0 * (purpose == "travel")
    default = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    income_seen = np.where(rng.random(n_rows) < 0.05, np.nan, income * 1000 + 3000)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n_rows) + 50_000,
            "income": income_seen,
            "debt": debt,
            "purpose": purpose,
            "sex": sex,
            "age": age,
            "default": np.where(default, "yes", "no"),
        },
        index=pd.RangeIndex(1000, 1000 + n_rows),
    )


def make_spec() -> ProblemSpec:
    return ProblemSpec(
        key="test_credit",
        name="Test credit risk",
        description="Synthetic credit default for ml_core tests.",
        task_type=TaskType.BINARY_CLASSIFICATION,
        hints=(RoleHint(ColumnRole.TARGET, ("default",), required=True),),
        sensitive_hints=("sex", "age"),
        banding=(Banding(column_hint="age", edges=(25, 35, 50)),),
        privacy=PRIVACY,
        train=FAST_TRAIN,
    )


MAPPING = ColumnMapping(target="default", sensitive=("sex", "age"), id="customer_id")


class ProgressRecorder:
    """A ProgressSink that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **update: object) -> None:
        self.calls.append(update)

    def stages(self) -> list[str]:
        seen: list[str] = []
        for call in self.calls:
            if not seen or seen[-1] != call["stage"]:
                seen.append(call["stage"])
        return seen


@pytest.fixture(scope="session")
def planted():
    """The planted-signal frame factory: ``planted(n_rows=600, seed=0)``."""
    return planted_frame


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return planted_frame()


@pytest.fixture
def recorder() -> ProgressRecorder:
    return ProgressRecorder()


@pytest.fixture(scope="session")
def spec() -> ProblemSpec:
    return make_spec()


@pytest.fixture(scope="session")
def mapping() -> ColumnMapping:
    return MAPPING


@pytest.fixture(scope="session")
def split(frame, mapping, spec):
    """The encoded train/validation/test split of ``frame`` with the spec's seed."""
    return encode_and_split(frame, mapping, spec.train)


@pytest.fixture(scope="session")
def private_run(frame, spec, mapping, tmp_path_factory):
    """(result, progress recorder) of one private run with its non-private twin."""
    recorder = ProgressRecorder()
    result = run_training(
        frame=frame, mapping=mapping, spec=spec,
        artifact_dir=tmp_path_factory.mktemp("artifact"), progress=recorder,
    )
    return result, recorder
