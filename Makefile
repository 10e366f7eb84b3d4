# Entry points (see README): `make run`, `make test`, `make test-fast`, `make publish`,
# `make offline-paper`.
# Each creates .venv once and reuses it.
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

.PHONY: setup run test test-fast publish offline-paper assets clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple,)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	@echo
	@echo "Tables: results/tables/ (ppl, zeroshot as .md, .csv, .tex); plots: results/plots/;"
	@echo "every figure with its settings: results/metrics.json. Perplexity (results/tables/ppl.md):"
	@echo
	@cat results/tables/ppl.md

# Copy a run's tables, plots and metrics.json to docs/results/, the figures published with
# the project (commit them with the command and date in the README there), and the per-job
# metrics they were made from (the *.json under each JOBS folder, to jobs/<run>/...), so that a
# report can be rebuilt or combined with another from the published files alone:
#   apt report --metrics docs/results/<run>/jobs ...
# Another config's run:
#   make publish FROM=results/offline-paper TO=docs/results/offline-paper
# A report made from several runs' metrics (apt report --metrics A B --out-dir T/tables ...):
#   make publish FROM=T TO=docs/results/<name> JOBS="A B"
FROM ?= results
TO ?= docs/results
JOBS ?= $(wildcard $(FROM)/metrics)
publish:
	test -f $(FROM)/tables/ppl.md || (echo "no $(FROM)/tables/ppl.md: run the pipeline first (make run)" && false)
	rm -rf $(TO)/tables $(TO)/plots $(TO)/jobs
	mkdir -p $(TO)
	cp -r $(FROM)/tables $(FROM)/plots $(FROM)/metrics.json $(TO)/
	rm -f $(TO)/plots/.snakemake_timestamp
	@test -n "$(strip $(JOBS))" || echo "warning: no JOBS (no $(FROM)/metrics): $(TO)/jobs left empty"
	@for d in $(JOBS); do \
	  case "$$d" in */metrics|*/metrics/*) ;; *) echo "JOBS: $$d is not a <run>/metrics[/...] folder"; exit 1;; esac; \
	  run=$$(basename "$${d%/metrics*}"); dest="$(abspath $(TO))/jobs/$$run$${d##*/metrics}"; \
	  mkdir -p "$$dest" && (cd "$$d" && find . -name '*.json' -exec cp --parents -t "$$dest" {} +) || exit 1; \
	done

# The paper-style table on both offline models (config/offline-paper.yaml; several hours on a
# 2-core CPU, resumable): tables in results/offline-paper/tables/.
offline-paper: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config/offline-paper.yaml

assets: setup
	$(BIN)/apt assets

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q --durations=5

# The inner loop: everything but the tests marked slow (real assets, whole pipeline runs).
test-fast: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
