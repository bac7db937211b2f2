"""Load against the limits (issue 16): 5 analysts, each with their own token, submit
out-of-range and over-budget configurations (refused with 400 naming the option or the
figure) and maximal-but-allowed ones (accepted and trained to the end), while 5 normal runs
train on a real Celery worker. No answer >= 500, the worker is never killed (every run ends
on its first attempt), and the normal runs succeed.

The work budget is lowered for the test (the web process checks it) so that "maximal but
allowed" stays small here; the shape is the deployment's.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.reliability.conftest import finance_bytes
from tests.reliability.test_load import Traffic
from tests.support.worker import celery_worker
from training.models import TrainingRun
from verticals.registry import get_problem

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ANALYSTS = 5
ROWS = 300  # 195 training rows with the default splits
STEP_BUDGET = 1000
NORMAL = {"epochs": 1, "batch_size": 64, "hidden_sizes": [8]}
# The largest work the budget allows: every epoch of the largest batch (one step an epoch,
# for the model and its twin: 1,000 steps), or batch 1 for two epochs (780 steps).
MAXIMAL = [{"epochs": 500, "batch_size": 8192, "hidden_sizes": [8]},
           {"epochs": 2, "batch_size": 1, "hidden_sizes": [8]}]
OUT_OF_RANGE = [
    ({"epochs": 100000}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -5}, "batch_size"), ({"test_fraction": 1.5}, "test_fraction"),
    ({"learning_rate": "nan"}, "learning_rate"), ({"hidden_sizes": [0]}, "hidden_sizes"),
    ({"epochs": -1}, "epochs"), ({"class_weighting": "perhaps"}, "class_weighting"),
]
OVER_BUDGET = [({"epochs": 3, "batch_size": 1}, "TESSERA_MAX_RUN_STEPS"),
               ({"epochs": 1, "hidden_sizes": [2048] * 8}, "TESSERA_MAX_RUN_MEMORY_MB")]
TIMEOUT_S = 60
WAIT_S = 900


def test_analysts_at_and_over_the_limits_while_runs_train(live_server, make_member, org_a,
                                                          settings, tmp_path):
    from rest_framework.authtoken.models import Token

    settings.TESSERA_MAX_RUN_STEPS = STEP_BUDGET
    settings.TESSERA_MAX_RUN_MEMORY_MB = 1024
    users = [make_member(org_a, "analyst", f"limits-{i}") for i in range(ANALYSTS)]
    tokens = [Token.objects.create(user=user).key for user in users]
    traffic = Traffic()
    api = f"{live_server.url}/api/v1"
    mapping = get_problem("finance", "credit_risk").sample_mapping.to_dict()

    def session(index: int) -> requests.Session:
        client = requests.Session()
        client.headers["Authorization"] = f"Token {tokens[index]}"
        return client

    def upload(index: int) -> int:
        with session(index) as client:
            created = traffic.record(client.post(
                f"{api}/datasets/", timeout=TIMEOUT_S,
                data={"vertical": "finance", "problem": "credit_risk", "name": f"lim {index}"},
                files={"file": (f"a-{index}.csv", finance_bytes(ROWS, seed=index), "text/csv")}))
            assert created.status_code == 201, created.text[:500]
            confirmed = traffic.record(client.post(
                f"{api}/dataset-versions/{created.json()['id']}/mapping/", json=mapping,
                timeout=TIMEOUT_S))
            assert confirmed.status_code == 200, confirmed.text[:500]
            return confirmed.json()["id"]

    def submit(client, version: int, config: dict) -> requests.Response:
        return traffic.record(client.post(
            f"{api}/runs/", timeout=TIMEOUT_S,
            json={"dataset_version": version, "config": config,
                  "privacy": {"enabled": True, "target_epsilon": 2.0}}))

    def analyst(index: int, version: int) -> dict:
        """One normal run, every refused configuration, one maximal run."""
        with session(index) as client:
            normal = submit(client, version, NORMAL)
            assert normal.status_code == 201, normal.text[:500]
            refused = []
            for config, named in [*OUT_OF_RANGE, *OVER_BUDGET]:
                answer = submit(client, version, config)
                assert answer.status_code == 400, (config, answer.status_code, answer.text)
                assert named in answer.json()["detail"], (config, answer.json())
                refused.append(named)
            maximal = submit(client, version, MAXIMAL[index % len(MAXIMAL)])
            assert maximal.status_code == 201, maximal.text[:500]
        return {"normal": normal.json()["id"], "maximal": maximal.json()["id"],
                "refused": len(refused)}

    def wait(run_id: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if TrainingRun.objects.get(pk=run_id).status in TrainingRun.TERMINAL:
                return
            time.sleep(1)
        pytest.fail(f"run {run_id} did not end within {WAIT_S} s")

    log = tmp_path / "worker.log"
    with celery_worker(log=log) as worker:
        with ThreadPoolExecutor(max_workers=ANALYSTS) as pool:
            versions = list(pool.map(upload, range(ANALYSTS)))
        with ThreadPoolExecutor(max_workers=ANALYSTS) as pool:
            results = list(pool.map(analyst, range(ANALYSTS), versions))
        for result in results:
            wait(result["normal"])
            wait(result["maximal"])
        assert worker.poll() is None, "the worker died"

    text = log.read_text(errors="replace")
    runs = {run.pk: run for run in TrainingRun.objects.all()}
    print(f"limits: {sum(traffic.codes.values())} requests {dict(sorted(traffic.codes.items()))}; "
          f"runs {Counter(run.status for run in runs.values())}")
    assert traffic.server_errors == []
    assert sum(result["refused"] for result in results) == ANALYSTS * (
        len(OUT_OF_RANGE) + len(OVER_BUDGET))
    assert len(runs) == 2 * ANALYSTS  # nothing refused was created
    assert all(run.attempt == 1 for run in runs.values()), "a run was taken over: worker lost"
    assert "WorkerLostError" not in text and "SIGKILL" not in text
    assert [runs[r["normal"]].status for r in results] == ["succeeded"] * ANALYSTS
    for result in results:
        maximal = runs[result["maximal"]]
        assert maximal.status == "succeeded", maximal.error
        assert maximal.privacy["planned_steps"] <= STEP_BUDGET
