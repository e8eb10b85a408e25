# Spillway: `make run` brings the whole stack up; `make test` runs the whole suite.
# Both install what is missing first: Debian packages (apt-get, through sudo when not
# root), a virtualenv in .venv built from the system Python, and the Python packages.

PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := python3 python3-venv redis-server memcached nginx wrk procps chromium postgresql iproute2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# `make test` runs these again on a throwaway PostgreSQL cluster (they touch the database).
POSTGRESQL_TESTS := tests/integration/sales tests/integration/catalog tests/integration/orders \
	tests/integration/security/test_hostile_input.py \
	tests/integration/test_cli.py tests/integration/test_ops.py

.PHONY: run test lint test-fast bench bench-quick system-deps deps clean

run: deps ## Set everything up, then run the stack under supervisord (Ctrl-C stops it)
	$(BIN)/spillway up --seed-demo

test: deps lint ## Set everything up, then run the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)
	SPILLWAY_TEST_DB=postgresql $(BIN)/pytest $(POSTGRESQL_TESTS) $(PYTEST_ARGS)

lint: deps ## ruff: lint and the formatting (pyproject.toml has the rules)
	$(BIN)/ruff check .

test-fast: deps ## Unit and integration tests only (no full-stack end-to-end)
	$(BIN)/pytest tests/unit tests/integration $(PYTEST_ARGS)

BENCH_ARGS ?=

bench: deps $(VENV)/.bench-stamp ## Benchmark the stack beside its baselines and a FastAPI peer (bench/report.md)
	$(BIN)/spillway bench $(BENCH_ARGS)

bench-quick: ## The same, shorter (under 3 minutes; bench/quick/report.md)
	$(MAKE) bench BENCH_ARGS=--quick

$(VENV)/.bench-stamp: pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

system-deps: ## Install the Debian packages that are missing
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
		dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deps: system-deps $(VENV)/.deps-stamp

$(VENV)/.deps-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

clean: ## Remove the venv and the run directory
	rm -rf $(VENV) run
