# Keel — the two commands on a fresh machine:
#   make demo   install, then run the main job on the embedded default (local model, SQLite)
#   make test   install with dev tools, then lint, type-check and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
CONSTRAINTS := requirements/constraints.txt

.PHONY: demo test install install-dev lint typecheck pytest wheel-check bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS) requirements/no-deps.txt
	$(PIP) install -c $(CONSTRAINTS) -e .
	$(PIP) install --no-deps -c $(CONSTRAINTS) -r requirements/no-deps.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements/no-deps-dev.txt
	$(PIP) install -c $(CONSTRAINTS) -e '.[dev]'
	$(PIP) install --no-deps -c $(CONSTRAINTS) -r requirements/no-deps-dev.txt
	command -v redis-server >/dev/null 2>&1 || apt-get install -y -qq redis-server >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	command -v chromium >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/keel demo

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install-dev
	$(BIN)/mypy

pytest: install-dev
	$(BIN)/pytest -q -p no:cacheprovider

wheel-check: install
	PYTHON=$(PYTHON) bash scripts/wheel_check.sh

test: lint typecheck pytest wheel-check

bench: install-dev
	$(BIN)/python bench/gateway/run.py

lock: install-dev
	{ head -2 $(CONSTRAINTS); $(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(-e|py-spy)'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
