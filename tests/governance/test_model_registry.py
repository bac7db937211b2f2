"""The registry: every successful run records code, data, seed and configuration; one champion
per problem and organisation."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from training.models import ModelVersion
from training.provenance import code_version

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_a_trained_model_records_its_provenance(trained_model, validated_version):
    model = trained_model
    assert model.status == ModelVersion.Status.PENDING_REVIEW
    assert model.dataset_sha256 == validated_version.sha256
    assert model.seed == 0 and model.config["epochs"] == 3
    assert model.code_version == code_version()
    assert len(model.artifact_sha256) == 64
    assert model.run.privacy["epsilon"] > 0 and model.run.fairness


def test_code_version_is_the_git_commit(settings, monkeypatch):
    import subprocess

    code_version.cache_clear()
    monkeypatch.delenv("TESSERA_CODE_VERSION", raising=False)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=settings.ROOT_DIR,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git checkout")
    assert code_version() == head
    code_version.cache_clear()
    monkeypatch.setenv("TESSERA_CODE_VERSION", "release-1.2")
    assert code_version() == "release-1.2"
    code_version.cache_clear()


def test_the_database_allows_one_champion_per_problem(make_model):
    make_model(status=ModelVersion.Status.CHAMPION)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_model(status=ModelVersion.Status.CHAMPION)
