"""Load: 20 concurrent uploads and 10 concurrent training runs from 10 users, each with
its own HTTP session, against a live server and a real Celery worker. Every run ends,
no request gets a server error, and every stored dataset is byte for byte what was sent.

On the embedded defaults this is SQLite under concurrent writers (web threads and the
worker): the busy timeout and IMMEDIATE transactions must serialise them without
"database is locked".
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ingestion.models import DatasetVersion
from ingestion.storage import read_stored
from tests.reliability.conftest import finance_bytes
from tests.support.worker import celery_worker
from training.models import TrainingRun
from verticals.registry import get_problem

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

USERS = 10
UPLOADS_PER_USER = 2
ROWS = 300  # one size for all: the noise search is then done once per worker
TINY = {"epochs": 1, "batch_size": 64, "hidden_sizes": [8]}
TIMEOUT_S = 60
WAIT_S = 600


def stored_bytes(version: DatasetVersion) -> bytes:
    """The bytes ingestion stored for ``version`` (decrypted, where storage encrypts)."""
    return read_stored(version.stored_path)


class Traffic:
    """Every HTTP answer of the test, by status code, thread-safe."""

    def __init__(self) -> None:
        self.codes: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self._lock = threading.Lock()

    def record(self, response: requests.Response) -> requests.Response:
        with self._lock:
            self.codes[response.status_code] += 1
            if response.status_code >= 500:
                self.server_errors.append(f"{response.request.method} {response.url}: "
                                          f"{response.status_code} {response.text[:300]}")
        return response


def test_concurrent_uploads_and_runs_from_many_users(live_server, make_member, org_a, org_b,
                                                     tmp_path):
    from rest_framework.authtoken.models import Token

    users = [make_member(org_a if i % 2 else org_b, "analyst", f"load-{i}")
             for i in range(USERS)]
    tokens = [Token.objects.create(user=user).key for user in users]
    traffic = Traffic()
    api = f"{live_server.url}/api/v1"
    mapping = get_problem("finance", "credit_risk").sample_mapping.to_dict()

    def session(user_index: int) -> requests.Session:
        client = requests.Session()
        client.headers["Authorization"] = f"Token {tokens[user_index]}"
        return client

    def upload(job: int) -> dict:
        user_index = job % USERS
        data = finance_bytes(ROWS, seed=job)
        with session(user_index) as client:
            created = traffic.record(client.post(
                f"{api}/datasets/", timeout=TIMEOUT_S,
                data={"vertical": "finance", "problem": "credit_risk", "name": f"load {job}"},
                files={"file": (f"applications-{job}.csv", data, "text/csv")}))
            assert created.status_code == 201, created.text[:500]
            confirmed = traffic.record(client.post(
                f"{api}/dataset-versions/{created.json()['id']}/mapping/", json=mapping,
                timeout=TIMEOUT_S))
            assert confirmed.status_code == 200, confirmed.text[:500]
        return {"user": user_index, "sent_sha256": hashlib.sha256(data).hexdigest(),
                **confirmed.json()}

    def train(user_index: int, version_id: int) -> dict:
        with session(user_index) as client:
            created = traffic.record(client.post(
                f"{api}/runs/", json={"dataset_version": version_id, "config": TINY,
                                      "privacy": {"enabled": True, "target_epsilon": 2.0}},
                timeout=TIMEOUT_S))
            assert created.status_code == 201, created.text[:500]
            url = f"{api}/runs/{created.json()['id']}/"
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                run = traffic.record(client.get(url, timeout=TIMEOUT_S)).json()
                if run["status"] in TrainingRun.TERMINAL:
                    return run
                time.sleep(0.5)
        pytest.fail(f"run {url} did not end within {WAIT_S} s")

    log = tmp_path / "worker.log"
    with celery_worker(log=log):
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=USERS * UPLOADS_PER_USER) as pool:
            uploads = list(pool.map(upload, range(USERS * UPLOADS_PER_USER)))
        uploaded = time.monotonic()
        first_of_each_user = {item["user"]: item["id"] for item in reversed(uploads)}
        with ThreadPoolExecutor(max_workers=USERS) as pool:
            runs = list(pool.map(train, *zip(*sorted(first_of_each_user.items()), strict=True)))
        finished = time.monotonic()

    print(f"load: {len(uploads)} uploads in {uploaded - started:.1f} s, {len(runs)} runs in "
          f"{finished - uploaded:.1f} s, {sum(traffic.codes.values())} requests "
          f"{dict(sorted(traffic.codes.items()))}")
    assert traffic.server_errors == []
    assert "database is locked" not in log.read_text()
    assert len(runs) == USERS
    assert Counter(run["status"] for run in runs) == {"succeeded": USERS}, runs
    assert len(uploads) == USERS * UPLOADS_PER_USER
    for item in uploads:
        version = DatasetVersion.objects.get(pk=item["id"])
        assert version.status == DatasetVersion.Status.VALIDATED
        assert item["sha256"] == version.sha256 == item["sent_sha256"]
        assert hashlib.sha256(stored_bytes(version)).hexdigest() == item["sent_sha256"]
