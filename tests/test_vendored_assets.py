"""The committed browser assets (platform/static/vendor/) are exactly what package-lock.json
pins: MANIFEST.json names each package's locked version and integrity hash, each committed
file's sha256 matches it, and every package's licence is committed beside them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "platform" / "static" / "vendor"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


MANIFEST = _json(VENDOR / "MANIFEST.json")
LOCK = _json(ROOT / "package-lock.json")["packages"]
PACKAGE = _json(ROOT / "package.json")


def test_the_vendor_folder_is_committed_not_a_link():
    assert VENDOR.is_dir() and not VENDOR.is_symlink()


def test_manifest_matches_the_lock_and_package_json():
    assert set(MANIFEST["files"]) == set(PACKAGE["tessera"]["vendor"])
    assert set(MANIFEST["packages"]) == set(PACKAGE["tessera"]["licences"])
    for name, package in MANIFEST["packages"].items():
        locked = LOCK[f"node_modules/{name}"]
        assert package["version"] == locked["version"], name
        assert package["integrity"] == locked["integrity"], name
        assert name in PACKAGE["dependencies"] or name in PACKAGE.get("devDependencies", {})


@pytest.mark.parametrize("name", sorted(MANIFEST["files"]))
def test_each_committed_file_is_the_locked_one(name):
    entry = MANIFEST["files"][name]
    assert entry["package"] in MANIFEST["packages"]
    assert _sha256(VENDOR / name) == entry["sha256"]
    # Where node_modules holds the locked version, the committed file is its copy.
    installed = ROOT / "node_modules" / entry["source"]
    package_json = ROOT / "node_modules" / entry["package"] / "package.json"
    if installed.is_file() and package_json.is_file() and _json(package_json)["version"] == \
            MANIFEST["packages"][entry["package"]]["version"]:
        assert _sha256(installed) == entry["sha256"]


@pytest.mark.parametrize("name", sorted(MANIFEST["packages"]))
def test_each_package_licence_is_committed(name):
    package = MANIFEST["packages"][name]
    licence = VENDOR / package["licence_file"]
    assert licence.is_file() and _sha256(licence) == package["licence_sha256"]
    assert package["license"] == LOCK[f"node_modules/{name}"]["license"]
