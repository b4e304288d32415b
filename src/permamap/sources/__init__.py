"""Data sources: one module per upstream data set, all network access through
:func:`permamap.download.fetch`.

- :mod:`~permamap.sources.copernicus`: Copernicus GLO-30 / GLO-90 DEM tiles -> mosaic -> bbox.
- :mod:`~permamap.sources.worldclim`: WorldClim 2.1 monthly ``tavg`` and ``elev`` (tiles or zips).
- :mod:`~permamap.sources.chelsa`: CHELSA V2.1 monthly ``tas`` 1981-2010 (scale/offset -> C).
- :mod:`~permamap.sources.cmip6`: WorldClim CMIP6 ``tmin``/``tmax`` -> monthly warming deltas.
- :mod:`~permamap.sources.reference`: Obu et al. 2019 (PANGAEA), ESA CCI Permafrost, and checks
  of a user's local NCDC/TPDC file; reprojection to the working grid.

This module holds what they share: bbox checks, window reads, grid snapping and an atomic
GeoTIFF writer. Conventions: bboxes are ``(west, south, east, north)`` in degrees (EPSG:4326);
float outputs are float32 with nodata ``-9999`` (:data:`permamap.products.FLOAT_NODATA`);
temperatures in C; every output file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from permamap.errors import InputDataError
from permamap.products import FLOAT_NODATA

__all__ = [
    "FLOAT_NODATA",
    "atomic_output",
    "check_bbox",
    "grid_window",
    "read_bbox",
    "unreadable",
    "write_geotiff",
]


def unreadable(name: str, exc: BaseException) -> InputDataError:
    """One readable line for a file GDAL cannot open (GDAL's message cut to its first line)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return InputDataError(f"{name}: not a readable raster ({first})")

MONTHS = tuple(range(1, 13))
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)


def check_bbox(bbox: Sequence[float], what: str = "bbox") -> tuple[float, float, float, float]:
    """Validate ``(west, south, east, north)`` in degrees and return it as floats."""
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputDataError(
            f"{what} must be [west, south, east, north] in degrees, got {bbox!r}"
        ) from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputDataError(
            f"{what} {list(bbox)} is not [west, south, east, north] with -180 <= west < east "
            "<= 180 and -90 <= south < north <= 90 (bboxes across the antimeridian are not "
            "supported)"
        )
    return west, south, east, north


# one atomic-write helper for the whole package
from ..rasterio_io import atomic_path as atomic_output  # noqa: E402


def write_geotiff(
    path: str | os.PathLike,
    data: np.ndarray,
    transform: Affine,
    crs: Any = "EPSG:4326",
    *,
    nodata: float | int | None = FLOAT_NODATA,
    descriptions: Sequence[str] | None = None,
    units: Sequence[str] | str | None = None,
    tags: dict[str, Any] | None = None,
    band_tags: Sequence[dict[str, Any]] | None = None,
    colormap: dict[int, tuple[int, ...]] | None = None,
) -> Path:
    """Write a (bands, rows, cols) or (rows, cols) array as a compressed, tiled GeoTIFF,
    atomically. NaN in float data is written as ``nodata``."""
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.dtype.kind == "f":
        arr = arr.astype("float32")
        if nodata is not None:
            arr = np.where(np.isfinite(arr), arr, np.float32(nodata))
    count, height, width = arr.shape
    profile = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=arr.dtype.name,
        crs=crs, transform=transform, nodata=nodata, compress="DEFLATE",
        predictor=3 if arr.dtype.kind == "f" else 2, BIGTIFF="IF_SAFER",
    )
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if isinstance(units, str):
        units = [units] * count
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
            if units:
                dst.units = tuple(units)
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
            for i, bt in enumerate(band_tags or (), start=1):
                dst.update_tags(i, **{k: str(v) for k, v in bt.items()})
            if colormap:
                dst.write_colormap(1, colormap)
    return Path(path)


def grid_window(transform: Affine, width: int, height: int,
                bbox: Sequence[float], margin_px: int = 0) -> Window:
    """The window of a north-up grid covering ``bbox`` (snapped outward to whole pixels, plus
    ``margin_px`` on each side), clipped to the grid. Raises if it does not overlap."""
    west, south, east, north = bbox
    inv = ~transform
    c0, r0 = inv @ (west, north)
    c1, r1 = inv @ (east, south)
    eps = 1e-6
    col0 = math.floor(min(c0, c1) + eps) - margin_px
    col1 = math.ceil(max(c0, c1) - eps) + margin_px
    row0 = math.floor(min(r0, r1) + eps) - margin_px
    row1 = math.ceil(max(r0, r1) - eps) + margin_px
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, width), min(row1, height)
    if col1 <= col0 or row1 <= row0:
        raise InputDataError("the bbox lies outside the data set's extent")
    return Window(col0, row0, col1 - col0, row1 - row0)


def read_bbox(path: str, bbox: Sequence[float], margin_px: int = 0,
              indexes: Sequence[int] | int | None = None, *, what: str | None = None):
    """Window-read ``bbox`` (EPSG:4326 degrees, on a geographic raster) from ``path``.

    Returns ``(array float32 with NaN for nodata, transform, src profile subset)``."""
    name = what or Path(path.split("/")[-1]).name
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(f"{name}: raster has no CRS")
            if not src.crs.is_geographic:
                raise InputDataError(f"{name}: expected a lon/lat raster, got {src.crs}")
            try:
                win = grid_window(src.transform, src.width, src.height, bbox, margin_px)
            except InputDataError:
                b = src.bounds
                raise InputDataError(
                    f"{name}: bbox {list(bbox)} is outside its extent "
                    f"({b.left:g}, {b.bottom:g}, {b.right:g}, {b.top:g})"
                ) from None
            arr = src.read(indexes, window=win, masked=True).astype("float32")
            info = {"scales": src.scales, "offsets": src.offsets, "units": src.units,
                    "dtype": src.dtypes[0]}
            transform = src.window_transform(win)
    except rasterio.errors.RasterioError as exc:
        raise unreadable(name, exc) from None
    return np.ma.filled(arr, np.nan), transform, info
