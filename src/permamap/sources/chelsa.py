"""CHELSA V2.1 monthly mean air temperature (``tas``) climatology 1981-2010, in C, over a bbox.

- Default host (as in DESIGN.md): ``https://os.zhdk.cloud.switch.ch/chelsav2/GLOBAL/
  climatologies/1981-2010/tas/CHELSA_tas_{MM}_1981-2010_V.2.1.tif`` (MM = 01..12). The
  provider's current delivery (EnviDat "CHELSA V2.1 (current)") is
  ``https://os.unil.cloud.switch.ch/chelsa02/chelsa/global/climatologies/tas/1981-2010/
  CHELSA_tas_{MM}_1981-2010_V.2.1.tif``; set ``base_url`` to its folder to use it.
- Storage: uint16, 30 arc-seconds, EPSG:4326, one global file a month (about 150 MB each).
  The two deliveries encode temperature differently: the legacy files carry scale 0.1 and
  offset -273.15 (-> C); the current ones scale 0.1, offset 0 and unit K. So decoding uses the
  file's own scale/offset (or the config's, when given), then converts K to C when the decoded
  values are kelvins, and rejects values that are no air temperature.
- Each month is downloaded whole (cached and verified like every download) and the bbox is
  window-read from it.
- Licence: CC0 (EnviDat dataset "chelsa-climatologies"). Citation: Karger, D.N. et al. (2017)
  Climatologies at high resolution for the earth's land surface areas. Scientific Data 4,
  170122, doi:10.1038/sdata.2017.122; data: doi:10.16904/envidat.228.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from permamap.download import fetch, resolve_settings, validate_raster
from permamap.errors import InputDataError
from permamap.sources import MONTH_NAMES, MONTHS, check_bbox, read_bbox, write_geotiff

BASE_URL = "https://os.zhdk.cloud.switch.ch/chelsav2/GLOBAL/climatologies/1981-2010/tas"
CURRENT_BASE_URL = "https://os.unil.cloud.switch.ch/chelsa02/chelsa/global/climatologies/tas/1981-2010"
#: The documented transform of the legacy files (CHELSA V2.1 technical specification).
DEFAULT_SCALE, DEFAULT_OFFSET = 0.1, -273.15
CITATION = (
    "Karger, D.N. et al. (2017) Climatologies at high resolution for the earth's land surface "
    "areas. Scientific Data 4, 170122, doi:10.1038/sdata.2017.122; CHELSA V2.1, "
    "doi:10.16904/envidat.228"
)


def file_name(month: int) -> str:
    if month not in MONTHS:
        raise InputDataError(f"month must be 1..12, got {month!r}")
    return f"CHELSA_tas_{month:02d}_1981-2010_V.2.1.tif"


def month_url(month: int, base_url: str = BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/{file_name(month)}"


def decode_tas(raw: np.ndarray, scale: float | None, offset: float | None,
               unit: str | None = None) -> np.ndarray:
    """Stored CHELSA values -> air temperature in C.

    ``scale``/``offset`` come from the file (or config); when the file has none (1 and 0) and
    the values are stored integers of 0.1 K, the documented 0.1 / -273.15 is used. A result in
    kelvins (unit ``K``, or a median between 150 and 350) is converted to C. Raises
    :class:`~permamap.errors.InputDataError` if the result is no plausible air temperature."""
    data = np.asarray(raw, dtype="float64")
    scale = 1.0 if scale is None else float(scale)
    offset = 0.0 if offset is None else float(offset)
    valid = np.isfinite(data)
    if not valid.any():
        raise InputDataError("CHELSA tas: no valid pixel in the bbox")
    if scale == 1.0 and offset == 0.0 and np.nanmedian(data) > 1000:  # bare 0.1 K integers
        scale, offset = DEFAULT_SCALE, DEFAULT_OFFSET
    out = data * scale + offset
    med = float(np.nanmedian(out))
    if (unit or "").strip().upper() in ("K", "KELVIN") or 150 < med < 350:
        out = out - 273.15
    lo, hi = float(np.nanmin(out)), float(np.nanmax(out))
    if lo < -90 or hi > 60:
        raise InputDataError(
            f"CHELSA tas decodes to {lo:.1f}..{hi:.1f} C with scale {scale} and offset {offset}:"
            " not an air temperature; set climate.chelsa.scale/offset to the file's encoding"
        )
    return out.astype("float32")


def read_month(month: int, bbox: Sequence[float], settings: Mapping[str, Any], *,
               base_url: str = BASE_URL, scale: float | None = None,
               offset: float | None = None, margin_px: int = 1):
    """(array in C with NaN nodata, transform) of one month over ``bbox``."""
    bbox = check_bbox(bbox)
    settings = resolve_settings(settings)
    name = file_name(month)
    path = fetch(
        month_url(month, base_url),
        Path(settings["cache_dir"]) / "chelsa" / "tas_1981-2010" / name,
        dataset=f"CHELSA V2.1 tas {MONTH_NAMES[month - 1]} 1981-2010",
        settings=settings,
        validate=lambda p: validate_raster(p, bounds=bbox, count=1),
        hint="run the retrieve_climate rule once with internet, or copy it from a mirror",
    )
    raw, transform, info = read_bbox(str(path), bbox, margin_px, 1, what=name)
    f_scale = info["scales"][0] if info["scales"] else None
    f_offset = info["offsets"][0] if info["offsets"] else None
    unit = info["units"][0] if info["units"] else None
    return decode_tas(
        raw,
        f_scale if scale is None else scale,
        f_offset if offset is None else offset,
        unit if scale is None and offset is None else None,
    ), transform


def retrieve_chelsa(
    bbox: Sequence[float],
    out_path: str | Path,
    settings: Mapping[str, Any] | None,
    *,
    base_url: str = BASE_URL,
    scale: float | None = None,
    offset: float | None = None,
    margin_px: int = 1,
) -> Path:
    """Write the 12-band CHELSA ``tas`` 1981-2010 GeoTIFF (C, bands "month 1".."month 12")
    over ``bbox`` (+ ``margin_px`` pixels)."""
    bands, transform = [], None
    for m in MONTHS:
        arr, tr = read_month(m, bbox, settings, base_url=base_url, scale=scale, offset=offset,
                             margin_px=margin_px)
        if transform is not None and (
            not tr.almost_equals(transform) or arr.shape != bands[0].shape
        ):
            raise InputDataError(f"CHELSA tas month {m} is on another grid than month 1")
        transform = tr
        bands.append(arr)
    return write_geotiff(
        out_path, np.stack(bands), transform, descriptions=[f"month {m}" for m in MONTHS],
        units="C", tags={"source": "CHELSA V2.1 tas climatology 1981-2010", "citation": CITATION,
                         "variable": "tas", "units": "C", "base_url": base_url},
        band_tags=[{"month": m, "month_name": MONTH_NAMES[m - 1]} for m in MONTHS],
    )
