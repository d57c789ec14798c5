# Two commands on a fresh machine: `make demo` (runs the pipeline on the embedded default) and
# `make test` (passes the suite). Both create .venv and install torch 2.13.0 (CPU) first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export STOCK_ASSETS_HOME ?= $(CURDIR)/.stock_assets
export DAGSTER_HOME ?= $(STOCK_ASSETS_HOME)/dagster_home
UI_PORT ?= 3000
MLFLOW_PORT ?= 5000

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
	$(PY) -u scripts/demo.py $(DEMO_ARGS)

test: install  ## the whole suite (PostgreSQL tests skip with a reason if it is not running)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install  ## ruff: lint and formatting (what CI runs before the tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# `ui` runs from DAGSTER_HOME: in the repository root Dagster warns that ./dagster.yaml is not the one in use.
# scripts/ui.py stops dagster dev and all its processes within seconds of Ctrl-C or TERM.
ui: install  ## Dagster UI + daemon on http://127.0.0.1:$(UI_PORT) against the demo's instance
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	cd $(DAGSTER_HOME) && exec $(CURDIR)/$(PY) $(CURDIR)/scripts/ui.py \
		$(CURDIR)/$(VENV)/bin/dagster dev -w $(CURDIR)/workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

# One worker and no GenAI job runner (huey consumers): 2 processes instead of 15 on 2 cores.
# MLflow 3.17 opens experiments in its GenAI view unless the URL (or the browser, once toggled) asks
# for the model-training view: open the URL printed below.
mlflow-ui: install  ## MLflow UI on http://127.0.0.1:$(MLFLOW_PORT) against the demo's tracking store
	@echo "MLflow UI: http://127.0.0.1:$(MLFLOW_PORT)/#/experiments?workflowType=machine_learning (model-training view)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec $(VENV)/bin/mlflow ui \
		--backend-store-uri sqlite:///$(STOCK_ASSETS_HOME)/mlflow.db \
		--default-artifact-root $(STOCK_ASSETS_HOME)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

benchmark: install  ## prints the benchmark tables (takes several minutes)
	$(PY) benchmarks/backfill.py

# No .venv: plain bash + python3. Starts its own dockerd when no engine answers (root); see docker/README.md.
deploy-check:  ## the Docker deployment end to end: build, compose up, runs in containers, restart, secrets
	bash docker/deploy_check.sh

clean:
	rm -rf $(STOCK_ASSETS_HOME)
