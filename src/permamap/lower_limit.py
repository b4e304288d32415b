"""Lower limit of permafrost by aspect sector: how field scientists report a mountain's permafrost.

For each aspect sector (N, NE, E, SE, S, SW, W, NW, and flat ground) the area of permafrost and
of all ground is accumulated in elevation bands, streaming through the rasters in row blocks
(memory does not grow with the region). The lower limit is the elevation where the
probability of permafrost reaches 50 % in a logistic regression of presence on elevation,
weighted by area (the approach of Lewkowicz & Ednie 2004, Permafrost Periglac. Process.
15:67-80, for mountain permafrost probability with elevation). The table also gives the lowest
band holding any permafrost, which is the absolute limit a field survey would find.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import rasterio
from rasterio.windows import Window

from .grid import Grid
from .products import CLASS_NODATA, FLOAT_NODATA, PERMAFROST
from .terrain import FLAT_ASPECT

SECTORS = ["flat", "N", "NE", "E", "SE", "S", "SW", "W", "NW"]


def aspect_sector(
    aspect_deg: np.ndarray, slope_deg: np.ndarray, flat_slope_deg: float
) -> np.ndarray:
    """Sector index: 0 flat (slope < flat_slope_deg or aspect -1), 1 N (337.5-22.5), ..., 8 NW."""
    a = np.asarray(aspect_deg, np.float64)
    idx = (np.floor(((a + 22.5) % 360.0) / 45.0).astype(np.int64) % 8) + 1
    flat = (np.asarray(slope_deg) < flat_slope_deg) | (a == FLAT_ASPECT)
    return np.where(flat, 0, idx)


class Histograms:
    """Area (km^2) of all ground and of permafrost per (sector, elevation band)."""

    def __init__(self, band_m: float, z_min: float = -500.0, z_max: float = 9000.0):
        self.band_m = float(band_m)
        self.z0 = math.floor(z_min / band_m) * band_m
        self.n_bands = int(math.ceil((z_max - self.z0) / band_m))
        self.total = np.zeros((len(SECTORS), self.n_bands))
        self.permafrost = np.zeros((len(SECTORS), self.n_bands))

    def add(self, z, sector, is_permafrost, valid, pixel_area_km2) -> None:
        band = np.clip(((z - self.z0) // self.band_m).astype(np.int64), 0, self.n_bands - 1)
        w = np.broadcast_to(pixel_area_km2, z.shape)
        flat_idx = sector[valid] * self.n_bands + band[valid]
        n = len(SECTORS) * self.n_bands
        self.total += np.bincount(flat_idx, weights=w[valid], minlength=n).reshape(self.total.shape)
        pf = valid & is_permafrost
        flat_pf = sector[pf] * self.n_bands + band[pf]
        self.permafrost += np.bincount(flat_pf, weights=w[pf], minlength=n).reshape(
            self.total.shape
        )

    def centres(self) -> np.ndarray:
        return self.z0 + (np.arange(self.n_bands) + 0.5) * self.band_m


def logistic_lower_limit(centres_m, permafrost_km2, total_km2):
    """Elevation (m) where P(permafrost | z) = 0.5 by an area-weighted logistic regression.

    Returns (z50, status). Status: ``ok``; ``none`` (no permafrost: NaN); ``all`` (every band
    is permafrost: NaN, the limit lies below the terrain); ``inverted`` (presence decreases with
    elevation: NaN).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    keep = total_km2 > 0
    z = np.asarray(centres_m)[keep]
    pf = np.asarray(permafrost_km2)[keep]
    non = np.asarray(total_km2)[keep] - pf
    if pf.sum() <= 0:
        return math.nan, "none"
    if non.sum() <= 1e-12 * pf.sum():
        return math.nan, "all"
    mean, std = float(np.average(z, weights=pf + non)), float(z.std()) or 1.0
    x = np.concatenate([z, z])[:, None]
    y = np.concatenate([np.ones_like(z), np.zeros_like(z)])
    w = np.concatenate([pf, np.clip(non, 0, None)])
    m = w > 0
    model = LogisticRegression(C=1e4, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((x[m] - mean) / std, y[m], sample_weight=w[m])
    b1 = float(model.coef_[0, 0])
    b0 = float(model.intercept_[0])
    if b1 <= 0:
        return math.nan, "inverted"
    return mean - std * b0 / b1, "ok"


def accumulate(
    hist: Histograms,
    grid: Grid,
    elevation_path,
    slope_path,
    aspect_path,
    class_path,
    flat_slope_deg: float,
    block_rows: int = 512,
) -> None:
    """Stream the rasters in row blocks into ``hist``."""
    areas = grid.row_pixel_areas_km2()
    with (
        rasterio.open(elevation_path) as ze,
        rasterio.open(slope_path) as sl,
        rasterio.open(aspect_path) as asp,
        rasterio.open(class_path) as cl,
    ):
        for r0 in range(0, grid.height, block_rows):
            h = min(block_rows, grid.height - r0)
            win = Window(0, r0, grid.width, h)
            z = ze.read(1, window=win).astype(np.float64)
            s = sl.read(1, window=win)
            a = asp.read(1, window=win)
            c = cl.read(1, window=win)
            valid = (
                (z != FLOAT_NODATA)
                & (s != FLOAT_NODATA)
                & (a != FLOAT_NODATA)
                & (c != CLASS_NODATA)
            )
            sector = aspect_sector(a, s, flat_slope_deg)
            hist.add(z, sector, c == PERMAFROST, valid, areas[r0 : r0 + h, None])


def table_rows(hist: Histograms, scenario: str, horizon, warming_c: float) -> list[dict]:
    rows = []
    centres = hist.centres()
    for i, name in enumerate(SECTORS):
        tot, pf = hist.total[i], hist.permafrost[i]
        z50, status = logistic_lower_limit(centres, pf, tot)
        has_pf = np.nonzero(pf > 0)[0]
        lowest = float(hist.z0 + has_pf[0] * hist.band_m) if len(has_pf) else math.nan
        rows.append(
            dict(
                scenario=scenario,
                horizon=horizon,
                warming_c=round(warming_c, 4),
                sector=name,
                lower_limit_m=round(z50, 1) if math.isfinite(z50) else math.nan,
                lowest_permafrost_band_m=lowest,
                permafrost_km2=round(float(pf.sum()), 3),
                area_km2=round(float(tot.sum()), 3),
                status=status,
            )
        )
    return rows
