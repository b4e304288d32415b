"""WorldClim 2.1 monthly mean air temperature (``tavg``, 1970-2000) and its elevation grid
(``elev``), cropped to a bbox.

- Host: ``https://geodata.ucdavis.edu/climate/worldclim/2_1/`` (WorldClim, Fick & Hijmans 2017).
- Global zips ``base/wc2.1_{res}_{var}.zip`` for ``res`` in 10m, 5m, 2.5m, 30s; a zip holds one
  GeoTIFF a month, ``wc2.1_{res}_{var}_{MM}.tif`` (MM = 01..12), or ``wc2.1_{res}_elev.tif``.
- 30 arc-second tiles ``tiles/tile/tile_{id}_wc2.1_30s_{var}.tif``: 30x30 degree tiles, the
  12 months as 12 bands. ``id`` numbers the cells of a 12 x 6 global grid row by row from the
  north-west corner, starting at 1 (as the R package geodata's ``worldclim_tile`` does):
  ``id = 12 * floor((90 - lat) / 30) + floor((lon + 180) / 30) + 1``; Xining (101.8 E, 36.6 N)
  is tile 22.
- Units: C; nodata about -3.4e38 (float32). Licence: free for research and non-commercial use;
  redistribution or commercial use needs permission (https://www.worldclim.org/about.html).
- Citation: Fick, S.E. and R.J. Hijmans (2017) WorldClim 2: new 1-km spatial resolution climate
  surfaces for global land areas. Int. J. Climatol. 37(12): 4302-4315, doi:10.1002/joc.5086.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.merge import merge

from permamap.download import fetch, resolve_settings, validate_raster
from permamap.errors import InputDataError
from permamap.sources import (
    MONTH_NAMES,
    MONTHS,
    check_bbox,
    grid_window,
    read_bbox,
    write_geotiff,
)

BASE_URL = "https://geodata.ucdavis.edu/climate/worldclim/2_1"
RESOLUTIONS = ("10m", "5m", "2.5m", "30s")
VARIABLES = ("tavg", "tmin", "tmax", "elev")
CITATION = (
    "Fick, S.E. and R.J. Hijmans (2017) WorldClim 2: new 1-km spatial resolution climate "
    "surfaces for global land areas. Int. J. Climatol. 37(12): 4302-4315, doi:10.1002/joc.5086"
)
_HINT = "run the retrieve_climate rule once with internet, or copy it from a mirror"


def _check(res: str | None = None, var: str | None = None) -> None:
    if res is not None and res not in RESOLUTIONS:
        raise InputDataError(f"WorldClim resolution {res!r} is unknown; use one of {RESOLUTIONS}")
    if var is not None and var not in VARIABLES:
        raise InputDataError(f"WorldClim variable {var!r} is not supported; use {VARIABLES}")


def tile_id(lon: float, lat: float) -> int:
    """The WorldClim 30 s tile number holding (``lon``, ``lat``)."""
    col = min(int(math.floor((lon + 180) / 30)), 11)
    row = min(int(math.floor((90 - lat) / 30)), 5)
    return 12 * row + col + 1


def tile_ids(bbox: Sequence[float]) -> list[int]:
    """Tile numbers of the 30x30 degree tiles that overlap ``bbox``."""
    west, south, east, north = check_bbox(bbox)
    cols = range(int(math.floor((west + 180) / 30)), int(math.ceil((east + 180) / 30)))
    rows = range(int(math.floor((90 - north) / 30)), int(math.ceil((90 - south) / 30)))
    return [12 * r + c + 1 for r in rows for c in cols]


def tile_url(tid: int, var: str) -> str:
    _check(var=var)
    return f"{BASE_URL}/tiles/tile/tile_{tid}_wc2.1_30s_{var}.tif"


def zip_url(res: str, var: str) -> str:
    _check(res, var)
    return f"{BASE_URL}/base/wc2.1_{res}_{var}.zip"


def zip_member(res: str, var: str, month: int | None = None) -> str:
    """Name of the GeoTIFF inside ``wc2.1_{res}_{var}.zip`` (``month`` None for ``elev``)."""
    return f"wc2.1_{res}_{var}.tif" if month is None else f"wc2.1_{res}_{var}_{month:02d}.tif"


def fetch_tiles(bbox: Sequence[float], var: str, settings: Mapping[str, Any]) -> list[Path]:
    """Download the 30 s tiles of ``var`` over ``bbox``; return their local paths."""
    settings = resolve_settings(settings)
    cache = Path(settings["cache_dir"]) / "worldclim" / "tiles"
    count = 1 if var == "elev" else 12
    out = []
    for tid in tile_ids(bbox):
        out.append(fetch(
            tile_url(tid, var), cache / f"tile_{tid}_wc2.1_30s_{var}.tif",
            dataset=f"WorldClim 2.1 30s {var} tile {tid}", settings=settings,
            validate=lambda p: validate_raster(p, bounds=bbox, count=count), hint=_HINT,
        ))
    return out


def fetch_zip(res: str, var: str, settings: Mapping[str, Any]) -> Path:
    """Download the global ``wc2.1_{res}_{var}.zip``; return its local path."""
    settings = resolve_settings(settings)
    cache = Path(settings["cache_dir"]) / "worldclim" / "base"
    first = zip_member(res, var, None if var == "elev" else 1)
    return fetch(
        zip_url(res, var), cache / f"wc2.1_{res}_{var}.zip",
        dataset=f"WorldClim 2.1 {res} {var}", settings=settings,
        validate=lambda p: validate_raster(p, member=first), hint=_HINT,
    )


def _vsizip(path: Path, member: str) -> str:
    return f"/vsizip/{{{path}}}/{member}"


def read_monthly(bbox, var: str, settings, *, res: str = "30s", source: str | None = None,
                 margin_px: int = 1):
    """Monthly (12, rows, cols) float32 array (NaN nodata) and transform of WorldClim ``var``
    (``tavg``, ``tmin``, ``tmax``; or ``elev`` with one band) over ``bbox``.

    ``source``: ``"tiles"`` (30 s only) or ``"zip"``; default tiles at 30 s, zips otherwise."""
    bbox = check_bbox(bbox)
    _check(res, var)
    source = source or ("tiles" if res == "30s" else "zip")
    if source == "tiles":
        if res != "30s":
            raise InputDataError(f"WorldClim tiles exist at 30s only, not {res}; use source: zip")
        return _read_tiles(fetch_tiles(bbox, var, settings), bbox, margin_px)
    if source != "zip":
        raise InputDataError(f"WorldClim source {source!r} is unknown; use 'tiles' or 'zip'")
    zpath = fetch_zip(res, var, settings)
    months = [None] if var == "elev" else list(MONTHS)
    bands, transform = [], None
    for m in months:
        member = zip_member(res, var, m)
        arr, transform, _ = read_bbox(_vsizip(zpath, member), bbox, margin_px, 1, what=member)
        bands.append(arr)
    data = np.stack(bands)
    return _mask_fill(data), transform


def _read_tiles(paths: Sequence[Path], bbox, margin_px: int):
    if len(paths) == 1:
        data, transform, _ = read_bbox(str(paths[0]), bbox, margin_px)
        return _mask_fill(data), transform
    srcs = [rasterio.open(p) for p in paths]
    try:
        ref = srcs[0]
        # merge all tiles, then cut the bbox window out of the merged grid
        arr, transform = merge(srcs, nodata=ref.nodata, dtype="float32")
    finally:
        for s in srcs:
            s.close()
    win = grid_window(transform, arr.shape[2], arr.shape[1], bbox, margin_px)
    r0, c0 = int(win.row_off), int(win.col_off)
    data = arr[:, r0 : r0 + int(win.height), c0 : c0 + int(win.width)].astype("float32")
    if ref.nodata is not None:
        data[data == np.float32(ref.nodata)] = np.nan
    return _mask_fill(data), rasterio.windows.transform(win, transform)


def _mask_fill(data: np.ndarray) -> np.ndarray:
    """WorldClim's nodata is about -3.4e38; anything below -1e30 is nodata too."""
    data = data.astype("float32")
    data[~np.isfinite(data) | (data < -1e30)] = np.nan
    return data


def retrieve_worldclim(
    bbox: Sequence[float],
    out_tavg: str | Path,
    out_elev: str | Path,
    settings: Mapping[str, Any] | None,
    *,
    res: str = "30s",
    source: str | None = None,
    margin_px: int = 1,
) -> tuple[Path, Path]:
    """Write the 12-band monthly ``tavg`` (C, bands "month 1".."month 12") and the ``elev``
    (m) GeoTIFFs of WorldClim 2.1 over ``bbox`` (+ ``margin_px`` pixels for interpolation)."""
    tavg, tr = read_monthly(bbox, "tavg", settings, res=res, source=source, margin_px=margin_px)
    elev, tr_e = read_monthly(bbox, "elev", settings, res=res, source=source, margin_px=margin_px)
    if tavg.shape[1:] != elev.shape[1:] or not tr.almost_equals(tr_e):
        raise InputDataError("WorldClim tavg and elev grids differ; check the downloaded files")
    _plausible(tavg, "WorldClim tavg")
    tags = {"source": f"WorldClim 2.1 {res} ({source or 'auto'}), 1970-2000", "citation": CITATION}
    write_geotiff(
        out_tavg, tavg, tr, descriptions=[f"month {m}" for m in MONTHS], units="C",
        tags={**tags, "variable": "tavg", "units": "C"},
        band_tags=[{"month": m, "month_name": MONTH_NAMES[m - 1]} for m in MONTHS],
    )
    write_geotiff(out_elev, elev, tr, descriptions=["elevation"], units="m",
                  tags={**tags, "variable": "elev", "units": "m"})
    return Path(out_tavg), Path(out_elev)


def _plausible(data: np.ndarray, what: str) -> None:
    valid = data[np.isfinite(data)]
    if valid.size == 0:
        raise InputDataError(f"{what}: no valid pixel in the bbox (all ocean or nodata)")
    lo, hi = float(valid.min()), float(valid.max())
    if lo < -90 or hi > 60:
        raise InputDataError(
            f"{what}: values {lo:.1f}..{hi:.1f} are not air temperatures in C (K or scaled?)"
        )
