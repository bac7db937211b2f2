"""The set-up scripts: Makefile, CI script, Docker files, .env.example and the demo set-up."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from io import StringIO
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPT = ROOT / ".ci" / "run"
COMPOSE_FILE = ROOT / "docker" / "compose.yml"


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    # Under `make test`, MAKEFLAGS carries the outer command line (PYTEST_ARGS included)
    # into every nested make: drop it, or a nested `make test` would rerun the whole suite.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.pop("PYTEST_ARGS", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )


# --- Makefile -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [("demo", ["migrate", "collectstatic", "demo_setup", "scripts/run_demo.py"]),
     ("test", ["-m pytest"])],
)
def test_make_targets_exist(target, expected):
    result = make("-n", target)
    assert result.returncode == 0, result.stderr
    for fragment in expected:
        assert fragment in result.stdout


def test_make_installs_torch_first_and_never_a_bare_torch():
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_SPEC ?= torch==" in makefile
    install_recipe = makefile[makefile.index("$(STAMP):"):]
    assert install_recipe.index("install_torch.sh") < install_recipe.index("pyproject_requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_requirements = [r for r in project["dependencies"] if re.match(r"torch\b", r)]
    assert torch_requirements and all("<" in r for r in torch_requirements), torch_requirements


def _fake_tool(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def test_make_picks_the_cuda_build_where_nvidia_smi_answers(tmp_path):
    _fake_tool(tmp_path / "nvidia-smi", "exit 0")
    env_path = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
    result = make("-n", "install", path=env_path)
    assert result.returncode == 0, result.stderr
    assert "TORCH_INDEX_URL='https://download.pytorch.org/whl/cu128'" in result.stdout
    result = make("-n", "install", "TORCH_INDEX_URL=https://example/whl/cu126", path=env_path)
    assert "TORCH_INDEX_URL='https://example/whl/cu126'" in result.stdout


@pytest.mark.parametrize("installed", ["cpu", "cuda"])
def test_install_torch_replaces_a_cpu_build_when_asked_for_cuda(tmp_path, installed):
    calls = tmp_path / "calls.log"
    # A stand-in python: "-c" answers whether torch is a CPU build; pip calls are recorded.
    cpu_build = "0" if installed == "cpu" else "1"
    _fake_tool(tmp_path / "python", f"""
if [[ "$1" == -c ]]; then exit {cpu_build}; fi
echo "$* FIND_LINKS=${{PIP_FIND_LINKS-unset}}" >> {calls}""")
    env = {**os.environ, "TORCH_SPEC": "torch==2.13.0",
           "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu128"}
    subprocess.run([str(ROOT / "scripts" / "install_torch.sh"), str(tmp_path / "python")],
                   env=env, check=True, capture_output=True, text=True)
    lines = calls.read_text().splitlines()
    install = ("-m pip install --quiet torch==2.13.0 --index-url "
               "https://download.pytorch.org/whl/cu128 FIND_LINKS=")
    if installed == "cpu":
        assert lines[0].startswith("-m pip uninstall --quiet --yes torch ")
        assert lines[1:] == [install]
    else:
        assert lines == [install]


def test_pyproject_requirements_lists_dependencies_and_extras():
    result = subprocess.run(
        [sys.executable, "scripts/pyproject_requirements.py", "--extra", "dev"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    names = {re.split(r"[<>=\[ ]", line)[0].lower() for line in result.stdout.splitlines()}
    assert {"django", "celery", "torch", "pytest", "pytest-django", "pyyaml"} <= names


def test_make_test_fails_when_pytest_collects_nothing():
    if make("-q", "install").returncode != 0:
        pytest.skip("the virtual environment is not installed by `make install`")
    result = make("test", f"PYTEST_ARGS={__file__} -k no_test_has_this_name -p no:cacheprovider")
    assert result.returncode != 0
    assert "no tests" in result.stdout + result.stderr


# --- .ci/run ------------------------------------------------------------------------


def _fake_ci_checkout(tmp_path: Path, *, make_exit: int) -> tuple[Path, Path, dict[str, str]]:
    """A copy of .ci/run with stand-ins for make and the service clients on PATH."""
    (tmp_path / ".ci").mkdir()
    shutil.copy2(CI_SCRIPT, tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    scripts = {
        # Only the suite's exit code is faked; set-up targets (make chromium) succeed.
        "make": f'[ "$1" = test ] || exit 0\n'
                f'echo "make $* DATABASE_URL=${{DATABASE_URL:-}} '
                f'CELERY_BROKER_URL=${{CELERY_BROKER_URL:-}}" >> {calls}\nexit {make_exit}',
        "pg_isready": "exit 0",
        "psql": "exit 0",
        "redis-cli": "echo PONG",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "DATABASE_URL": "sqlite:///must-be-unset", "CELERY_BROKER_URL": "memory://"}
    return tmp_path / ".ci" / "run", calls, env


def test_ci_script_is_executable_and_strict():
    assert CI_SCRIPT.stat().st_mode & stat.S_IXUSR
    text = CI_SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text


def test_ci_runs_embedded_then_postgres_and_redis(tmp_path):
    script, calls, env = _fake_ci_checkout(tmp_path, make_exit=0)
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    first, second = calls.read_text().splitlines()
    assert first == "make test DATABASE_URL= CELERY_BROKER_URL="
    assert "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test" in second
    assert "CELERY_BROKER_URL=redis://127.0.0.1:6379/5" in second
    assert "1/2" in result.stdout and "2/2" in result.stdout


@pytest.mark.parametrize("make_exit", [5, 2])
def test_ci_fails_when_the_suite_fails_or_collects_nothing(tmp_path, make_exit):
    script, calls, env = _fake_ci_checkout(tmp_path, make_exit=make_exit)
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert len(calls.read_text().splitlines()) == 1  # the PostgreSQL pass never starts
    if make_exit == 5:
        assert "collected no tests" in result.stderr


# --- Docker -------------------------------------------------------------------------


def test_compose_declares_the_services():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    expected = {"web", "worker-cpu", "worker-gpu", "beat", "postgres", "redis", "flower"}
    assert expected <= set(services)
    for name in ("web", "worker-cpu", "worker-gpu", "postgres", "redis", "flower"):
        assert "healthcheck" in services[name], name
    assert services["web"]["command"] == ["web"]
    assert services["beat"]["deploy"]["replicas"] == 1
    gpu = services["worker-gpu"]
    assert gpu["command"] == ["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]
    for name in ("web", "worker-cpu", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["CELERY_BROKER_URL"].startswith("redis://")


def test_entrypoint_roles_match_compose():
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & stat.S_IXUSR
    subprocess.run(["sh", "-n", str(entrypoint)], check=True)
    text = entrypoint.read_text()
    assert re.search(r"worker-gpu\)\s*\n\s*exec .*-Q training -P solo --concurrency 1", text)
    assert "django_celery_beat.schedulers:DatabaseScheduler" in text
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"^USER tessera$", dockerfile, re.MULTILINE)
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile


def test_env_example_lists_every_setting_read_from_the_environment():
    names = set()
    for settings_file in (ROOT / "platform" / "config" / "settings").glob("*.py"):
        names |= set(re.findall(r"env(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"",
                                settings_file.read_text()))
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "CELERY_BROKER_URL"} <= names
    example = (ROOT / ".env.example").read_text()
    missing = sorted(n for n in names if not re.search(rf"^#? ?{n}=", example, re.MULTILINE))
    assert not missing, f".env.example does not mention {missing}"


# --- The demo -----------------------------------------------------------------------


def test_demo_runner_starts_one_solo_worker_and_database_beat():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import run_demo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    commands = run_demo.commands(host="127.0.0.1", port=8123)
    assert commands["web"][-2:] == ["127.0.0.1:8123", "--noreload"]
    worker = " ".join(commands["worker"])
    assert "-Q training,default -P solo" in worker
    assert "django_celery_beat.schedulers:DatabaseScheduler" in commands["beat"]


@pytest.mark.django_db
def test_demo_setup_is_idempotent():
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.management.commands.demo_setup import DEMO_OPERATOR, DEMO_USERS
    from accounts.models import Membership, Organisation
    from ingestion.models import Dataset, DatasetVersion

    first, second = StringIO(), StringIO()
    call_command("demo_setup", stdout=first)
    call_command("demo_setup", stdout=second)

    organisation = Organisation.objects.get()
    assert organisation.name == "Demo Bank"
    users = get_user_model().objects.order_by("username")
    assert [u.username for u in users] == ["admin", "analyst", "operator", "reviewer"]
    for demo in DEMO_USERS:
        user = users.get(username=demo.username)
        assert user.check_password(demo.password)
        assert Membership.objects.get(user=user).role == demo.role
        assert demo.password in second.getvalue()
        # The organisation's admin is no Django superuser (issue 16): the admin site shows
        # every organisation's data.
        assert not user.is_superuser and not user.is_staff
    operator = users.get(username=DEMO_OPERATOR.username)
    assert operator.is_superuser and operator.check_password(DEMO_OPERATOR.password)
    assert not Membership.objects.filter(user=operator).exists()
    assert "operator" in second.getvalue()
    dataset = Dataset.objects.get()
    assert (dataset.vertical, dataset.problem) == ("finance", "credit_risk")
    version = DatasetVersion.objects.get()
    assert version.status == DatasetVersion.Status.VALIDATED, version.errors
    assert version.profile["rows"] == 2000
    assert "already present" in second.getvalue()
    assert "uploaded" in first.getvalue()
