"""Reliability: a killed run resumes to identical outputs; results do not depend on the core
count; an all-nodata tile stays nodata instead of becoming permafrost or 0 C."""

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
from conftest import tiny_raw_config
from test_workflow import SNAKEMAKE, _copy_workflow

pytestmark = pytest.mark.workflow


def _setup(repo, work: Path, **overrides) -> list[str]:
    _copy_workflow(repo, work)
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


def _run(work: Path, args: list[str], cores: int = 2) -> None:
    """Run the workflow to completion in ``work`` and fail with its stderr if it does not."""
    proc = subprocess.run(
        [SNAKEMAKE, "--cores", str(cores), *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _checksums(work: Path) -> dict:
    """sha256 of every raster and table (the determinism contract: bit-identical rasters and
    tables; GeoPackages and catalogs carry write timestamps by their formats' design)."""
    out = {}
    for p in sorted((work / "results").rglob("*")):
        if p.is_file() and p.suffix in (".tif", ".csv"):
            out[str(p.relative_to(work))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory, repo):
    work = tmp_path_factory.mktemp("ref")
    args = _setup(repo, work)
    _run(work, args, cores=2)
    sums = _checksums(work)
    assert len(sums) >= 12
    return sums


def test_same_results_with_one_core(repo, tmp_path, reference):
    args = _setup(repo, tmp_path)
    _run(tmp_path, args, cores=1)
    assert _checksums(tmp_path) == reference


def test_killed_run_resumes_to_identical_outputs(repo, tmp_path, reference):
    args = _setup(repo, tmp_path)
    proc = subprocess.Popen(
        [SNAKEMAKE, "--cores", "2", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
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
    _run(tmp_path, args, cores=2)
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
    cfg["region"]["bbox"] = [101.0, 36.5, 101.8, 37.2]
    cfg["dem"] = {"source": "file", "path": str(dem), "resampling": "bilinear"}
    (tmp_path / "config" / "t.yaml").write_text(yaml.safe_dump(cfg))
    _run(tmp_path, args, cores=2)
    out = tmp_path / "results" / "tiny"
    with rasterio.open(out / "baseline" / "class.tif") as src:
        cls = src.read(1)
    with rasterio.open(out / "baseline" / "magt.tif") as src:
        magt = src.read(1)
    west = cls[:, :20]  # 101.0-101.33 E lies in the nodata half (west of 101.4 E)
    assert (west == 255).all() and (magt[:, :20] == -9999.0).all()
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
