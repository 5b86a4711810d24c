# Everything a fresh machine needs, from Python 3.11 and make alone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

# The stamp depends on pyproject.toml, so a second `make test` reinstalls nothing unless it changed.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/typing/pass_api.py

# The suite runs on PYTEST_WORKERS processes (pytest-xdist). Every test is isolated from the others (a database, a
# Redis key prefix, a temporary directory and ports of its own, session fixtures per worker), so they may run side by
# side; tests that must not are marked ``xdist_group``, which --dist loadgroup keeps on one worker. A focused
# `pytest tests/x.py` stays in one process. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/cqrs-scheduling demo

bench: $(STAMP)
	$(BIN)/python bench/mediator_overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
