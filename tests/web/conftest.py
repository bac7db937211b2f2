"""Fixtures the web page tests need beyond the shared personas (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.web.factories import make_succeeded_run, make_version


@pytest.fixture
def succeeded_run(validated_version, analyst):
    return make_succeeded_run(version=validated_version, user=analyst)


@pytest.fixture
def other_org_run(org_b, other_analyst):
    version = make_version(organisation=org_b, user=other_analyst, name="their data")
    return make_succeeded_run(version=version, user=other_analyst)
