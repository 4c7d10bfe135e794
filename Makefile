# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test lint benchmark frontend

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installed once, and again only when pyproject.toml or the lock changes: the stamp's
# date says when. requirements.lock pins every dependency to the versions the suite
# last passed with (CONTRIBUTING.md says how to refresh it).
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	@echo "Installing Bevan and its dependencies into $(VENV) (once; again only when pyproject.toml or requirements.lock changes) ..."
	$(BIN)/pip install --progress-bar on -c requirements.lock -e '.[postgres]'
	@touch $@

# The web app's browser assets (NHS.UK frontend, htmx): pinned npm releases, checked
# against their sha512 integrity, unpacked into a git-ignored folder; quick when in place.
frontend: | $(BIN)/python
	$(BIN)/python scripts/fetch_frontend.py

install: $(VENV)/.installed frontend

$(VENV)/.installed-test: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	@touch $@

install-test: $(VENV)/.installed-test frontend

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
