"""Monthly warming deltas from WorldClim's downscaled CMIP6 projections.

- Host: ``https://geodata.ucdavis.edu/cmip6/{res}/{gcm}/{ssp}/wc2.1_{res}_{var}_{gcm}_{ssp}_
  {period}.tif`` with ``res`` in 10m, 5m, 2.5m, 30s; ``var`` in tmin, tmax (and prec, bioc);
  ``ssp`` in ssp126, ssp245, ssp370, ssp585; ``period`` in 2021-2040, 2041-2060, 2061-2080,
  2081-2100. Each file holds the 12 months as 12 bands, C, EPSG:4326, global.
- There is no ``tavg``: the future monthly mean is (tmin + tmax) / 2, and the delta is that
  minus the WorldClim 2.1 baseline ``tavg`` (1970-2000) at the same resolution, month by month.
  Several GCMs are averaged (an ensemble mean of the deltas).
- The deltas are smooth (GCM scale), so 2.5m or 10m is plenty; the 30s files are several GB each.
- Licence and citation: as WorldClim 2.1 (Fick & Hijmans 2017), plus the CMIP6 model's own
  citation (Eyring et al. 2016, doi:10.5194/gmd-9-1937-2016, for CMIP6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from permamap.download import fetch, resolve_settings, validate_raster
from permamap.errors import InputDataError
from permamap.sources import MONTH_NAMES, MONTHS, check_bbox, read_bbox, worldclim, write_geotiff

BASE_URL = "https://geodata.ucdavis.edu/cmip6"
SSPS = ("ssp126", "ssp245", "ssp370", "ssp585")
PERIODS = ("2021-2040", "2041-2060", "2061-2080", "2081-2100")
#: GCMs WorldClim lists for CMIP6 (not every GCM has every SSP; a missing one is a 404).
GCMS = (
    "ACCESS-CM2", "ACCESS-ESM1-5", "BCC-CSM2-MR", "CMCC-ESM2", "CNRM-CM6-1", "CNRM-CM6-1-HR",
    "CNRM-ESM2-1", "CanESM5", "CanESM5-CanOE", "EC-Earth3-Veg", "EC-Earth3-Veg-LR",
    "FIO-ESM-2-0", "GFDL-ESM4", "GISS-E2-1-G", "GISS-E2-1-H", "HadGEM3-GC31-LL", "INM-CM4-8",
    "INM-CM5-0", "IPSL-CM6A-LR", "MIROC-ES2L", "MIROC6", "MPI-ESM1-2-HR", "MPI-ESM1-2-LR",
    "MRI-ESM2-0", "UKESM1-0-LL",
)


def _check(res: str, ssp: str, period: str) -> None:
    if res not in worldclim.RESOLUTIONS:
        raise InputDataError(f"CMIP6 resolution {res!r} is unknown; use {worldclim.RESOLUTIONS}")
    if ssp not in SSPS:
        raise InputDataError(f"CMIP6 scenario {ssp!r} is unknown; use one of {SSPS}")
    if period not in PERIODS:
        raise InputDataError(f"CMIP6 period {period!r} is unknown; use one of {PERIODS}")


def file_name(res: str, var: str, gcm: str, ssp: str, period: str) -> str:
    _check(res, ssp, period)
    if var not in ("tmin", "tmax"):
        raise InputDataError(f"CMIP6 variable {var!r}: only tmin and tmax are used")
    return f"wc2.1_{res}_{var}_{gcm}_{ssp}_{period}.tif"


def url(res: str, var: str, gcm: str, ssp: str, period: str) -> str:
    return f"{BASE_URL}/{res}/{gcm}/{ssp}/{file_name(res, var, gcm, ssp, period)}"


def monthly_delta(tmin: np.ndarray, tmax: np.ndarray, baseline_tavg: np.ndarray) -> np.ndarray:
    """(tmin + tmax) / 2 - baseline, per month (arrays of shape (12, rows, cols), C; NaN where
    any input is nodata)."""
    tmin, tmax, base = (np.asarray(a, dtype="float64") for a in (tmin, tmax, baseline_tavg))
    if not (tmin.shape == tmax.shape == base.shape) or tmin.shape[0] != 12:
        raise InputDataError(
            f"CMIP6 delta: tmin {tmin.shape}, tmax {tmax.shape} and baseline {base.shape} must "
            "all be (12, rows, cols) on one grid"
        )
    return ((tmin + tmax) / 2.0 - base).astype("float32")


def read_future(bbox, var: str, gcm: str, ssp: str, period: str, settings, *,
                res: str = "2.5m", margin_px: int = 1):
    """(12-band array in C with NaN nodata, transform) of ``var`` over ``bbox``."""
    settings = resolve_settings(settings)
    name = file_name(res, var, gcm, ssp, period)
    path = fetch(
        url(res, var, gcm, ssp, period),
        Path(settings["cache_dir"]) / "worldclim_cmip6" / res / name,
        dataset=f"WorldClim CMIP6 {gcm} {ssp} {period} {var} ({res})",
        settings=settings,
        validate=lambda p: validate_raster(p, bounds=bbox, count=12),
        hint="run the retrieve_cmip6 rule once with internet, or copy it from a mirror",
    )
    data, transform, _ = read_bbox(str(path), bbox, margin_px, what=name)
    return worldclim._mask_fill(data), transform


def retrieve_cmip6_delta(
    bbox: Sequence[float],
    gcms: str | Sequence[str],
    ssp: str,
    period: str,
    out_path: str | Path,
    settings: Mapping[str, Any] | None,
    *,
    res: str = "2.5m",
    baseline_source: str | None = None,
    margin_px: int = 1,
) -> Path:
    """Write the 12-band monthly warming delta (C; bands "month 1".."month 12") of ``ssp`` and
    ``period`` against WorldClim 2.1 1970-2000, the mean over ``gcms``, over ``bbox``.

    The baseline ``tavg`` is WorldClim 2.1 at the same ``res`` (tiles at 30s, zips otherwise,
    or ``baseline_source``), so the future and baseline grids are identical."""
    bbox = check_bbox(bbox)
    gcm_list = [gcms] if isinstance(gcms, str) else list(gcms)
    if not gcm_list:
        raise InputDataError("CMIP6 delta: give at least one GCM")
    base, tr_b = worldclim.read_monthly(bbox, "tavg", settings, res=res, source=baseline_source,
                                        margin_px=margin_px)
    deltas = []
    for gcm in gcm_list:
        tmin, tr1 = read_future(bbox, "tmin", gcm, ssp, period, settings, res=res,
                                margin_px=margin_px)
        tmax, tr2 = read_future(bbox, "tmax", gcm, ssp, period, settings, res=res,
                                margin_px=margin_px)
        if not (tr1.almost_equals(tr_b) and tr2.almost_equals(tr_b)):
            raise InputDataError(
                f"CMIP6 {gcm} {ssp} {period}: grid differs from the WorldClim {res} baseline"
            )
        deltas.append(monthly_delta(tmin, tmax, base))
    delta = np.mean(np.stack(deltas), axis=0).astype("float32")
    valid = delta[np.isfinite(delta)]
    if valid.size == 0:
        raise InputDataError(f"CMIP6 delta over {list(bbox)}: no valid pixel (ocean?)")
    if np.abs(valid).max() > 25:
        raise InputDataError(
            f"CMIP6 delta reaches {np.abs(valid).max():.1f} C: files are not in C or not "
            "matching the baseline"
        )
    return write_geotiff(
        out_path, delta, tr_b, descriptions=[f"month {m}" for m in MONTHS], units="C",
        tags={
            "source": f"WorldClim CMIP6 downscaled {res}: (tmin+tmax)/2 minus WorldClim 2.1 "
                      "tavg 1970-2000",
            "gcms": " ".join(gcm_list), "ssp": ssp, "period": period, "variable": "delta_tavg",
            "units": "C", "citation": worldclim.CITATION,
        },
        band_tags=[{"month": m, "month_name": MONTH_NAMES[m - 1]} for m in MONTHS],
    )
