PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Only the source directories that exist are linted.
SRC_DIRS := $(wildcard shared tests bench functions sandbox)

# Hypothesis profile for the test run (registered by the test suite); override with
# `make pytest HYPOTHESIS_PROFILE=dev`.
HYPOTHESIS_PROFILE ?= ci
PYTEST_ARGS ?=

.PHONY: venv lint format typecheck pytest test test-google-sandbox bench dev clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -e '.[dev]'
	touch $@

lint: venv
	$(BIN)/ruff check $(SRC_DIRS)
	$(BIN)/ruff format --check $(SRC_DIRS)

format: venv
	$(BIN)/ruff format $(SRC_DIRS)
	$(BIN)/ruff check --fix $(SRC_DIRS)

typecheck: venv
	$(BIN)/mypy

# The unit suite runs three times: against the memory systems; with the reference CRM
# over HTTP behind the production connector; and with the Google sandbox behind the
# production Google adapters (the same scenarios, fewer random examples over HTTP).
pytest: venv
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/pytest $(PYTEST_ARGS)
	CRMSYNC_WORLD_CRM=rest HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE)-rest $(BIN)/pytest tests/unit $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-google-sandbox

test: venv lint typecheck pytest

# The unit suite with the provider side as the Google sandbox behind the real Google
# adapters; tests that give the provider data Google refuses to store do not apply.
test-google-sandbox: venv
	CRMSYNC_WORLD_PROVIDER=google-sandbox HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE)-rest $(BIN)/pytest tests/unit -m "not provider_stores_anything" $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/cycle.py

dev:
	@echo "make dev: the local product (Firestore and Pub/Sub emulators, the Cloud Tasks"
	@echo "emulator, sandbox Google/Microsoft simulators, a reference CRM, a demo tenant"
	@echo "and a live sync) arrives with the serverless-runtime issue. Not available yet."
	@exit 1

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name '*.egg-info' -prune -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +
