# LegacyCoinTrader access layer. `make run` starts the stack, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev-env run run-vault test test-fast lint bench bench-workers services clean compose-env lock mutation

LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock"

install: $(STAMP)

# Re-installs only when the lock or pyproject.toml changed since the last install: exactly
# the pinned, hash-checked versions of requirements-dev.lock, then the project itself
# (editable, no dependencies of its own: they all came from the lock).
$(STAMP): pyproject.toml requirements-dev.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements-dev.lock
	@# -qq: setuptools warns on every editable install about folders named like packages.
	@$(PY) -m pip install -qq --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# Re-pins after a change of pyproject.toml. Versions already in the lock are kept (uv prefers
# them), so only new or changed requirements move; `make lock UPGRADE=--upgrade` moves
# everything. The runtime lock (the image's) is the dev lock's subset, so both agree on every
# version. Needs only uv, not an install from the (perhaps stale) lock.
lock:
	@test -x $(VENV)/bin/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); \
		$(PY) -m pip install --quiet --disable-pip-version-check 'uv>=0.5'; }
	@$(VENV)/bin/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) $(UPGRADE) \
		-o requirements-dev.lock
	@$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -c requirements-dev.lock \
		-o requirements.lock

# Writes `.env` the first time; later, adds only the secrets an older `.env` lacks.
dev-env: install
	@$(PY) scripts/write_dev_env.py .env

run: dev-env
	@$(PY) -m devstack

# The same stack with its secrets in a local OpenBao (one AppRole per service), not in .env.
run-vault: dev-env
	@$(PY) -m devstack --vault

# The credentials of `docker compose --env-file compose.env`, generated once and then kept
# (PostgreSQL applies its password only when it creates its volume). Standard library only.
compose-env:
	@$(PYTHON) docker/compose_env.py compose.env

# Starts PostgreSQL and Redis if they are down; installs Chromium, nginx and wrk if missing.
services:
	@scripts/ensure_services.sh

test: install services
	@$(PY) -m pytest

test-fast: install
	@$(PY) -m pytest -m "not browser and not e2e"

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy shared services scripts bench docker devstack
	@# bandit warns on every '# nosec B105 - reason' comment it parses; only findings matter.
	@set -o pipefail; $(VENV)/bin/bandit -q -r shared services bench scripts docker devstack 2>&1 \
		| { grep -v '\bWARNING\b' || true; }
	@$(PY) scripts/audit.py

# Mutation testing of the security-critical modules of config/mutation.toml, on a scratch
# copy of the tree (never the tree itself); slow, so not part of `make test`.
# MODULE=shared/assertion.py runs one module; SAMPLE=N runs at most N mutants per module.
mutation: install services
	@nice -n 10 $(PY) scripts/mutation.py $(if $(MODULE),--module $(MODULE)) \
		$(if $(SAMPLE),--sample $(SAMPLE))

bench: install services
	@$(PY) -m bench
	@$(PY) -m bench.load
	@$(PY) -m bench.tracing

# Optional, not part of `make bench`: one gateway worker against WORKERS (2) on Redis.
bench-workers: install services
	@$(PY) -m bench.workers --workers $(or $(WORKERS),2)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
