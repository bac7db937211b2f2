"""An approved image model scores new images: one image through the prediction API
(multipart), a ZIP of images as a batch job (the upload's safe archive reader, results
encrypted at rest, ``row_id`` = the image's path). Only approved or champion models, only
their organisation. The model is trained once (ml_core, pretrained backbone, no privacy) on
generated images; each test registers it as a model of organisation A."""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import ScoringJob
from governance.scoring import NotServing, start_scoring_job
from governance.tasks import score_batch
from ingestion.storage import is_encrypted
from ml_core.families.image import load, predict, run
from ml_core.families.image.columns import IMAGE_BYTES_COLUMN
from ml_core.spec import ColumnMapping, PrivacyConfig
from verticals.manufacturing.demo_images import CLASSES, encoded, image_frame, surface
from verticals.manufacturing.vertical import VISUAL_INSPECTION

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# The image column is called "path" here (as a labels CSV may name it), not the archive
# reader's "file": scoring must still give each image its path as the row id.
MAPPING = ColumnMapping(target="label", roles=(("image", "path"),))
SPEC = dataclasses.replace(VISUAL_INSPECTION, train=dataclasses.replace(
    VISUAL_INSPECTION.train, epochs=3, batch_size=16))


@pytest.fixture(scope="module")
def image_artifact(tmp_path_factory):
    frame = image_frame(12, seed=3).rename(columns={"file": "path"})
    result = run(frame=frame, mapping=MAPPING, spec=SPEC,
                 privacy=PrivacyConfig(enabled=False),
                 artifact_dir=tmp_path_factory.mktemp("image-model"))
    return result


@pytest.fixture
def image_model(image_artifact, validated_version, analyst):
    """The trained image classifier as a pending model of organisation A."""
    from audits.models import FairnessReport
    from training.models import ModelVersion, TrainingRun

    run_row = TrainingRun.objects.create(
        organisation=validated_version.dataset.organisation,
        dataset_version=validated_version, vertical="manufacturing",
        problem="visual_inspection", status=TrainingRun.Status.SUCCEEDED,
        metrics=image_artifact.metrics, privacy={"enabled": False, "epsilon": None},
        result={"baseline": image_artifact.baseline},
        artifact_path=str(image_artifact.artifact_path), created_by=analyst)
    FairnessReport.objects.create(run=run_row, passed=True, report={})
    return ModelVersion.objects.create(
        organisation=run_row.organisation, run=run_row, vertical="manufacturing",
        problem="visual_inspection", artifact_sha256=image_artifact.artifact_sha256,
        status=ModelVersion.Status.PENDING_REVIEW)


def png(label: str, seed: int) -> bytes:
    return encoded(surface(label, np.random.default_rng(seed)))


def expected_scores(artifact, images: dict[str, bytes]) -> pd.DataFrame:
    """What the saved model gives these images, called directly (not through the platform)."""
    frame = pd.DataFrame({"path": list(images), IMAGE_BYTES_COLUMN: list(images.values())})
    return predict(load(artifact.artifact_path), frame).set_index("row_id")


def url(model) -> str:
    return f"/api/v1/models/{model.pk}/predict/"


def post_image(client, model, name: str, data: bytes):
    return client.post(url(model), {"image": SimpleUploadedFile(name, data)},
                       format="multipart")


def test_one_image_gets_its_class_and_a_score_per_class(image_model, image_artifact,
                                                        api_client, analyst, approve):
    image = png("spots", 101)
    assert post_image(api_client(analyst), image_model, "part-7.png",
                      image).status_code == 409  # not approved yet
    approve(image_model)

    response = post_image(api_client(analyst), image_model, "part-7.png", image)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["classes"] == list(CLASSES)
    (answer,) = body["predictions"]
    expected = expected_scores(image_artifact, {"part-7.png": image}).loc["part-7.png"]
    assert answer["image"] == "part-7.png" and answer["row"] == 1
    assert answer["prediction"] == expected["y_pred"]
    assert answer["scores"] == pytest.approx({c: expected[f"prob_{c}"] for c in CLASSES},
                                             abs=1e-6)
    assert answer["score"] == pytest.approx(max(answer["scores"].values()))
    assert sum(answer["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_bad_input_is_a_clear_400(image_model, api_client, analyst, approve, make_model):
    approve(image_model)
    client = api_client(analyst)

    not_image = post_image(client, image_model, "notes.txt", b"hello")
    assert not_image.status_code == 400
    assert not_image.json()["errors"][0]["code"] == "unreadable_image"
    assert "not an image" in not_image.json()["errors"][0]["message"]

    broken = post_image(client, image_model, "broken.png", png("ok", 1)[:60])
    assert broken.status_code == 400
    assert "broken.png" in broken.json()["errors"][0]["message"]

    rows = client.post(url(image_model), {"rows": [{"x": 1}]}, format="json")
    assert rows.status_code == 400 and rows.json()["errors"][0]["code"] == "image_expected"
    missing = client.post(url(image_model), {}, format="multipart")
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == "no_image"

    # A model of a family that scores rows says so when sent an image.
    tabular = make_model(status="approved")
    answer = post_image(client, tabular, "part.png", png("ok", 2))
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "rows_expected"


def test_only_the_organisation_and_only_serving_models(image_model, api_client, approve,
                                                       reviewer, other_analyst, other_admin):
    image = png("ok", 5)
    approve(image_model)
    assert post_image(api_client(reviewer), image_model, "a.png", image).status_code == 200
    for outsider in (other_analyst, other_admin):
        assert post_image(api_client(outsider), image_model, "a.png",
                          image).status_code == 404
    assert post_image(api_client(), image_model, "a.png", image).status_code == 401

    from governance.registry import retire

    retire(model_version=image_model, user=reviewer, reason="superseded")
    assert post_image(api_client(reviewer), image_model, "a.png", image).status_code == 409


def images_zip(images: dict[str, bytes], extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, blob in {**images, **(extra or {})}.items():
            archive.writestr(name, blob)
    return buffer.getvalue()


def test_a_zip_is_scored_as_a_batch_job_and_stored_encrypted(
        image_model, image_artifact, approve, analyst, other_analyst, client):
    images = {f"batch/{label}-{i}.png": png(label, 200 + i)
              for i, label in enumerate(CLASSES * 3)}
    images["=cmd.png"] = png("ok", 300)  # a name a spreadsheet would run: escaped
    archive = images_zip(images, {"batch/readme.txt": b"not an image",
                                  "batch/broken.png": b"\x89PNG\r\n\x1a\nbroken"})
    upload = SimpleUploadedFile("line-3.zip", archive, content_type="application/zip")
    with pytest.raises(NotServing):
        start_scoring_job(model_version=image_model, user=analyst, file=upload)
    approve(image_model)
    upload.seek(0)
    job = start_scoring_job(model_version=image_model, user=analyst, file=upload)
    assert job.rows_total == len(images)  # the readable images; text and broken left out

    score_batch.apply(args=[job.pk])

    job.refresh_from_db()
    assert job.status == ScoringJob.Status.SUCCEEDED, job.errors
    assert job.rows_done == len(images)
    stored = Path(job.output_path).read_bytes()
    assert is_encrypted(stored) and b"prob_" not in stored
    client.force_login(analyst)
    response = client.get(f"/governance/scoring/{job.pk}/download/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["row_id"] for row in rows} == {*images} - {"=cmd.png"} | {"'=cmd.png"}
    assert IMAGE_BYTES_COLUMN not in rows[0]
    expected = expected_scores(image_artifact, images)
    for row in rows:
        want = expected.loc[row["row_id"].removeprefix("'")]
        assert row["y_pred"] == want["y_pred"]
        assert [float(row[f"prob_{c}"]) for c in CLASSES] == pytest.approx(
            [want[f"prob_{c}"] for c in CLASSES], abs=1e-6)

    client.force_login(other_analyst)
    assert client.get(f"/governance/scoring/{job.pk}/download/").status_code == 404


def test_a_hostile_zip_is_refused_before_it_is_stored(image_model, approve, analyst):
    approve(image_model)
    for archive, words in ((images_zip({"../../etc/x.png": png("ok", 1)}), "outside"),
                           (images_zip({"a.txt": b"x"}), "no images"),
                           (b"not a zip", "not a ZIP")):
        with pytest.raises(ValueError, match=f"(?i){words}"):
            start_scoring_job(model_version=image_model, user=analyst,
                              file=SimpleUploadedFile("x.zip", archive))
    assert not ScoringJob.objects.exists()


def test_the_model_page_takes_a_zip_of_images(image_model, approve, analyst, client):
    approve(image_model)
    client.force_login(analyst)
    page = client.get(f"/governance/models/{image_model.pk}/").content.decode()
    assert "A ZIP of images" in page
    archive = images_zip({"a/1.png": png("ok", 1), "a/2.png": png("spots", 2)})
    response = client.post(f"/governance/models/{image_model.pk}/score/",
                           {"file": SimpleUploadedFile("two.zip", archive)})
    job = ScoringJob.objects.get()
    assert response.status_code == 302 and response["Location"] == (
        f"/governance/scoring/{job.pk}/")
    assert job.rows_total == 2 and job.original_filename == "two.zip"
