"""Reliability: a killed run resumes to identical outputs; results do not depend on the core
count; an all-nodata tile stays nodata instead of becoming permafrost or 0 C.

Three runs of one config (4 tiles) must give bit-identical rasters and tables: the reference on
2 cores (one 2-thread job at a time, Snakemake's default scheduler), one on 1 core, and one on 2
cores with two 1-thread jobs side by side that is killed (-9) mid-way and resumed. The first two
mostly use one core each, so they run side by side.
"""

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from conftest import GREEDY, SNAKEMAKE, copy_workflow, tiny_raw_config

from permamap.products import PRODUCTS

pytestmark = pytest.mark.workflow

# two jobs side by side on 2 cores: every job gets one thread (the config keeps compute.threads
# = 2, so the rasters' config_hash tags are those of the reference)
SIDE_BY_SIDE = ["--cores", "2", "--max-threads", "1", *GREEDY]


def _setup(repo, work: Path, **overrides) -> list[str]:
    copy_workflow(work)
    raw = yaml.safe_load((repo / "config/config.yaml").read_text())
    cfg = tiny_raw_config(raw, bbox=(101.0, 36.4, 101.8, 37.2), res_arcsec=60, tile_px=24)
    cfg["scenarios"] = {"ssp245": raw["scenarios"]["ssp245"]}
    cfg["horizons"] = [2050]
    cfg["output"]["figures"] = False
    cfg["ground"]["probability"]["samples"] = 20
    for k, v in overrides.items():
        cfg[k] = v
    (work / "config" / "t.yaml").write_text(yaml.safe_dump(cfg))
    # the core rasters and tables (terrain, baseline, scenarios, areas, lower limit); the
    # deliverables built from them (vectors, maps, STAC, validation) are tested elsewhere
    targets = [f"results/tiny/tables/{t}.csv" for t in ("areas", "lower_limit_by_aspect")]
    targets += [f"results/tiny/baseline/{p}.tif" for p in ("magt", "probability")]
    return [
        "--configfile",
        "config/t.yaml",
        "--workflow-profile",
        "workflow/profiles/default",
        *targets,
    ]


def _start(work: Path, args: list[str], *cores: str) -> subprocess.Popen:
    """Start the workflow in ``work`` (output to ``work``/snakemake.out, in its own process
    group so that it can be killed as a whole)."""
    with open(work / "snakemake.out", "w") as log:
        return subprocess.Popen(
            [SNAKEMAKE, *cores, *args],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen, work: Path, timeout: float = 900) -> None:
    """Wait for a run started by :func:`_start`; fail with its output if it does not succeed."""
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, (work / "snakemake.out").read_text()[-3000:]


def _run(work: Path, args: list[str], *cores: str) -> None:
    """Run the workflow to completion in ``work`` and fail with its output if it does not."""
    _finish(_start(work, args, *cores), work)


def _checksums(work: Path) -> dict:
    """sha256 of every file the run wrote under results/ (the determinism contract: the same
    bytes; here rasters and tables, the GeoPackage and .qgz rewrite test is in
    test_deliverables)."""
    out = {}
    for p in sorted((work / "results").rglob("*")):
        if p.is_file():
            out[str(p.relative_to(work))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, repo):
    """Checksums of the reference run (2 cores, 2-thread jobs) and of the 1-core run, made side
    by side (each mostly keeps one core busy)."""
    work = {name: tmp_path_factory.mktemp(name) for name in ("ref", "one_core")}
    args = {name: _setup(repo, w) for name, w in work.items()}
    procs = {
        "ref": _start(work["ref"], args["ref"], "--cores", "2"),
        "one_core": _start(work["one_core"], args["one_core"], "--cores", "1", *GREEDY),
    }
    for name, proc in procs.items():
        _finish(proc, work[name])
    sums = {name: _checksums(w) for name, w in work.items()}
    assert len(sums["ref"]) >= 12
    return sums


@pytest.fixture(scope="module")
def reference(runs):
    return runs["ref"]


def test_same_results_with_one_core(runs):
    assert runs["one_core"] == runs["ref"]


def test_killed_run_resumes_to_identical_outputs(repo, tmp_path, reference):
    args = _setup(repo, tmp_path)
    proc = _start(tmp_path, args, *SIDE_BY_SIDE)
    tiles = tmp_path / "resources" / "tiny" / "tiles"
    deadline = time.time() + 300
    # kill the whole process group hard (like a node failure) once some tiles are done
    while time.time() < deadline and len(list(tiles.glob("*/ground_class.tif"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "results" / "tiny" / "tables" / "areas.csv").exists()
    # nothing that looks finished is half-written: every raster present opens completely
    for p in tmp_path.rglob("*.tif"):
        with rasterio.open(p) as src:
            src.read()
    # a killed Snakemake leaves its lock; the documented fix is --unlock, then run again
    subprocess.run([SNAKEMAKE, "--unlock", *args], cwd=tmp_path, capture_output=True, timeout=300)
    _run(tmp_path, args, *SIDE_BY_SIDE)
    assert _checksums(tmp_path) == reference
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name]


def test_all_nodata_tile_stays_nodata(repo, tmp_path):
    # A DEM file whose western half is nodata: whole tiles without data must come out nodata in
    # every product (never permafrost, never 0 C), and the run must still finish.
    dem = tmp_path / "half.tif"
    data = np.full((120, 120), 3600.0, np.float32)
    data += np.linspace(0, 600, 120, dtype=np.float32)[:, None]
    data[:, :60] = -9999.0
    with rasterio.open(
        dem,
        "w",
        driver="GTiff",
        width=120,
        height=120,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=Affine(1 / 120, 0, 100.9, 0, -1 / 120, 37.3),
        nodata=-9999.0,
    ) as dst:
        dst.write(data[None])
    args = _setup(repo, tmp_path)
    cfg = yaml.safe_load((tmp_path / "config" / "t.yaml").read_text())
    # two 24 px tiles: the western one wholly in the nodata half, the eastern one with data
    cfg["region"]["bbox"] = [101.0, 36.8, 101.8, 37.2]
    cfg["dem"] = {"source": "file", "path": str(dem), "resampling": "bilinear"}
    (tmp_path / "config" / "t.yaml").write_text(yaml.safe_dump(cfg))
    _run(tmp_path, args, *SIDE_BY_SIDE)
    out = tmp_path / "results" / "tiny"
    with rasterio.open(out / "baseline" / "class.tif") as src:
        cls = src.read(1)
    with rasterio.open(out / "baseline" / "magt.tif") as src:
        magt = src.read(1)
    assert cls.shape == (24, 48)
    west = cls[:, :20]  # 101.0-101.33 E lies in the nodata half (west of 101.4 E)
    assert (west == 255).all() and (magt[:, :20] == PRODUCTS["magt"].nodata).all()
    assert (cls[:, -10:] != 255).all()


def test_outputs_get_normal_file_permissions(tmp_path):
    from permamap.rasterio_io import atomic_path

    target = tmp_path / "x.csv"
    old = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("a\n")
    finally:
        os.umask(old)
    assert (target.stat().st_mode & 0o777) == 0o644
