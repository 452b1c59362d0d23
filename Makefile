# Stock Sentinel. `make run` and `make test` do all the set-up on a fresh Debian machine;
# every set-up step is idempotent and returns at once when it is already done.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Bytewax 0.21 has wheels for CPython up to 3.12, and the locked versions need 3.11 or newer:
# take the newest of 3.12 and 3.11 we find.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] <= (3,12))' \
	2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The dashboard's front-end packages (package.json, package-lock.json), for the API to serve.
NPM_STAMP := node_modules/.installed

.PHONY: help setup run test lint typecheck unit timescaledb dashboard browser lock clean distclean

help:
	@echo "make run    the whole pipeline on the embedded TimescaleDB (simulator feed, API)"
	@echo "make test   lint, type-check and the whole test suite"

$(BIN)/python:
	@[ -n "$(PYTHON)" ] || { echo "error: Python 3.11 or 3.12 is needed (Bytewax 0.21 has no wheels past 3.12);" \
		"install one, or use 'docker compose up' (README.md)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "python venv is missing; installing python3-venv"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv >/dev/null && \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }

# Exactly the tested versions, checked by hash (requirements/*.lock; `make lock` updates).
$(STAMP): pyproject.toml requirements/dev.lock | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

# Re-resolve the locked versions from pyproject.toml's ranges (then run `make test`).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11 \
		--upgrade -q -o requirements/app.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --generate-hashes \
		--python-version 3.11 --upgrade -q -o requirements/dev.lock

timescaledb:
	@bash timescale/install.sh

# Without npm the API still serves the dashboard, with a note instead of charts.
$(NPM_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "note: npm is missing, so the dashboard will have no charts. Install Node.js and npm"; \
		echo "      (Debian: apt-get install npm; elsewhere: https://nodejs.org), then run make again."; \
	fi

dashboard: $(NPM_STAMP)

# Debian's chromium, for the dashboard's browser test (Playwright drives it).
browser:
	@bash tests/install_chromium.sh

setup: $(STAMP) timescaledb dashboard

run: setup
	$(BIN)/sentinel up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

unit: setup browser
	$(BIN)/pytest

test: lint typecheck unit

clean:
	-$(BIN)/sentinel db stop
	rm -rf .sentinel/test .mypy_cache .pytest_cache .ruff_cache

distclean: clean
	rm -rf .sentinel $(VENV) node_modules
