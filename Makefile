# Spillway: `make run` brings the whole stack up; `make test` runs the whole suite.
# Both install what is missing first: Debian packages (apt-get, through sudo when not
# root), a virtualenv in .venv built from the system Python, and the Python packages.
# `make run` installs only what running needs; `make test` adds what only the tests need.

PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
# What the stack runs on.
RUN_PACKAGES := python3 python3-venv redis-server memcached nginx
# What only the tests and benchmarks use: the browser tests' chromium, a PostgreSQL server
# for the database tests, wrk, the network namespaces of the several-hosts tests, and curl
# (HTTP/2 over TLS in tests/e2e/test_tls.py).
TEST_PACKAGES := wrk procps chromium postgresql iproute2 curl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# `make test` runs these again on a throwaway PostgreSQL cluster (they touch the database).
POSTGRESQL_TESTS := tests/integration/sales tests/integration/catalog tests/integration/orders \
	tests/integration/security/test_hostile_input.py \
	tests/integration/test_cli.py tests/integration/test_ops.py

# Install the Debian packages of $(1) that are missing, saying which.
define install_missing
	@missing=""; for pkg in $(1); do \
		dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing Debian packages:$$missing (apt-get)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: run test lint test-fast bench bench-quick system-deps test-system-deps deps \
	test-deps clean

run: deps ## Set everything up, then run the stack under supervisord (Ctrl-C stops it)
	$(BIN)/spillway up --seed-demo

test: test-deps lint ## Set everything up, then run the whole test suite
	$(BIN)/pytest $(PYTEST_ARGS)
	SPILLWAY_TEST_DB=postgresql $(BIN)/pytest $(POSTGRESQL_TESTS) $(PYTEST_ARGS)

lint: test-deps ## ruff: lint and the formatting (pyproject.toml has the rules)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: test-deps ## Unit and integration tests only (no full-stack end-to-end)
	$(BIN)/pytest tests/unit tests/integration $(PYTEST_ARGS)

BENCH_ARGS ?=

bench: test-deps $(VENV)/.bench-stamp ## Benchmark the stack beside its baselines and a FastAPI peer (bench/report.md)
	$(BIN)/spillway bench $(BENCH_ARGS)

bench-quick: ## The same, shorter (under 3 minutes; bench/quick/report.md)
	$(MAKE) bench BENCH_ARGS=--quick

$(VENV)/.bench-stamp: pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

system-deps: ## Install the Debian packages running needs that are missing
	$(call install_missing,$(RUN_PACKAGES))

test-system-deps: ## Install the Debian packages only the tests need that are missing
	$(call install_missing,$(TEST_PACKAGES))

deps: system-deps $(VENV)/.deps-stamp ## What running needs

test-deps: deps test-system-deps $(VENV)/.test-deps-stamp ## What running and testing need

$(VENV)/.deps-stamp: pyproject.toml
	@test -x $(BIN)/python || { echo "make: creating the virtualenv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing spillway and what it runs on into $(VENV) (pip)"
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.test-deps-stamp: pyproject.toml $(VENV)/.deps-stamp
	@echo "make: installing what the tests use into $(VENV) (pip)"
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

clean: ## Remove the venv and the run directory
	rm -rf $(VENV) run
