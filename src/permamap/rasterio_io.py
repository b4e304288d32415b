"""Raster input/output: atomic writes, tiled compressed GeoTIFFs, Cloud-Optimized GeoTIFFs.

Nothing is ever written in place: every file is written to a temporary name in the same
directory and renamed when complete, so an interrupted job never leaves a file that looks
finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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
from .products import Product, decode, encode

#: The file-format timestamp of deliverables whose format stores one (GeoPackage
#: ``gpkg_contents.last_change``, the ``.qgz`` zip entry): fixed, so reruns give the same bytes.
DEFAULT_FILE_TIMESTAMP = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)


def file_timestamp() -> dt.datetime:
    """The timestamp written inside GeoPackage and zip files: ``SOURCE_DATE_EPOCH`` (seconds
    since 1970, the reproducible-builds convention) when set, else
    :data:`DEFAULT_FILE_TIMESTAMP`; never the clock, so the same inputs give the same bytes.
    Clamped to 1980 or later (the earliest date a zip entry can hold)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return DEFAULT_FILE_TIMESTAMP
    try:
        t = dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise InputDataError(
            f"SOURCE_DATE_EPOCH={epoch!r} is not a whole number of seconds since 1970; unset it "
            "or give e.g. SOURCE_DATE_EPOCH=$(date +%s)"
        ) from None
    return max(t, DEFAULT_FILE_TIMESTAMP)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ".part" before the real extension, so tools that guess the format by extension still can
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix or ".part" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the permissions of any new file (umask applies),
        # so results on shared cluster storage stay readable by the group
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(str(tmp) + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def gtiff_profile(
    grid: Grid,
    count: int,
    dtype: str,
    nodata,
    *,
    compress: str = "deflate",
    threads: int = 2,
    block: int = 256,
    float_predictor: int = 3,
) -> dict:
    """Creation options of a tiled, compressed GeoTIFF on ``grid``. Predictor: none for uint8,
    horizontal differencing (2) for integers, ``float_predictor`` for floats (3, the floating
    point predictor: smallest files; 2: about 2x faster to compress, about 20 % larger)."""
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
        predictor=int(float_predictor) if dtype.startswith("float") else 2,
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


def write_bands(
    path,
    arrays: np.ndarray,
    grid: Grid,
    *,
    dtype: str,
    nodata,
    descriptions: Sequence[str],
    units: Sequence[str] | None = None,
    tags: dict | None = None,
    compress: str = "deflate",
    threads: int = 2,
    colormap_: dict | None = None,
    product: Product | None = None,
) -> None:
    """Write a (bands, rows, cols) array to a GeoTIFF atomically.

    With a scaled ``product`` (e.g. ``PRODUCTS["magt"]``), ``arrays`` are physical values (NaN
    nodata) stored through :func:`permamap.products.encode`, and every band gets the product's
    scale/offset (:func:`set_scale`)."""
    arrays = np.asarray(arrays)
    if arrays.ndim == 2:
        arrays = arrays[None]
    scaled = product is not None and product.is_scaled
    if scaled:
        arrays = encode(product, arrays)
    profile = gtiff_profile(
        grid, arrays.shape[0], dtype, nodata, compress=compress, threads=threads
    )
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arrays.astype(dtype, copy=False))
            if scaled:
                set_scale(dst, product)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
            if units:
                dst.units = tuple(units)
            if tags:
                dst.update_tags(**tags)
            if colormap_:
                dst.write_colormap(1, colormap_)


def set_scale(dst, product: Product) -> None:
    """Write ``product``'s scale and offset to every band of the open dataset ``dst`` (GDAL
    band metadata: ``gdalinfo`` prints ``Offset: 0, Scale: 0.01``; QGIS, rasterio's
    ``src.scales`` and rioxarray's ``mask_and_scale=True`` apply them)."""
    dst.scales = (product.scale,) * dst.count
    dst.offsets = (product.offset,) * dst.count


def is_physical(src, indexes=None) -> bool:
    """True when no band of ``indexes`` (all when None) of the open dataset has a scale or an
    offset (its stored values are its physical values)."""
    idx = _indexes(src, indexes)
    return all(src.scales[i - 1] == 1.0 and src.offsets[i - 1] == 0.0 for i in idx)


def _indexes(src, indexes) -> list[int]:
    if indexes is None:
        return list(range(1, src.count + 1))
    return [indexes] if isinstance(indexes, int) else list(indexes)


def to_physical(src, data, indexes=None) -> np.ndarray:
    """Physical float64 values (nodata and masked -> NaN) of ``data`` read from bands
    ``indexes`` of the open dataset ``src`` (``src.read(indexes, ...)`` with any window,
    ``out_shape``, ``masked``; or ``src.sample``), applying the bands' scale and offset
    (stored * scale + offset, GDAL's convention; scaled products: :mod:`permamap.products`).

    The one place a stored raster value becomes a physical one: every reader of a product that
    may be scaled (MAGT) goes through this or :func:`read_physical`."""
    idx = _indexes(src, indexes)
    scales = {src.scales[i - 1] for i in idx}
    offsets = {src.offsets[i - 1] for i in idx}
    if len(scales) > 1 or len(offsets) > 1:  # permamap writes one product per file
        raise ValueError(f"{src.name}: bands {idx} differ in scale/offset; read them apart")
    return decode(data, src.nodata, scales.pop(), offsets.pop())


def read_physical(src, indexes=None, **kwargs) -> np.ndarray:
    """``src.read(indexes, **kwargs)`` as physical float64 values with NaN nodata
    (:func:`to_physical`); ``src``: an open dataset or a path."""
    if not hasattr(src, "read"):
        with rasterio.open(src) as ds:
            return read_physical(ds, indexes, **kwargs)
    return to_physical(src, src.read(indexes, **kwargs), indexes)


def read_bands(path, window: Window | None = None, *, fill_nan: bool = True) -> np.ndarray:
    """Read all bands. ``fill_nan``: physical values for float or scaled bands (float64, scale
    and offset applied, nodata -> NaN; :func:`to_physical`), the stored values of unscaled
    integer bands (class codes); ``fill_nan=False``: the stored values as they are (bits)."""
    with rasterio.open(path) as src:
        data = src.read(window=window)
        float_nodata = np.issubdtype(data.dtype, np.floating) and src.nodata is not None
        if fill_nan and (float_nodata or not is_physical(src)):
            return to_physical(src, data)
        return data


def band_index(path, description: str) -> int:
    with rasterio.open(path) as src:
        for i, d in enumerate(src.descriptions, start=1):
            if d == description:
                return i
    raise InputDataError(f"{path} has no band described as {description!r}")


def to_cog(
    src_path,
    dst_path,
    product: Product,
    *,
    compress: str = "deflate",
    threads: int = 2,
    tags: dict | None = None,
) -> None:
    """Write a Cloud-Optimized GeoTIFF with overviews from any GDAL dataset (e.g. a VRT).

    Uses GDAL's COG driver (the one rio-cogeo calls with ``use_cog_driver=True``) directly,
    because it carries band units, descriptions, nodata, colour table and metadata over from the
    source, which ``rio_cogeo.cog_translate`` does not (it drops band units). Validity is
    checked with ``rio_cogeo.cogeo.cog_validate`` in the tests.
    """
    from rasterio.shutil import copy

    if tags:
        src_path = _with_metadata(src_path, tags)
    predictor = "YES" if product.dtype != "uint8" else "NO"
    if product.dtype.startswith("float"):
        predictor = "FLOATING_POINT"
    with atomic_path(dst_path) as tmp:
        with rasterio.Env(GDAL_NUM_THREADS=str(threads)):
            copy(
                str(src_path),
                str(tmp),
                driver="COG",
                COMPRESS=compress.upper(),
                PREDICTOR=predictor,
                LEVEL=6 if compress.lower() == "deflate" else 9,
                BLOCKSIZE=256,
                OVERVIEW_RESAMPLING=product.resampling.upper(),
                NUM_THREADS=str(threads),
                BIGTIFF="IF_SAFER",
            )


def _with_metadata(vrt_path, tags: dict):
    """Add dataset metadata items to a VRT file (in place) and return its path."""
    import html

    path = Path(vrt_path)
    items = "".join(
        f'    <MDI key="{html.escape(str(k))}">{html.escape(str(v))}</MDI>\n'
        for k, v in sorted(tags.items())
    )
    text = path.read_text()
    head, sep, rest = text.partition("\n")
    path.write_text(f"{head}{sep}  <Metadata>\n{items}  </Metadata>\n{rest}")
    return path


def resampling(name: str) -> Resampling:
    return Resampling[name]
