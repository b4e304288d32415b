"""ESA WorldCover 10 m 2021 v200: 3x3 degree Cloud-Optimized GeoTIFF tiles on AWS open data,
mosaicked and clipped to a bbox: the land cover of ``ground.surface.land_cover``
(:mod:`permamap.surface`).

- Host (Registry of Open Data on AWS, ``esa-worldcover``):
  ``https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map/ESA_WorldCover_10m_2021_v200_{tile}_Map.tif``.
- Tiles are named by their south-west corner on a 3-degree lattice: ``N36E099`` covers
  36-39 N, 99-102 E (Xining, 36.6 N 101.8 E, is in it). Tiles exist over land only: a 404 is an
  all-water tile, recorded and left as nodata.
- uint8 class codes, EPSG:4326, 1/12000 degree (0.3 arc-second, about 10 m) pixels, nodata 0.
  Legend (product user manual, Zanaga et al. 2022): 10 tree cover, 20 shrubland, 30 grassland,
  40 cropland, 50 built-up, 60 bare / sparse vegetation, 70 snow and ice, 80 permanent water
  bodies, 90 herbaceous wetland, 95 mangroves, 100 moss and lichen; config/config.yaml maps them
  to surface types (``ground.surface.land_cover_classes``).
- Licence CC BY 4.0; attribution "(c) ESA WorldCover project 2021 / Contains modified
  Copernicus Sentinel data (2021) processed by ESA WorldCover consortium", DOI
  10.5281/zenodo.7254221.

The mosaic keeps the native grid (no resampling; :mod:`permamap.surface` samples it per working
pixel). Command line::

    python -m permamap.sources.worldcover --bbox 101 36.5 102 37.5 -o data/worldcover_xining.tif
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.merge import merge

from permamap.download import fetch, resolve_settings, validate_raster
from permamap.errors import DownloadError
from permamap.sources import check_bbox, write_geotiff

log = logging.getLogger(__name__)

BASE_URL = "https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map"
TILE_DEG = 3
NODATA = 0
ATTRIBUTION = (
    "(c) ESA WorldCover project 2021 / Contains modified Copernicus Sentinel data (2021) "
    "processed by ESA WorldCover consortium"
)
DOI = "10.5281/zenodo.7254221"


def tile_name(lat: int, lon: int) -> str:
    """Name of the 3x3 degree tile whose south-west corner is (``lat``, ``lon``), e.g. N36E099."""
    if lat % TILE_DEG or lon % TILE_DEG:
        raise ValueError(f"({lat}, {lon}) is not a corner of the {TILE_DEG}-degree tile lattice")
    ns = "N" if lat >= 0 else "S"
    ew = "E" if lon >= 0 else "W"
    return f"{ns}{abs(lat):02d}{ew}{abs(lon):03d}"


def tile_corners(bbox: Sequence[float]) -> list[tuple[int, int]]:
    """South-west corners (lat, lon) of the tiles that overlap ``bbox``."""
    west, south, east, north = check_bbox(bbox)
    d = TILE_DEG
    lats = range(math.floor(south / d) * d, math.ceil(north / d) * d, d)
    lons = range(math.floor(west / d) * d, math.ceil(east / d) * d, d)
    return [(lat, lon) for lat in lats for lon in lons]


def tile_url(name: str) -> str:
    return f"{BASE_URL}/ESA_WorldCover_10m_2021_v200_{name}_Map.tif"


def retrieve_land_cover(
    bbox: Sequence[float],
    out_path: str | Path,
    settings: Mapping[str, Any] | None,
    *,
    margin_px: int = 0,
) -> Path:
    """Fetch every tile over ``bbox``, mosaic them on their native grid over the bbox (snapped
    outward to whole pixels, plus ``margin_px``) and write a uint8 GeoTIFF, nodata 0.

    Tiles are cached under ``<cache_dir>/worldcover/v200/``. Raises
    :class:`~permamap.errors.DownloadError` if no tile exists over the bbox."""
    bbox = check_bbox(bbox)
    settings = resolve_settings(settings)
    dataset = "ESA WorldCover 10 m 2021 v200"
    cache = Path(settings["cache_dir"]) / "worldcover" / "v200"
    tiles, missing = [], []
    for lat, lon in tile_corners(bbox):
        name = tile_name(lat, lon)
        b = (lon, lat, lon + TILE_DEG, lat + TILE_DEG)
        path = fetch(
            tile_url(name),
            cache / f"ESA_WorldCover_10m_2021_v200_{name}_Map.tif",
            dataset=dataset,
            settings=settings,
            validate=lambda p, b=b: validate_raster(
                p, expect_crs="EPSG:4326", bounds=b, dtype="uint8", count=1
            ),
            hint="download the tile once with internet, or copy it from a mirror",
            missing_ok=True,
        )
        if path is None:
            missing.append(name)
        else:
            tiles.append(path)
    if not tiles:
        raise DownloadError(
            f"{dataset}: no tile over bbox {list(bbox)} (all {len(missing)} missing: water), "
            f"e.g. {tile_url(missing[0])}"
        )
    if missing:
        log.info("%s: %d all-water tile(s) left as nodata: %s", dataset, len(missing), missing)
    return _mosaic(tiles, bbox, out_path, margin_px, missing)


def _mosaic(tiles, bbox, out_path, margin_px, missing) -> Path:
    west, south, east, north = bbox
    srcs = [rasterio.open(p) for p in tiles]
    try:
        rx, ry = srcs[0].res
        x0, y0 = srcs[0].transform.c, srcs[0].transform.f
        eps = 1e-9
        w = x0 + (math.floor((west - x0) / rx + eps) - margin_px) * rx
        e = x0 + (math.ceil((east - x0) / rx - eps) + margin_px) * rx
        n = y0 - (math.floor((y0 - north) / ry + eps) - margin_px) * ry
        s = y0 - (math.ceil((y0 - south) / ry - eps) + margin_px) * ry
        arr, transform = merge(
            srcs,
            bounds=(w, s, e, n),
            res=(rx, ry),
            nodata=NODATA,
            dtype="uint8",
            resampling=rasterio.enums.Resampling.nearest,
        )
        crs = srcs[0].crs
    finally:
        for src in srcs:
            src.close()
    return write_geotiff(
        out_path,
        arr[0].astype(np.uint8),
        transform,
        crs,
        nodata=NODATA,
        descriptions=["land_cover"],
        tags={
            "source": f"ESA WorldCover 10 m 2021 v200, DOI {DOI}",
            "attribution": ATTRIBUTION,
            "tiles": " ".join(Path(p).stem for p in tiles),
            "missing_tiles_water": " ".join(missing) or "none",
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bbox", nargs=4, type=float, required=True, metavar=("W", "S", "E", "N"))
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--cache-dir", default=None, help="download cache (default data/)")
    args = ap.parse_args(argv)
    settings = {"cache_dir": args.cache_dir} if args.cache_dir else None
    print(retrieve_land_cover(args.bbox, args.output, settings))


if __name__ == "__main__":
    main()
