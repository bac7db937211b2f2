"""One parse and one decryption per ingest: the confirm step reuses what the upload read,
yet every caller gets its own frame and a changed file is never answered from memory."""

from __future__ import annotations

import pytest

from ingestion import services, storage
from ingestion.services import read_upload_table, upload_dataset
from ingestion.storage import read_stored, stored_file
from tests.conftest import csv_upload

pytestmark = pytest.mark.django_db


def test_the_second_read_reuses_the_parse_and_gives_its_own_frame(analyst, finance_csv,
                                                                   monkeypatch):
    version = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                             file=csv_upload(finance_csv))
    options = version.read_options
    calls = []
    monkeypatch.setattr("ml_core.tables.reading._read_rows", lambda *a, **k: calls.append(a))
    first, _ = read_upload_table(read_stored(version.stored_path), sep=options["delimiter"],
                                 header=options["header"], encoding=options["encoding"])
    assert calls == []  # the upload's parse, under the options it found
    first.iloc[0, 0] = "changed"
    first["extra"] = 1
    second, _ = read_upload_table(read_stored(version.stored_path), sep=options["delimiter"],
                                  header=options["header"], encoding=options["encoding"])
    assert "extra" not in second.columns and second.iloc[0, 0] != "changed"


def test_other_bytes_are_parsed_again(analyst, finance_csv):
    frame, _ = read_upload_table(finance_csv)
    fewer, _ = read_upload_table(b"\n".join(finance_csv.split(b"\n")[:11]))
    assert len(fewer) == 10 < len(frame)


def test_a_remembered_upload_altered_on_disk_is_refused(analyst, finance_csv):
    version = upload_dataset(user=analyst, vertical="finance", problem="credit_risk",
                             file=csv_upload(finance_csv))
    assert storage._LAST_PLAIN  # the upload's plaintext is remembered
    path = stored_file(version.stored_path)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(storage.StoredFileError):
        read_stored(version.stored_path)
    services._LAST_READ.clear()


def test_no_decrypted_upload_outlives_its_request_or_task(client, analyst, finance_csv):
    """The web upload parses and decrypts its file within its own request; once the
    request ends, neither the plaintext nor the parse is left in the process, and the same
    holds when a Celery task ends."""
    from celery import signals

    client.force_login(analyst)
    response = client.post("/datasets/upload/finance/credit_risk/",
                           {"file": csv_upload(finance_csv), "name": "applications"})
    assert response.status_code == 302
    assert not services._LAST_READ and not storage._LAST_PLAIN

    read_upload_table(finance_csv)
    assert services._LAST_READ
    signals.task_postrun.send(sender=None, task_id="t", task=None, args=(), kwargs={},
                              retval=None, state="SUCCESS")
    assert not services._LAST_READ
