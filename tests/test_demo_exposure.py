"""The demo listens on this machine unless told otherwise, says where it listens, and never
shows Django's debug pages to its users (issue 16, finding 4)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def run_demo():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import run_demo
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return run_demo


def test_the_demo_binds_loopback_unless_told(run_demo, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["run_demo.py", "--port", "1"])
    parser_default = {}

    def fake_free(host, port):
        parser_default["host"] = host
        return False  # stop before starting anything

    monkeypatch.setattr(run_demo, "port_is_free", fake_free)
    assert run_demo.main() == 1
    assert parser_default["host"] == "127.0.0.1"
    assert run_demo.exposure_warning("127.0.0.1") is None
    assert "WARNING" in run_demo.exposure_warning("0.0.0.0")


def test_the_banner_says_where_it_listens(run_demo):
    assert "Listening on http://127.0.0.1:8000/ (this machine only)" in run_demo.banner(
        "http://127.0.0.1:8000/", listening="http://127.0.0.1:8000/")
    assert "Listening on http://0.0.0.0:8000/ (the network)" in run_demo.banner(
        "http://127.0.0.1:8000/", listening="http://0.0.0.0:8000/")


def test_make_demo_passes_host(run_demo):
    result = subprocess.run(["make", "--no-print-directory", "-n", "demo", "HOST=0.0.0.0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "run_demo.py --host 0.0.0.0" in result.stdout
    result = subprocess.run(["make", "--no-print-directory", "-n", "demo"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "run_demo.py --host 127.0.0.1" in result.stdout


def test_the_demo_processes_run_without_debug(run_demo, monkeypatch):
    monkeypatch.delenv("DJANGO_DEBUG", raising=False)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    env = run_demo.child_environment()
    probe = subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; "
         "django.setup(); print(settings.DEBUG)"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "False", probe.stderr


@pytest.mark.django_db
def test_errors_are_plain_pages_not_debug_pages(client, settings):
    settings.DEBUG = False  # what the demo's web process now runs with
    response = client.get("/no-such-page/", HTTP_HOST="evil.example")  # a 400
    assert response.status_code == 400
    assert b"DisallowedHost" not in response.content and b"SECRET" not in response.content
    response = client.get("/no-such-page/")
    assert response.status_code in (302, 404)
    assert b"URLconf" not in response.content
