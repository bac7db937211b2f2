"""One organisation check for the services (accounts.scoping.member_of), as views and the
API have one for their queries (for_request, get_scoped_or_404)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied

from accounts.models import REVIEWER_ROLES
from accounts.scoping import member_of, organisation_id_of
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

# A hand-written comparison of organisations, the pattern member_of replaces.
HAND_WRITTEN = re.compile(r"organisation_id\s*[!=]=|organisation\.pk\s*[!=]=|"
                          r"[!=]=\s*\w+(\.\w+)*\.organisation_id")


def test_no_service_view_or_api_compares_organisations_by_hand():
    allowed = {ROOT / "platform" / "accounts" / "scoping.py",
               ROOT / "platform" / "ingestion" / "services.py",  # via organisation_id_of
               # The command's service creates its own system user's membership.
               ROOT / "platform" / "training" / "pipeline.py"}
    offenders = []
    for path in (ROOT / "platform").rglob("*.py"):
        if "migrations" in path.parts or path in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if HAND_WRITTEN.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_member_of_follows_the_path_to_the_organisation(validated_version, analyst,
                                                        other_analyst, reviewer):
    dataset = validated_version.dataset
    assert organisation_id_of(validated_version) == dataset.organisation_id
    assert member_of(analyst, validated_version).user == analyst
    with pytest.raises(PermissionDenied, match="belongs to another organisation"):
        member_of(other_analyst, validated_version)
    with pytest.raises(PermissionDenied, match="reviewer or admin"):
        member_of(analyst, dataset, roles=REVIEWER_ROLES)
    assert member_of(reviewer, dataset, roles=REVIEWER_ROLES).user == reviewer
    with pytest.raises(PermissionDenied, match="only reviewers"):
        member_of(other_analyst, dataset, roles=REVIEWER_ROLES, refusal="only reviewers")
