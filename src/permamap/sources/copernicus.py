"""Copernicus DEM GLO-30 / GLO-90: 1x1 degree Cloud-Optimized GeoTIFF tiles on the AWS open
data buckets, mosaicked and clipped to a bbox.

- Hosts (Registry of Open Data on AWS, https://copernicus-dem-30m.s3.amazonaws.com/readme.html):
  ``https://copernicus-dem-30m.s3.amazonaws.com/{stem}/{stem}.tif`` (GLO-30) and
  ``https://copernicus-dem-90m.s3.amazonaws.com/{stem}/{stem}.tif`` (GLO-90).
- Tile stems use the south-west corner of the tile:
  ``Copernicus_DSM_COG_{10|30}_{N|S}{lat:02d}_00_{E|W}{lon:03d}_00_DEM``; ``10`` is GLO-30
  (1 arc-second), ``30`` is GLO-90 (3 arc-seconds). The tile covering 36-37 N, 101-102 E is
  ``Copernicus_DSM_COG_10_N36_00_E101_00_DEM``.
- Pixels are centred on whole degrees (each tile's extent is shifted by half a pixel), float32
  heights in metres above the EGM2008 geoid, EPSG:4326. Above 50 degrees latitude tiles have
  fewer columns; the mosaic is made on the finest grid among the tiles.
- Ocean tiles do not exist: the bucket answers 404, which is recorded (so an offline run knows)
  and the area stays nodata. A bbox whose every tile is missing has no land.
- Licence: GLO-90 free; GLO-30 "Public" free for the general public (a few countries' tiles
  are withheld). Attribution: "produced using Copernicus WorldDEM-30 (c) DLR e.V. 2010-2014 and
  (c) Airbus Defence and Space GmbH 2014-2018 provided under COPERNICUS by the European Union
  and ESA; all rights reserved". DOI 10.5270/ESA-c5d3d65.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.merge import merge

from permamap.download import fetch, resolve_settings, validate_raster
from permamap.errors import DownloadError, InputDataError
from permamap.sources import FLOAT_NODATA, check_bbox, write_geotiff

log = logging.getLogger(__name__)

PRODUCTS: dict[str, dict[str, str]] = {
    "GLO-30": {"code": "10", "base": "https://copernicus-dem-30m.s3.amazonaws.com"},
    "GLO-90": {"code": "30", "base": "https://copernicus-dem-90m.s3.amazonaws.com"},
}
ATTRIBUTION = (
    "produced using Copernicus WorldDEM-30 (c) DLR e.V. 2010-2014 and (c) Airbus Defence and "
    "Space GmbH 2014-2018 provided under COPERNICUS by the European Union and ESA; all rights "
    "reserved"
)


def _product(product: str) -> dict[str, str]:
    if product not in PRODUCTS:
        raise InputDataError(f"Copernicus DEM product {product!r} is unknown; use {list(PRODUCTS)}")
    return PRODUCTS[product]


def tile_stem(lat: int, lon: int, product: str = "GLO-30") -> str:
    """Stem of the tile whose south-west corner is (``lat``, ``lon``), whole degrees."""
    code = _product(product)["code"]
    ns = "N" if lat >= 0 else "S"
    ew = "E" if lon >= 0 else "W"
    return f"Copernicus_DSM_COG_{code}_{ns}{abs(lat):02d}_00_{ew}{abs(lon):03d}_00_DEM"


def tile_corners(bbox: Sequence[float]) -> list[tuple[int, int]]:
    """South-west corners (lat, lon) of the 1x1 degree tiles that overlap ``bbox``."""
    west, south, east, north = check_bbox(bbox)
    lats = range(math.floor(south), math.ceil(north))
    lons = range(math.floor(west), math.ceil(east))
    return [(lat, lon) for lat in lats for lon in lons]


def tile_stems(bbox: Sequence[float], product: str = "GLO-30") -> list[str]:
    """Tile stems covering ``bbox`` (west, south, east, north), south-west-corner naming."""
    return [tile_stem(lat, lon, product) for lat, lon in tile_corners(bbox)]


def tile_url(stem: str, product: str = "GLO-30") -> str:
    return f"{_product(product)['base']}/{stem}/{stem}.tif"


def retrieve_dem(
    bbox: Sequence[float],
    product: str,
    out_path: str | Path,
    settings: Mapping[str, Any] | None,
    *,
    margin_px: int = 0,
) -> Path:
    """Fetch every tile over ``bbox``, mosaic them and write the bbox (plus ``margin_px``
    native pixels on each side) as a float32 GeoTIFF with nodata -9999 (ocean tiles, voids).

    Tiles are cached under ``<cache_dir>/copernicus/<product>/``. Raises
    :class:`~permamap.errors.DownloadError` if every tile is missing ("bbox has no land").
    """
    bbox = check_bbox(bbox)
    settings = resolve_settings(settings)
    dataset = f"Copernicus {product} DEM"
    cache = Path(settings["cache_dir"]) / "copernicus" / product
    tiles: list[Path] = []
    missing: list[str] = []
    for lat, lon in tile_corners(bbox):
        stem = tile_stem(lat, lon, product)
        tile_bounds = (lon, lat, lon + 1, lat + 1)
        path = fetch(
            tile_url(stem, product),
            cache / f"{stem}.tif",
            dataset=dataset,
            settings=settings,
            validate=lambda p, b=tile_bounds: validate_raster(
                p, expect_crs="EPSG:4326", bounds=b, dtype="float32"
            ),
            hint="run the retrieve_dem rule once with internet, or copy the tile from a mirror",
            missing_ok=True,
        )
        if path is None:
            missing.append(stem)
        else:
            tiles.append(path)
    if not tiles:
        raise DownloadError(
            f"{dataset}: bbox {list(bbox)} has no land: all {len(missing)} tile(s) are missing "
            f"(404 = ocean), e.g. {tile_url(missing[0], product)}"
        )
    if missing:
        log.info("%s: %d ocean tile(s) left as nodata: %s", dataset, len(missing), missing)
    return mosaic_tiles(tiles, bbox, out_path, margin_px=margin_px, tags={
        "source": f"Copernicus DEM {product} (AWS open data), DOI 10.5270/ESA-c5d3d65",
        "attribution": ATTRIBUTION,
        "vertical_datum": "EGM2008 geoid",
        "tiles": " ".join(p.stem for p in tiles),
        "missing_tiles_ocean": " ".join(missing) or "none",
    })


def mosaic_tiles(
    tiles: Sequence[Path],
    bbox: Sequence[float],
    out_path: str | Path,
    *,
    margin_px: int = 0,
    tags: dict[str, Any] | None = None,
) -> Path:
    """Mosaic DEM tiles over ``bbox`` on the finest tile grid, snapped outward to whole
    pixels (no resampling of the finest tiles), and write it atomically."""
    west, south, east, north = check_bbox(bbox)
    srcs = [rasterio.open(p) for p in tiles]
    try:
        finest = min(srcs, key=lambda s: s.res[0] * s.res[1])
        rx, ry = finest.res
        x0, y0 = finest.transform.c, finest.transform.f  # the grid's origin (a pixel corner)
        eps = 1e-9
        w = x0 + (math.floor((west - x0) / rx + eps) - margin_px) * rx
        e = x0 + (math.ceil((east - x0) / rx - eps) + margin_px) * rx
        n = y0 - (math.floor((y0 - north) / ry + eps) - margin_px) * ry
        s = y0 - (math.ceil((y0 - south) / ry - eps) + margin_px) * ry
        src_nodata = srcs[0].nodata
        arr, transform = merge(
            srcs, bounds=(w, s, e, n), res=(rx, ry), nodata=src_nodata,
            dtype="float32", resampling=rasterio.enums.Resampling.nearest,
        )
        crs = srcs[0].crs
    finally:
        for s_ in srcs:
            s_.close()
    band = arr[0].astype("float32")
    if src_nodata is not None:
        band[band == np.float32(src_nodata)] = np.nan
    # merge fills areas without any tile with the nodata value (0 when there is none)
    covered = np.zeros(band.shape, bool)
    inv = ~transform
    for p in tiles:
        with rasterio.open(p) as src:
            b = src.bounds
        c0, r0 = inv @ (b.left, b.top)
        c1, r1 = inv @ (b.right, b.bottom)
        covered[max(0, round(r0)):max(0, round(r1)), max(0, round(c0)):max(0, round(c1))] = True
    band[~covered] = np.nan
    if not np.isfinite(band).any():
        raise InputDataError(f"DEM mosaic over {list(bbox)} has no valid pixel")
    return write_geotiff(
        out_path, band, transform, crs, nodata=FLOAT_NODATA,
        descriptions=["elevation"], units="m", tags=tags,
    )
