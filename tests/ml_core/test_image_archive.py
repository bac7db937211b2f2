"""Reading uploaded image ZIPs: both layouts, and every kind of bad input refused or
reported with a clear reason (images generated here with Pillow)."""

from __future__ import annotations

import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from ml_core.families.image.archive import ArchiveError, read_image_archive
from ml_core.families.image.columns import IMAGE_BYTES_COLUMN
from verticals.manufacturing.demo_images import encoded, surface


def _zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _png(label: str = "spots", seed: int = 0) -> bytes:
    return encoded(surface(label, np.random.default_rng(seed)))


def test_folder_layout_labels_by_folder_under_a_common_top_folder() -> None:
    members = {f"defects/{label}/{i}.png": _png(label, i)
               for label in ("ok", "spots") for i in range(3)}
    members["defects/README.txt"] = b"notes"
    members["__MACOSX/defects/ok/._0.png"] = b"resource fork"
    result = read_image_archive(_zip(members))
    assert result.layout == "folders"
    assert sorted(result.frame["label"].unique()) == ["ok", "spots"]
    assert len(result.frame) == 6
    assert result.skipped_non_image == 2
    profile = result.profile()
    assert profile["classes"] == {"ok": 3, "spots": 3}
    assert profile["modes"] == {"L": 6}


def test_csv_layout_matches_paths_and_base_names_and_keeps_group_columns() -> None:
    members = {f"img/{i}.png": _png("spots" if i % 2 else "ok", i) for i in range(6)}
    labels = ("path,defect,line\n" + "\n".join(
        f"{'img/' if i < 3 else ''}{i}.png,{'spots' if i % 2 else 'ok'},L{i % 2}"
        for i in range(5)) + "\nmissing.png,ok,L1\n").encode()
    result = read_image_archive(_zip(members), labels=labels, image_column="path",
                                target="defect")
    assert result.layout == "csv"
    assert list(result.frame.columns) == ["path", "defect", "line", IMAGE_BYTES_COLUMN]
    assert list(result.frame["path"]) == [f"img/{i}.png" for i in range(5)]
    assert result.unlabelled == 1  # img/5.png is not in the CSV
    assert result.missing_files == ("missing.png",)
    assert result.profile()["groups"] == {"line": {"L0": 3, "L1": 2}}


def test_a_csv_inside_the_zip_is_the_labels() -> None:
    members = {f"{i}.png": _png(seed=i) for i in range(3)}
    members["labels.csv"] = b"file,label\n0.png,a\n1.png,b\n2.png,a\n"
    result = read_image_archive(_zip(members))
    assert list(result.frame["label"]) == ["a", "b", "a"]


@pytest.mark.parametrize("name", ["../evil.png", "ok/../../evil.png", "/etc/evil.png",
                                  "C:/evil.png", "ok\\..\\..\\evil.png"])
def test_path_traversal_refuses_the_archive(name: str) -> None:
    with pytest.raises(ArchiveError) as refused:
        read_image_archive(_zip({"ok/1.png": _png(), name: _png()}))
    assert refused.value.code == "path_traversal"


def test_symbolic_links_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok/1.png", _png())
        link = zipfile.ZipInfo("ok/2.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError) as refused:
        read_image_archive(buffer.getvalue())
    assert refused.value.code == "link_in_archive"


def test_a_zip_bomb_is_refused_before_it_is_expanded() -> None:
    bomb = _zip({"ok/1.png": _png(), "ok/bomb.png": b"\0" * (20 * 2**20)})
    with pytest.raises(ArchiveError) as refused:
        read_image_archive(bomb)
    assert refused.value.code == "zip_bomb"
    assert "ZIP bomb" in refused.value.message


def test_a_member_larger_than_its_header_declares_is_refused() -> None:
    data = bytearray(_zip({"ok/1.png": b"x" * 1000}, compression=zipfile.ZIP_STORED))
    # Shrink the declared size in the central directory (offset 24 of its entry) to 10.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    with pytest.raises((ArchiveError, zipfile.BadZipFile)):
        read_image_archive(bytes(data))


def test_not_a_zip_and_no_images_get_clear_messages() -> None:
    with pytest.raises(ArchiveError, match="not a ZIP"):
        read_image_archive(b"plain text")
    with pytest.raises(ArchiveError, match="no images"):
        read_image_archive(_zip({"notes.txt": b"hello"}))


def test_corrupt_truncated_and_bomb_images_are_left_out_and_listed() -> None:
    good = _png()
    bomb = io.BytesIO()
    Image.new("L", (8000, 6000)).save(bomb, format="PNG")  # 48 MP in a few kB
    members = {"ok/good.png": good, "ok/truncated.png": good[: len(good) // 2],
               "ok/garbage.jpg": b"\xff\xd8\xff" + b"\x00" * 100,
               "ok/bomb.png": bomb.getvalue()}
    result = read_image_archive(_zip(members))
    assert list(result.frame["file"]) == ["ok/good.png"]
    reasons = dict(result.unreadable)
    assert set(reasons) == {"ok/truncated.png", "ok/garbage.jpg", "ok/bomb.png"}
    assert "decompression bomb" in reasons["ok/bomb.png"]
    assert "truncated" in reasons["ok/truncated.png"] or "corrupt" in reasons["ok/truncated.png"]


def test_the_csv_image_column_is_found_when_not_named() -> None:
    members = {f"img/{i}.png": _png(seed=i) for i in range(3)}
    labels = b"label,picture,camera\na,img/0.png,C1\nb,1.png,C2\na,./img/2.png,C1\n"
    result = read_image_archive(_zip(members), labels=labels)
    assert result.path_column == "picture" and result.label_column == "label"
    assert list(result.frame["picture"]) == ["img/0.png", "img/1.png", "img/2.png"]
