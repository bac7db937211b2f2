"""Print the requirements that pyproject.toml declares, one per line, for ``pip install -r``.

Tessera runs in place (manage.py, ``celery -A config.celery_app``), so installing means
installing its dependencies only; reading them from pyproject.toml keeps one list and
avoids building the project (no egg-info in the work tree, no build backend to fetch).

    python scripts/pyproject_requirements.py [--extra dev]...
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    declared = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r}; known: {sorted(optional)}")
        declared += optional[extra]
    return declared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[], help="optional extra to include")
    args = parser.parse_args()
    print("\n".join(requirements(args.extra)))


if __name__ == "__main__":
    main()
