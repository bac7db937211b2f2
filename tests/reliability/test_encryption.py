"""Uploaded files at rest: outside the web root, never served by a URL, encrypted with
Fernet keys from the settings (MultiFernet: the first encrypts, every one decrypts),
rotated by ``manage.py rotate_keys``, and read back by one function that checks them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from ingestion.checks import check_encryption_keys
from ingestion.services import load_frame, upload_dataset
from ingestion.storage import (
    MAGIC,
    StoredFileError,
    derived_key,
    read_stored,
    stored_file,
    stored_paths,
)
from tests.conftest import ROOT, csv_upload, finance_frame
from training.models import TrainingRun
from training.services import execute_run, start_run

pytestmark = pytest.mark.django_db

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


def upload(user, data: bytes, name: str = "applications.csv"):
    return upload_dataset(user=user, vertical="finance", problem="credit_risk",
                          file=csv_upload(data, name), name=name)


def frames(blob: bytes) -> int:
    """How many encrypted chunks a stored file holds."""
    position, count = len(MAGIC), 0
    while position < len(blob):
        (length,) = struct.unpack_from(">I", blob, position)
        position += 4 + length
        count += 1
    return count


def test_stored_file_is_not_plaintext_and_reads_back(analyst, finance_csv):
    version = upload(analyst, finance_csv)

    on_disk = stored_file(version.stored_path).read_bytes()
    assert on_disk.startswith(MAGIC)
    for plain in (b"applicant_id", b"foreign_worker", finance_csv.splitlines()[1]):
        assert plain not in on_disk
    assert read_stored(version.stored_path) == finance_csv
    assert version.sha256 == hashlib.sha256(finance_csv).hexdigest()  # of the plaintext
    assert len(load_frame(version)) == 400


def test_large_files_are_encrypted_in_chunks(analyst):
    data = finance_frame(40_000).to_csv(index=False).encode()  # about 3.5 MB
    assert len(data) > 2 * 1024 * 1024
    version = upload(analyst, data)

    blob = stored_file(version.stored_path).read_bytes()
    assert frames(blob) == -(-len(data) // (1024 * 1024))
    assert read_stored(version.stored_path) == data


def test_rotation_with_an_old_key(analyst, finance_csv, settings):
    settings.TESSERA_FERNET_KEYS = [OLD]
    version = upload(analyst, finance_csv)
    legacy = stored_file(version.stored_path).parent / hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    legacy.write_bytes(b"x,y\n1,2\n")  # stored before encryption existed

    settings.TESSERA_FERNET_KEYS = [NEW, OLD]  # new key first, the old one still decrypts
    assert read_stored(version.stored_path) == finance_csv
    out = io.StringIO()
    call_command("rotate_keys", "--json", stdout=out)
    assert json.loads(out.getvalue())["rotated"] == 1
    assert json.loads(out.getvalue())["encrypted"] == 1

    settings.TESSERA_FERNET_KEYS = [NEW]  # the old key is gone: everything still reads
    assert read_stored(version.stored_path) == finance_csv
    assert read_stored(f"{legacy.parent.name}/{legacy.name}") == b"x,y\n1,2\n"
    assert legacy.read_bytes().startswith(MAGIC)
    settings.TESSERA_FERNET_KEYS = [OLD]
    with pytest.raises(StoredFileError):
        read_stored(version.stored_path)


def test_keys_may_be_one_comma_separated_string(analyst, finance_csv, settings):
    settings.TESSERA_FERNET_KEYS = f" {NEW} , {OLD} "
    version = upload(analyst, finance_csv)
    settings.TESSERA_FERNET_KEYS = [NEW]
    assert read_stored(version.stored_path) == finance_csv


def test_a_wrong_key_gives_a_clear_error(analyst, admin, finance_csv, settings):
    version = upload(analyst, finance_csv)
    settings.TESSERA_FERNET_KEYS = [OTHER]

    with pytest.raises(StoredFileError, match=r"cannot be decrypted with the configured keys "
                                              r"\(TESSERA_FERNET_KEYS\)"):
        read_stored(version.stored_path)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit):
        call_command("rotate_keys", stdout=out, stderr=err)
    assert "0 files re-encrypted" in out.getvalue() and "1 failed" in out.getvalue()
    assert "cannot be decrypted" in err.getvalue()
    # A run on it fails with that sentence, not a traceback.
    settings.TESSERA_FERNET_KEYS = []
    from ingestion.services import confirm_mapping
    from verticals.registry import get_problem

    version = confirm_mapping(version=version, user=analyst,
                              mapping=get_problem("finance", "credit_risk").sample_mapping)
    run = start_run(version=version, user=admin, privacy_enabled=False, config={"epochs": 1},
                    enqueue=False)
    settings.TESSERA_FERNET_KEYS = [OTHER]
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "cannot be decrypted with the configured keys" in run.error
    assert "Traceback" not in run.error


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "append"])
def test_altered_files_are_refused(analyst, damage):
    data = finance_frame(25_000).to_csv(index=False).encode()  # two chunks or more
    version = upload(analyst, data)
    path = stored_file(version.stored_path)
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[len(MAGIC) + 40] ^= 1
    elif damage == "truncate":
        blob = blob[: len(blob) - 100]
    elif damage == "swap":  # the two chunks in the other order, each intact
        (first,) = struct.unpack_from(">I", blob, len(MAGIC))
        head = blob[len(MAGIC): len(MAGIC) + 4 + first]
        blob = bytearray(MAGIC) + blob[len(MAGIC) + 4 + first:] + head
    else:
        blob += b"\x00\x00\x00\x01x"
    path.write_bytes(bytes(blob))

    with pytest.raises(StoredFileError):
        read_stored(version.stored_path)


def test_a_plaintext_file_replaced_under_its_name_is_refused(analyst, finance_csv):
    version = upload(analyst, finance_csv)
    stored_file(version.stored_path).write_bytes(b"a,b\n1,2\n")
    with pytest.raises(StoredFileError, match="no longer matches its sha256"):
        read_stored(version.stored_path)


def test_malformed_or_missing_keys_are_reported(settings, analyst, finance_csv):
    settings.TESSERA_FERNET_KEYS = [NEW, "not-a-key"]
    (error,) = check_encryption_keys()
    assert error.id == "ingestion.E001" and "key 2 is not a Fernet key" in error.msg
    with pytest.raises(ImproperlyConfigured):
        upload(analyst, finance_csv)

    settings.TESSERA_FERNET_KEYS = []
    assert check_encryption_keys() == []  # the demo and the tests derive one
    assert derived_key(settings.SECRET_KEY) == derived_key(settings.SECRET_KEY)
    settings.TESSERA_REQUIRE_FERNET_KEYS = True  # as production sets it
    (error,) = check_encryption_keys()
    assert "TESSERA_FERNET_KEYS is not set" in error.msg
    with pytest.raises(ImproperlyConfigured, match="rotate_keys --generate-key"):
        upload(analyst, finance_csv)


def test_production_settings_require_the_keys(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TESSERA_FERNET_KEYS"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.production", DJANGO_SECRET_KEY="x" * 50,
               DJANGO_ALLOWED_HOSTS="localhost", TESSERA_VAR_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)

    def check(**extra) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), "check"],
                              env={**env, **extra}, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    missing = check()
    assert missing.returncode != 0
    assert "ingestion.E001" in missing.stderr and "TESSERA_FERNET_KEYS is not set" in missing.stderr
    assert check(TESSERA_FERNET_KEYS=f"{NEW},{OLD}").returncode == 0


def test_rotate_keys_generates_a_key():
    out = io.StringIO()
    call_command("rotate_keys", "--generate-key", stdout=out)
    Fernet(out.getvalue().strip())  # a valid key


# --- never served -----------------------------------------------------------------------


def _patterns(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def test_uploads_live_outside_the_web_root_and_no_url_serves_them(analyst, admin, finance_csv):
    from django.views.static import serve

    version = upload(analyst, finance_csv)
    upload_dir = Path(django_settings.TESSERA_UPLOAD_DIR).resolve()
    served = [Path(django_settings.STATIC_ROOT), ROOT / "platform" / "static", ROOT / "templates",
              *map(Path, django_settings.STATICFILES_DIRS)]
    if getattr(django_settings, "MEDIA_ROOT", ""):
        served.append(Path(django_settings.MEDIA_ROOT))
    for folder in served:
        folder = folder.resolve()
        assert folder != upload_dir and folder not in upload_dir.parents
    assert not getattr(django_settings, "MEDIA_URL", "").strip("/")  # no media URL at all
    for route, callback in _patterns(get_resolver()):
        assert callback is not serve, f"{route} serves files from disk"

    relative = version.stored_path
    candidates = [f"/{prefix}{relative}" for prefix in
                  ("", "media/", "uploads/", "static/", "files/", "var/", "test-uploads/",
                   "datasets/", "static/../uploads/")]
    candidates += [f"/datasets/versions/{version.pk}/download/", f"/{version.sha256}"]
    for user in (None, analyst, admin):
        client = Client()
        if user is not None:
            client.force_login(user)
        for url in candidates:
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else \
                response.content
            assert response.status_code in (302, 404), (url, response.status_code)
            assert b"applicant_id" not in body and MAGIC not in body, url


def test_every_reader_goes_through_read_stored():
    """Only ingestion.storage opens the upload folder; the others call read_stored."""
    offenders = []
    for path in (ROOT / "platform").rglob("*.py"):
        if "settings" in path.parts or path.name == "storage.py" or "migrations" in path.parts:
            continue
        text = path.read_text()
        code = re.sub(r"#.*", "", text)
        if re.search(r"settings\.TESSERA_UPLOAD_DIR|stored_file\(", code):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert list(stored_paths()) == []  # and nothing is left behind in this test's folder
