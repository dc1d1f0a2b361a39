# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench report-screenshot clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-install only when the project metadata changed.
$(VENV)/.installed-all: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[all,test]"
	touch $@ $(VENV)/.installed-all

demo: $(VENV)/.installed-all
	$(BIN)/tokenward demo --db .tokenward/ledger.db

test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest

# Types and style are part of the test: `mypy --strict` on the package, ruff lint and format.
lint: $(VENV)/.installed-test
	$(BIN)/python -m mypy --strict src
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/run_all.py

report-screenshot: $(VENV)/.installed-test
	$(BIN)/python benchmarks/report_screenshot.py --png docs/report.png

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .tokenward
