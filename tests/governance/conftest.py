"""Fixtures for governance tests: private runs executed in-process at tiny sizes."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_TRAINING

TINY = {**FAST_TRAINING, "epochs": 2}


@pytest.fixture
def run_private(analyst):
    """run_private(version, user=analyst, target_epsilon=1.0, **config) -> finished run."""
    from training.services import execute_run, start_run

    def run(version, *, user=None, target_epsilon: float = 1.0, **config):
        started = start_run(version=version, user=user or analyst, target_epsilon=target_epsilon,
                            config={**TINY, **config}, enqueue=False)
        execute_run(started.pk)
        started.refresh_from_db()
        return started

    return run
