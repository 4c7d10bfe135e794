# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test lint benchmark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed once, and again only when pyproject.toml changes: the stamp's date says when.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing Bevan and its dependencies into $(VENV) (once; again only when pyproject.toml changes) ..."
	$(BIN)/pip install --progress-bar on -e .
	@touch $@

install: $(VENV)/.installed

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install-test: $(VENV)/.installed-test

demo: install
	@echo "Starting the demo (Ctrl-C stops it; the data stays in ./bevan-data) ..."
	$(BIN)/bevan demo

lint: install-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy src

test: install-test lint
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

benchmark: install-test
	$(BIN)/python -m benchmarks --quick
