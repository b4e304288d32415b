"""Surface types: n-factors and conductivity ratio of the TTOP model per land-cover class.

The TTOP model (:mod:`permamap.ground`) needs a freezing and a thawing n-factor and the
thawed/frozen conductivity ratio r_k. They depend on the ground surface: vegetation and snow
set the n-factors (Lunardini 1978; Klene et al. 2001; Karunaratne & Burn 2004), the soil's
water and organic content sets r_k (Smith & Riseborough 2002). ``ground.surface`` gives them
per surface type (README "Surface types" lists the values and their sources):

``ground.surface.types``
    ``{name: {n_freezing, n_thawing, conductivity_ratio, source}}``; a type with
    ``mask: true`` (water bodies, glaciers) is not modelled: its pixels are nodata in the ground
    products (MAGT, classes, active layer, probability, scenarios).
``ground.surface.land_cover``
    ``null`` (default): one surface, ``ground.ttop``'s values everywhere; the run is
    bit-identical to a run without this section. Or the path of a categorical raster (integer
    codes, any CRS, e.g. ESA WorldCover 10 m), read window by window for each chunk.
``ground.surface.land_cover_classes``
    ``{code: type}``; codes not listed, the raster's nodata and pixels outside it get
    ``default_type``.
``ground.surface.resampling``
    ``mode`` (default): the most frequent type among k x k sample points spread evenly over
    each working-grid pixel, k = ceil(working pixel / land-cover pixel) (1 when the land cover
    is coarser), ties to the type listed first; ``nearest``: the type at the pixel centre.

The kernels take the type as an index per pixel (``surface``, uint8, the position of the type
in ``types``) and a table of multipliers of ``ground.ttop``'s values (:func:`multipliers`)::

    n_f(pixel) = ground.ttop.n_freezing * m[s, 0],   m[s, 0] = n_freezing(s) / ground.ttop.n_freezing

(likewise n_t and r_k), so a type's pixels get the type's own values, and the Monte Carlo
ensemble (``ground.probability.ranges``, which draws ``ground.ttop``'s values) scales every
type by the same factor: a member with n_thawing 10 % above ``ground.ttop.n_thawing`` has
every type's n_thawing 10 % above its table value.

Seams: the sample points of a pixel are computed from the pixel's own grid coordinates and
the type counts are a per-pixel operation, so a pixel gets the same type whatever tile or
chunk it is computed in (tested through :mod:`permamap.blocks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from .errors import ConfigError, InputDataError

#: Parameters of a type, in the column order of :func:`multipliers` (and of the kernels).
PARAMS = ("n_freezing", "n_thawing", "conductivity_ratio")
#: Sample value of "no land-cover data here" (nodata, outside the raster); never a type index.
NO_TYPE = 255
#: Most types a surface index can hold (uint8, 255 reserved).
MAX_TYPES = 255
#: Largest k of the k x k mode samples per pixel (a land cover up to 16x finer than the grid
#: is sampled at every one of its pixels; finer ones are subsampled).
MAX_SAMPLES_PER_AXIS = 16
RESAMPLING = ("mode", "nearest")
#: Keys that map pixels to types: read from the base config, so a scenario cannot override
#: them (it may change the types' parameters).
PER_RUN_KEYS = ("land_cover", "resampling", "default_type", "land_cover_classes")
KEY = "ground.surface"


def section(config: dict) -> dict:
    """``ground.surface`` with defaults (an empty section when absent)."""
    return (config.get("ground") or {}).get("surface") or {}


#: ``ground.surface.land_cover`` value that downloads ESA WorldCover over the region (the
#: ``retrieve_land_cover`` rule, :func:`permamap.retrieve.retrieve_land_cover_file`).
WORLDCOVER = "worldcover"


def land_cover_path(config: dict) -> str | None:
    """The land-cover raster of ``config`` or None (one surface); for ``land_cover:
    worldcover`` the file the retrieve stage writes."""
    value = section(config).get("land_cover") or None
    if value == WORLDCOVER:
        from .retrieve import land_cover_path as retrieved

        return retrieved(config)
    return value


def type_names(config: dict) -> list[str]:
    """Surface types in index order (the order of ``ground.surface.types``)."""
    return list(section(config).get("types") or {})


def check_config(config: dict, where: str = "") -> None:
    """Semantic checks of ``ground.surface`` (the schema checks the types of the values):
    the default type and every mapped type exist, unmasked types have all three parameters,
    at most :data:`MAX_TYPES` types. Raises :class:`ConfigError` naming the key."""
    sec = section(config)
    types = sec.get("types") or {}
    if not types:
        if sec.get("land_cover"):
            raise ConfigError(
                f"config error: {KEY}.land_cover needs {KEY}.types (the surface types its "
                f"classes map to; see config/config.yaml){where}"
            )
        return
    if len(types) > MAX_TYPES:
        raise ConfigError(
            f"config error: {KEY}.types has {len(types)} types; at most {MAX_TYPES}{where}"
        )
    for name, t in types.items():
        if t.get("mask"):
            continue
        missing = [p for p in PARAMS if t.get(p) is None]
        if missing:
            raise ConfigError(
                f"config error: {KEY}.types.{name} needs {', '.join(missing)} (or mask: true "
                f"for a surface that is not modelled){where}"
            )
    default = sec.get("default_type")
    if default not in types:
        raise ConfigError(
            f"config error: {KEY}.default_type = {default!r} is not one of {KEY}.types "
            f"({', '.join(types)}){where}"
        )
    for code, name in (sec.get("land_cover_classes") or {}).items():
        if name not in types:
            raise ConfigError(
                f"config error: {KEY}.land_cover_classes.{code} = {name!r} is not one of "
                f"{KEY}.types ({', '.join(types)}){where}"
            )


def multipliers(config: dict) -> np.ndarray:
    """(n_types, 3) float64 multipliers of ``ground.ttop``'s (n_freezing, n_thawing,
    conductivity_ratio) per type; 1.0 for masked types (their pixels are nodata)."""
    tt = config["ground"]["ttop"]
    types = section(config).get("types") or {}
    out = np.ones((len(types), len(PARAMS)), np.float64)
    for i, t in enumerate(types.values()):
        if t.get("mask"):
            continue
        for j, p in enumerate(PARAMS):
            out[i, j] = float(t[p]) / float(tt[p])
    return out


def masked_types(config: dict) -> np.ndarray:
    """(n_types,) bool: types with ``mask: true``."""
    return np.array([bool(t.get("mask")) for t in (section(config).get("types") or {}).values()])


def code_lookup(config: dict) -> dict[int, int]:
    """{land-cover code: type index} of ``ground.surface.land_cover_classes``."""
    index = {name: i for i, name in enumerate(type_names(config))}
    classes = section(config).get("land_cover_classes") or {}
    return {int(code): index[name] for code, name in classes.items()}


def mode_samples_per_axis(ratio: float, resampling: str) -> int:
    """k of the k x k sample points per working-grid pixel: ceil(ratio) for ``mode`` (ratio =
    working pixel size / land-cover pixel size, the larger of the two axes), clipped to
    [1, :data:`MAX_SAMPLES_PER_AXIS`]; 1 for ``nearest``."""
    if resampling == "nearest" or not math.isfinite(ratio):
        return 1
    return int(min(MAX_SAMPLES_PER_AXIS, max(1, math.ceil(ratio - 1e-9))))


@nb.njit(cache=True, nogil=True)
def mode_kernel(samples, n_types, default, out):
    """Most frequent type of each pixel's samples ((ny, nx, m) uint8, :data:`NO_TYPE` = no
    vote); ties go to the lowest type index; ``default`` where no sample has a type."""
    ny, nx, m = samples.shape
    counts = np.zeros(n_types, np.int64)
    for r in range(ny):
        for c in range(nx):
            counts[:] = 0
            for k in range(m):
                s = samples[r, c, k]
                if s < n_types:
                    counts[s] += 1
            best = default
            best_n = 0
            for t in range(n_types):
                if counts[t] > best_n:
                    best = t
                    best_n = counts[t]
            out[r, c] = best


def sample_points(grid, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) (ny, nx, k * k) longitudes/latitudes of k x k points spread evenly over each pixel
    of ``grid`` (EPSG:4326): offsets (i + 0.5) / k of a pixel; k = 1 is the pixel centre."""
    off = (np.arange(k) + 0.5) / k
    cols = (np.arange(grid.width)[:, None] + off[None, :]).reshape(-1)  # (nx * k)
    rows = (np.arange(grid.height)[:, None] + off[None, :]).reshape(-1)  # (ny * k)
    lon = grid.west + cols * grid.res_deg
    lat = grid.north - rows * grid.res_deg
    x = np.broadcast_to(lon.reshape(1, grid.width, 1, k), (grid.height, grid.width, k, k))
    y = np.broadcast_to(lat.reshape(grid.height, 1, k, 1), (grid.height, grid.width, k, k))
    shape = (grid.height, grid.width, k * k)
    return np.ascontiguousarray(x).reshape(shape), np.ascontiguousarray(y).reshape(shape)


@dataclass
class SurfaceMap:
    """The land cover of a run, opened once per tile job (:func:`from_config`); :meth:`index`
    gives the surface index of any working-grid block (a tile or a chunk)."""

    path: str
    crs: object
    transform: object
    width: int
    height: int
    nodata: float | None
    dtype: np.dtype
    lookup: dict
    n_types: int
    default: int
    k: int
    mask: np.ndarray

    def index(self, grid) -> np.ndarray:
        """(ny, nx) uint8 surface index of the pixels of ``grid`` (a :class:`~permamap.grid.Grid`)."""
        import rasterio
        from rasterio.windows import Window

        x, y = sample_points(grid, self.k)
        x, y = _to_crs(x, y, self.crs)
        col_f, row_f = _pixel_coords(self.transform, x, y)
        col = np.floor(col_f).astype(np.int64)
        row = np.floor(row_f).astype(np.int64)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        samples = np.full(x.shape, NO_TYPE, np.uint8)
        if inside.any():
            r0, r1 = int(row[inside].min()), int(row[inside].max()) + 1
            c0, c1 = int(col[inside].min()), int(col[inside].max()) + 1
            try:
                with rasterio.open(self.path) as src:
                    codes = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
            except rasterio.errors.RasterioError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputDataError(
                    f"{KEY}.land_cover: {self.path} could not be read ({first})"
                ) from None
            types = self.codes_to_types(codes)
            samples[inside] = types[row[inside] - r0, col[inside] - c0]
        out = np.empty((grid.height, grid.width), np.uint8)
        mode_kernel(samples, self.n_types, self.default, out)
        return out

    def codes_to_types(self, codes: np.ndarray) -> np.ndarray:
        """Type index (uint8) of land-cover codes: mapped codes their type, unmapped codes the
        default type, nodata :data:`NO_TYPE`."""
        if codes.dtype.itemsize <= 2:  # a table over every possible code (uint8: WorldCover)
            info = np.iinfo(codes.dtype)
            values = np.arange(info.min, info.max + 1)
            return self._type_table(values)[codes.astype(np.int64) - info.min]
        values, inverse = np.unique(codes, return_inverse=True)
        return self._type_table(values)[inverse.reshape(codes.shape)]

    def _type_table(self, values: np.ndarray) -> np.ndarray:
        """Type index (uint8) of each code in ``values``."""
        types = np.full(len(values), self.default, np.uint8)
        for code, t in self.lookup.items():
            types[values == code] = t
        if self.nodata is not None:
            types[values == self.nodata] = NO_TYPE
        return types

    def masked(self, z: np.ndarray, surface: np.ndarray) -> np.ndarray:
        """``z`` with NaN on pixels of masked types (water, glaciers): not modelled."""
        if not self.mask.any():
            return z
        return np.where(self.mask[surface], np.nan, z)


def _to_crs(x: np.ndarray, y: np.ndarray, crs) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes/latitudes (EPSG:4326) in ``crs`` (unchanged when it is EPSG:4326)."""
    from rasterio.crs import CRS

    if CRS.from_user_input(crs) == CRS.from_epsg(4326):
        return x, y
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:4326", CRS.from_user_input(crs).to_wkt(), always_xy=True)
    xx, yy = tr.transform(x.reshape(-1), y.reshape(-1))
    return np.asarray(xx).reshape(x.shape), np.asarray(yy).reshape(y.shape)


def _pixel_coords(transform, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Fractional (column, row) of map coordinates in a raster with affine ``transform``."""
    inv = ~transform
    return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f


def from_config(config: dict) -> SurfaceMap | None:
    """The :class:`SurfaceMap` of ``ground.surface.land_cover`` or None when it is null.

    Checks (each an :class:`~permamap.errors.InputDataError` naming the key, the file and the
    fix): the file exists and is a raster, has a CRS, holds integer codes and overlaps the
    region. The number of samples per pixel is set from the region grid, so it is the same
    for every tile and chunk."""
    path = land_cover_path(config)
    if path is None:
        return None
    import rasterio

    from .grid import Grid

    sec = section(config)
    p = Path(path)
    if not p.exists():
        raise InputDataError(
            f"{KEY}.land_cover: {p} does not exist; give the path of a categorical land-cover "
            "raster (e.g. ESA WorldCover) or null for one surface type"
        )
    try:
        with rasterio.open(p) as src:
            crs, transform = src.crs, src.transform
            width, height, nodata = src.width, src.height, src.nodata
            dtype = np.dtype(src.dtypes[0])
            bounds = src.bounds
    except rasterio.errors.RasterioError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputDataError(f"{KEY}.land_cover: {p} is not a readable raster ({first})") from None
    if crs is None:
        raise InputDataError(
            f"{KEY}.land_cover: {p} has no CRS; assign one (gdal_edit.py -a_srs EPSG:...)"
        )
    if not np.issubdtype(dtype, np.integer):
        raise InputDataError(
            f"{KEY}.land_cover: {p} holds {dtype} values; a land cover must be an integer "
            "(categorical) raster"
        )
    grid = Grid.from_config(config)
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds("EPSG:4326", crs, *grid.bounds, densify_pts=21)
    if west >= bounds.right or east <= bounds.left or south >= bounds.top or north <= bounds.bottom:
        raise InputDataError(
            f"{KEY}.land_cover: {p} (bounds {tuple(round(b, 6) for b in bounds)} in {crs}) "
            f"does not overlap the region {grid.bounds}; give a land cover of the region"
        )
    names = type_names(config)
    resampling = sec.get("resampling", "mode")
    k = mode_samples_per_axis(_pixel_ratio(grid, crs, transform), resampling)
    return SurfaceMap(
        path=str(p),
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        nodata=nodata,
        dtype=dtype,
        lookup=code_lookup(config),
        n_types=len(names),
        default=names.index(sec["default_type"]),
        k=k,
        mask=masked_types(config),
    )


def _pixel_ratio(grid, crs, transform) -> float:
    """Working-grid pixel size / land-cover pixel size (the larger over the two axes) at the
    region centre."""
    lon = grid.west + 0.5 * grid.width * grid.res_deg
    lat = grid.north - 0.5 * grid.height * grid.res_deg
    h = 0.5 * grid.res_deg
    x, y = _to_crs(
        np.array([lon - h, lon + h, lon, lon]), np.array([lat, lat, lat - h, lat + h]), crs
    )
    col, row = _pixel_coords(transform, x, y)
    return float(max(abs(col[1] - col[0]), abs(row[3] - row[2])))


#: Key of the land cover (a :class:`SurfaceMap` or None) in the per-tile dict of
#: :func:`permamap.blocks.forcings` (a tuple, so no scenario name can collide with it).
FORCING_KEY = ("surface",)


def block_args(config: dict, grid, z: np.ndarray, forcing_of: dict | None = None):
    """(z for the ground wrappers, their ``surface``/``surface_mult`` keyword arguments) of a
    block on ``grid``: ``(z, {})`` with one surface (no land cover), so the calls are exactly
    those without surface types. Otherwise ``z`` is NaN on masked types (not modelled) and the
    multipliers are ``config``'s (:func:`scenario_args` swaps in a scenario's). The land cover
    comes from ``forcing_of[FORCING_KEY]`` (opened once per tile) or is opened here."""
    if forcing_of is not None and FORCING_KEY in forcing_of:
        smap = forcing_of[FORCING_KEY]
    else:
        smap = from_config(config)
    if smap is None:
        return z, {}
    surf = smap.index(grid)
    return smap.masked(z, surf), {"surface": surf, "surface_mult": multipliers(config)}


def scenario_args(kwargs: dict, scenario_config: dict) -> dict:
    """:func:`block_args`' keyword arguments with the multipliers of a scenario's merged config
    (a scenario may change the types' parameters)."""
    return {**kwargs, "surface_mult": multipliers(scenario_config)} if kwargs else {}
