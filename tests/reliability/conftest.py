"""Fixtures for the reliability tests: validated finance datasets of a chosen size."""

from __future__ import annotations

import io

import pytest

from tests.conftest import csv_upload, finance_frame


def finance_bytes(n_rows: int, seed: int = 0) -> bytes:
    buffer = io.StringIO()
    finance_frame(n_rows, seed).to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


@pytest.fixture
def finance_version():
    """finance_version(user, n_rows=400, seed=0) -> a validated credit_risk version."""
    from ingestion.services import confirm_mapping, upload_dataset
    from verticals.registry import get_problem

    def make(user, n_rows: int = 400, seed: int = 0):
        version = upload_dataset(user=user, vertical="finance", problem="credit_risk",
                                 file=csv_upload(finance_bytes(n_rows, seed)),
                                 name=f"Applications {n_rows}")
        version = confirm_mapping(version=version, user=user,
                                  mapping=get_problem("finance", "credit_risk").sample_mapping)
        assert version.status == "validated", version.errors
        return version

    return make
