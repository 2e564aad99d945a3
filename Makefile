# `make demo` and `make test` set everything up in .venv on first use, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test

# dependencies (nnU-Net, PyTorch, ...): once, and again when setup.cfg changes
$(VENV)/.dependencies: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install . pytest
	touch $@

# this checkout, installed as a wheel (not editable): what `pip install .` gives a user
setup: $(VENV)/.dependencies
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall .

demo: setup
	$(BIN)/nnunet-fuse demo --workdir nnunet_fuse_demo --overwrite

test: setup
	$(BIN)/python -m pytest -v --durations=15 tests
