"""``manage.py pipeline`` with a ZIP of inspection images (visual inspection): the CSV of
labels and groups given beside the ZIP, a private run, predictions with one score column
per class and the group columns; the ZIP stored encrypted; a hostile ZIP refused with a
clear message. Images are generated here (Pillow)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from ingestion.models import DatasetVersion
from ingestion.storage import is_encrypted, stored_file
from tests.conftest import call_pipeline as pipeline
from training.models import TrainingRun
from verticals.manufacturing.demo_images import CLASSES, image_frame

pytestmark = pytest.mark.django_db


def images_zip_and_labels(tmp_path: Path, per_class: int) -> tuple[Path, Path]:
    """A ZIP of flat image files (no class folders) and a CSV naming label, line, camera."""
    frame = image_frame(per_class)
    archive = tmp_path / "defects.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name, blob in zip(frame["file"], frame["__image_bytes__"], strict=True):
            handle.writestr(f"images/{name.replace('/', '_')}", blob)
        handle.writestr("images/notes.txt", "not an image")
    labels = tmp_path / "labels.csv"
    frame.assign(image=[f"images/{n.replace('/', '_')}" for n in frame["file"]])[
        ["image", "label", "line", "camera"]].to_csv(labels, index=False)
    return archive, labels


@pytest.mark.slow
def test_private_run_from_a_zip_and_a_labels_csv(tmp_path, admin):
    archive, labels = images_zip_and_labels(tmp_path, per_class=12)
    predictions = tmp_path / "out" / "predictions.csv"

    code, body = pipeline(archive, "--vertical", "manufacturing", "--problem",
                          "visual_inspection", "--labels", labels, "--column", "image=image",
                          "--target", "label", "--sensitive", "line", "--epsilon", "8",
                          "--epochs", "2", "--inline", "--json",
                          "--predictions-out", predictions, "--user", admin.username)

    assert code == 0, body.get("errors") or body["run"].get("error")
    run = body["run"]
    assert run["status"] == "succeeded", run["error"]
    assert run["task_type"] == "image_classification"
    assert set(run["metrics"]) == {"macro_f1", "accuracy"}
    assert set(run["baseline"]["metrics"]) == set(run["metrics"])
    assert 0 < run["privacy"]["epsilon"] <= 8 + 1e-6
    assert run["nonprivate_metrics"] is not None
    assert "line" in run["fairness"]
    warnings = body["dataset"]["warnings"]
    assert any("1 files in the ZIP are not images" in w["message"] for w in warnings)
    with predictions.open() as handle:
        table = list(csv.DictReader(handle))
    assert table
    assert {"row_id", "y_true", "y_pred", "line", *(f"prob_{c}" for c in CLASSES)} <= set(
        table[0])
    assert all(row["row_id"].startswith("images/") for row in table)
    stored = TrainingRun.objects.get(pk=run["id"])
    charts = stored.result["charts"]
    assert charts["confusion"]["labels"] == list(CLASSES)
    # The overlays are files of the run, encrypted at rest (training.pictures).
    overlay = charts["saliency"] and charts["saliency"][0]["overlay"]["picture"]
    assert overlay and is_encrypted(
        (Path(stored.artifact_path) / "pictures" / overlay).read_bytes())
    version = DatasetVersion.objects.get(pk=body["dataset"]["version_id"])
    raw = stored_file(version.stored_path).read_bytes()
    assert is_encrypted(raw) and b"PK\x03\x04" not in raw[:64]


def test_a_zip_with_path_traversal_is_refused_with_a_clear_message(tmp_path, admin):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ok/1.png", b"x")
        handle.writestr("../../etc/cron.d/evil.png", b"x")

    code, body = pipeline(archive, "--vertical", "manufacturing", "--problem",
                          "visual_inspection", "--no-privacy", "--inline", "--json",
                          "--user", admin.username)

    assert code == 1
    assert body["errors"][0]["code"] == "path_traversal"
    assert "outside the archive" in body["errors"][0]["message"]


def test_a_class_with_fewer_than_ten_images_is_refused(tmp_path, admin):
    frame = image_frame(12)
    archive = tmp_path / "few.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name, blob in zip(frame["file"], frame["__image_bytes__"], strict=True):
            handle.writestr(name, blob)
        for i in range(3):
            handle.writestr(f"dents/{i}.png", frame["__image_bytes__"].iloc[i])

    code, body = pipeline(archive, "--vertical", "manufacturing", "--problem",
                          "visual_inspection", "--no-privacy", "--inline", "--json",
                          "--user", admin.username)

    assert code == 1
    codes = {error["code"] for error in body["errors"]}
    assert {"class_too_small", "conflicting_duplicates"} <= codes
    message = next(e["message"] for e in body["errors"] if e["code"] == "class_too_small")
    assert "'dents' has 3 images" in message
