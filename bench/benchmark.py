#!/usr/bin/env python
"""permamap benchmark: megapixels per second and peak memory per stage and end to end, beside
``gdaldem slope`` + ``gdaldem aspect`` and a plain memory copy, as ratios, in one run.

    .venv/bin/python bench/benchmark.py                 # 8192 x 8192 synthetic DEM (minutes)
    .venv/bin/python bench/benchmark.py --n 2048        # quick look
    .venv/bin/python bench/benchmark.py --dem my.tif    # a given float32 DEM on EPSG:4326

Every stage runs in its own child process; its peak memory is the child's high-water resident
set size (``VmHWM`` of /proc/<pid>/status, read by the child at its end, or polled for
``gdaldem``), so stages do not hide each other's peaks. (``getrusage``'s ``ru_maxrss`` is not
used: on Linux it carries the parent's resident size over ``vfork`` + ``exec``.) Times are
measured in the child after imports and a warm-up call on a tiny block (numba kernels are
cached on disk), so a figure is the work itself, not the interpreter start. Megapixels are those
of the N x N DEM.

References (not dependencies of permamap):

* ``gdaldem`` (GDAL command-line tools). Debian/Ubuntu, as root:
  ``apt-get update && apt-get install -y --no-install-recommends gdal-bin``.
* xarray-spatial, for its dask slope/aspect (planar and geodesic):
  ``pip install --target /tmp/xrs --no-deps xarray-spatial`` then ``--xrspatial-path /tmp/xrs``.
  Its slope/aspect do not use datashader (only its rendering helpers do), so a stub stands in
  for datashader when that is not installed.

Stages (see bench/README.md for what each one does and the targets of issue 7).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GDAL_HINT = (
    "gdaldem not found: install it with `apt-get update && apt-get install -y "
    "--no-install-recommends gdal-bin` (Debian/Ubuntu, as root)"
)


# =============================================================================================
# shared helpers (imported lazily in children so the parent stays light)
# =============================================================================================


def _config():
    import yaml

    from permamap.config import prepare

    return prepare(yaml.safe_load((REPO / "config/config.yaml").read_text()))


def _dem_grid(n: int, res_arcsec: float = 1.0):
    """An N x N EPSG:4326 grid of ``res_arcsec`` pixels whose north edge is at 38 N, 100 E
    (metric cell sizes: about 24.5 m x 30.8 m at 30 m resolution)."""
    from permamap.grid import Grid

    res = res_arcsec / 3600.0
    return Grid(west=100.0, north=38.0, res_deg=res, width=n, height=n)


def synthetic_dem_rows(r0: int, r1: int, n: int):
    """Rows r0..r1 of an N x N synthetic DEM (m): ridges and valleys 2,400-5,000 m, several
    wavelengths plus a little noise (so compression sees realistic entropy)."""

    r, c = np.mgrid[r0:r1, 0:n].astype(np.float64)
    z = (
        3700.0
        + 900.0 * np.sin(r / 611.0) * np.cos(c / 733.0)
        + 250.0 * np.sin((r + 2 * c) / 97.0)
        + 60.0 * np.cos((3 * r - c) / 23.0)
        + 15.0 * np.sin(r / 5.0 + c / 7.0)
    )
    rng = np.random.default_rng(r0)
    z += rng.normal(0.0, 0.5, z.shape)
    return z.astype(np.float32)


def make_dem(path: Path, n: int) -> None:
    import rasterio

    from permamap.rasterio_io import atomic_path

    grid = _dem_grid(n)
    profile = dict(
        driver="GTiff",
        width=n,
        height=n,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=grid.transform,
        nodata=-9999.0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        BIGTIFF="IF_SAFER",
    )
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        step = 1024
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            dst.write(synthetic_dem_rows(r0, r1, n)[None], window=((r0, r1), (0, n)))


class NullTarget:
    """``target[key] = block`` that keeps nothing (compute-only timings)."""

    def __setitem__(self, key, value):
        pass


def _gtiff_co(compress: str | None, threads: int, level: int) -> list[str]:
    """gdaldem creation options equal to what permamap.blocks writes (tiled, the float
    predictor of the per-tile files, same codec and level, same threads)."""
    from permamap.blocks import DEFAULT_FLOAT_PREDICTOR

    if not compress:
        return []
    lvl = "ZSTD_LEVEL" if compress == "zstd" else "ZLEVEL"
    return [
        "-co",
        "TILED=YES",
        "-co",
        f"COMPRESS={compress.upper()}",
        "-co",
        f"PREDICTOR={DEFAULT_FLOAT_PREDICTOR}",
        "-co",
        f"{lvl}={level}",
        "-co",
        f"NUM_THREADS={threads}",
    ]


# =============================================================================================
# per-pixel model: a plain NumPy implementation of the same formulas (independent of numba)
# =============================================================================================


def model_params(cfg):
    """Everything the per-pixel model needs, from the config (station forcing, ttop)."""

    from permamap import climate
    from permamap.config import scenario_warming_c

    st = cfg["climate"]["station"]
    tt = cfg["ground"]["ttop"]
    warm = [0.0]
    for name in cfg["scenarios"]:
        w = scenario_warming_c(cfg, name)
        warm += [w[h] for h in cfg["horizons"]]
    return dict(
        t_ref=climate.station_monthly_c(st),
        z_ref=float(st["elevation_m"]),
        lapse=climate.lapse_rates_c_per_m(cfg["climate"]["lapse_rate_c_per_m"]),
        nf=tt["n_freezing"],
        nt=tt["n_thawing"],
        rk=tt["conductivity_ratio"],
        period=tt["period_days"],
        e_solar=tt["solar_effect"],
        warmings=np.array(warm),
    )


def _harmonic_operator():
    """(3, 12) least-squares operator of T = M + a cos wt + b sin wt on month averages
    (re-derived here from the definition in permamap.climate's docstring)."""

    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)
    w = 2 * math.pi / 365.0
    e = np.concatenate([[0.0], np.cumsum(days)])
    t0, t1 = e[:-1], e[1:]
    design = np.column_stack(
        [
            np.ones(12),
            (np.sin(w * t1) - np.sin(w * t0)) / (w * (t1 - t0)),
            (np.cos(w * t0) - np.cos(w * t1)) / (w * (t1 - t0)),
        ]
    )
    return np.linalg.pinv(design), days


def model_numpy(z, slope, solar, prm):
    """(magt (k, h, w) float64, class (k, h, w) uint8) for every warming, plain NumPy:

    T_m = T_m,ref + lapse_m (z_ref - z) + dT; MAAT = sum(T_m d_m)/365; A = |(a, b)| of the
    month-averaged harmonic fit; sinusoid FDD/TDD (theta = arccos(-M/A)); n_t,eff =
    n_t max(0, 1 + e (SI - 1)); TTOP (Smith & Riseborough 2002); class 1/2/3, 255 nodata.
    """

    op, days = _harmonic_operator()
    valid = ~np.isnan(z + slope + solar)
    dz = prm["z_ref"] - z
    base = prm["t_ref"][:, None, None] + prm["lapse"][:, None, None] * dz[None]
    nt = prm["nt"] * np.maximum(0.0, 1.0 + prm["e_solar"] * (solar - 1.0))
    P = prm["period"]
    magts, classes = [], []
    for dT in prm["warmings"]:
        T = base + dT
        M = np.tensordot(days, T, axes=1) / 365.0
        a = np.tensordot(op[1], T, axes=1)
        b = np.tensordot(op[2], T, axes=1)
        A = np.sqrt(a * a + b * b)
        with np.errstate(invalid="ignore", divide="ignore"):
            theta = np.arccos(np.clip(-M / A, -1.0, 1.0))
        tdd_s = P / math.pi * (M * theta + A * np.sin(theta))
        fdd_s = tdd_s - M * P
        flat = A <= np.abs(M)
        tdd = np.where(flat, np.where(M >= 0, M * P, 0.0), tdd_s)
        fdd = np.where(flat, np.where(M >= 0, 0.0, -M * P), fdd_s)
        num = prm["rk"] * nt * tdd - prm["nf"] * fdd
        magt = np.where(num < 0, num / P, (nt * tdd - prm["nf"] * fdd / prm["rk"]) / P)
        cls = np.where(magt < 0, 1, np.where(fdd > 0, 2, 3)).astype(np.uint8)
        magts.append(np.where(valid, magt, np.nan))
        classes.append(np.where(valid, cls, 255).astype(np.uint8))
    return np.stack(magts), np.stack(classes)


def model_numba_stack(t, cfg, prm, forcing=None):
    """The same model through permamap's fused numba kernel (ground.compute_scenarios) on a
    (4, h, w) terrain block: one (2k, h, w) float32 stack, the k warmings' MAGT then their
    class codes, filled by the kernel in place (as blocks.model_block does)."""

    from permamap import climate, ground

    forcing = forcing if forcing is not None else climate.forcing_from_config(cfg)
    k = len(prm["warmings"])
    out = np.empty((2 * k, *t.shape[1:]), np.float32)
    ground.compute_scenarios(
        cfg, forcing, t[0], t[1], t[2], prm["warmings"], solar=t[3], out=(out[:k], out[k:])
    )
    return out


# =============================================================================================
# stages (run in child processes)
# =============================================================================================


def _opts(spec, **kw):
    from permamap.blocks import Options

    return Options(
        chunk_px=spec["chunk"],
        threads=spec["threads"],
        compress=kw.get("compress", spec["compress"]) or "none",
        compress_level=spec["level"],
    )


def _warm(cfg):
    """Load every numba kernel from its cache (or compile it) on a tiny block."""

    from permamap import blocks

    g = _dem_grid(8)
    from rasterio.windows import Window

    z = synthetic_dem_rows(0, 8, 8).astype(np.float64)
    t = blocks.terrain_stack(z, cfg, g, Window(1, 1, 6, 6), 1024, backend="numpy")
    blocks.model_block(t, cfg, g.subgrid(Window(1, 1, 6, 6)), ("climate", "ground", "scenarios"))


def stage_baseline(spec):
    """Python + permamap + numba kernels loaded: the floor of every child's memory."""
    cfg = _config()
    _warm(cfg)
    return {"seconds": 0.0}


def stage_memcopy(spec):

    n = spec["n"]
    src = np.empty((n, n), np.float32)
    src[:] = 1.0
    dst = np.empty_like(src)
    np.copyto(dst, src)
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        np.copyto(dst, src)
    return {"seconds": (time.perf_counter() - t0) / reps}


def _terrain_inputs(spec):
    from rasterio.windows import Window

    from permamap import blocks

    n = spec["n"]
    grid = _dem_grid(n)
    win = Window(1, 1, n - 2, n - 2)
    # read chunk by chunk with the halo, as blocks.terrain_tile does
    z = blocks.RasterReader(spec["dem"], [1])
    return grid, win, z


def stage_slope_aspect(spec):
    """Our geodesic slope + aspect (true metric cell sizes per row): read lazily, map_overlap,
    and either discard (compute), or write 2 float32 files (uncompressed or compressed)."""
    import dask.array as da

    from permamap import blocks

    cfg = _config()
    _warm(cfg)
    grid, win, z = _terrain_inputs(spec)
    _, dx, dy = blocks.row_geometry(grid, 1, int(win.height))
    t0 = time.perf_counter()
    sa = blocks.slope_aspect_dask(z, dx, dy, spec["chunk"])
    mode = spec["mode"]
    if mode == "compute":
        with blocks.scheduler(spec["threads"]):
            da.store([sa[0], sa[1]], [NullTarget(), NullTarget()], lock=False)
    else:
        core = grid.subgrid(win)
        opts = _opts(spec, compress=None if mode == "raw" else spec["compress"])
        out = Path(spec["workdir"])
        blocks.store(
            [
                blocks.RasterOut(
                    out / "ours_slope.tif", core, "float32", -9999.0, [(sa[0], "slope", "degree")]
                ),
                blocks.RasterOut(
                    out / "ours_aspect.tif", core, "float32", -9999.0, [(sa[1], "aspect", "degree")]
                ),
            ],
            opts,
        )
    return {"seconds": time.perf_counter() - t0}


def _xrspatial(path):
    if path:
        sys.path.insert(0, path)
    try:
        import datashader  # noqa: F401
    except ImportError:  # slope/aspect do not use it; its rendering helpers do
        ds = types.ModuleType("datashader")
        tf = types.ModuleType("datashader.transfer_functions")
        colors = types.ModuleType("datashader.colors")
        colors.rgb = lambda *a, **k: None
        ds.transfer_functions, ds.colors = tf, colors
        sys.modules.update(
            {"datashader": ds, "datashader.transfer_functions": tf, "datashader.colors": colors}
        )
    import xrspatial

    return xrspatial


def stage_xrspatial(spec):
    import dask.array as da
    import xarray as xr

    from permamap import blocks

    xrs = _xrspatial(spec.get("xrspatial_path"))
    n = spec["n"]
    grid = _dem_grid(n)
    z = blocks.lazy_raster(spec["dem"], spec["chunk"], bands=[1])[0]
    lat = grid.north - (np.arange(n) + 0.5) * grid.res_deg
    lon = grid.west + (np.arange(n) + 0.5) * grid.res_deg
    dem = (
        xr.DataArray(z, dims=("y", "x"), coords={"y": lat, "x": lon})
        if spec["method"] == "geodesic"
        else xr.DataArray(
            z, dims=("y", "x"), coords={"y": -np.arange(n) * 30.0, "x": np.arange(n) * 30.0}
        )
    )
    small = dem.isel(y=slice(0, 16), x=slice(0, 16)).compute()
    xrs.slope(small, method=spec["method"])
    xrs.aspect(small, method=spec["method"])
    t0 = time.perf_counter()
    s = xrs.slope(dem, method=spec["method"]).data
    a = xrs.aspect(dem, method=spec["method"]).data
    with blocks.scheduler(spec["threads"]):
        da.store([s, a], [NullTarget(), NullTarget()], lock=False)
    return {"seconds": time.perf_counter() - t0}


def stage_terrain_file(spec):
    """Terrain stack (elevation, slope, aspect, solar) written uncompressed: the input of the
    per-pixel model stages. Timed too (slope + aspect + solar index)."""
    from permamap import blocks

    cfg = _config()
    _warm(cfg)
    grid, win, z = _terrain_inputs(spec)
    t0 = time.perf_counter()
    t = blocks.terrain_stack(z, cfg, grid, win, spec["chunk"])
    blocks.store(
        [
            blocks.RasterOut(
                spec["out"],
                grid.subgrid(win),
                "float32",
                -9999.0,
                [
                    (t[i], n, u)
                    for i, (n, u) in enumerate(
                        zip(blocks.TERRAIN_BANDS, blocks.TERRAIN_UNITS, strict=True)
                    )
                ],
            )
        ],
        _opts(spec, compress=None),
    )
    return {"seconds": time.perf_counter() - t0}


def _model_input(spec):
    """(4, rows, n-2) float64 terrain stack of the first ``rows`` rows (lazy, chunked). float64
    for every implementation: NumPy's arithmetic on float32 blocks would partly stay float32
    (e.g. the solar n-factor, NEP 50), so its MAGT would differ from the others by about 1e-6 C."""
    from rasterio.windows import Window

    from permamap import blocks

    n = spec["n"] - 2
    rows = min(n, spec["model_rows"])
    t = blocks.lazy_raster(spec["terrain"], spec["chunk"], window=Window(0, 0, n, rows))
    return t.astype(np.float64), rows * n


def stage_model(spec):
    """The per-pixel model (air temperature -> degree-days -> MAGT -> class, baseline + every
    scenario x horizon) over a band of the terrain stack: numba (permamap's fused kernel per
    chunk through dask ``map_blocks``, filling one float32 stack per chunk as
    ``blocks.model_stack`` does), plain NumPy (chunk loop, one thread), or xarray + dask
    ``apply_ufunc`` of the NumPy version (a function per chunk returning MAGT float64 and class
    uint8 with the warmings last). All three read the same float64 terrain chunks."""
    import dask.array as da

    from permamap import blocks, climate

    cfg = _config()
    _warm(cfg)
    prm = model_params(cfg)
    forcing = climate.forcing_from_config(cfg)
    k = len(prm["warmings"])
    t, npx = _model_input(spec)
    impl = spec["impl"]
    tiny = np.stack(
        [
            synthetic_dem_rows(0, 4, 4).astype(np.float64),
            np.ones((4, 4)),
            np.ones((4, 4)),
            np.ones((4, 4)),
        ]
    )
    model_numpy(tiny[0], tiny[1], tiny[3], prm)
    model_numba_stack(tiny, cfg, prm, forcing)
    sample = None
    t0 = time.perf_counter()
    if impl == "numba":
        # as blocks.model_stack: one task per chunk of the terrain stack fills a (2k, rows,
        # cols) float32 stack (k MAGT bands, then k class codes) in place
        m = t.map_blocks(
            model_numba_stack,
            cfg,
            prm,
            forcing,
            chunks=((2 * k,), *t.chunks[1:]),
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
        )
        with blocks.scheduler(spec["threads"]):
            da.store([m], [NullTarget()], lock=False)
            sample = m[:, :64, :64].compute()
    elif impl == "numpy":
        c = spec["chunk"]
        for r0 in range(0, t.shape[1], c):
            for c0 in range(0, t.shape[2], c):
                tb = t[:, r0 : r0 + c, c0 : c0 + c].compute(scheduler="sync")
                m, cl = model_numpy(tb[0], tb[1], tb[3], prm)
                if sample is None:
                    sample = np.concatenate([m[:, :64, :64], cl[:, :64, :64]]).astype(np.float32)
    elif impl == "xarray":
        import xarray as xr

        z, slope, solar = (xr.DataArray(t[i], dims=("y", "x")) for i in (0, 1, 3))

        def f(zb, sb, sib):
            m, cl = model_numpy(zb, sb, sib, prm)
            return np.moveaxis(m, 0, -1), np.moveaxis(cl, 0, -1)

        m, cl = xr.apply_ufunc(
            f,
            z,
            slope,
            solar,
            dask="parallelized",
            output_core_dims=[["k"], ["k"]],
            output_dtypes=[np.float64, np.uint8],
            dask_gufunc_kwargs={"output_sizes": {"k": k}},
        )
        with blocks.scheduler(spec["threads"]):
            da.store([m.data, cl.data], [NullTarget(), NullTarget()], lock=False)
            mm, cc = m.data[:64, :64].compute(), cl.data[:64, :64].compute()
        sample = np.concatenate([np.moveaxis(mm, -1, 0), np.moveaxis(cc, -1, 0)]).astype(np.float32)
    seconds = time.perf_counter() - t0
    np.save(Path(spec["workdir"]) / f"model_sample_{impl}.npy", sample)
    return {"seconds": seconds, "megapixels": npx / 1e6}


E2E_PRODUCTS = {
    # name: (field or terrain band, dtype, kind)
    "full": ["slope", "aspect", "magt", "class", "stability", "scen_magt", "scen_class"],
    "maps": ["magt", "class", "stability", "scen_magt", "scen_class"],
    "lean": ["magt", "class", "stability", "scen_class"],
    "baseline": ["slope", "aspect", "magt", "class", "stability"],
}


#: What each product set writes beyond the one before it (summary lines).
E2E_SETS = {
    "lean": "MAGT int16 + 11 class rasters",
    "maps": "lean + 9 scenario MAGT int16",
    "full": "maps + slope, aspect float32",
    "baseline": "no scenarios",
}
#: MP/s targets of issue 7 by product set: 18 MP/s is reachable only where compressing the
#: outputs leaves the CPU time for it (README "Performance"); maps and full are printed without.
E2E_TARGETS = {"lean": 18}


def _e2e_outputs(spec, cfg, t, m, core, out_dir):
    from permamap import blocks
    from permamap.products import PRODUCTS

    magt = PRODUCTS["magt"]  # int16 in 0.01 degC, as the workflow writes it

    prods = E2E_PRODUCTS[spec["products"]]
    k = len(blocks.scenario_list(cfg))
    parts = ("ground", "scenarios") if any(p.startswith("scen") for p in prods) else ("ground",)
    f = blocks.model_fields(m, cfg, parts)
    outs = []
    if "slope" in prods:
        outs.append(
            blocks.RasterOut(
                out_dir / "slope.tif", core, "float32", -9999.0, [(t[1], "slope", "degree")]
            )
        )
    if "aspect" in prods:
        outs.append(
            blocks.RasterOut(
                out_dir / "aspect.tif", core, "float32", -9999.0, [(t[2], "aspect", "degree")]
            )
        )
    if "magt" in prods:
        outs.append(
            blocks.RasterOut.of(magt, out_dir / "magt.tif", core, [(f["magt"], "magt", "degC")])
        )
    if "class" in prods:
        outs.append(
            blocks.RasterOut(
                out_dir / "class.tif", core, "uint8", 255, [(f["class"], "class", None)]
            )
        )
    if "stability" in prods:
        outs.append(
            blocks.RasterOut(
                out_dir / "stability.tif", core, "uint8", 255, [(f["stability"], "stability", None)]
            )
        )
    if "scen_magt" in prods:
        outs.append(
            blocks.RasterOut.of(
                magt,
                out_dir / "scen_magt.tif",
                core,
                [
                    blocks.model_slab(
                        m,
                        cfg,
                        parts,
                        [f"s{i}_magt" for i in range(k)],
                        ["degC"] * k,
                        [f"s{i}" for i in range(k)],
                    )
                ],
            )
        )
    if "scen_class" in prods:
        outs.append(
            blocks.RasterOut(
                out_dir / "scen_class.tif",
                core,
                "uint8",
                255,
                [
                    blocks.model_slab(
                        m,
                        cfg,
                        parts,
                        [f"s{i}_class" for i in range(k)],
                        [None] * k,
                        [f"s{i}" for i in range(k)],
                    )
                ],
            )
        )
    return outs


def stage_e2e(spec):
    """DEM -> terrain (map_overlap) -> per-pixel model with every scenario (map_blocks) ->
    compressed tiled GeoTIFFs written chunk by chunk: one dask graph."""
    from permamap import blocks

    cfg = _config()
    _warm(cfg)
    grid, win, z = _terrain_inputs(spec)
    core = grid.subgrid(win)
    out_dir = Path(spec["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    t = blocks.terrain_stack(z, cfg, grid, win, spec["chunk"])
    scen = any(p.startswith("scen") for p in E2E_PRODUCTS[spec["products"]])
    parts = ("ground", "scenarios") if scen else ("ground",)
    m = blocks.model_stack(t, cfg, grid, win, spec["chunk"], parts=parts)
    blocks.store(_e2e_outputs(spec, cfg, t, m, core, out_dir), _opts(spec))
    return {"seconds": time.perf_counter() - t0}


def stage_write_only(spec):
    """Write the end-to-end outputs alone: the same bands, dtypes, compression and writer,
    read from uncompressed copies (page cache), no computation (MAGT: read as degC and encoded
    to int16 again, as the end-to-end run does)."""
    from permamap import blocks
    from permamap.grid import Grid
    from permamap.products import PRODUCTS

    out = []
    with open(spec["manifest"]) as f:
        files = json.load(f)
    t0 = time.perf_counter()
    for src, dst, dtype, nodata, names, scaled in files:
        import rasterio

        with rasterio.open(src) as s:
            g = Grid(
                west=s.transform.c,
                north=s.transform.f,
                res_deg=s.transform.a,
                width=s.width,
                height=s.height,
            )
        arr = blocks.lazy_raster(src, spec["chunk"])
        if dtype == "uint8":
            arr = arr.astype("uint8")
        bands = [(arr[i], n, None) for i, n in enumerate(names)]
        if scaled:
            out.append(blocks.RasterOut.of(PRODUCTS["magt"], dst, g, bands))
        else:
            out.append(blocks.RasterOut(dst, g, dtype, nodata, bands))
    blocks.store(out, _opts(spec))
    return {"seconds": time.perf_counter() - t0}


def _tile_config(n: int, res_arcsec: float = 1.0, gridded: bool = False):
    """The default config on the benchmark DEM as one tile: the region is the DEM's grid less
    its 1-pixel ring (the tile's halo), so the DEM file is the workflow's haloed tile DEM.
    ``gridded``: WorldClim climate and CMIP6 warming fields for every scenario (the files are
    :func:`write_gridded_forcing`'s)."""
    import yaml

    from permamap.config import prepare

    raw = yaml.safe_load((REPO / "config/config.yaml").read_text())
    g = _dem_grid(n, res_arcsec)
    r = g.res_deg
    raw["region"]["bbox"] = [g.west + r, g.north - (n - 1) * r, g.west + (n - 1) * r, g.north - r]
    raw["region"]["resolution_arcsec"] = res_arcsec
    raw["tiles"]["size_px"] = n - 2
    if gridded:
        raw["run"] = "bench_gridded"
        raw["climate"]["source"] = "worldclim"
        for name, ssp in zip(raw["scenarios"], ("ssp126", "ssp245", "ssp585"), strict=False):
            raw["scenarios"][name]["cmip6"] = {"gcms": ["MRI-ESM2-0"], "ssp": ssp, "res": "10m"}
    return prepare(raw)


def write_gridded_forcing(cfg, n: int) -> None:
    """Synthetic rasters in the layout of the retrieved files (relative to the working
    directory): a WorldClim-like 30" monthly climatology and its elevation over the DEM plus a
    margin, and a 10' CMIP6-like monthly warming field per scenario and horizon."""
    import rasterio
    from rasterio.transform import from_origin

    from permamap import retrieve

    g = _dem_grid(n)

    def write(path, data, res, margin):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=len(data))
        prof.update(dtype="float32", crs="EPSG:4326", nodata=-3.4e38, tiled=True)
        tr = from_origin(g.west - margin * res, g.north + margin * res, res, res)
        with rasterio.open(path, "w", transform=tr, **prof) as dst:
            dst.write(data.astype("float32"))

    k = int(g.width * g.res_deg * 120) + 8
    yy, xx = np.mgrid[0:k, 0:k]
    paths = retrieve.climate_paths(cfg)
    months = np.arange(12)[:, None, None]
    write(paths["tavg"], -10 + 2 * months - 0.01 * yy + 0.005 * xx + np.sin(xx / 9.0), 1 / 120, 4)
    write(paths["elev"], (3500 + 2 * xx - 3 * yy + 50 * np.cos(yy / 7.0))[None], 1 / 120, 4)
    k = int(g.width * g.res_deg * 6) + 4
    yy, xx = np.mgrid[0:k, 0:k]
    for (_, h), path in retrieve.cmip6_paths(cfg).items():
        write(path, 0.5 + (h - 2000) / 40 + 0.02 * xx + 0.01 * yy + 0.1 * months, 1 / 6, 2)


#: The workflow's per-tile jobs, in order: (stage, outputs).
TILE_JOBS = ("terrain", "climate", "ground", "scenarios")


def stage_tile_job(spec):
    """One of the workflow's per-tile jobs (``blocks.<job>_tile``, as the Snakemake rules call
    them) on the benchmark DEM as one tile, reading the files the previous job wrote; the
    scenario job with the degradation classes, as the workflow runs it. ``gridded``: the
    scenario job with a WorldClim climatology and CMIP6 warming fields
    (:func:`write_gridded_forcing`) instead of the sample config's station and trends."""
    from permamap import blocks
    from permamap.grid import Grid

    d = Path(spec["out"]).resolve()
    d.mkdir(parents=True, exist_ok=True)
    gridded = spec.get("gridded", False)
    cfg = _tile_config(spec["n"], gridded=gridded)
    if gridded:
        os.chdir(d)  # the retrieved files' paths are relative to the working directory
        write_gridded_forcing(cfg, spec["n"])
    cfg["compute"]["threads"] = spec["threads"]
    cfg["blocks"]["chunk_px"] = spec["chunk"]
    cfg["blocks"]["compress"] = spec["compress"]
    _warm(cfg)
    (tid,) = [t.id for t in Grid.from_config(cfg).tiles(cfg["tiles"]["size_px"])]
    th = spec["threads"]
    t0 = time.perf_counter()
    job = spec["job"]
    if job == "terrain":
        blocks.terrain_tile(cfg, spec["dem"], tid, d / "terrain.tif", threads=th)
    elif job == "climate":
        blocks.climate_tile(cfg, d / "terrain.tif", tid, d / "climate.tif", threads=th)
    elif job == "ground":
        blocks.ground_tile(
            cfg,
            d / "terrain.tif",
            d / "climate.tif",
            tid,
            d / "ground_magt.tif",
            d / "ground_class.tif",
            threads=th,
            out_alt=d / "ground_alt.tif",
        )
    else:
        blocks.scenarios_tile(
            cfg,
            d / "terrain.tif",
            tid,
            d / "scenarios_magt.tif",
            d / "scenarios_class.tif",
            threads=th,
            ground_alt_path=d / "ground_alt.tif",
            ground_class_path=d / "ground_class.tif",
            out_degradation=d / "scenarios_degradation.tif",
        )
    return {"seconds": time.perf_counter() - t0}


def tile_job_request_mb(job: str, n: int, args, gridded: bool = False) -> int:
    """``mem_mb`` (attempt 1) the workflow's rule asks for this tile job on the benchmark DEM as
    one tile, with the benchmark's chunks and threads (``blocks.job_mem_mb``, as
    ``workflow/rules/common.smk`` computes it)."""
    from permamap import blocks

    cfg = _tile_config(n, gridded=gridded)
    opts = blocks.options_from_config(cfg, threads=args.threads, chunk_px=args.chunk)
    n_scen, n_hor = len(cfg["scenarios"]), len(cfg["horizons"])
    per_px = blocks.job_bytes_per_px(job, n_scen, n_hor, gridded=gridded, cmip6=gridded)
    return blocks.job_mem_mb(per_px, 1, tile_px=cfg["tiles"]["size_px"], opts=opts)


STAGES = {
    "make_dem": lambda spec: stage_make_dem(spec),
    "copies": lambda spec: stage_copies(spec),
    "baseline": stage_baseline,
    "memcopy": stage_memcopy,
    "slope_aspect": stage_slope_aspect,
    "xrspatial": stage_xrspatial,
    "terrain_file": stage_terrain_file,
    "model": stage_model,
    "e2e": stage_e2e,
    "write_only": stage_write_only,
    "tile_job": stage_tile_job,
}


def _vm_hwm_mb(pid="self") -> float:
    """Peak resident set size (MB) of a live process: VmHWM of /proc/<pid>/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return float("nan")


def stage_make_dem(spec):
    make_dem(Path(spec["dem"]), spec["n"])
    return {"seconds": 0.0}


def stage_copies(spec):
    _uncompressed_copies(Path(spec["e2e_dir"]), Path(spec["workdir"]))
    return {"seconds": 0.0}


def child_main(stage: str, spec_json: str, result_path: str) -> None:
    sys.path.insert(0, str(REPO / "src"))
    spec = json.loads(spec_json)
    res = STAGES[stage](spec)
    res["rss_mb"] = _vm_hwm_mb()
    Path(result_path).write_text(json.dumps(res))


# =============================================================================================
# parent: run children, measure peak RSS, print the table
# =============================================================================================


def _wait_rss(proc) -> tuple[int, float]:
    """Wait for an external child, polling its VmHWM; (exit status, peak RSS in MB)."""
    peak = 0.0
    while proc.poll() is None:
        hwm = _vm_hwm_mb(proc.pid)
        if hwm == hwm:
            peak = max(peak, hwm)
        time.sleep(0.02)
    return proc.returncode, peak


def best_of(repeat: int, fn, *args) -> dict:
    """Run a stage ``repeat`` times: the shortest time (the least disturbed by other work on a
    shared machine) and the largest peak memory."""
    runs = [fn(*args) for _ in range(max(1, repeat))]
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["rss_mb"] = max(r["rss_mb"] for r in runs)
    return best


def run_child(stage: str, spec: dict, env=None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    cmd = [sys.executable, __file__, "--child", stage, json.dumps(spec), result]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    code = proc.wait()
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"benchmark stage {stage} failed (exit {code})")
    res = json.loads(Path(result).read_text())
    os.unlink(result)
    res.update(wall=wall)
    return res


def run_gdaldem(dem: Path, out_dir: Path, compress: str | None, threads: int, level: int) -> dict:
    """gdaldem slope + gdaldem aspect (Horn), timed together; peak RSS of the larger."""
    secs, rss = 0.0, 0.0
    env = dict(os.environ, GDAL_NUM_THREADS=str(threads))
    for what in ("slope", "aspect"):
        out = out_dir / f"gdal_{what}_{compress or 'raw'}.tif"
        cmd = [
            "gdaldem",
            what,
            "-q",
            "-alg",
            "Horn",
            *_gtiff_co(compress, threads, level),
            str(dem),
            str(out),
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env)
        code, r = _wait_rss(proc)
        secs += time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"gdaldem {what} failed (exit {code})")
        rss = max(rss, r)
        out.unlink()
    return {"seconds": secs, "rss_mb": rss}


def _uncompressed_copies(e2e_dir: Path, work: Path) -> Path:
    """Uncompressed tiled copies of the e2e outputs and a manifest for the write-only stage."""
    import rasterio
    from rasterio.shutil import copy

    manifest = []
    src_dir = work / "raw_copies"
    src_dir.mkdir(exist_ok=True)
    for p in sorted(e2e_dir.glob("*.tif")):
        raw = src_dir / p.name
        copy(str(p), str(raw), driver="GTiff", TILED="YES", COMPRESS="NONE", BIGTIFF="IF_SAFER")
        with rasterio.open(p) as s:
            manifest.append(
                [
                    str(raw),
                    str(work / "write_only" / p.name),
                    s.dtypes[0],
                    s.nodata,
                    list(s.descriptions),
                    s.scales[0] != 1.0,
                ]
            )
    (work / "write_only").mkdir(exist_ok=True)
    path = work / "write_manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def _check_model_samples(work: Path) -> str:

    ref = np.load(work / "model_sample_numpy.npy")
    k = ref.shape[0] // 2
    lines = []
    for impl in ("numba", "xarray"):
        p = work / f"model_sample_{impl}.npy"
        if not p.exists():
            continue
        s = np.load(p)
        dm = np.nanmax(np.abs(s[:k] - ref[:k]))
        dc = int((s[k:] != ref[k:]).sum())
        lines.append(
            f"{impl} vs numpy: max |dMAGT| = {dm:.2e} C, class mismatches = {dc} of {ref[k:].size}"
        )
    return "; ".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8192, help="DEM edge in pixels (default 8192)")
    ap.add_argument("--dem", help="use this float32 EPSG:4326 DEM (N x N is read from it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=512, help="dask chunk edge in pixels")
    ap.add_argument(
        "--compress",
        default="zstd",
        choices=["deflate", "zstd"],
        help="codec of every compressed output, ours and gdaldem's (default zstd)",
    )
    ap.add_argument(
        "--level",
        type=int,
        default=1,
        help="ZSTD/DEFLATE level, ours and gdaldem's (default 1, blocks' default)",
    )
    ap.add_argument(
        "--products",
        default="full",
        choices=sorted(E2E_PRODUCTS),
        help="end-to-end outputs: full = slope, aspect, MAGT, class, stability and every "
        "scenario's MAGT and class (then maps and lean are run too); maps = full without "
        "slope and aspect; lean = MAGT + the class rasters only",
    )
    ap.add_argument(
        "--model-rows",
        type=int,
        default=2048,
        help="rows of the DEM used for the per-pixel model comparisons (NumPy is slow; "
        "2048 rows of 8192 px: the numba stage lasts about 0.5 s, long enough to time)",
    )
    ap.add_argument("--no-scaling", action="store_true", help="skip the 4x-area run at N/2")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every stage this many times; report the shortest time, largest memory",
    )
    ap.add_argument("--xrspatial-path", help="directory holding xarray-spatial (pip --target)")
    ap.add_argument("--workdir", help="keep the files here (default: a temporary directory)")
    args = ap.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="permamap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    n = args.n
    dem = Path(args.dem) if args.dem else work / f"dem_{n}.tif"
    if args.dem:
        import rasterio

        with rasterio.open(dem) as s:
            n = min(s.width, s.height)
    elif not dem.exists():
        print(f"generating a {n} x {n} float32 DEM at {dem} ...", flush=True)
        run_child("make_dem", dict(n=n, dem=str(dem)))
    spec = dict(
        n=n,
        dem=str(dem),
        threads=args.threads,
        chunk=args.chunk,
        compress=args.compress,
        workdir=str(work),
        model_rows=args.model_rows,
        level=args.level,
        products=args.products,
        xrspatial_path=args.xrspatial_path,
    )
    mp = n * n / 1e6
    has_gdal = shutil.which("gdaldem") is not None
    rows: list[tuple[str, float, float, float]] = []  # name, seconds, MP, rss
    mem_requests: dict[str, tuple[float, int]] = {}  # tile job: (peak MB, request MB)

    def add(name, res, megapixels=mp):
        rows.append((name, res["seconds"], megapixels, res["rss_mb"]))
        rate = megapixels / res["seconds"] if res["seconds"] else 0.0
        print(
            f"  {name:<52s} {res['seconds']:8.2f} s {rate:8.1f} MP/s {res['rss_mb']:7.0f} MB"
            f"   load {os.getloadavg()[0]:4.1f}",
            flush=True,
        )
        return res

    print(
        f"permamap benchmark: {n} x {n} float32 DEM ({mp:.1f} MP), {args.threads} threads, "
        f"chunks {args.chunk}, {args.compress} level {args.level}; work dir {work}",
        flush=True,
    )
    print(
        "columns: stage, seconds, megapixels/s, peak RSS of the stage's process, 1-min load "
        "average after it (other work on the machine slows every figure)",
        flush=True,
    )
    print(f"machine: {os.cpu_count()} CPUs, {_mem_gb():.0f} GB RAM, {_cpu_name()}", flush=True)
    base = add("baseline (python + permamap + kernels)", run_child("baseline", spec))
    add("memory copy (np.copyto)", best_of(args.repeat, run_child, "memcopy", spec))
    if has_gdal:
        add(
            "gdaldem slope+aspect, uncompressed output",
            best_of(args.repeat, run_gdaldem, dem, work, None, args.threads, args.level),
        )
        add(
            f"gdaldem slope+aspect, {args.compress} output",
            best_of(args.repeat, run_gdaldem, dem, work, args.compress, args.threads, args.level),
        )
    else:
        print("  " + GDAL_HINT, flush=True)
    add(
        "ours slope+aspect, compute only",
        best_of(args.repeat, run_child, "slope_aspect", dict(spec, mode="compute")),
    )
    add(
        "ours slope+aspect, uncompressed output",
        best_of(args.repeat, run_child, "slope_aspect", dict(spec, mode="raw")),
    )
    add(
        f"ours slope+aspect, {args.compress} output",
        best_of(args.repeat, run_child, "slope_aspect", dict(spec, mode="compressed")),
    )
    try:
        _xrspatial(args.xrspatial_path)
        has_xrs = True
    except ImportError:
        has_xrs = False
        print(
            "  xarray-spatial not importable: pass --xrspatial-path (see the module docstring)",
            flush=True,
        )
    if has_xrs:
        add(
            "xarray-spatial slope+aspect (dask, planar)",
            best_of(args.repeat, run_child, "xrspatial", dict(spec, method="planar")),
        )
        add(
            "xarray-spatial slope+aspect (dask, geodesic)",
            best_of(args.repeat, run_child, "xrspatial", dict(spec, method="geodesic")),
        )
    terrain = work / "terrain.tif"
    add(
        "ours terrain stack (slope, aspect, solar), raw out",
        best_of(args.repeat, run_child, "terrain_file", dict(spec, out=str(terrain))),
    )
    mspec = dict(spec, terrain=str(terrain))
    for impl, label in (
        ("numba", f"model: numba fused, dask {args.threads} threads"),
        ("numba1", "model: numba fused, 1 thread"),
        ("numpy", "model: plain NumPy (1 thread)"),
        ("xarray", f"model: xarray+dask apply_ufunc, {args.threads} thr"),
    ):
        s = dict(
            mspec,
            impl="numba" if impl == "numba1" else impl,
            threads=1 if impl == "numba1" else args.threads,
        )
        r = best_of(args.repeat, run_child, "model", s)
        add(label, r, r["megapixels"])
    print(
        "  cross-check (first 64 x 64 px, all warmings): " + _check_model_samples(work), flush=True
    )
    e2e_dir = work / "e2e"
    e2e = add(
        f"END TO END ({args.products} products, {args.compress})",
        best_of(args.repeat, run_child, "e2e", dict(spec, out=str(e2e_dir))),
    )
    # the smaller product sets too (the 18 MP/s target depends on what is written)
    for extra in ("maps", "lean") if args.products == "full" else ():
        add(
            f"END TO END, {extra} products only",
            best_of(
                args.repeat,
                run_child,
                "e2e",
                dict(spec, products=extra, out=str(work / f"e2e_{extra}")),
            ),
        )
    run_child("copies", dict(spec, e2e_dir=str(e2e_dir)))
    manifest = work / "write_manifest.json"
    add(
        "write the same outputs alone",
        best_of(args.repeat, run_child, "write_only", dict(spec, manifest=str(manifest))),
    )
    if not args.dem:
        # the workflow's own per-tile jobs (files between the stages, the Monte Carlo
        # probability in the ground job, degradation classes in the scenario job)
        # ... and the scenario job as a real-data run has it: gridded climate, CMIP6 fields
        jobs = [(job, job, False) for job in TILE_JOBS]
        jobs.append(("scenarios (WorldClim, CMIP6)", "scenarios", True))
        for label, job, gridded in jobs:
            res = add(
                f"workflow tile job: {label}",
                best_of(
                    args.repeat,
                    run_child,
                    "tile_job",
                    dict(spec, job=job, gridded=gridded, out=str(work / "tile_jobs")),
                ),
            )
            request = tile_job_request_mb(job, n, args, gridded)
            mem_requests[label] = (res["rss_mb"], request)
            print(f"    the rule's mem_mb request (attempt 1): {request} MB")
    if not args.no_scaling and not args.dem:
        n2 = n // 2
        dem2 = work / f"dem_{n2}.tif"
        if not dem2.exists():
            run_child("make_dem", dict(n=n2, dem=str(dem2)))
        small = add(
            f"END TO END at {n2} x {n2} (1/4 area)",
            best_of(
                args.repeat,
                run_child,
                "e2e",
                dict(spec, n=n2, dem=str(dem2), out=str(work / "e2e_small")),
            ),
            n2 * n2 / 1e6,
        )
    else:
        small = None
    _summary(rows, base, e2e, small, has_gdal, args, mem_requests)


def _rate(rows, name):
    for r in rows:
        if r[0].startswith(name):
            return r[2] / r[1], r
    return None, None


def _summary(rows, base, e2e, small, has_gdal, args, mem_requests=None):
    print("\nratios (targets of issue 7):")

    def line(text, value, target=None, higher=True):
        if value is None:
            print(f"  {text:<62s}   n/a")
            return
        ok = (
            ""
            if target is None
            else ("  MET" if (value >= target if higher else value <= target) else "  NOT MET")
        )
        tgt = "" if target is None else f"  (target {'>=' if higher else '<='} {target:g})"
        print(f"  {text:<62s} {value:8.2f}{tgt}{ok}")

    copy, _ = _rate(rows, "memory copy")
    g_raw, _ = _rate(rows, "gdaldem slope+aspect, uncompressed")
    g_cmp, _ = _rate(rows, f"gdaldem slope+aspect, {args.compress}")
    o_cmp_only, _ = _rate(rows, "ours slope+aspect, compute only")
    o_raw, _ = _rate(rows, "ours slope+aspect, uncompressed")
    o_cmp, _ = _rate(rows, f"ours slope+aspect, {args.compress}")
    x_pl, _ = _rate(rows, "xarray-spatial slope+aspect (dask, planar)")
    x_geo, _ = _rate(rows, "xarray-spatial slope+aspect (dask, geodesic)")
    m_nb, _ = _rate(rows, "model: numba fused, dask")
    m_nb1, _ = _rate(rows, "model: numba fused, 1 thread")
    m_np, _ = _rate(rows, "model: plain NumPy")
    m_xr, _ = _rate(rows, "model: xarray")
    e_rate, e_row = _rate(rows, "END TO END (")
    w_rate, w_row = _rate(rows, "write the same outputs alone")

    def ratio(a, b):
        return a / b if a and b else None

    line("memory copy MP/s (the machine's limit)", copy)
    line("slope+aspect compute only / gdaldem uncompressed", ratio(o_cmp_only, g_raw), 5)
    line("slope+aspect uncompressed out / gdaldem uncompressed", ratio(o_raw, g_raw))
    line(
        f"slope+aspect {args.compress} out / gdaldem {args.compress} (end to end)",
        ratio(o_cmp, g_cmp),
        1.8,
    )
    line("slope+aspect compute / xarray-spatial dask planar", ratio(o_cmp_only, x_pl), 2)
    line("slope+aspect compute / xarray-spatial dask geodesic", ratio(o_cmp_only, x_geo))
    line("per-pixel model numba / plain NumPy", ratio(m_nb, m_np), 7)
    line("per-pixel model numba 1 thread / plain NumPy", ratio(m_nb1, m_np))
    line("per-pixel model numba / xarray+dask apply_ufunc", ratio(m_nb, m_xr), 3.5)
    rates = {args.products: e_rate}
    rates.update({x: _rate(rows, f"END TO END, {x} products")[0] for x in ("maps", "lean")})
    for name, what in E2E_SETS.items():
        if rates.get(name) is not None:
            # the target is the lean set's (README "Performance": which product sets reach it)
            line(f"end to end MP/s of DEM ({name}: {what})", rates[name], E2E_TARGETS.get(name))
    line("end to end peak memory (MB)", e_row[3] if e_row else None, 1024, higher=False)
    line(
        "end to end time / write-only time",
        (e_row[1] / w_row[1]) if e_row and w_row else None,
        1.3,
        higher=False,
    )
    if small:
        line("4x area: wall time ratio", e_row[1] / small["seconds"], 4.5, higher=False)
        line("4x area: peak memory ratio", e_row[3] / small["rss_mb"], 1.2, higher=False)
    if mem_requests:
        worst = max(mem_requests, key=lambda j: mem_requests[j][0] / mem_requests[j][1])
        peak, req = mem_requests[worst]
        line(f"tile job peak / the rule's mem_mb request (worst: {worst})", peak / req, 1, False)
    print(f"  (baseline child: {base['rss_mb']:.0f} MB resident before any work)")


def _mem_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError):
        return float("nan")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
