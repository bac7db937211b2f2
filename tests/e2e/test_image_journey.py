"""A quality engineer's journey in a real browser: upload a small ZIP of inspection images
(generated here: three surface classes, a labels CSV with line and camera), see the image
profile with its contact sheet, start a private run, watch a real Celery worker train it,
open the report with its confusion matrix, most confident mistakes and Grad-CAM overlays.
Every picture loads from the app's authorised views; axe finds nothing serious."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_analyst_journey import RECORD_PROGRESS
from tests.support.image_zips import inspection_zip
from tests.support.worker import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.slow,
              pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 420_000
PER_CLASS = 12

ALL_LOADED = """(selector) => {
  const images = Array.from(document.querySelectorAll(selector));
  return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);
}"""


def test_quality_engineer_uploads_images_trains_and_reads_the_pictures(journey, analyst,
                                                                        tmp_path):
    from training.models import TrainingRun

    page = journey.page
    observed: list[dict] = []
    page.expose_function("recordProgress", lambda state: observed.append(
        {key: (value or "").strip() for key, value in state.items()}))
    page.add_init_script(RECORD_PROGRESS)
    found: dict[str, list[str]] = {}

    with celery_worker(log=tmp_path / "worker.log"):
        journey.sign_in("alice", "pw-alice")
        journey.goto("/datasets/upload/manufacturing/visual_inspection/")
        page.get_by_role("heading", name=re.compile("Upload data for Visual inspection")
                         ).wait_for()
        page.get_by_label("Name").fill("Surface inspection (browser test)")
        page.get_by_label("File", exact=True).set_input_files(files=[{
            "name": "surfaces.zip", "mimeType": "application/zip",
            "buffer": inspection_zip(PER_CLASS, seed=11,
                                     extra={"README.txt": b"line 3 images"})}])
        journey.shot("upload-zip")
        page.get_by_role("button", name="Upload").click()

        page.get_by_role("heading", name=re.compile("Map the columns")).wait_for()
        # Suggested from the problem's hints: the label, the image file, the group columns.
        assert page.get_by_label("file", exact=True).input_value() == "image"
        assert page.get_by_label("label", exact=True).input_value() == "target"
        journey.shot("mapping")
        page.get_by_role("button", name="Confirm mapping and validate").click()
        page.get_by_text("Mapping confirmed: the data is valid for training.").wait_for()

        # The profile: counts per class and group, skipped files, the contact sheet.
        profile = page.locator("section.image-profile")
        profile.get_by_role("heading", name="Contact sheet").wait_for()
        text = profile.inner_text()
        assert f"{3 * PER_CLASS} images read from the ZIP" in text
        assert "README.txt" in text and "not an image file" in text
        assert profile.locator("table", has_text="Images per line").is_visible()
        page.wait_for_function(ALL_LOADED, arg="section.image-profile img")
        assert profile.locator("img").count() == 3 * 4
        journey.shot("dataset-image-profile")
        if problems := journey.accessibility_violations():
            found["dataset page"] = problems

        training = page.locator("section.card", has=page.get_by_role("heading",
                                                                      name="Train a model"))
        training.get_by_label("Train with differential privacy").check()
        training.get_by_label("Target epsilon").fill("8")
        training.get_by_label("Epochs").fill("5")
        training.get_by_role("button", name="Start training").click()

        page.wait_for_url(re.compile(r"/runs/\d+/$"))
        run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
        journey.shot("run-queued")
        page.get_by_role("heading", name="Metrics on the held-out test split").wait_for(
            timeout=RUN_TIMEOUT_MS)

        run = TrainingRun.objects.get(pk=run_id)
        assert run.status == TrainingRun.Status.SUCCEEDED, run.error
        assert 0 < run.privacy["epsilon"] <= 8 + 1e-6
        print("progress seen by the page:", [(s["status"], s["stage"]) for s in observed])
        assert any(s["status"] == "Running" for s in observed), observed

        # The report: confusion matrices, per-class bars, mistakes and saliency pictures.
        results = page.locator("section.task-results")
        results.get_by_text("Confusion matrix of this model on the test split").wait_for()
        results.get_by_role("heading", name="Most confident mistakes on the test split"
                            ).wait_for()
        saliency = results.locator("section.picture-gallery",
                                   has=page.get_by_role("heading", name=re.compile("Grad-CAM")))
        assert saliency.locator("img").count() == len(run.result["charts"]["saliency"]) >= 1
        # Each picture is named by its image's path in the ZIP (the mapping's image role).
        assert re.search(r"(ok|scratches|spots)/\w+\.png", saliency.inner_text())
        page.wait_for_function(ALL_LOADED, arg="section.picture-gallery img")
        journey.shot("run-report-pictures")
        if problems := journey.accessibility_violations():
            found["run report"] = problems

    assert not found, found
    journey.assert_clean()
