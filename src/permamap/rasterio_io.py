"""Raster input/output: atomic writes, tiled compressed GeoTIFFs, Cloud-Optimized GeoTIFFs.

Nothing is ever written in place: every file is written to a temporary name in the same
directory and renamed when complete, so an interrupted job never leaves a file that looks
finished.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from . import __version__
from .errors import InputDataError
from .grid import CRS, Grid
from .products import Product, colormap


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(str(tmp) + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def gtiff_profile(grid: Grid, count: int, dtype: str, nodata, *, compress: str = "deflate",
                  threads: int = 2, block: int = 256) -> dict:
    tiled = grid.width >= block and grid.height >= block
    profile = dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=count,
        dtype=dtype,
        crs=CRS,
        transform=grid.transform,
        nodata=nodata,
        compress=compress.upper(),
        predictor=3 if dtype.startswith("float") else 2,
        num_threads=threads,
        BIGTIFF="IF_SAFER",
    )
    if tiled:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if dtype == "uint8":
        profile["predictor"] = 1
    return profile


def provenance_tags(config: dict | None = None, **extra) -> dict:
    from .config import config_hash

    tags = {"permamap_version": __version__}
    if config is not None:
        tags["config_hash"] = config_hash(config)
        tags["run"] = config.get("run", "")
        tags["region"] = config.get("region", {}).get("name", "")
        tags["dem_source"] = config.get("dem", {}).get("source", "")
        tags["climate_source"] = config.get("climate", {}).get("source", "")
        tags["ground_model"] = config.get("ground", {}).get("model", "")
        if config.get("dem", {}).get("source") == "pvlib_sample":
            tags["note"] = (
                "Offline sample: elevations from pvlib's 5-arcmin (about 9 km) altitude grid, "
                "smoothly resampled; no detail finer than 9 km is real."
            )
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def write_bands(path, arrays: np.ndarray, grid: Grid, *, dtype: str, nodata,
                descriptions: Sequence[str], units: Sequence[str] | None = None,
                tags: dict | None = None, compress: str = "deflate", threads: int = 2,
                colormap_: dict | None = None) -> None:
    """Write a (bands, rows, cols) array to a GeoTIFF atomically."""
    arrays = np.asarray(arrays)
    if arrays.ndim == 2:
        arrays = arrays[None]
    profile = gtiff_profile(grid, arrays.shape[0], dtype, nodata, compress=compress, threads=threads)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arrays.astype(dtype, copy=False))
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
            if units:
                dst.units = tuple(units)
            if tags:
                dst.update_tags(**tags)
            if colormap_:
                dst.write_colormap(1, colormap_)


def read_bands(path, window: Window | None = None, *, fill_nan: bool = True) -> np.ndarray:
    """Read all bands (as float64 with nodata -> NaN when ``fill_nan`` and float)."""
    with rasterio.open(path) as src:
        data = src.read(window=window)
        if fill_nan and np.issubdtype(data.dtype, np.floating) and src.nodata is not None:
            data = data.astype(np.float64)
            data[data == src.nodata] = np.nan
        return data


def band_index(path, description: str) -> int:
    with rasterio.open(path) as src:
        for i, d in enumerate(src.descriptions, start=1):
            if d == description:
                return i
    raise InputDataError(f"{path} has no band described as {description!r}")


def to_cog(src_path, dst_path, product: Product, *, compress: str = "deflate", threads: int = 2,
           tags: dict | None = None) -> None:
    """Convert a tiled GeoTIFF to a Cloud-Optimized GeoTIFF with overviews (rio-cogeo)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get(compress.lower()).copy()
    profile.update(
        predictor=3 if product.dtype.startswith("float") else (1 if product.dtype == "uint8" else 2),
        blockxsize=256,
        blockysize=256,
    )
    with rasterio.open(src_path) as src:
        small = min(src.width, src.height) < 512
    with atomic_path(dst_path) as tmp:
        cog_translate(
            str(src_path),
            str(tmp),
            profile,
            overview_resampling=product.resampling,
            overview_level=None if not small else 1,
            config={"GDAL_NUM_THREADS": str(threads), "GDAL_TIFF_INTERNAL_MASK": "TRUE"},
            quiet=True,
            use_cog_driver=False,
            add_mask=False,
            forward_band_tags=True,
            forward_ns_tags=True,
            additional_cog_metadata=tags or {},
        )


def resampling(name: str) -> Resampling:
    return Resampling[name]
