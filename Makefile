# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint unit integration e2e clean

$(BIN)/.installed-%: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

demo: $(BIN)/.installed-demo  ## run one grant's whole life on the embedded API emulator
	$(BIN)/taskgrant-operator demo

lint: $(BIN)/.installed-test
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/mypy

test: lint  ## lint, type-check, then every test tier (e2e skips itself without Docker and kind)
	$(BIN)/python -m pytest

unit: $(BIN)/.installed-test
	$(BIN)/python -m pytest tests/unit

integration: $(BIN)/.installed-test
	$(BIN)/python -m pytest tests/integration

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
