"""The Snakemake workflow end to end on a tiny region, in a temporary directory.

The region of the shared tiny run (conftest.TINY_BBOX: 101.0-102.2 E, 36.4-37.8 N) holds Xining
in the Huangshui valley and the Daban / Lenglong ridges north of it, so it checks the issue's
acceptance: the valley comes out as seasonally frozen ground and the high ridges as permafrost.
"""

import subprocess

import numpy as np
import pandas as pd
import pytest
import rasterio
from conftest import SNAKEMAKE, TINY_BBOX, copy_workflow, snakemake
from pyproj import Geod
from rio_cogeo.cogeo import cog_validate

from permamap.products import PRODUCTS

pytestmark = pytest.mark.workflow


def test_dry_run_lists_one_job_per_tile_and_stage(tmp_path):
    copy_workflow(tmp_path)
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    # default sample: 4 x 4 degrees at 30" = 480 px, 240 px tiles -> 4 tiles
    for rule in ("tile_dem", "terrain", "climate", "ground", "scenarios"):
        counts = [line.split() for line in out.splitlines() if line.strip().startswith(rule + " ")]
        assert counts and counts[0][1] == "4", (rule, counts)
    assert any(line.split()[:2] == ["mosaic_scenario", "9"] for line in out.splitlines())


def _dry_run_jobs(work, *configfiles) -> dict[str, list[dict]]:
    """{rule: [resources of each job]} of ``snakemake -n`` with the given config files."""
    proc = snakemake(work, "-n", "-F", "--cores", "2", "--configfile", *configfiles)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs, rule = {}, None
    for line in (proc.stdout + proc.stderr).splitlines():
        s = line.strip()
        if s.startswith(("rule ", "localrule ")) and s.endswith(":"):
            rule = s.split()[1].rstrip(":")
            jobs.setdefault(rule, [])
        elif s.startswith("resources:") and rule:
            res = dict(
                kv.split("=", 1) for kv in s[len("resources:") :].replace(" ", "").split(",")
            )
            jobs[rule].append(res)
            rule = None
    return jobs


def test_plateau_margin_dag_stays_small_and_tile_jobs_ask_for_chunk_memory(tmp_path):
    """Issue 7: the plateau-margin config (8 x 7 degrees at 30 m, 3 scenarios x 4 horizons) stays
    below a few thousand jobs (Snakemake needs about 1 ms per job to build the DAG), and a tile
    job's memory request does not grow with the tile (the tiles are processed in chunks): the
    same region in 4,000-pixel tiles asks for the same per job."""
    copy_workflow(tmp_path)
    base = ["config/xining.yaml", "config/plateau_margin.yaml"]
    jobs = _dry_run_jobs(tmp_path, *base)
    counts = {r: len(v) for r, v in jobs.items()}
    # 28,800 x 25,200 px in 1,800 px tiles: 16 x 14 = 224 tiles, one job per tile and stage
    for rule in ("tile_dem", "terrain", "climate", "ground", "scenarios"):
        assert counts.get(rule, 0) + counts.get(f"{rule}_retrieved", 0) == 224, (rule, counts)
    assert counts["mosaic_scenario"] == 12  # 3 scenarios x 4 horizons, one mosaic job each
    assert sum(counts.values()) < 2000, counts

    big = tmp_path / "big_tiles.yaml"
    big.write_text("tiles:\n  size_px: 4000\n")
    jobs_big = _dry_run_jobs(tmp_path, *base, str(big))
    assert len(jobs_big["scenarios_retrieved"]) == 8 * 7  # 8 x 7 tiles of 4,000 px
    for rule in ("terrain", "climate_retrieved", "ground_retrieved", "scenarios_retrieved"):
        mem = {int(r["mem_mb"]) for r in jobs[rule]}
        mem_big = {int(r["mem_mb"]) for r in jobs_big[rule]}
        assert len(mem) == 1 and mem == mem_big, (rule, mem, mem_big)
        # and within a compute node's share: 2 threads' chunks, not a 1,800 x 1,800 tile of
        # 13 scenario x horizon fields (that alone would be 3.2 MP x 500+ B = 1.7 GB)
        assert mem.pop() < 1600, rule
    # the tile cut holds its tile whole: its request grows with the tile
    assert int(jobs_big["tile_dem_retrieved"][0]["mem_mb"]) > int(
        jobs["tile_dem_retrieved"][0]["mem_mb"]
    )


def test_lint_is_clean(repo):
    proc = subprocess.run(
        [SNAKEMAKE, "--lint"], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_bad_config_stops_before_any_job(tmp_path):
    copy_workflow(tmp_path)
    bad = tmp_path / "config" / "bad.yaml"
    bad.write_text("ground:\n  model: magic\n")
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "1", "--configfile", "config/bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "ground.model = 'magic' is not allowed; allowed: 'ttop', 'lapse'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _expected_rasters(cfg):
    files = [f"terrain/{p}.tif" for p in ("elevation", "slope", "aspect", "solar")]
    files += [f"climate/{p}.tif" for p in ("maat", "fdd", "tdd")]
    files += [
        f"baseline/{p}.tif"
        for p in ("magt", "class", "stability", "alt", "freeze_depth", "probability", "zone")
    ]
    files += [
        f"scenarios/{s}/{h}/{p}.tif"
        for s in cfg["scenarios"]
        for h in cfg["horizons"]
        for p in ("magt", "class")
    ]
    return files


def test_outputs_are_valid_cogs_with_contract(tiny_run):
    work, cfg, out = tiny_run["work"], tiny_run["cfg"], tiny_run["out"]
    for rel in _expected_rasters(cfg):
        path = out / rel
        assert path.exists(), rel
        is_valid, errors, _ = cog_validate(str(path))
        assert is_valid, (rel, errors)
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 4326
            assert src.count == 1
            assert src.nodata is not None
            assert src.descriptions[0] and src.units[0]
            assert src.tags()["config_hash"] and src.tags()["permamap_version"]
            # the product table's dtype, nodata and scale/offset (MAGT: int16 in 0.01 degC)
            p = PRODUCTS[src.tags()["product"]]
            assert (src.dtypes[0], src.nodata, src.scales[0], src.offsets[0]) == (
                p.dtype,
                p.nodata,
                p.scale,
                p.offset,
            ), rel
            assert (src.width, src.height) == (72, 84)
            if src.tags()["product"] in ("class", "stability", "zone"):
                assert src.colormap(1)[1][:3] != (0, 0, 0)
                assert src.tags()["class_1"]
    for name in ("baseline_magt", "baseline_class", "baseline_stability", "scenarios_class"):
        png = out / "figures" / f"{name}.png"
        assert png.stat().st_size > 10_000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no temporary or partial files left anywhere
    leftovers = [p for p in work.rglob("*") if ".part" in p.name or p.name.endswith(".tmp")]
    assert not leftovers


def _sample(path, lon, lat):
    with rasterio.open(path) as src:
        return next(src.sample([(lon, lat)]))[0]


def test_xining_valley_is_seasonally_frozen_and_ridges_permafrost(tiny_run):
    cls = tiny_run["out"] / "baseline" / "class.tif"
    assert _sample(cls, 101.78, 36.62) == 2  # Xining, Huangshui valley (about 2,300 m)
    assert _sample(cls, 101.9, 37.6) == 1  # Lenglong ridge (about 3,850 m in the 9 km DEM)
    with rasterio.open(cls) as src:
        c = src.read(1)
    assert {1, 2} <= set(np.unique(c))


def test_area_table_sums_to_the_region_area(tiny_run):
    df = pd.read_csv(tiny_run["out"] / "tables" / "areas.csv")
    west, south, east, north = TINY_BBOX
    area, _ = Geod(ellps="WGS84").polygon_area_perimeter(
        [west, east, east, west], [south, south, north, north]
    )
    for (scen, hor), grp in df.groupby(["scenario", "horizon"]):
        assert grp["area_km2"].sum() == pytest.approx(abs(area) / 1e6, rel=1e-3), (scen, hor)
        assert grp["share"].sum() == pytest.approx(1.0, abs=1e-5)
    # permafrost area never grows with warming, and the first horizon already loses some
    pf = df[df.class_code == 1].sort_values("warming_c")
    assert (np.diff(pf["area_km2"].to_numpy()) <= 0).all()
    assert pf["area_km2"].iloc[0] > pf["area_km2"].iloc[1] > 0
    assert pf["scenario"].iloc[0] == "baseline"


def test_lower_limit_table(tiny_run):
    df = pd.read_csv(tiny_run["out"] / "tables" / "lower_limit_by_aspect.csv")
    base = df[df.scenario == "baseline"].set_index("sector")
    assert list(base.index) == ["flat", "N", "NE", "E", "SE", "S", "SW", "W", "NW"]
    ok = base[base.status == "ok"]
    assert len(ok) >= 1
    # the limit lies inside the region's permafrost belt of the 9 km sample (3,400-4,200 m)
    assert ok["lower_limit_m"].between(3400, 4200).all()
    # warming raises the limit wherever both are defined
    s = df[(df.scenario == "ssp245") & (df.horizon == 2050)].set_index("sector")
    both = ok.index.intersection(s[s.status == "ok"].index)
    assert (s.loc[both, "lower_limit_m"] > ok.loc[both, "lower_limit_m"]).all()


def test_rerun_has_nothing_to_do(tiny_run):
    """Every output of rule all, the deliverables included, is up to date after one run."""
    proc = subprocess.run(
        tiny_run["cmd"] + ["-n"], cwd=tiny_run["work"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
