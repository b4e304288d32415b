"""Shared fixtures: the repository root, small valid configs, and one tiny end-to-end run of the
whole workflow that several test modules read (never write)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# Snakemake's core budget for the test runs: every core of the machine, at least 2 (the tiny
# runs' jobs are short and mostly single-threaded imports, so they parallelise across jobs).
CORES = max(2, min(os.cpu_count() or 2, 8))
# Snakemake's greedy job selection: the default ILP scheduler solves a small integer program
# before every batch of jobs, about 0.5 s of latency per job in these runs of short jobs. Job
# order cannot change any output (test_reliability checks bit-identical outputs across core
# counts, with its reference run on the default scheduler).
GREEDY = ("--scheduler", "greedy")
# The shared tiny run's region: Xining in the Huangshui valley and the Daban / Lenglong ridges
# north of it (60" -> 72 x 84 px, four 48 px tiles).
TINY_BBOX = (101.0, 36.4, 102.2, 37.8)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture()
def raw_config() -> dict:
    """The shipped default config as loaded from YAML (not yet validated)."""
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.fixture()
def config(raw_config) -> dict:
    from permamap.config import prepare

    return prepare(copy.deepcopy(raw_config))


def tiny_raw_config(
    raw: dict, *, bbox=(101.0, 36.5, 102.0, 37.5), res_arcsec=60, tile_px=32, run="tiny"
) -> dict:
    cfg = copy.deepcopy(raw)
    cfg["run"] = run
    cfg["region"]["bbox"] = list(bbox)
    cfg["region"]["resolution_arcsec"] = res_arcsec
    cfg["tiles"]["size_px"] = tile_px
    cfg["output"]["figures"] = True
    return cfg


def copy_workflow(dest: Path) -> None:
    """The workflow (Snakefile, rules, configs) into ``dest``, to run there."""
    shutil.copy(REPO / "Snakefile", dest / "Snakefile")
    for d in ("workflow", "config", "envs"):
        shutil.copytree(REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))


def snakemake(work: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``work``, output captured."""
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """One tiny run of the whole workflow (rule all: 4 tiles, 2 scenarios x 2 horizons, every
    deliverable), shared by test_workflow and test_deliverables. Tests only read it; a test
    that changes files copies them first.

    Keys: ``work`` (the run's directory), ``out`` (results/<run>), ``cfg`` (the prepared
    config) and ``cmd`` (the Snakemake command that made it)."""
    from permamap.config import prepare

    work = tmp_path_factory.mktemp("tiny")
    copy_workflow(work)
    raw = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = tiny_raw_config(raw, bbox=TINY_BBOX, res_arcsec=60, tile_px=48)
    cfg["scenarios"] = {"ssp245": raw["scenarios"]["ssp245"], "ssp585": raw["scenarios"]["ssp585"]}
    cfg["horizons"] = [2050, 2100]
    cfg["ground"]["probability"]["samples"] = 10
    # one thread per job: the 48 px tiles are one chunk each, and single-thread jobs run side
    # by side (a 2-thread job would take both cores of a 2-core machine for itself)
    cfg["compute"]["threads"] = 1
    # the run's only config, so `permamap outputs` and `snakemake --report` see it by default
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--cores", str(CORES), *GREEDY, "--workflow-profile", "workflow/profiles/default"]
    proc = snakemake(work, *args)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return dict(
        work=work, out=work / "results" / cfg["run"], cfg=prepare(cfg), cmd=[SNAKEMAKE, *args]
    )


def requires_gdal_tool(tool: str, also_covered_by: str):
    """Skip a cross-check that runs one of GDAL's command-line tools when it is not on PATH
    (``make setup`` installs Debian's gdal-bin when run as root with apt); ``also_covered_by``
    says what else in the suite checks the same thing."""
    return pytest.mark.skipif(
        shutil.which(tool) is None,
        reason=f"cross-check against GDAL's {tool}, which is not on PATH: `make setup` installs "
        "Debian's gdal-bin when run as root with apt, else apt-get install "
        f"--no-install-recommends gdal-bin ({also_covered_by})",
    )
