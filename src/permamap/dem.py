"""Build the region DEM on the working grid (plus a halo), from the offline sample, a file, or
the Copernicus GLO-30/GLO-90 mosaic of the ``retrieve_dem`` rule (``dem.source: copernicus``,
``resources/<run>/inputs/dem_copernicus_<product>.tif``, warped to the grid like a file).

Offline sample (``dem.source: pvlib_sample``): pvlib ships a global 5-arc-minute altitude grid
(``pvlib/data/Altitude.h5``, dataset ``Altitude``, 2160 x 4320 uint8; row 0 starts at 90 N and
column 0 at 180 W, cells of 1/12 degree; metres = value * 28 - 450; 255 = nodata; BSD-3, derived
from Mapzen terrain tiles: SRTM, GMTED, ETOPO). It is decoded exactly as
``pvlib.location.lookup_altitude`` does and resampled to the working grid with a smooth
method (GDAL cubic B-spline by default), which never overshoots and adds no detail: at 30
arc-seconds the terrain is as smooth as the 9 km source.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioIOError
from rasterio.warp import reproject, transform_bounds

from .errors import InputDataError
from .grid import CRS, HALO_PX, Grid
from .products import FLOAT_NODATA
from .rasterio_io import resampling, write_bands

log = logging.getLogger(__name__)

PVLIB_RES_DEG = 1.0 / 12.0
PVLIB_NODATA = 255
#: Plausible elevation range on Earth (m). Values beyond suggest feet or a wrong scale.
ELEVATION_RANGE_M = (-450.0, 8850.0)


def pvlib_altitude_path() -> Path:
    import pvlib

    return Path(pvlib.__file__).parent / "data" / "Altitude.h5"


def decode_pvlib_altitude(values: np.ndarray) -> np.ndarray:
    """Decode pvlib's uint8 altitude code to metres: z = 28 * v - 450, NaN where v == 255.

    Source: ``pvlib.location.lookup_altitude`` (pvlib 0.16) documentation and code.
    """
    z = values.astype(np.float32) * 28.0 - 450.0
    z[values == PVLIB_NODATA] = np.nan
    return z


def read_pvlib_window(west: float, south: float, east: float, north: float, margin: int = 4):
    """Decoded pvlib altitude (metres, NaN nodata) covering a bbox, and its affine transform."""
    import h5py

    r0 = max(0, int(np.floor((90.0 - north) / PVLIB_RES_DEG)) - margin)
    r1 = min(2160, int(np.ceil((90.0 - south) / PVLIB_RES_DEG)) + margin)
    c0 = max(0, int(np.floor((west + 180.0) / PVLIB_RES_DEG)) - margin)
    c1 = min(4320, int(np.ceil((east + 180.0) / PVLIB_RES_DEG)) + margin)
    with h5py.File(pvlib_altitude_path(), "r") as f:
        raw = f["Altitude"][r0:r1, c0:c1]
    transform = Affine(
        PVLIB_RES_DEG, 0, -180.0 + c0 * PVLIB_RES_DEG, 0, -PVLIB_RES_DEG, 90.0 - r0 * PVLIB_RES_DEG
    )
    return decode_pvlib_altitude(raw), transform


def _warp_to(grid: Grid, src: np.ndarray, src_transform, src_crs, method: str) -> np.ndarray:
    dst = np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    reproject(
        source=src.astype(np.float32),
        destination=dst,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=CRS,
        dst_nodata=np.nan,
        resampling=resampling(method),
    )
    return dst


def read_dem_file(path: str | Path, grid: Grid, method: str) -> np.ndarray:
    """Warp a user's DEM file to ``grid``; clear errors for unusable files."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"DEM file {path} does not exist; fix dem.path in the config")
    try:
        src = rasterio.open(path)
    except RasterioIOError:
        raise InputDataError(
            f"DEM file {path} is not a readable raster (truncated download or wrong format?); "
            "replace it with a GeoTIFF"
        ) from None
    with src:
        if src.crs is None:
            raise InputDataError(
                f"DEM file {path} has no CRS; assign one, e.g. `gdal_edit.py -a_srs EPSG:4326 {path}`"
            )
        _check_crs_units(path, src.crs, src.bounds)
        b = transform_bounds(src.crs, CRS, *src.bounds, densify_pts=21)
        g = grid.bounds
        if b[0] >= g[2] or b[2] <= g[0] or b[1] >= g[3] or b[3] <= g[1]:
            raise InputDataError(
                f"DEM file {path} covers {tuple(round(v, 3) for v in b)} (W,S,E,N) and does not "
                f"overlap the region bbox {tuple(round(v, 3) for v in g)}; use a DEM of the region "
                "or fix region.bbox"
            )
        data = src.read(1, masked=True).astype(np.float32).filled(np.nan)
        return _warp_to(grid, data, src.transform, src.crs, method)


def _check_crs_units(path, crs, bounds) -> None:
    """Catch a CRS that contradicts the coordinates: metres labelled as degrees, or the reverse."""
    left, bottom, right, top = bounds
    if crs.is_geographic and (max(abs(left), abs(right)) > 360 or max(abs(bottom), abs(top)) > 90):
        raise InputDataError(
            f"DEM file {path} declares a geographic CRS ({crs.to_string()}) but its coordinates "
            f"({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) look like metres; assign the "
            "projected CRS it was made in (e.g. its UTM zone)"
        )
    if (
        crs.is_projected
        and max(abs(left), abs(right), abs(bottom), abs(top)) <= 360
        and (right - left) < 10
    ):
        raise InputDataError(
            f"DEM file {path} declares a projected CRS ({crs.to_string()}) but its coordinates "
            f"({left:.4f}, {bottom:.4f}, {right:.4f}, {top:.4f}) look like degrees; assign "
            "EPSG:4326 (e.g. gdal_edit.py -a_srs EPSG:4326)"
        )


def check_elevations(z: np.ndarray, source: str) -> None:
    """Reject rasters that cannot be elevations in metres (feet, decimetres, all nodata)."""
    finite = np.isfinite(z)
    if not finite.any():
        raise InputDataError(
            f"DEM from {source} has no valid pixel inside the region; check region.bbox"
        )
    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    if lo < ELEVATION_RANGE_M[0] or hi > ELEVATION_RANGE_M[1]:
        raise InputDataError(
            f"DEM from {source} has elevations {lo:.0f}..{hi:.0f}, outside the plausible "
            f"{ELEVATION_RANGE_M[0]:.0f}..{ELEVATION_RANGE_M[1]:.0f} m; is it in feet or scaled? "
            "Convert it to metres"
        )
    share = 1.0 - finite.mean()
    if share > 0:
        log.warning(
            "DEM from %s: %.2f %% of pixels are nodata; they stay nodata in every product",
            source,
            100 * share,
        )


def build_dem(config: dict, out_path: str | Path, *, threads: int = 2) -> None:
    """Write the region DEM (working grid + HALO_PX on each side) as float32 GeoTIFF."""
    from .rasterio_io import provenance_tags

    grid = Grid.from_config(config).expanded(HALO_PX)
    dem_cfg = config["dem"]
    method = dem_cfg.get("resampling", "cubic_spline")
    if dem_cfg["source"] == "pvlib_sample":
        src, transform = read_pvlib_window(*grid.bounds)
        z = _warp_to(grid, src, transform, CRS, method)
        source = f"pvlib {pvlib_altitude_path().name}"
    elif dem_cfg["source"] == "copernicus":
        from .retrieve import dem_path

        path = Path(dem_path(config))
        if not path.exists():
            raise InputDataError(
                f"Copernicus DEM mosaic {path} does not exist; run the retrieve_dem rule first "
                "(snakemake with this config runs it)"
            )
        z = read_dem_file(path, grid, method)
        source = f"Copernicus {dem_cfg['copernicus']['product']} DEM ({path.name})"
    else:
        z = read_dem_file(dem_cfg["path"], grid, method)
        source = str(dem_cfg["path"])
    check_elevations(z, source)
    z = np.where(np.isfinite(z), z, FLOAT_NODATA).astype(np.float32)
    write_bands(
        out_path,
        z,
        grid,
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=["elevation"],
        units=["m"],
        tags=provenance_tags(config, source=source, resampling=method, halo_px=HALO_PX),
        threads=threads,
    )
