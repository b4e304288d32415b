"""Chunked tile processing (permamap.blocks): seams, chunk/thread determinism, backends, gdaldem.

* Tile seams: a region cut into haloed tiles gives bit-identical slope, aspect, solar index,
  MAGT, classes and scenario outputs to a one-tile run (DESIGN.md 5; issue 7).
* Chunks and threads: any chunk size (including tiny ones that do not divide the tile, so
  halo bugs show) and thread count give the same bits as the whole tile in memory (the
  ``numpy`` backend), and as the in-memory foundation steps (``permamap.steps``).
* Analytic: a plane of known gradient on non-square projected cells through ``map_overlap``.
* Independent tool: Horn slope/aspect against ``gdaldem`` on a projected grid (EPSG:32647,
  25 m x 30 m cells), where GDAL uses the true cell sizes. On EPSG:4326 ``gdaldem`` treats the
  pixels as square, so it is not a correctness reference there.
* Atomic output: a chunk that fails leaves no output and no temporary file.
"""

from __future__ import annotations

import copy
import math
import subprocess
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import requires_gdal_tool, tiny_raw_config

from permamap import blocks, steps
from permamap.config import prepare
from permamap.errors import ConfigError
from permamap.grid import HALO_PX, Grid
from permamap.products import FLOAT_NODATA
from permamap.rasterio_io import read_bands, write_bands

BBOX = (101.0, 36.6, 101.4, 37.0)  # 48 x 48 px at 30": Daban Shan north of Xining


def _bits(a):
    """Raw bits, so NaN == NaN and -0.0 != 0.0: 'bit-identical' means exactly that."""
    a = np.ascontiguousarray(a)
    return a.view(
        np.uint64 if a.dtype.itemsize == 8 else np.uint32 if a.dtype.itemsize == 4 else np.uint8
    )


def _synthetic_dem(grid: Grid) -> np.ndarray:
    """Ridges and valleys from 2,600 to 4,700 m (across the ~3,650 m permafrost limit) with
    nodata holes on tile seams and at the region edge."""
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width].astype(np.float64)
    z = (
        3650.0
        + 800.0 * np.sin(rows / 5.3) * np.cos(cols / 7.1)
        + 250.0 * np.sin((rows + 2 * cols) / 3.7)
        + 4.0 * cols
    )
    z[15:19, 20:23] = np.nan  # straddles the seam at row 17 (tile 16 + 1 halo row)
    z[30:33, 0:2] = np.nan  # at the west edge
    return z


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """A prepared tiny config (48 x 48 px) and its haloed region DEM on disk."""
    import yaml
    from conftest import REPO

    raw = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = prepare(tiny_raw_config(raw, bbox=BBOX, res_arcsec=30, tile_px=16))
    cfg["ground"]["probability"]["samples"] = 20
    d = tmp_path_factory.mktemp("blocks")
    grid = Grid.from_config(cfg)
    big = grid.expanded(HALO_PX)
    z = _synthetic_dem(big)
    write_bands(
        d / "dem.tif",
        np.where(np.isnan(z), FLOAT_NODATA, z).astype(np.float32),
        big,
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=["elevation"],
        units=["m"],
    )
    return cfg, d


def _run_tile(cfg, d, tile_id, tag, **kw):
    """tile_dem -> blocks terrain/ground/scenarios for one tile; returns the file paths."""
    out = d / tag / tile_id
    out.mkdir(parents=True, exist_ok=True)
    steps.tile_dem(cfg, d / "dem.tif", tile_id, out / "dem.tif")
    blocks.terrain_tile(cfg, out / "dem.tif", tile_id, out / "terrain.tif", **kw)
    blocks.ground_tile(
        cfg,
        out / "terrain.tif",
        None,
        tile_id,
        out / "gm.tif",
        out / "gc.tif",
        out_alt=out / "ga.tif",
        **kw,
    )
    blocks.scenarios_tile(cfg, out / "terrain.tif", tile_id, out / "sm.tif", out / "sc.tif", **kw)
    return {k: out / f"{k}.tif" for k in ("terrain", "gm", "ga", "gc", "sm", "sc")}


def _region_arrays(cfg, files_by_tile):
    """Assemble every band of every per-tile file into region arrays."""
    grid = Grid.from_config(cfg)
    out = {}
    for tile in grid.tiles(cfg["tiles"]["size_px"]):
        w = tile.window
        for k, path in files_by_tile[tile.id].items():
            data = read_bands(path, fill_nan=False)
            if k not in out:
                out[k] = np.zeros((data.shape[0], grid.height, grid.width), data.dtype)
            out[k][:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = data
    return out


def test_tile_seams_are_bit_identical_to_one_tile(region):
    cfg, d = region
    tiled = {
        t.id: _run_tile(cfg, d, t.id, "tiled", chunk_px=7)
        for t in Grid.from_config(cfg).tiles(cfg["tiles"]["size_px"])
    }
    assert len(tiled) == 9
    one = copy.deepcopy(cfg)
    one["tiles"]["size_px"] = 64
    whole = {"r00c00": _run_tile(one, d, "r00c00", "one", chunk_px=1024)}
    a, b = _region_arrays(cfg, tiled), _region_arrays(one, whole)
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(_bits(a[k]), _bits(b[k]), err_msg=k)
    # the test region is not trivial: permafrost and seasonally frozen ground, slopes, nodata
    cls = b["gc"][0]
    assert (cls == 1).sum() > 100 and (cls == 2).sum() > 100 and (cls == 255).sum() >= 12
    slope = b["terrain"][1]
    assert slope[slope != FLOAT_NODATA].max() > 10.0


def _write_monthly(path, data, west, north, res):
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bands(
        path,
        data.astype(np.float32),
        Grid(west=west, north=north, res_deg=res, width=data.shape[2], height=data.shape[1]),
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=[f"b{i + 1}" for i in range(data.shape[0])],
    )
    with rasterio.open(path) as src:  # on its own grid, not the working grid's lattice
        assert src.transform == from_origin(west, north, res, res)


def test_tile_seams_are_bit_identical_with_gridded_climate_and_cmip6(region, tmp_path, monkeypatch):
    """The seam test with a gridded climatology (2.5' cells, offset from the working grid) and
    CMIP6 monthly warming fields (10' cells) for every scenario, resampled per chunk. (On this
    small region the stored products would not show the last-bit differences of a forcing
    resampled chunk by chunk with GDAL's warper; that the forcing itself has the region's bits
    in every chunk is test_retrieve.test_forcing_of_a_chunk_is_the_regions_bits.)"""
    cfg0, d = region
    monkeypatch.chdir(tmp_path)  # the retrieved inputs live under resources/<run>/inputs
    cfg = copy.deepcopy(cfg0)
    cfg["climate"]["source"] = "worldclim"
    for name, ssp in zip(cfg["scenarios"], ("ssp126", "ssp245", "ssp585"), strict=False):
        cfg["scenarios"][name]["cmip6"] = {"gcms": ["MRI-ESM2-0"], "ssp": ssp, "res": "10m"}
    from permamap import retrieve

    rng = np.random.default_rng(11)
    res = 1 / 24
    rows, cols = np.mgrid[0:16, 0:16]
    months = np.arange(12)[:, None, None]
    tavg = 6 * np.sin(months / 2.0) - 0.3 * rows + 0.2 * cols + rng.normal(0, 0.5, (12, 16, 16))
    paths = retrieve.climate_paths(cfg)
    _write_monthly(Path(paths["tavg"]), tavg, 100.93, 37.07, res)
    elev = 3600 + 40 * np.cos(rows / 3.0) + 25 * cols + rng.normal(0, 20, (16, 16))
    _write_monthly(Path(paths["elev"]), elev[None], 100.93, 37.07, res)
    for (_, h), pth in retrieve.cmip6_paths(cfg).items():
        delta = 1 + (h - 2000) / 50 + 0.1 * rng.normal(size=(12, 5, 5))
        _write_monthly(Path(pth), delta, 100.75, 37.2, 1 / 6)
    tiled = {
        t.id: _run_tile(cfg, d, t.id, "gtiled", chunk_px=7)
        for t in Grid.from_config(cfg).tiles(cfg["tiles"]["size_px"])
    }
    one = copy.deepcopy(cfg)
    one["tiles"]["size_px"] = 64
    whole = {"r00c00": _run_tile(one, d, "r00c00", "gone", chunk_px=1024)}
    a, b = _region_arrays(cfg, tiled), _region_arrays(one, whole)
    for k in a:
        np.testing.assert_array_equal(_bits(a[k]), _bits(b[k]), err_msg=k)
    # the forcing reached the products: they differ from the station run's
    one_station = copy.deepcopy(cfg0)
    one_station["tiles"]["size_px"] = 64
    station = _run_tile(one_station, d, "r00c00", "station", chunk_px=1024)
    assert not np.array_equal(read_bands(station["sm"]), read_bands(whole["r00c00"]["sm"]))


@pytest.fixture(scope="module")
def reference_tile(region):
    """Tile r01c01 (centre; its halo holds nodata) by the numpy backend and by permamap.steps."""
    cfg, d = region
    ref = _run_tile(cfg, d, "r01c01", "numpy", backend="numpy")
    st = d / "steps"
    st.mkdir(exist_ok=True)
    t = "r01c01"
    steps.tile_dem(cfg, d / "dem.tif", t, st / "dem.tif")
    steps.terrain_tile(cfg, st / "dem.tif", t, st / "terrain.tif")
    steps.climate_tile(cfg, st / "terrain.tif", t, st / "climate.tif")
    steps.ground_tile(
        cfg,
        st / "terrain.tif",
        st / "climate.tif",
        t,
        st / "gm.tif",
        st / "gc.tif",
        out_alt=st / "ga.tif",
    )
    steps.scenarios_tile(cfg, st / "terrain.tif", t, st / "sm.tif", st / "sc.tif")
    return ref, {k: st / f"{k}.tif" for k in ("terrain", "gm", "ga", "gc", "sm", "sc")}


@pytest.mark.parametrize("chunk_px,threads", [(1, 2), (5, 1), (5, 2), (7, 2), (16, 2), (1024, 1)])
def test_chunks_and_threads_match_whole_tile(region, reference_tile, chunk_px, threads):
    cfg, d = region
    ref, _ = reference_tile
    got = _run_tile(cfg, d, "r01c01", f"c{chunk_px}t{threads}", chunk_px=chunk_px, threads=threads)
    for k in ref:
        np.testing.assert_array_equal(
            _bits(read_bands(got[k], fill_nan=False)),
            _bits(read_bands(ref[k], fill_nan=False)),
            err_msg=k,
        )


def test_blocks_writes_what_the_in_memory_steps_write(region, reference_tile):
    """Same bands, descriptions, units and values as the foundation's whole-tile steps."""
    cfg, d = region
    ref, st = reference_tile
    for k in ref:
        with rasterio.open(ref[k]) as a, rasterio.open(st[k]) as b:
            assert (a.count, a.dtypes, a.nodata, a.descriptions) == (
                b.count,
                b.dtypes,
                b.nodata,
                b.descriptions,
            ), k
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(_bits(a.read()), _bits(b.read()), err_msg=k)
    blocks.climate_tile(cfg, st["terrain"], "r01c01", d / "climate_blk.tif", chunk_px=5)
    np.testing.assert_array_equal(
        _bits(read_bands(d / "climate_blk.tif", fill_nan=False)),
        _bits(read_bands(d / "steps" / "climate.tif", fill_nan=False)),
    )


def test_plane_on_non_square_projected_cells():
    """z = 0.3 x_east - 0.4 y_north (m) on 25 m x 30 m cells: slope atan(0.5) = 26.565 deg,
    aspect (downhill) atan2(-0.3, 0.4) = 323.13 deg, through map_overlap with 3-px chunks."""
    ny, nx, dx, dy = 20, 23, 25.0, 30.0
    r, c = np.mgrid[0 : ny + 2, 0 : nx + 2].astype(np.float64)
    x_east, y_north = c * dx, -r * dy
    z = 0.3 * x_east - 0.4 * y_north
    sa = blocks.slope_aspect_dask(z, np.full(ny, dx), np.full(ny, dy), chunk_px=3).compute()
    assert sa.shape == (2, ny, nx)
    np.testing.assert_allclose(sa[0], math.degrees(math.atan(0.5)), atol=1e-4)
    np.testing.assert_allclose(sa[1], math.degrees(math.atan2(-0.3, 0.4)) + 360.0, atol=1e-4)


def _gdaldem(tmp_path, z, dx, dy):
    """gdaldem slope and aspect (Horn) of ``z`` on a UTM 47N grid with dx x dy m cells."""
    ny, nx = z.shape
    profile = dict(
        driver="GTiff",
        width=nx,
        height=ny,
        count=1,
        dtype="float32",
        crs="EPSG:32647",
        transform=Affine(dx, 0, 400000.0, 0, -dy, 4060000.0),
    )
    dem = tmp_path / f"dem_{dx}_{dy}.tif"
    with rasterio.open(dem, "w", **profile) as dst:
        dst.write(z.astype(np.float32), 1)
    out = []
    for what in ("slope", "aspect"):
        path = tmp_path / f"{what}_{dx}_{dy}.tif"
        subprocess.run(
            ["gdaldem", what, "-q", "-alg", "Horn", str(dem), str(path)],
            check=True,
            capture_output=True,
        )
        with rasterio.open(path) as src:
            out.append(src.read(1)[1:-1, 1:-1])
    return out


@requires_gdal_tool(
    "gdaldem", "the Horn kernel is also tested against analytic planes and libm here"
)
def test_slope_aspect_match_gdaldem_on_projected_grid(tmp_path):
    """Horn (1981) slope and aspect vs GDAL's ``gdaldem`` on a projected (UTM 47N) DEM.

    Slope on 25 m x 30 m cells (gdaldem scales each gradient by its own cell size). Aspect on
    30 m x 30 m cells only: gdaldem 3.6 computes aspect from the unscaled gradients
    (``atan2(dy, -dx)`` of the raw 3 x 3 sums, GDAL ``gdaldem_lib.cpp``), which is right only
    for square cells (measured here: a plane of true aspect 323.13 deg on 25 x 30 m cells comes
    out at 327.99 deg), so it is no aspect reference on non-square cells.
    """
    rng = np.random.default_rng(7)
    ny, nx = 60, 70
    r, c = np.mgrid[0:ny, 0:nx].astype(np.float64)
    z = (
        3000
        + 400 * np.sin(r / 6.0) * np.cos(c / 8.0)
        + 3.0 * c
        + 2.0 * r
        + rng.normal(0, 2.0, (ny, nx))
    )
    z = z.astype(np.float32).astype(np.float64)
    for dx, dy in ((25.0, 30.0), (30.0, 30.0)):
        g_slope, g_aspect = _gdaldem(tmp_path, z, dx, dy)
        sa = blocks.slope_aspect_dask(
            z, np.full(ny - 2, dx), np.full(ny - 2, dy), chunk_px=9
        ).compute()
        np.testing.assert_allclose(sa[0], g_slope, atol=2e-3)
        if dx == dy:
            steep = sa[0] > 1.0
            assert steep.mean() > 0.9
            diff = np.abs((sa[1] - g_aspect + 180.0) % 360.0 - 180.0)
            assert diff[steep].max() < 1e-2


def test_failed_chunk_leaves_no_output(tmp_path):
    """A block that raises mid-way: the output path never appears and no temporary is left."""
    grid = Grid.from_bbox((101.0, 36.0, 101.5, 36.5), 1 / 120)

    def block(x, block_info=None):
        if block_info[None]["chunk-location"] == (2, 3):
            raise RuntimeError("boom")
        return x

    arr = da.zeros((grid.height, grid.width), chunks=16, dtype=np.float32).map_blocks(
        block, dtype=np.float32
    )
    out = tmp_path / "x.tif"
    with pytest.raises(RuntimeError, match="boom"):
        blocks.store(
            [blocks.RasterOut(out, grid, "float32", FLOAT_NODATA, [(arr, "x", "m")])],
            blocks.Options(threads=2),
        )
    assert list(tmp_path.iterdir()) == []


def test_chunk_writer_matches_whole_array_write(tmp_path):
    """store() with unaligned chunks writes the same pixels, NaN -> nodata, as write_bands."""
    grid = Grid.from_bbox((101.0, 36.0, 101.5, 36.5), 1 / 600)  # 300 x 300: tiled GeoTIFF
    rng = np.random.default_rng(3)
    a = rng.normal(size=(300, 300)).astype(np.float32)
    a[10:20, 40:45] = np.nan
    blocks.store(
        [
            blocks.RasterOut(
                tmp_path / "c.tif",
                grid,
                "float32",
                FLOAT_NODATA,
                [(da.from_array(a, chunks=37), "x", "m")],
            )
        ],
        blocks.Options(compress="deflate"),  # write_bands' codec (per-tile files: zstd)
    )
    write_bands(
        tmp_path / "w.tif",
        np.where(np.isnan(a), FLOAT_NODATA, a),
        grid,
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=["x"],
        units=["m"],
    )
    with rasterio.open(tmp_path / "c.tif") as c, rasterio.open(tmp_path / "w.tif") as w:
        assert c.profile == w.profile and c.units == ("m",)
        np.testing.assert_array_equal(c.read(), w.read())


def test_multiband_file_written_whole_tiles_once(tmp_path):
    """Several dask bands of one (pixel-interleaved) file with a small GDAL cache: the same
    pixels as an in-memory write, and no tile written twice (a tile flushed before all its
    bands arrived is rewritten and appended, so the file grows past the in-memory one)."""
    grid = Grid.from_bbox((101.0, 36.0, 101.8, 36.8), 1 / 800)  # 640 x 640
    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, 640, 640)).astype(np.float32)
    a[1, 5:9, 300:310] = np.nan
    bands = [(da.from_array(a[i], chunks=256), f"b{i}", "m") for i in range(4)]
    opts = blocks.Options(gdal_cache_mb=1, compress="zstd", float_predictor=3)  # as write_bands
    blocks.store([blocks.RasterOut(tmp_path / "c.tif", grid, "float32", FLOAT_NODATA, bands)], opts)
    write_bands(
        tmp_path / "w.tif",
        np.where(np.isnan(a), FLOAT_NODATA, a),
        grid,
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=[f"b{i}" for i in range(4)],
        units=["m"] * 4,
        compress="zstd",
    )
    with rasterio.open(tmp_path / "c.tif") as c, rasterio.open(tmp_path / "w.tif") as w:
        np.testing.assert_array_equal(c.read(), w.read())
    size_c, size_w = ((tmp_path / f).stat().st_size for f in ("c.tif", "w.tif"))
    assert size_c < 1.05 * size_w


def test_float_predictor_of_the_tile_files(tmp_path, raw_config):
    """Per-tile float bands use ``blocks.float_predictor`` (default 2: faster to compress);
    integer bands horizontal differencing, uint8 none; same pixels either way."""
    grid = Grid.from_bbox((101.0, 36.0, 101.4, 36.4), 1 / 640)  # 256 x 256
    z = np.linspace(3000, 4000, 256 * 256, dtype=np.float32).reshape(256, 256)
    for pred in (None, 2, 3):
        raw = copy.deepcopy(raw_config)
        if pred is not None:
            raw["blocks"] = {"float_predictor": pred}
        opts = blocks.options_from_config(prepare(raw), compress="zstd")
        outs = [
            blocks.RasterOut(
                tmp_path / f"f{pred}.tif", grid, "float32", FLOAT_NODATA, [(z, "z", "m")]
            ),
            blocks.RasterOut(
                tmp_path / f"u{pred}.tif", grid, "uint8", 255, [(z > 3500, "c", None)]
            ),
        ]
        blocks.store(outs, opts)
        with rasterio.open(outs[0].path) as f, rasterio.open(outs[1].path) as u:
            assert f.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == str(pred or 2)
            assert u.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1") == "1"
            np.testing.assert_array_equal(f.read(1), z)
    raw = copy.deepcopy(raw_config)
    raw["blocks"] = {"float_predictor": 1}
    with pytest.raises(ConfigError, match=r"blocks.float_predictor = 1 is not allowed"):
        prepare(raw)


def test_job_memory_request_follows_chunks_not_tiles():
    """blocks.job_mem_mb: a chunked job asks for base + GDAL cache + (threads + 2) chunks of
    bytes, whatever the tile; a whole-tile job (tile_dem, backend numpy) for its tile."""
    dask_opts = blocks.Options(chunk_px=512, threads=2, gdal_cache_mb=128)
    per_px = 100
    # 4 chunks of 512 x 512 px x 100 B = 104.8576 MB in flight, + 400 base + 128 cache
    for tile_px in (1800, 8190, 30000):
        assert blocks.job_mem_mb(per_px, 1, tile_px=tile_px, opts=dask_opts) == 632
    # a retry doubles the part in flight
    assert blocks.job_mem_mb(per_px, 2, tile_px=8190, opts=dask_opts) == 400 + 128 + 209
    # a tile smaller than the chunks in flight: the tile with its halo bounds it
    assert blocks.job_mem_mb(per_px, 1, tile_px=98, opts=dask_opts) == 400 + 128 + 1
    # whole tile in memory: grows with the tile's area
    numpy_opts = blocks.Options(backend="numpy")
    small, big = (blocks.job_mem_mb(per_px, 1, tile_px=t, opts=numpy_opts) for t in (998, 1998))
    assert (small, big) == (400 + 100, 400 + 400)
    assert blocks.job_mem_mb(per_px, 1, tile_px=998, opts=None) == small
    # the scenario job holds more per pixel with more scenarios, horizons and gridded inputs
    b = blocks.job_bytes_per_px
    assert b("scenarios", 3, 3) < b("scenarios", 3, 4) < b("scenarios", 3, 4, gridded=True)
    assert b("scenarios", 3, 4, gridded=True) < b("scenarios", 3, 4, gridded=True, cmip6=True)
    assert b("terrain", 3, 4, gridded=True) == b("terrain")


def test_halo_chunks():
    assert blocks.output_chunks(10, 4) == (4, 4, 2)
    assert blocks.halo_chunks(10, 4) == (5, 4, 3)  # 12 cells with the halo
    assert blocks.halo_chunks(3, 4) == (5,)


def test_bad_blocks_config_is_one_readable_line(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["blocks"] = {"chunk_px": 3}
    with pytest.raises(ConfigError, match=r"blocks.chunk_px = 3 is out of range; must be >= 16"):
        prepare(raw)
    raw["blocks"] = {"backend": "cupy"}
    with pytest.raises(ConfigError, match=r"blocks.backend = 'cupy' is not allowed"):
        prepare(raw)


class _Files(list):
    """Snakemake-like input/output: positional and named access."""

    def __init__(self, *items, **named):
        super().__init__([*items, *named.values()])
        self.__dict__.update(named)


def test_snakemake_adapters_call_the_stages(region, reference_tile):
    """blocks:smk_* map snakemake.input/output/wildcards/threads/config onto the stages."""
    from types import SimpleNamespace

    cfg, d = region
    ref, _ = reference_tile
    out = d / "smk"
    out.mkdir(exist_ok=True)
    t = "r01c01"
    steps.tile_dem(cfg, d / "dem.tif", t, out / "dem.tif")
    wc = SimpleNamespace(tile=t)

    def smk(inp, outp):
        return SimpleNamespace(config=cfg, input=inp, output=outp, wildcards=wc, threads=2)

    blocks.smk_terrain(smk(_Files(dem=out / "dem.tif"), _Files(out / "terrain.tif")))
    terrain_in = _Files(terrain=out / "terrain.tif", climate=out / "climate.tif")
    blocks.smk_climate(smk(terrain_in, _Files(out / "climate.tif")))
    blocks.smk_ground(
        smk(terrain_in, _Files(magt=out / "gm.tif", cls=out / "gc.tif", alt=out / "ga.tif"))
    )
    blocks.smk_scenarios(smk(terrain_in, _Files(magt=out / "sm.tif", cls=out / "sc.tif")))
    for k in ref:
        np.testing.assert_array_equal(
            _bits(read_bands(out / f"{k}.tif", fill_nan=False)),
            _bits(read_bands(ref[k], fill_nan=False)),
            err_msg=k,
        )
    assert (out / "climate.tif").exists()


def test_keep_freed_blocks_sets_glibcs_malloc_parameters():
    """blocks.store asks glibc to keep freed chunk buffers (README "Performance"): mallopt
    returns 1 only for a parameter it knows and a value it accepts, so a wrong parameter
    number or an out-of-range threshold fails here. Elsewhere (no glibc) it says False."""
    import ctypes.util
    import platform

    ok = blocks.keep_freed_blocks()
    if platform.system() == "Linux" and (ctypes.util.find_library("c") or "").startswith("libc.so"):
        assert ok is True
        assert blocks.keep_freed_blocks() is True  # once per process, then a no-op
    else:
        assert ok is False


def test_model_bands_keep_every_files_bands_together():
    """model_bands orders the stack so that each output file's bands are one slice (floats
    first, codes last, scenario bands in scenario_list order); model_slab refuses bands that
    are not consecutive there instead of writing a wrong slice."""
    import yaml
    from conftest import REPO

    cfg = prepare(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    parts = ("ground", "active_layer", "probability", "scenarios")
    names = blocks.model_bands(cfg, parts)
    k = len(blocks.scenario_list(cfg))
    assert names[:3] == ("magt", "alt", "freeze_depth")
    assert names[3 : 3 + k] == tuple(f"s{i}_magt" for i in range(k))
    assert names[3 + k : 7 + k] == blocks.CODE_BANDS
    assert names[7 + k :] == tuple(f"s{i}_class" for i in range(k))
    stack = np.arange(len(names), dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    arr, descs, units = blocks.model_slab(stack, cfg, parts, ["alt", "freeze_depth"], ["m", "m"])
    assert arr[:, 0, 0].tolist() == [1.0, 2.0] and descs == ["alt", "freeze_depth"]
    with pytest.raises(ValueError, match="not consecutive"):
        blocks.model_slab(stack, cfg, parts, ["magt", "class"], ["degC", None])
