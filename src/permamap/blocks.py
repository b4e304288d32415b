"""Chunked processing of a tile in bounded memory with dask.

A tile job never holds its tile whole. The tile is read lazily chunk by chunk (windowed reads),
every chunk goes through the existing numba kernels, and every computed chunk is written to
its window of a tiled GeoTIFF (written to a temporary name and renamed when complete,
:func:`permamap.rasterio_io.atomic_path`). Peak memory is set by the chunk size, the thread
count and GDAL's block cache, not by the tile size.

* **Terrain** (3 x 3 Horn stencil, radius :data:`permamap.grid.HALO_PX` = 1): the tile DEM
  already carries a 1-pixel halo (``steps.tile_dem``). :func:`terrain_stack` reads, for every
  output chunk, the chunk's window plus one ring straight from the DEM file (one task per
  chunk, no task shared between chunks); a DEM given as an array goes through
  ``dask.array.map_overlap`` with depth 1, chunked as ``(chunk + 1, chunk, ..., last + 1)``
  with ``boundary='none'``. Either way the kernel sees the same 9 cells as on the whole tile,
  and chunk seams are bit-identical to a one-chunk run.
* **Per-pixel model** (:func:`model_stack`, ``map_blocks``): air temperature, degree-days,
  MAGT, classes, active layer, Monte Carlo probability and every scenario x horizon, chunk by
  chunk through the ``compute_*`` wrappers of :mod:`permamap.climate` and
  :mod:`permamap.ground` (the numba kernels are not forked here). One task computes every
  product of a chunk into one (bands, rows, cols) float32 stack (:func:`model_bands`: float
  products first, class codes last, each output file's bands contiguous), so all
  products share one computation and are written from it. The scenario stage
  (:func:`scenarios_tile`) maps :func:`permamap.scenario_response.scenarios_block` over the
  chunks of the tile's terrain and baseline files the same way (equilibrium or transient
  response, degradation classes).
* **Geometry**: cell sizes and latitudes of a row are computed from the *region* grid's row
  index (:func:`row_geometry`), never from a sub-grid's origin, so a row has the same bits in
  every tile and chunk (``Grid.subgrid(...).row_latitudes()`` differs from the region's in the
  last bits).
* **Threads**: ``dask.config.set(scheduler='threads', num_workers=threads)``; the kernels are
  ``nogil`` so chunks run in parallel; GDAL compresses with ``NUM_THREADS=threads``.
* **Writing** (:func:`store`): one ``dask.array.store`` over every band of every output file,
  so each chunk is computed once; every band of a file is written for a chunk in one call (the
  files are pixel-interleaved: a GeoTIFF tile is complete, and compressed once, when written);
  a per-file lock serialises the windowed writes; GDAL's block cache is capped
  (``blocks.gdal_cache_mb``) so complete blocks are flushed (compressed) as the cache fills.
  ``chunk_px`` should be a multiple of the 256-pixel GeoTIFF block.

Backends (``blocks.backend``): ``dask`` (default) or ``numpy`` (the whole tile as one block in
memory, no dask: the reference the dask path is tested against, bit for bit).

The stage functions (:func:`terrain_tile`, :func:`climate_tile`, :func:`ground_tile`,
:func:`scenarios_tile`) take the arguments of their :mod:`permamap.steps` namesakes and write
the same files with the same bands; ``smk_*`` are their Snakemake adapters
(``params: step="blocks:smk_terrain"``).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import uuid4

import dask
import dask.array as da
import numpy as np
import rasterio
from rasterio.windows import Window

from . import climate, ground, surface, terrain
from .config import scenario_config
from .grid import HALO_PX, Grid, cell_size_m, find_tile
from .products import CLASS_NODATA, FLOAT_NODATA, PRODUCTS, Product, encode
from .rasterio_io import atomic_path, gtiff_profile, is_physical, set_scale, to_physical

DEFAULT_CHUNK_PX = 512
DEFAULT_GDAL_CACHE_MB = 128
#: ZSTD/DEFLATE level of the per-tile files: level 1 writes float32 about 4x faster than
#: GDAL's default ZSTD level 9 for about 3 % larger files (measured, bench/README.md).
DEFAULT_COMPRESS_LEVEL = 1
#: TIFF predictor of float bands in the per-tile files: 2 (horizontal differencing) compresses
#: about 2x faster than 3 (floating point) for about 20 % larger files, and writing the float
#: bands is what a tile job spends most of its time on (bench/README.md). The delivered
#: Cloud-Optimized GeoTIFFs (permamap.mosaic) keep predictor 3.
DEFAULT_FLOAT_PREDICTOR = 2
BACKENDS = ("dask", "numpy")

#: Bands of the terrain stack (and of the per-tile ``terrain.tif``).
TERRAIN_BANDS = ("elevation", "slope", "aspect", "solar")
TERRAIN_UNITS = ("m", "degree", "degree", "1")

#: Parts of the per-pixel model that :func:`model_stack` can compute.
PARTS = ("climate", "ground", "active_layer", "probability", "scenarios")


# -- options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Chunking options of a tile job (``blocks`` config section)."""

    chunk_px: int = DEFAULT_CHUNK_PX
    threads: int = 2
    backend: str = "dask"
    gdal_cache_mb: int = DEFAULT_GDAL_CACHE_MB
    compress: str = "zstd"
    compress_level: int | None = DEFAULT_COMPRESS_LEVEL
    float_predictor: int = DEFAULT_FLOAT_PREDICTOR

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"blocks backend {self.backend!r}: allowed {BACKENDS}")
        if self.chunk_px < 1 or self.threads < 1:
            raise ValueError(f"chunk_px={self.chunk_px} and threads={self.threads} must be >= 1")


def options_from_config(config: dict, threads: int | None = None, **overrides) -> Options:
    """:class:`Options` from ``config['blocks']`` (defaults when absent; ``blocks.compress``
    is the codec of the per-tile files, the COGs use ``output.compress``) and
    ``compute.threads``; keyword ``overrides`` win (e.g. ``chunk_px=7`` in tests)."""
    b = config.get("blocks") or {}
    opts = dict(
        chunk_px=int(b.get("chunk_px", DEFAULT_CHUNK_PX)),
        backend=b.get("backend", "dask"),
        gdal_cache_mb=int(b.get("gdal_cache_mb", DEFAULT_GDAL_CACHE_MB)),
        compress_level=b.get("compress_level", DEFAULT_COMPRESS_LEVEL),
        float_predictor=int(b.get("float_predictor", DEFAULT_FLOAT_PREDICTOR)),
        threads=int(
            threads if threads is not None else config.get("compute", {}).get("threads", 2)
        ),
        compress=b.get("compress", "zstd"),
    )
    opts.update({k: v for k, v in overrides.items() if v is not None})
    return Options(**opts)


#: Memory held per pixel by one task of a tile job (all arrays it holds at once, bytes), by
#: stage; the terms ``gridded`` (12 monthly float64 fields + their elevation of a gridded
#: climate, ``climate.source`` worldclim or chelsa) and ``cmip6`` (one scenario's monthly
#: float64 delta fields per horizon) apply when the job reads those rasters.
#: ``tile_dem`` cuts its tile whole (not chunked).
JOB_BYTES_PER_PX = {
    "tile_dem": 8,
    "terrain": 40,
    "climate": 60,
    "ground": 80,
    # terrain + climate + baseline, the fields of one scenario per horizon, the outputs
    "scenarios": 120,
    "scenarios_per_horizon": 40,
    "scenarios_per_pair": 13,
    "gridded": 104,
    "cmip6_per_horizon": 96,
}
#: Stages that process their tile in chunks (:func:`job_mem_mb`).
CHUNKED_JOBS = ("terrain", "climate", "ground", "scenarios")


def job_bytes_per_px(
    stage: str, n_scenarios: int = 0, n_horizons: int = 0, gridded=False, cmip6=False
) -> int:
    """Bytes per pixel a task of tile job ``stage`` holds (:data:`JOB_BYTES_PER_PX`)."""
    b = JOB_BYTES_PER_PX
    n = b[stage]
    if stage == "scenarios":
        n += b["scenarios_per_horizon"] * n_horizons
        n += b["scenarios_per_pair"] * n_scenarios * n_horizons
        n += b["cmip6_per_horizon"] * n_horizons if cmip6 else 0
    if gridded and stage in ("climate", "ground", "scenarios"):
        n += b["gridded"]
    return n


def job_mem_mb(
    bytes_per_px: float,
    attempt: int = 1,
    *,
    tile_px: int,
    opts: Options | None = None,
    base_mb: int = 400,
) -> int:
    """Memory request (MB) of a tile job (the rules' ``resources: mem_mb``).

    * Chunked (``opts`` given, ``backend: dask``): base (interpreter, numba, GDAL) + GDAL block
      cache + ``bytes_per_px`` x the pixels in flight, (threads + 2) chunks of ``chunk_px``^2
      but never more than the tile with its halo. It does not grow with the tile: a
      plateau-wide run of 8192-pixel tiles asks for what a 900-pixel one does.
    * Whole tile (``opts`` None, or ``backend: numpy``): base + ``bytes_per_px`` x the tile
      with its halo.

    The part that scales with pixels is multiplied by the retry ``attempt`` (a job that ran out
    of memory is resubmitted with more)."""
    tile = (tile_px + 2 * HALO_PX) ** 2
    if opts is not None and opts.backend == "dask":
        px = min(tile, (opts.threads + 2) * opts.chunk_px**2)
        return int(base_mb + opts.gdal_cache_mb + px * bytes_per_px / 1e6 * attempt)
    return int(base_mb + tile * bytes_per_px / 1e6 * attempt)


@contextlib.contextmanager
def scheduler(threads: int):
    """dask's threaded scheduler with ``threads`` workers (numba kernels release the GIL)."""
    with dask.config.set(scheduler="threads", num_workers=int(threads)):
        yield


# -- geometry -------------------------------------------------------------------------------


def row_geometry(grid: Grid, row_off: int, height: int):
    """(latitude deg, dx m, dy m) of rows ``row_off .. row_off + height - 1`` of ``grid``.

    Computed from the region grid's row index with the same expression as
    ``Grid.row_latitudes``, so the bits of a row do not depend on the tile or chunk.
    """
    rows = np.arange(row_off, row_off + height)
    lat = grid.north - (rows + 0.5) * grid.res_deg
    dx, dy = cell_size_m(lat, grid.res_deg)
    return lat, np.asarray(dx, np.float64), np.asarray(dy, np.float64)


def halo_chunks(n: int, chunk: int, halo: int = HALO_PX) -> tuple[int, ...]:
    """Chunks along an axis of ``n + 2 halo`` cells whose blocks, overlapped by ``halo`` with
    ``boundary='none'``, are exactly output chunks of ``chunk`` cells plus the halo."""
    out = output_chunks(n, chunk)
    if len(out) == 1:
        return (n + 2 * halo,)
    return (out[0] + halo, *out[1:-1], out[-1] + halo)


def output_chunks(n: int, chunk: int) -> tuple[int, ...]:
    full, rest = divmod(n, chunk)
    return tuple([chunk] * full + ([rest] if rest else [])) or (0,)


# -- lazy input -----------------------------------------------------------------------------


class RasterReader:
    """Array-like view of bands of a GeoTIFF window for ``dask.array.from_array``.

    Each read opens the file (thread-safe: no dataset handle is shared between threads) and
    reads only the requested window; float nodata becomes NaN (as
    :func:`permamap.rasterio_io.read_bands`) and float data keep the file's dtype (a float32
    DEM stays float32: half the memory of float64, and every consumer converts exactly). Scaled
    bands (MAGT, int16 in 0.01 degC) read as physical float64 values with NaN nodata
    (:func:`permamap.rasterio_io.to_physical`).
    """

    def __init__(self, path, bands: Sequence[int] | None = None, window: Window | None = None):
        self.path = str(path)
        with rasterio.open(self.path) as src:
            self.bands = list(bands) if bands else list(range(1, src.count + 1))
            self.window = window or Window(0, 0, src.width, src.height)
            self.nodata = src.nodata
            src_dtype = np.dtype(src.dtypes[self.bands[0] - 1])
            self.scaled = not is_physical(src, self.bands)
        self.float = np.issubdtype(src_dtype, np.floating)
        self.dtype = np.dtype(np.float64) if self.scaled else src_dtype
        self.shape = (len(self.bands), int(self.window.height), int(self.window.width))
        self.ndim = 3

    def __getitem__(self, key):
        key = tuple(key) + (slice(None),) * (3 - len(key))
        bsl, rsl, csl = (k if isinstance(k, slice) else slice(k, k + 1) for k in key)
        b0, b1, _ = bsl.indices(self.shape[0])
        r0, r1, _ = rsl.indices(self.shape[1])
        c0, c1, _ = csl.indices(self.shape[2])
        win = Window(self.window.col_off + c0, self.window.row_off + r0, c1 - c0, r1 - r0)
        with rasterio.open(self.path) as src:
            data = src.read(self.bands[b0:b1], window=win)
            if self.scaled:
                data = to_physical(src, data, self.bands[b0:b1])
        if self.float and not self.scaled and self.nodata is not None and not np.isnan(self.nodata):
            data[data == self.nodata] = np.nan
        # integer indices drop their axis (dask fuses e.g. x[0] into the read)
        squeeze = tuple(i for i, k in enumerate(key) if not isinstance(k, slice))
        return data.squeeze(axis=squeeze) if squeeze else data


def lazy_raster(
    path, chunks, *, bands: Sequence[int] | None = None, window: Window | None = None
) -> da.Array:
    """(bands, rows, cols) dask array of a raster, read window by window on demand.

    ``chunks``: dask chunks of the (rows, cols) axes (an int or two tuples); bands form one
    chunk.
    """
    reader = RasterReader(path, bands, window)
    if isinstance(chunks, int):
        chunks = (chunks, chunks)
    meta = np.empty((0, 0, 0), reader.dtype)
    return da.from_array(
        reader,
        chunks=((reader.shape[0],), *chunks),
        lock=False,
        asarray=False,
        meta=meta,
        name=f"read-{dask.base.tokenize(reader.path, reader.bands, reader.window)}",
    )


# -- terrain --------------------------------------------------------------------------------


def _solar_block(config: dict, slope, aspect, lat_rows) -> np.ndarray:
    """Thaw-season clear-sky solar exposure index of a block (:mod:`permamap.solar`, ``terrain.solar``)."""
    from .solar import solar_exposure_index

    sc = config["terrain"]["solar"]
    doy = sc.get("doy_range")
    return solar_exposure_index(
        np.asarray(slope, np.float32),
        np.asarray(aspect, np.float32),
        lat_rows,
        doy_range=tuple(doy) if doy else None,
        transmissivity=sc["transmissivity"],
        pressure_ratio=sc["pressure_ratio"],
        steps_per_day=sc["steps_per_day"],
    )


def terrain_block(z_halo: np.ndarray, r0: int, lat, dx, dy, config: dict | None) -> np.ndarray:
    """(4, h, w) float32 [elevation, slope, aspect, solar] of a block with a 1-pixel halo whose
    first output row is row ``r0`` of the per-row arrays ``lat``/``dx``/``dy`` (NaN nodata;
    solar is 1.0 when ``config`` is None)."""
    h, w = z_halo.shape[0] - 2 * HALO_PX, z_halo.shape[1] - 2 * HALO_PX
    out = np.empty((4, h, w), np.float32)
    slope, aspect = terrain.slope_aspect(z_halo, dx[r0 : r0 + h], dy[r0 : r0 + h], out=out[1:3])
    out[0] = z_halo[HALO_PX:-HALO_PX, HALO_PX:-HALO_PX]
    if config is None:
        out[3] = np.where(np.isnan(slope), np.nan, 1.0)
    else:
        out[3] = _solar_block(config, slope, aspect, lat[r0 : r0 + h])
    return out


def slope_aspect_dask(z_halo, dx_rows, dy_rows, chunk_px: int) -> da.Array:
    """(2, ny, nx) float32 Horn slope and aspect of a haloed DEM (dask, depth-1 stencil);
    ``dx_rows``/``dy_rows``: (ny,) cell sizes in metres (any grid, e.g. projected).
    ``z_halo``: NumPy, dask, or a :class:`RasterReader` of the haloed DEM file (see
    :func:`_stencil_map`)."""
    ny, nx = _halo_shape(z_halo)
    dx_rows = np.asarray(dx_rows, np.float64)
    dy_rows = np.asarray(dy_rows, np.float64)

    def block(zb, r0, r1):
        out = np.empty((2, zb.shape[0] - 2 * HALO_PX, zb.shape[1] - 2 * HALO_PX), np.float32)
        terrain.slope_aspect(zb, dx_rows[r0:r1], dy_rows[r0:r1], out=out)
        return out

    return _stencil_map(block, z_halo, 2, ny, nx, chunk_px)


def _halo_shape(z_halo) -> tuple[int, int]:
    """(ny, nx) of the core of a haloed DEM (2-D, or (1, rows, cols) as read from a file)."""
    shape = z_halo.shape[-2:]
    return shape[0] - 2 * HALO_PX, shape[1] - 2 * HALO_PX


def _stencil_map(block, z_halo, n_bands: int, ny: int, nx: int, chunk_px: int) -> da.Array:
    """(n_bands, ny, nx) float32 dask array of a depth-``HALO_PX`` stencil over a haloed
    (ny + 2, nx + 2) DEM: ``block(zb, r0, r1)`` gets the block of output rows ``r0:r1`` with its
    halo and returns its (n_bands, rows, cols) core.

    * A :class:`RasterReader` (the DEM file): one task per output chunk reads its window plus
      the halo from the file. Chunks share nothing (the halo rows are read twice, from GDAL's
      cache), so the graph is one task per chunk and a finished chunk frees everything.
    * NumPy or dask: ``dask.array.map_overlap`` (depth = halo, ``boundary='none'``) over the
      DEM chunked by :func:`halo_chunks`.

    Both give every block exactly the cells of the whole tile around its chunk.
    """
    chunks = ((n_bands,), output_chunks(ny, chunk_px), output_chunks(nx, chunk_px))
    meta = np.empty((0, 0, 0), np.float32)
    if isinstance(z_halo, RasterReader):
        if z_halo.shape[0] != 1:
            raise ValueError(f"{z_halo.path}: stencil input must be one band, got {z_halo.bands}")
        reader = z_halo

        def read_block(block_info=None):
            _, (r0, r1), (c0, c1) = block_info[None]["array-location"]
            zb = reader[0, r0 : r1 + 2 * HALO_PX, c0 : c1 + 2 * HALO_PX]
            return block(zb, r0, r1)

        return da.map_blocks(
            read_block, chunks=chunks, dtype=np.float32, meta=meta, name=f"stencil-{uuid4().hex}"
        )

    def overlap_block(zb, block_info=None):
        r0, r1 = block_info[None]["array-location"][1]
        return block(zb, r0, r1)

    return da.map_overlap(
        overlap_block,
        _as_halo_dask(z_halo, ny, nx, chunk_px),
        depth=HALO_PX,
        boundary="none",
        trim=False,
        new_axis=0,
        chunks=chunks,
        dtype=np.float32,
        meta=meta,
    )


def _as_halo_dask(z_halo, ny: int, nx: int, chunk_px: int) -> da.Array:
    chunks = (halo_chunks(ny, chunk_px), halo_chunks(nx, chunk_px))
    if isinstance(z_halo, da.Array):
        if z_halo.ndim == 3:
            z_halo = z_halo[0]
        return z_halo.rechunk(chunks) if z_halo.chunks != chunks else z_halo
    z = np.asarray(z_halo)
    return da.from_array(z if z.dtype == np.float32 else z.astype(np.float64), chunks=chunks)


def terrain_stack(
    z_halo, config: dict | None, grid: Grid, window: Window, chunk_px: int, backend: str = "dask"
):
    """(4, ny, nx) float32 [elevation, slope, aspect, solar] of a tile.

    ``z_halo``: the tile DEM with its 1-pixel halo ((ny + 2, nx + 2), NaN nodata; NumPy, dask,
    or a one-band :class:`RasterReader` of the tile DEM file, read chunk by chunk with the halo);
    ``grid``/``window``: the region grid and the tile's core window in it. ``backend='numpy'``
    computes the whole tile as one block (returns NumPy).
    """
    ny, nx = int(window.height), int(window.width)
    lat, dx, dy = row_geometry(grid, int(window.row_off), ny)
    if backend == "numpy":
        z = np.asarray(z_halo[0] if getattr(z_halo, "ndim", 2) == 3 else z_halo)
        return terrain_block(z, 0, lat, dx, dy, config)

    def block(zb, r0, r1):
        return terrain_block(zb, r0, lat, dx, dy, config)

    return _stencil_map(block, z_halo, 4, ny, nx, chunk_px)


# -- per-pixel model ------------------------------------------------------------------------


def scenario_list(config: dict) -> list[tuple[str, int]]:
    """(scenario, horizon) in band order of the scenario tile files."""
    return [(name, h) for name in config["scenarios"] for h in config["horizons"]]


#: Bands of the model stack that hold class codes (uint8 in the files; float32 in the stack).
CODE_BANDS = ("class", "stability", "probability", "zone")


def model_bands(config: dict, parts: Sequence[str] = PARTS) -> tuple[str, ...]:
    """Band names of :func:`model_stack` / :func:`model_block`, in stack order.

    Float products first, class codes last (``s<k>_magt`` / ``s<k>_class`` is scenario x
    horizon ``k`` of :func:`scenario_list`), so the bands of every output file are one
    contiguous range of the stack."""
    k = len(scenario_list(config)) if "scenarios" in parts else 0
    floats, codes = [], []
    if "climate" in parts:
        floats += ["maat", "fdd", "tdd", "amplitude"]
    if "ground" in parts:
        floats.append("magt")
        codes += ["class", "stability"]
    if "active_layer" in parts:
        floats += ["alt", "freeze_depth"]
    if "probability" in parts:
        codes += ["probability", "zone"]
    floats += [f"s{i}_magt" for i in range(k)]
    codes += [f"s{i}_class" for i in range(k)]
    return tuple(floats + codes)


def model_fields(stack, config: dict, parts: Sequence[str] = PARTS) -> dict:
    """``{band name: 2-D array}`` views of a model stack (NumPy or dask)."""
    return {n: stack[i] for i, n in enumerate(model_bands(config, parts))}


def model_slab(stack, config: dict, parts: Sequence[str], bands: Sequence[str], units, descs=None):
    """A :class:`RasterOut` band entry (3-D slice, descriptions, units) of the consecutive
    ``bands`` of a model stack (:func:`model_bands` keeps every output file's bands together)."""
    names = model_bands(config, parts)
    i = names.index(bands[0])
    if names[i : i + len(bands)] != tuple(bands):
        raise ValueError(f"bands {bands} are not consecutive in the model stack {names}")
    return stack[i : i + len(bands)], list(descs or bands), list(units)


#: Key of the land cover (:class:`permamap.surface.SurfaceMap` or None) in :func:`forcings`.
SURFACE = surface.FORCING_KEY


def forcings(config: dict) -> dict:
    """Climate forcing of the baseline (key None) and of every scenario (its merged config),
    built once per tile: a gridded forcing checks its rasters when built and reads the window
    of each chunk when asked (``climate.warp_monthly_raster``); and under
    :data:`SURFACE` the land cover of ``ground.surface`` (None for one surface type), opened
    and checked once."""
    out = {None: climate.forcing_from_config(config)}
    for name in config["scenarios"]:
        scfg = scenario_config(config, name)
        same = scfg is config or scfg["climate"] == config["climate"]
        out[name] = out[None] if same else climate.forcing_from_config(scfg)
    out[SURFACE] = surface.from_config(config)
    return out


def model_block(
    t: np.ndarray, config: dict, chunk_grid, parts: Sequence[str] = PARTS, forcing_of=None
) -> np.ndarray:
    """Every product of ``parts`` for a (4, h, w) terrain block, as a (bands, h, w) float32
    stack in the order of :func:`model_bands` (class codes as exact float32 integers, 255
    nodata; float products NaN nodata).

    ``chunk_grid``: the block's grid (gridded forcing and CMIP6 delta fields are resampled to
    it); ``forcing_of``: :func:`forcings` (built here when None). Calls the ``compute_*``
    wrappers of :mod:`permamap.climate` / :mod:`permamap.ground` in the same order and with the
    same inputs as :mod:`permamap.steps` (equilibrium scenario response; the monthly warming of a
    scenario from ``steps.scenario_delta_fields``: uniform, or CMIP6 delta rasters).

    Surface types (``ground.surface.land_cover``, :mod:`permamap.surface`): the chunk's surface
    index and the multiplier table of the (scenario) config go to every ground wrapper; pixels
    of masked types (water, glaciers) are nodata in the ground products (their elevation is
    NaN for the ground wrappers; the climate fields stay).
    """
    h, w = t.shape[1:]
    names = model_bands(config, parts)
    out = np.empty((len(names), h, w), np.float32)
    band = {n: out[i] for i, n in enumerate(names)}
    # the terrain in float64 once (the wrappers and scenarios_block use it without copies)
    t64 = np.asarray(t, np.float64)
    z, slope, aspect, solar = t64
    forcing_of = forcing_of if forcing_of is not None else forcings(config)
    forcing = forcing_of[None]
    z_ground, kw = z, {}
    if {"ground", "active_layer", "probability"} & set(parts):
        z_ground, kw = surface.block_args(config, chunk_grid, z, forcing_of)
    if {"climate", "ground", "active_layer"} & set(parts):
        maat, fdd, tdd, amp = climate.compute_climate(z, forcing, grid=chunk_grid)
        if "climate" in parts:
            band["maat"][:], band["fdd"][:], band["tdd"][:], band["amplitude"][:] = (
                maat,
                fdd,
                tdd,
                amp,
            )
    if {"ground", "active_layer"} & set(parts):
        magt, cls, stab = ground.compute_ground(
            config, z_ground, slope, aspect, fdd, tdd, solar=solar, **kw
        )
        if "ground" in parts:
            band["magt"][:], band["class"][:], band["stability"][:] = magt, cls, stab
    if "active_layer" in parts:
        band["alt"][:], band["freeze_depth"][:] = ground.active_layer(
            config, cls, fdd, tdd, solar=solar, maat=maat, amplitude=amp, **kw
        )
    if "probability" in parts:
        prob = ground.compute_probability(
            config, forcing, z_ground, slope, aspect, solar=solar, grid=chunk_grid, **kw
        )
        band["probability"][:], band["zone"][:] = prob, ground.ipa_zone(prob)
    if "scenarios" in parts:
        from .scenario_response import scenarios_block

        k = len(scenario_list(config))
        i, j = names.index("s0_magt"), names.index("s0_class")
        # the scenario kernel writes straight into the stack's bands (no copies)
        scenarios_block(
            config, chunk_grid, t64, forcing_of=forcing_of, out=(out[i : i + k], out[j : j + k])
        )
    return out


def model_stack(
    terrain4,
    config: dict,
    grid: Grid,
    window: Window,
    chunk_px: int,
    parts: Sequence[str] = PARTS,
    backend: str = "dask",
):
    """(bands, ny, nx) float32 stack of every product of ``parts`` (:func:`model_bands`,
    :func:`model_fields`) from a (4, ny, nx) terrain stack (:func:`terrain_stack` or the bands
    of ``terrain.tif``).

    ``map_blocks``: one task per chunk computes all bands, so every product is computed once;
    the bands of an output file are a contiguous slice of the stack's chunk, written in one
    call (dask's slicing copies a slice smaller than half its chunk; views through an extra
    ``map_blocks`` task per file were measured slower end to end, so the copy stays).
    """
    core = grid.subgrid(window)
    if backend == "numpy":
        return model_block(np.asarray(terrain4), config, core, parts)
    forcing_of = forcings(config)
    n_bands = len(model_bands(config, parts))
    ny, nx = int(window.height), int(window.width)
    chunks = ((4,), output_chunks(ny, chunk_px), output_chunks(nx, chunk_px))
    if not isinstance(terrain4, da.Array):
        terrain4 = da.from_array(np.asarray(terrain4), chunks=chunks)
    elif terrain4.chunks != chunks:
        terrain4 = terrain4.rechunk(chunks)

    def block(tb, block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"][1:]
        chunk_grid = core.subgrid(Window(c0, r0, c1 - c0, r1 - r0))
        return model_block(tb, config, chunk_grid, parts, forcing_of)

    return da.map_blocks(
        block,
        terrain4,
        chunks=((n_bands,), *chunks[1:]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )


# -- chunk-wise writer ----------------------------------------------------------------------


@dataclass
class RasterOut:
    """One output GeoTIFF: ``bands`` are (2-D array (NumPy or dask), description, unit), or
    (3-D array of k bands, k descriptions, k units): a contiguous slice of a model stack is
    written in one call per chunk.

    ``product``: the product every band holds (:meth:`of`); a scaled one (MAGT) gets its bands
    (physical values, NaN nodata) encoded by :func:`permamap.products.encode` and its scale and
    offset written to the file."""

    path: object
    grid: Grid
    dtype: str
    nodata: float
    bands: list
    tags: dict = field(default_factory=dict)
    colormap: dict | None = None
    product: Product | None = None

    @classmethod
    def of(cls, product: Product, path, grid: Grid, bands: list, **kw) -> RasterOut:
        """An output of ``product``: its dtype, nodata, scale and offset."""
        return cls(path, grid, product.dtype, product.nodata, bands, product=product, **kw)


class _BandTarget:
    """``target[rows, cols] = block`` writes a block to its window of band ``band`` (an int),
    ``target[bands, rows, cols] = block`` a (k, rows, cols) block to bands ``band`` (a list of k
    band numbers) in one call; NaN -> nodata; a scaled ``product``: physical values -> stored
    integers (:func:`permamap.products.encode`)."""

    def __init__(self, dst, band, lock: threading.Lock, dtype: str, nodata, product=None):
        self.dst, self.band, self.lock = dst, band, lock
        self.product = product if product is not None and product.is_scaled else None
        self.dtype = np.dtype(dtype)
        self.nodata = nodata
        self.fill = (
            np.issubdtype(self.dtype, np.floating) and nodata is not None and not np.isnan(nodata)
        )

    def __setitem__(self, key, block):
        rs, cs = key[-2:]
        block = np.asarray(block)
        if self.product is not None:
            block = encode(self.product, block)
        elif self.fill:
            block = np.where(np.isnan(block), self.nodata, block)
        block = block.astype(self.dtype, copy=False)
        win = Window(cs.start, rs.start, cs.stop - cs.start, rs.stop - rs.start)
        with self.lock:
            self.dst.write(block, self.band, window=win)


def _flat_bands(o: RasterOut) -> list[tuple]:
    """(array or None, description, unit) per band of ``o``: an entry of ``o.bands`` whose
    array is 3-D (k, rows, cols) holds k bands and k descriptions and units."""
    flat = []
    for arr, desc, unit in o.bands:
        if arr.ndim == 3:
            flat += list(zip([None] * arr.shape[0], desc, unit, strict=True))
        else:
            flat.append((arr, desc, unit))
    return flat


def store(outputs: Sequence[RasterOut], opts: Options) -> None:
    """Write every band of every output chunk by chunk, atomically.

    All bands go through one ``dask.array.store`` call, so chunk tasks shared by several bands
    (e.g. the fields of :func:`model_stack`) are computed once and released after their blocks
    are written. The dask bands of one file are written together, chunk by chunk, in one call
    per chunk: the files are pixel-interleaved, so a GeoTIFF tile holds every band, and a tile
    written band by band was compressed, evicted from GDAL's cache, read back and compressed
    again, the rewritten tile appended (measured on 4 float32 bands of 4096 x 4096: 310 MB and
    2.8 s band by band, see README "Performance"). NumPy bands are written whole.
    """
    keep_freed_blocks()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            rasterio.Env(
                GDAL_CACHEMAX=int(opts.gdal_cache_mb) * 1024 * 1024,
                GDAL_NUM_THREADS=str(opts.threads),
            )
        )
        sources, targets = [], []
        for o in outputs:
            if o.product is not None and (o.product.dtype, o.product.nodata) != (o.dtype, o.nodata):
                raise ValueError(f"{o.path}: dtype/nodata differ from product {o.product.name}")
            tmp = stack.enter_context(atomic_path(o.path))
            profile = gtiff_profile(
                o.grid,
                len(_flat_bands(o)),
                o.dtype,
                o.nodata,
                compress=opts.compress,
                threads=opts.threads,
                float_predictor=opts.float_predictor,
            )
            if opts.compress_level is not None and opts.compress.lower() in ("zstd", "deflate"):
                profile["zstd_level" if opts.compress.lower() == "zstd" else "zlevel"] = int(
                    opts.compress_level
                )
            dst = stack.enter_context(rasterio.open(tmp, "w", **profile))
            descs = [d for _, d, _ in _flat_bands(o)]
            units = [u for _, _, u in _flat_bands(o)]
            for i, desc in enumerate(descs, start=1):
                dst.set_band_description(i, desc)
            if any(units):
                dst.units = tuple(u or "" for u in units)
            if o.tags:
                dst.update_tags(**{k: str(v) for k, v in o.tags.items()})
            if o.colormap:
                dst.write_colormap(1, o.colormap)
            if o.product is not None and o.product.is_scaled:
                set_scale(dst, o.product)
            lock = threading.Lock()
            lazy = []  # (first band number, 3-D dask array of consecutive bands)
            i = 1
            for arr, _, _ in o.bands:
                arr3 = arr if arr.ndim == 3 else arr[None]
                if arr3.shape[1:] != (o.grid.height, o.grid.width):
                    raise ValueError(
                        f"{o.path}: band {i} has shape {arr3.shape[1:]}, grid is "
                        f"{(o.grid.height, o.grid.width)}"
                    )
                k = arr3.shape[0]
                if isinstance(arr3, da.Array):
                    lazy.append((i, arr3))
                else:
                    target = _BandTarget(
                        dst, list(range(i, i + k)), lock, o.dtype, o.nodata, o.product
                    )
                    target[:, slice(0, arr3.shape[1]), slice(0, arr3.shape[2])] = arr3
                i += k
            if len(lazy) == 1:
                first, arr3 = lazy[0]
                # one 3-D array holding every band: its chunks are written as they are
                sources.append(arr3.rechunk({0: arr3.shape[0]}))
                targets.append(
                    _BandTarget(dst, list(range(first, i)), lock, o.dtype, o.nodata, o.product)
                )
            elif lazy:
                # all bands of a chunk in one write: every GeoTIFF tile (pixel-interleaved, so
                # holding all bands) is complete when written and compressed once
                chunks = lazy[0][1].chunks[1:]
                stacked = da.concatenate([a.rechunk((a.shape[0], *chunks)) for _, a in lazy])
                sources.append(stacked.rechunk({0: i - 1}))
                targets.append(
                    _BandTarget(dst, list(range(1, i)), lock, o.dtype, o.nodata, o.product)
                )
        if sources:
            # a progress bar (stderr, i.e. the job's log) for per-tile work longer than 10 s
            with (
                scheduler(opts.threads),
                _progress_bar()(minimum=10.0, dt=2.0, out=sys.stderr),
                _gc_paused(),
            ):
                da.store(sources, targets, lock=False)


#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`keep_freed_blocks` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest on 64-bit systems
_TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
_malloc_tuned = False


def keep_freed_blocks() -> bool:
    """Let glibc's malloc reuse freed chunk-sized buffers instead of returning them to the
    kernel (once per process; False where there is no glibc ``mallopt``).

    By default an array over glibc's dynamic mmap threshold gets fresh pages from the kernel
    and gives them back when freed, so every block of every task page-faults its output
    buffers in anew. Page faults are dear in virtual machines (this project's 2-core Firecracker
    VMs also report freed memory to the host): there it doubled the per-pixel model (85 vs 42 ns
    per pixel for MAGT, classes and 9 scenarios of a 512 x 512 block) and made the end-to-end
    benchmark 1.7x slower (README "Performance"). Arrays up to 32 MB then come from malloc's
    heap, and up to 1 GB of freed heap is kept for reuse; peak memory is what the blocks in
    flight need either way."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
        ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1
    except (OSError, AttributeError):
        return False
    _malloc_tuned = ok
    return ok


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off while a tile's graph runs: dask's task objects
    made it scan the heap every few thousand allocations (about 5 % of a tile job's CPU in a
    profile of the benchmark); the arrays are freed by reference counting either way, and
    the collector resumes afterwards (a forced full collection at the end cost 0.1 s per
    call)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _progress_bar():
    """dask's ``ProgressBar`` whose timer thread stops as soon as the work ends.

    dask's own timer sleeps ``dt`` between updates and ``_finish`` joins it, so every
    :func:`store` took up to ``dt`` (2 s) longer than its work (measured: 2.1 s to write a
    16 MP float32 file, 0.3 s with this class). Here the timer waits on an event that
    ``_finish`` sets."""
    from dask.diagnostics import ProgressBar

    class Progress(ProgressBar):
        def _start(self, dsk):
            self._stop = threading.Event()
            super()._start(dsk)

        def _timer_func(self):
            while not self._stop.is_set():
                elapsed = time.perf_counter() - self._start_time
                if elapsed > self._minimum:
                    self._update_bar(elapsed)
                self._stop.wait(self._dt)

        def _finish(self, dsk, state, errored):
            self._stop.set()
            super()._finish(dsk, state, errored)

    return Progress


# -- stages (same files as permamap.steps) -----------------------------------------------------


_tile = find_tile


def _terrain_input(path, opts: Options, window: Window):
    """The 4 bands of ``terrain.tif`` (lazy for dask, whole for numpy)."""
    ny, nx = int(window.height), int(window.width)
    if opts.backend == "numpy":
        return RasterReader(path)[:, :, :]
    return lazy_raster(path, (output_chunks(ny, opts.chunk_px), output_chunks(nx, opts.chunk_px)))


def terrain_tile(
    config: dict, tile_dem_path, tile_id: str, out_path, threads: int = 2, **overrides
) -> None:
    """``terrain.tif`` (elevation, slope, aspect, solar; float32) of a tile, chunk-wise."""
    opts = options_from_config(config, threads, **overrides)
    grid, tile = _tile(config, tile_id)
    core = grid.subgrid(tile.window)
    ny, nx = int(tile.window.height), int(tile.window.width)
    z = RasterReader(tile_dem_path, [1])
    if z.shape[1:] != (ny + 2 * HALO_PX, nx + 2 * HALO_PX):
        raise ValueError(
            f"{tile_dem_path}: {z.shape[1:]} px, tile {tile_id} needs {ny} x {nx} plus a "
            f"{HALO_PX}-px halo; rebuild the tile DEM (steps.tile_dem)"
        )
    if opts.backend == "numpy":
        z = z[0, :, :]
    t = terrain_stack(z, config, grid, tile.window, opts.chunk_px, opts.backend)
    store(
        [
            RasterOut(
                out_path,
                core,
                "float32",
                FLOAT_NODATA,
                [(t[i], TERRAIN_BANDS[i], TERRAIN_UNITS[i]) for i in range(4)],
                tags={"tile": tile_id},
            )
        ],
        opts,
    )


def climate_tile(
    config: dict, terrain_path, tile_id: str, out_path, threads: int = 2, **overrides
) -> None:
    """``climate.tif`` (maat, fdd, tdd, amplitude; float32, NaN nodata) of a tile.

    float32 like the products made from it (the ``maat``/``fdd``/``tdd`` mosaics); the model
    stages recompute the climate per chunk in float64 and do not read it, the transient
    response reads its features from it in the TopoSUB fit and the mapping alike."""
    opts = options_from_config(config, threads, **overrides)
    grid, tile = _tile(config, tile_id)
    m = model_stack(
        _terrain_input(terrain_path, opts, tile.window),
        config,
        grid,
        tile.window,
        opts.chunk_px,
        ("climate",),
        opts.backend,
    )
    names = ("maat", "fdd", "tdd", "amplitude")
    units = ("degC", "degC day", "degC day", "degC")
    store(
        [
            RasterOut(
                out_path,
                grid.subgrid(tile.window),
                "float32",
                np.nan,
                [model_slab(m, config, ("climate",), names, units)],
                tags={"tile": tile_id},
            )
        ],
        opts,
    )


def ground_tile(
    config: dict,
    terrain_path,
    climate_path,
    tile_id: str,
    out_magt,
    out_class,
    threads: int = 2,
    *,
    out_alt,
    **overrides,
) -> None:
    """``ground_magt.tif`` (magt; int16 in 0.01 degC, ``PRODUCTS["magt"]``), ``ground_alt.tif``
    (alt, freeze_depth; float32) and ``ground_class.tif`` (class, stability, probability, zone)
    of a tile. The degree-days are recomputed per chunk from the
    elevation (the same kernel on the same inputs gives the bits of ``climate.tif``), so
    ``climate_path`` is accepted for signature parity with :func:`permamap.steps.ground_tile`
    but not read."""
    del climate_path
    opts = options_from_config(config, threads, **overrides)
    grid, tile = _tile(config, tile_id)
    core = grid.subgrid(tile.window)
    m = model_stack(
        _terrain_input(terrain_path, opts, tile.window),
        config,
        grid,
        tile.window,
        opts.chunk_px,
        ("ground", "active_layer", "probability"),
        opts.backend,
    )
    tags = {"tile": tile_id}
    parts = ("ground", "active_layer", "probability")
    store(
        [
            RasterOut.of(
                PRODUCTS["magt"],
                out_magt,
                core,
                [model_slab(m, config, parts, ("magt",), ("degC",))],
                tags=tags,
            ),
            RasterOut(
                out_alt,
                core,
                "float32",
                FLOAT_NODATA,
                [model_slab(m, config, parts, ("alt", "freeze_depth"), ("m", "m"))],
                tags=tags,
            ),
            RasterOut(
                out_class,
                core,
                "uint8",
                CLASS_NODATA,
                [model_slab(m, config, parts, CODE_BANDS, [None] * 4)],
                tags=tags,
            ),
        ],
        opts,
    )


def scenarios_tile(
    config: dict,
    terrain_path,
    tile_id: str,
    out_magt,
    out_class,
    threads: int = 2,
    *,
    climate_path=None,
    ground_alt_path=None,
    ground_class_path=None,
    out_degradation=None,
    fit_path=None,
    transient_path=None,
    **overrides,
) -> None:
    """``scenarios_magt.tif`` / ``scenarios_class.tif`` (and, with ``out_degradation``,
    ``scenarios_degradation.tif``): one band per ``<scenario>/<horizon>``, chunk by chunk.

    Every chunk goes through :func:`permamap.scenario_response.scenarios_block` (equilibrium or
    transient response, degradation against the baseline bands of ``ground_alt.tif`` /
    ``ground_class.tif``); the transient fit and cluster table are loaded once per job."""
    from . import scenario_response as sr

    opts = options_from_config(config, threads, **overrides)
    grid, tile = _tile(config, tile_id)
    core = grid.subgrid(tile.window)
    transient = sr.mode(config) == "transient"
    degradation = out_degradation is not None
    if transient and None in (climate_path, fit_path, transient_path):
        raise ValueError(
            "scenarios_tile: the transient response needs climate_path, fit_path and transient_path"
        )
    if degradation and not transient and None in (ground_alt_path, ground_class_path):
        raise ValueError("scenarios_tile: degradation needs ground_alt_path and ground_class_path")
    labels = sr.scenario_band_labels(config)
    # product -> (dtype, nodata, unit, path); the files take dtype, nodata and scale from
    # PRODUCTS[product] (MAGT: int16 in 0.01 degC)
    products = {
        "magt": ("float32", FLOAT_NODATA, "degC", out_magt),
        "class": ("uint8", CLASS_NODATA, None, out_class),
    }
    if degradation:
        products["degradation"] = ("uint8", CLASS_NODATA, None, out_degradation)
    # (file, bands) read per chunk: terrain, then the transient features or the baseline bands
    sources = [(terrain_path, None)]
    if transient:
        sources.append((climate_path, None))
    elif degradation:
        sources += [(ground_class_path, [1, 2]), (ground_alt_path, [1])]
    inputs = sr.TransientInputs.load(config, fit_path, transient_path) if transient else None
    forcing_of = forcings(config)
    n = len(labels)

    def block(t, *extra, block_info=None):
        chunk_grid = core
        if block_info is not None:
            (r0, r1), (c0, c1) = block_info[None]["array-location"][-2:]
            chunk_grid = core.subgrid(Window(c0, r0, c1 - c0, r1 - r0))
        clim = extra[0] if transient else None
        base = None
        if degradation and not transient:
            base = {"class": extra[0][0], "stability": extra[0][1], "alt": extra[1][0]}
        # one float32 stack, n bands per product (codes as exact float32 integers), filled by
        # scenarios_block in place
        o = np.empty((len(products) * n, *t.shape[1:]), np.float32)
        out = tuple(o[j * n : (j + 1) * n] for j in range(len(products)))
        sr.scenarios_block(
            config, chunk_grid, t, clim, base, inputs, degradation, forcing_of, out=out
        )
        return o

    if opts.backend == "numpy":
        m = block(*(RasterReader(path, bands)[:, :, :] for path, bands in sources))
    else:
        ny, nx = int(tile.window.height), int(tile.window.width)
        chunks = (output_chunks(ny, opts.chunk_px), output_chunks(nx, opts.chunk_px))
        arrays = [lazy_raster(path, chunks, bands=bands) for path, bands in sources]
        m = da.map_blocks(
            block,
            *arrays,
            chunks=((len(products) * n,), *chunks),
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
        )
    store(
        [
            RasterOut.of(
                PRODUCTS[p],
                path,
                core,
                [(m[j * n : (j + 1) * n], list(labels), [unit] * n)],
                tags={"tile": tile_id},
            )
            for j, (p, (_, _, unit, path)) in enumerate(products.items())
        ],
        opts,
    )


# -- Snakemake adapters (params: step="blocks:smk_<stage>") ------------------------------------


def smk_terrain(smk) -> None:
    terrain_tile(
        smk.config, smk.input.dem, smk.wildcards.tile, smk.output[0], threads=int(smk.threads)
    )


def smk_climate(smk) -> None:
    climate_tile(
        smk.config, smk.input.terrain, smk.wildcards.tile, smk.output[0], threads=int(smk.threads)
    )


def smk_ground(smk) -> None:
    ground_tile(
        smk.config,
        smk.input.terrain,
        smk.input.climate,
        smk.wildcards.tile,
        smk.output.magt,
        smk.output.cls,
        threads=int(smk.threads),
        out_alt=smk.output.alt,
    )


def smk_scenarios(smk) -> None:
    inp = smk.input
    scenarios_tile(
        smk.config,
        inp.terrain,
        smk.wildcards.tile,
        smk.output.magt,
        smk.output.cls,
        threads=int(smk.threads),
        climate_path=getattr(inp, "climate", None),
        ground_alt_path=getattr(inp, "ground_alt", None),
        ground_class_path=getattr(inp, "ground_class", None),
        out_degradation=getattr(smk.output, "deg", None),
        fit_path=getattr(inp, "fit", None),
        transient_path=getattr(inp, "transient", None),
    )
