# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.soc2kit-installed

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/soc2kit demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test: lint typecheck pytest

# Benchmarks are run by hand on a quiet machine; results go to docs/performance.md.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/http_overhead.py --write docs/performance.md
	$(BIN)/python benchmarks/authz.py --write docs/performance.md
	$(BIN)/python benchmarks/request_authz.py --write docs/performance.md
	$(BIN)/python benchmarks/crypto.py --write docs/performance.md
	$(BIN)/python benchmarks/audit.py --write docs/performance.md
	$(BIN)/python benchmarks/tracing.py --write docs/performance.md
	$(BIN)/python benchmarks/controls.py --write docs/performance.md

clean:
	rm -rf $(VENV) .soc2kit .pytest_cache .mypy_cache .ruff_cache
