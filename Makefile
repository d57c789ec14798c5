# Two commands on a fresh machine: `make demo` (runs the pipeline on the embedded default) and
# `make test` (passes the suite). Both create .venv and install torch 2.13.0 (CPU) first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export STOCK_ASSETS_HOME ?= $(CURDIR)/.stock_assets
export DAGSTER_HOME ?= $(STOCK_ASSETS_HOME)/dagster_home

.PHONY: install demo test lint format ui mlflow-ui benchmark clean deploy-check

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install  ## backfill the bundled sample, train and promote, replay daily operations
	mkdir -p $(DAGSTER_HOME)
	$(PY) scripts/demo.py $(DEMO_ARGS)

test: install  ## the whole suite (PostgreSQL tests skip with a reason if it is not running)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install  ## ruff: lint and formatting (what CI runs before the tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# `ui` runs from DAGSTER_HOME: in the repository root Dagster warns that ./dagster.yaml is not the one in use.
ui: install  ## Dagster UI + daemon on http://127.0.0.1:3000 against the demo's instance
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	cd $(DAGSTER_HOME) && $(CURDIR)/$(VENV)/bin/dagster dev -w $(CURDIR)/workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: install  ## MLflow UI on http://127.0.0.1:5000 against the demo's tracking store
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(STOCK_ASSETS_HOME)/mlflow.db \
		--default-artifact-root $(STOCK_ASSETS_HOME)/mlartifacts --host 127.0.0.1 --port 5000

benchmark: install  ## prints the benchmark tables (takes several minutes)
	$(PY) benchmarks/backfill.py

# No .venv: plain bash + python3. Starts its own dockerd when no engine answers (root); see docker/README.md.
deploy-check:  ## the Docker deployment end to end: build, compose up, runs in containers, restart, secrets
	bash docker/deploy_check.sh

clean:
	rm -rf $(STOCK_ASSETS_HOME)
