# `make demo` and `make test` set everything up in .venv on first use, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test

# dependencies (nnU-Net, PyTorch, ...): once, and again when setup.cfg changes
# PyTorch's CUDA build makes the venv about 6 GB: say so before pip runs out of disk half-way
NEED_GB ?= 8
$(VENV)/.dependencies: setup.cfg pyproject.toml
	@free_gb=$$(df -Pk $(dir $(abspath $(VENV))) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ "$$free_gb" -lt $(NEED_GB) ]; then \
		echo "error: $$free_gb GB free beside $(VENV), setup needs about $(NEED_GB) GB (PyTorch and nnU-Net in $(VENV))." \
		     "Free some disk, or set VENV to a folder on a larger disk." >&2; exit 1; fi
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
