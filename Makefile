# Two entry points (see README): `make run` and `make test`. Both create .venv once and reuse it.
PYTHON ?= python3
VENV ?= .venv
# The CPU machines of this project carry torch 2.13.0 on local disk; elsewhere pip takes the
# default build (CUDA on Linux). On a CPU-only machine without it, set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu to avoid the multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= all
BIN := $(VENV)/bin
STAMP := $(VENV)/.apt-installed

.PHONY: setup run test assets clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple,)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml

assets: setup
	$(BIN)/apt assets

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
