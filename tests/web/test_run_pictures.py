"""The report of an image run draws its pictures: the most confident mistakes as thumbnails
and Grad-CAM overlays. They show data, so they are files in the run's artifact folder,
encrypted at rest, out of the database and the API's result, served by one view to the
run's organisation only, never cached; the page renders them by the declared chart kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingestion.storage import is_encrypted
from tests.support.image_zips import inspection_zip, uploaded_version
from training.pictures import PICTURES_DIR, picture_names, store_pictures

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def image_run(analyst):
    from training.services import execute_run, start_run

    version = uploaded_version(analyst, inspection_zip(12, seed=4))
    assert version.status == "validated", version.errors
    started = start_run(version=version, user=analyst, privacy_enabled=False,
                        config={"epochs": 3, "batch_size": 16})
    execute_run(started.pk)
    started.refresh_from_db()
    assert started.status == "succeeded", started.error
    return started


@pytest.mark.slow
def test_pictures_are_encrypted_files_served_only_to_the_organisation(
        image_run, client, analyst, reviewer, other_analyst, api_client):
    run = image_run
    charts = run.result["charts"]
    assert charts["kind"] == "confusion_with_images"
    names = list(picture_names(charts))
    overlays = [n for n in names if n.startswith("saliency-")]
    assert overlays and len(overlays) == len(charts["saliency"])
    # Nothing of the images stays in the database or the API's answer.
    assert "data:image" not in json.dumps(run.result)
    assert "data:image" not in json.dumps(api_client(analyst).get(
        f"/api/v1/runs/{run.pk}/").json())
    for name in names:
        raw = (Path(run.artifact_path) / PICTURES_DIR / name).read_bytes()
        assert is_encrypted(raw) and PNG not in raw

    client.force_login(analyst)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Where the model looked (Grad-CAM)" in page
    assert "Most confident mistakes on the test split" in page
    assert "Precision and recall per class" in page
    for name in overlays:
        assert f'src="/runs/{run.pk}/pictures/{name}"' in page
    picture = client.get(f"/runs/{run.pk}/pictures/{overlays[0]}")
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    assert picture["Cache-Control"] == "no-store"
    assert picture.content.startswith(PNG)

    client.force_login(reviewer)
    assert client.get(f"/runs/{run.pk}/pictures/{overlays[0]}").status_code == 200
    client.force_login(other_analyst)
    assert client.get(f"/runs/{run.pk}/pictures/{overlays[0]}").status_code == 404
    client.logout()
    assert client.get(f"/runs/{run.pk}/pictures/{overlays[0]}").status_code == 302

    # Only the pictures the result names: no other file of the folder, no path tricks.
    client.force_login(analyst)
    for name in ("predictions.csv", "saliency-9-overlay.png", "..%2Fpredictions.csv",
                 "metadata.json"):
        assert client.get(f"/runs/{run.pk}/pictures/{name}").status_code == 404


def test_only_png_data_urls_become_files(tmp_path):
    import base64

    png = PNG + b"rest"
    charts = {"kind": "k", "gallery": [
        {"image": "a.png", "thumbnail": "data:image/png;base64," + base64.b64encode(
            png).decode()},
        {"image": "b.png", "thumbnail": "data:image/png;base64," + base64.b64encode(
            b"<svg/>").decode()},
        {"image": "c.png", "thumbnail": "data:image/png;base64,!!"}],
        "title": "data:text/plain,hello"}

    stored = store_pictures(charts, tmp_path)

    assert stored["gallery"][0]["thumbnail"] == {"picture": "gallery-0-thumbnail.png"}
    assert stored["gallery"][1]["thumbnail"] is None
    assert stored["gallery"][2]["thumbnail"] is None
    assert stored["title"] == "data:text/plain,hello"
    assert list(picture_names(stored)) == ["gallery-0-thumbnail.png"]
    assert [p.name for p in (tmp_path / PICTURES_DIR).iterdir()] == ["gallery-0-thumbnail.png"]
