"""The profile of an uploaded ZIP of images on the dataset page: counts per class and per
group, sizes and modes, duplicates (and copies under another label), skipped files with
their reasons, and a contact sheet of a few thumbnails per class, kept encrypted and served
to the organisation only, never cached."""

from __future__ import annotations

import re
import zipfile
from io import BytesIO

import pytest

from ingestion.contact_sheets import SAMPLES_PER_CLASS, sheet_dir
from ingestion.storage import is_encrypted
from tests.conftest import SHARED_DATA
from tests.support.image_zips import inspection_zip, uploaded_version

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n"


def member(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(BytesIO(archive)) as handle:
        return handle.read(name)


def test_folders_zip_profile_counts_duplicates_and_skips(analyst, client):
    plain = inspection_zip(12, seed=5, labels_csv=False)
    ok_0, ok_1 = member(plain, "ok/ok_0.png"), member(plain, "ok/ok_1.png")
    data = inspection_zip(12, seed=5, labels_csv=False, extra={
        "notes.txt": b"shift notes",
        "ok/broken.png": PNG + b"truncated",
        "spots/copy_of_ok_0.png": ok_0,  # the same picture under another class
        "ok/again.png": ok_1,  # a copy under the same class
    })
    version = uploaded_version(analyst, data, confirm=False)
    archive = version.read_options["archive"]
    assert archive["classes"] == {"ok": 13, "scratches": 12, "spots": 13}
    assert archive["duplicates"]["copies"] == 2
    assert archive["duplicates"]["conflicting"] == 2
    assert sorted(map(sorted, archive["duplicates"]["examples"])) == [
        ["ok/again.png", "ok/ok_1.png"], ["ok/ok_0.png", "spots/copy_of_ok_0.png"]]
    assert archive["modes"] == {"L": 38}
    assert archive["sizes"] == {"min_width": 64, "max_width": 64, "min_height": 64,
                                "max_height": 64}

    client.force_login(analyst)
    page = client.get(f"/datasets/versions/{version.pk}/").content.decode()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "38 images read from the ZIP (one folder per class)" in text
    assert "Images per class Class Images ok 13 spots 13 scratches 12" in text
    assert "Copies under another label (conflicting) 2" in text
    assert "notes.txt not an image file" in text
    assert "ok/broken.png corrupt or truncated image" in text
    assert "ok/again.png, ok/ok_1.png" in text or "ok/ok_1.png, ok/again.png" in text

    # The contact sheet: the first images of each class, by path.
    samples = re.findall(rf'src="(/datasets/versions/{version.pk}/samples/[^"]+)" '
                         r'alt="([^"]+)"', page)
    assert len(samples) == 3 * SAMPLES_PER_CLASS
    assert [alt for _, alt in samples[:2]] == ["ok: ok/again.png", "ok: ok/ok_0.png"]
    response = client.get(samples[0][0])
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "no-store" and response.content.startswith(PNG)
    stored = sorted(sheet_dir(version).iterdir())
    assert len(stored) == 3 * SAMPLES_PER_CLASS + 1  # and the index
    assert all(is_encrypted(path.read_bytes()) for path in stored)
    assert client.get(f"/datasets/versions/{version.pk}/samples/9-9.png").status_code == 404
    assert client.get(f"/datasets/versions/{version.pk}/samples/index.json").status_code == 404


def test_groups_from_the_labels_csv_and_the_sheet_only_for_the_organisation(
        analyst, reviewer, other_analyst, client):
    version = uploaded_version(analyst, inspection_zip(12, seed=6))
    assert version.status == "validated", version.errors
    archive = version.read_options["archive"]
    assert archive["groups"]["line"] == {"L1": 18, "L2": 18}
    assert archive["groups"]["camera"] == {"C1": 12, "C2": 12, "C3": 12}
    assert archive["duplicates"] == {"copies": 0, "conflicting": 0, "examples": []}

    client.force_login(analyst)
    page = client.get(f"/datasets/versions/{version.pk}/").content.decode()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "(labels from a CSV)" in text
    assert "Images per line line Images L1 18 L2 18" in text
    sample = f"/datasets/versions/{version.pk}/samples/0-0.png"
    assert f'src="{sample}"' in page

    client.force_login(reviewer)
    assert client.get(sample).status_code == 200
    client.force_login(other_analyst)
    assert client.get(sample).status_code == 404
    assert client.get(f"/datasets/versions/{version.pk}/").status_code == 404
    client.logout()
    assert client.get(sample).status_code == 302


def test_a_table_upload_has_no_image_profile(validated_version, client, analyst):
    client.force_login(analyst)
    page = client.get(f"/datasets/versions/{validated_version.pk}/").content.decode()
    assert "Contact sheet" not in page and "image-profile-heading" not in page


def test_a_mapping_that_lists_only_the_visible_columns_validates(analyst):
    """The mapping page and API clients name only the columns a person sees: the image
    bytes stay excluded as suggested (else the table checks read bytes as text)."""
    from ingestion.services import confirm_mapping
    from ml_core.spec import ColumnMapping

    version = uploaded_version(analyst, inspection_zip(12, seed=7), confirm=False)
    version = confirm_mapping(version=version, user=analyst, mapping=ColumnMapping(
        target="label", sensitive=("line",), exclude=("camera",), roles=(("image", "file"),)))
    assert version.status == "validated", version.errors
    assert "__image_bytes__" in version.mapping["exclude"]


def test_the_mapping_page_offers_and_suggests_the_image_role(analyst, client):
    version = uploaded_version(analyst, inspection_zip(12, seed=8), confirm=False)
    client.force_login(analyst)
    page = client.get(f"/datasets/versions/{version.pk}/mapping/").content.decode()
    assert page.count('<option value="image" selected>') == 1
    assert "__image_bytes__" not in page


NEU = SHARED_DATA / "images" / "neu_surface"


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.skipif(not NEU.is_dir(), reason="the NEU surface set is not in ../shared/data")
def test_the_neu_set_profile_finds_its_known_copy():
    """The data README says two `patches` files of NEU are byte-identical: the profile
    finds exactly that pair, and no copy across classes."""
    from ml_core.families.image.archive import read_image_archive

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for path in sorted(NEU.rglob("*.jpg")):
            handle.write(path, path.relative_to(NEU.parent).as_posix())
    profile = read_image_archive(buffer.getvalue()).profile()
    assert profile["images"] == 1800 and set(profile["classes"].values()) == {300}
    duplicates = profile["duplicates"]
    assert duplicates["copies"] == 1 and duplicates["conflicting"] == 0
    (pair,) = duplicates["examples"]
    assert all(name.startswith("neu_surface/patches/") for name in pair)
