# Two commands: `make run` runs the system, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Run-time pins (requirements.lock, all the container image gets) and test/lint tools (requirements-dev.lock).
LOCKS := requirements.lock requirements-dev.lock
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup run test test-fast lint bench migrate clean

$(STAMP): $(LOCKS) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<27"
	$(PY) -m pip install -q -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

run: setup
	scripts/ensure-infra.sh broker
	scripts/run.sh

migrate: setup
	$(PY) -m shared.core.migrations upgrade

# The suite runs in TEST_SHARDS parallel pytest processes, then the fault scenarios alone (they stop
# the machine's RabbitMQ); see scripts/run_tests.py.
TEST_SHARDS ?= 3
test: lint
	scripts/ensure-infra.sh broker postgres browser
	$(PY) -m scripts.run_tests --shards $(TEST_SHARDS)

# Unit and in-process interface tests: no broker, no database server; under a minute. Only their two
# folders are collected (a test's tier is its folder: tests/conftest.py), without hypothesis's pytest
# plugin (no test there uses it; it imports hypothesis at the end of every run); their SQLite files
# are on tmpfs where there is one (the fsync of every commit, synchronous=FULL, took as long as the
# rest of a database test); and compiled modules and pytest's rewritten test modules are kept in
# var/pycache even where PYTHONDONTWRITEBYTECODE is set (compiling them anew took a quarter of a run).
FAST_TMPDIR := $(shell test -d /dev/shm -a -w /dev/shm && echo /dev/shm || echo "$${TMPDIR:-/tmp}")
test-fast: setup
	TMPDIR=$(FAST_TMPDIR) PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/var/pycache \
		$(PY) -m pytest -p no:hypothesispytest -m "(unit or interface) and not db" tests/unit tests/interface

# The architecture and the style keep: layers and a framework-free core (import-linter), ruff,
# and mypy (strict on every service's domain/ and on shared/core).
lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	scripts/ensure-infra.sh broker postgres
	$(PY) -m bench

# Known vulnerabilities of the pinned dependencies (PyPI's advisory data; needs the network).
audit: setup
	$(PY) -m pip install -q pip-audit
	$(PY) -m pip_audit -r requirements.lock -r requirements-dev.lock --no-deps --disable-pip --strict

clean:
	rm -rf var .pytest_cache
