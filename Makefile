# permamap: two commands. `make run` and `make test` set everything up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
CONFIG ?= config/config.yaml
STAMP := $(VENV)/.installed

.PHONY: setup run dry-run test lint clean bench slurm-test

setup: $(STAMP)

# The venv is reused when present; reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "permamap needs Python 3.11 ($(PYTHON) not found)"; exit 1; }
	@# gdaldem (Debian gdal-bin) is the independent reference of a slope/aspect test and of the
	@# benchmark; installed when missing and possible (root + apt), otherwise that test skips.
	@command -v gdaldem >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gdal-bin) \
		>/dev/null 2>&1; } || echo "note: gdal-bin not installed; the gdaldem cross-check test will skip"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: setup
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --workflow-profile workflow/profiles/default
	@$(BIN)/python -m permamap.cli where --configfile $(CONFIG)

dry-run: setup
	$(BIN)/snakemake -n --cores $(CORES) --configfile $(CONFIG) --workflow-profile workflow/profiles/default

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench workflow/scripts
	$(BIN)/snakemake --lint --configfile $(CONFIG)

# xarray-spatial is a reference of the benchmark, not a dependency: installed beside the venv
# without its dependencies (its slope/aspect need none that permamap lacks; bench/README.md).
XRSPATIAL := $(VENV)/xrspatial-0.5.3
$(XRSPATIAL):
	$(BIN)/python -m pip install --quiet --no-deps --target $(XRSPATIAL).part xarray-spatial==0.5.3 \
		&& mv $(XRSPATIAL).part $(XRSPATIAL) \
		|| echo "note: xarray-spatial not installed; the benchmark skips its lines"

bench: setup $(XRSPATIAL)
	$(BIN)/python bench/benchmark.py --xrspatial-path $(XRSPATIAL) $(BENCH_ARGS)

# Runs the workflow through a real single-node SLURM started on this machine (root; installs
# Debian's slurmctld/slurmd/slurm-client/munge) and compares with a local run. Not part of
# `make test`: it needs root and apt, and takes minutes (see tests/slurm/run_slurm_test.sh).
slurm-test: setup
	bash tests/slurm/run_slurm_test.sh

clean:
	rm -rf results resources logs benchmarks .snakemake
