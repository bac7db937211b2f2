"""Guards the layout DESIGN.md relies on: platform/ is a source root that shadows nothing.

A ``platform/__init__.py`` would shadow the standard ``platform`` module that uuid, Django,
Celery and torch import; an app named like a stdlib module or an installed distribution's
package (``datasets``) would shadow that one for every import in the process.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_DIR = ROOT / "platform"


def platform_modules() -> list[str]:
    """Top-level import names that platform/ puts on sys.path (packages and modules)."""
    names = []
    for entry in PLATFORM_DIR.iterdir():
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.append(entry.name)
        elif entry.suffix == ".py":
            names.append(entry.stem)
    return sorted(names)


def test_platform_is_a_source_root_not_a_package() -> None:
    assert PLATFORM_DIR.is_dir()
    assert not (PLATFORM_DIR / "__init__.py").exists(), (
        "platform/__init__.py would shadow the standard library's platform module"
    )


def test_stdlib_platform_works_in_process() -> None:
    # pytest's pythonpath puts platform/ on sys.path, as manage.py does.
    assert any(Path(p).resolve() == PLATFORM_DIR for p in sys.path if p)
    assert platform.system()
    assert not Path(platform.__file__).resolve().is_relative_to(ROOT)


def test_stdlib_platform_works_under_manage_py() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    code = (
        "import platform, uuid; "
        "print('system=' + platform.system()); print('file=' + platform.__file__); "
        "print('uuid=' + str(uuid.uuid4().version))"
    )
    completed = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # Django 5.2's shell may print its own lines (auto-imports) first: read ours by key.
    printed = dict(
        line.split("=", 1) for line in completed.stdout.splitlines() if "=" in line
    )
    assert printed.get("system") == platform.system(), completed.stdout
    assert not Path(printed["file"]).resolve().is_relative_to(ROOT)
    assert printed.get("uuid") == "4"


def test_platform_apps_exist() -> None:
    names = platform_modules()
    for app in ("config", "accounts", "catalog", "ingestion", "training", "audits", "api"):
        assert app in names


@pytest.mark.parametrize("name", platform_modules())
def test_platform_app_does_not_shadow_stdlib(name: str) -> None:
    assert name not in sys.stdlib_module_names, f"platform/{name} shadows stdlib {name!r}"


@pytest.mark.parametrize("name", platform_modules())
def test_platform_app_does_not_shadow_installed_distribution(name: str) -> None:
    owners = importlib.metadata.packages_distributions().get(name, [])
    assert not owners, f"platform/{name} shadows the top-level module of {owners}"


@pytest.mark.parametrize(
    "entry", ["manage.py", "platform", "verticals", "ml_core", "templates", "tests", "docker"]
)
def test_required_top_level_entry_exists(entry: str) -> None:
    assert (ROOT / entry).exists(), f"{entry} is missing from the repository root"


def test_test_modules_have_unique_basenames() -> None:
    # tests/ has no __init__.py: pytest imports each test module by its basename, so two
    # files of one name in different folders stop the whole collection.
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, "rename one of: " + "; ".join(clashes)
