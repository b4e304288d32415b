"""Build the bundled SYNTHETIC validation sample (deterministic, fixed seed).

    .venv/bin/python config/validation/make_sample.py

Writes, beside this script:

- ``sample_reference_3995.tif``: a reference class map in EPSG:3995 (Arctic polar
  stereographic, the CRS of Obu et al. 2019) at 10 km, covering 100-103 E, 36-38.5 N (part of
  the offline sample region). Codes: 11 permafrost, 12 seasonally frozen ground, 0 nodata
  (outside the lon/lat box). Rule: permafrost where the elevation of pvlib's 5-arcmin altitude
  grid (bilinear at the pixel centre) is at least 3,800 m, seasonally frozen ground below;
  then 8 % of the pixels, drawn at random, get the other class (label noise).
- ``sample_points.csv``: 20 points (4 per elevation band of 2,400-2,900-3,400-3,800-4,200-
  4,700 m on the pvlib grid) with an "observed" elevation = grid elevation + N(0, 120 m);
  MAGT = -0.5 C/100 m x (elevation - 3,800 m) + N(0, 0.6 C) at 10-15 m depth; permafrost
  presence = MAGT < 0; ALT = 2.0 m + 0.25 m/C x MAGT + N(0, 0.25 m) where permafrost. Three
  points have no elevation and four are presence-only "pits" (no MAGT, ALT or depth).

The 3,800 m lower limit and the 0.5 C/100 m MAGT gradient are round illustrative numbers (the
gradient is the middle of the 0.4-0.6 C/100 m of the Zhao 2026 review); they were fixed before
looking at permamap's output and are not tuned to agree with it. Nothing here is a
measurement: the files exist so that `make run` and the tests exercise the validation code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.warp import transform_bounds

from permamap.dem import read_pvlib_window

HERE = Path(__file__).resolve().parent
SEED = 20260801
CRS_REF = "EPSG:3995"
RES_M = 10_000.0
BOX = (100.0, 36.0, 103.0, 38.5)  # lon/lat box of the reference map
POINT_BOX = (100.0, 36.0, 103.3, 38.8)  # where points are drawn
LOWER_LIMIT_M = 3800.0
MAGT_GRADIENT_C_PER_M = 0.005
LABEL_NOISE = 0.08
PERMAFROST_CODE, SFG_CODE, NODATA = 11, 12, 0
SYNTHETIC_NOTE = (
    "SYNTHETIC illustrative data made by config/validation/make_sample.py (seed "
    f"{SEED}); not a measurement and not a published map"
)


def pvlib_elevation_at(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Bilinear pvlib altitude (m) at points (via scipy on the decoded 5' grid)."""
    from scipy.ndimage import map_coordinates

    z, tr = read_pvlib_window(
        min(lon.min(), BOX[0]) - 0.5,
        min(lat.min(), BOX[1]) - 0.5,
        max(lon.max(), POINT_BOX[2]) + 0.5,
        max(lat.max(), POINT_BOX[3]) + 0.5,
    )
    col, row = ~tr @ (lon, lat)
    return map_coordinates(z.astype(np.float64), [row - 0.5, col - 0.5], order=1, mode="nearest")


def make_reference(rng: np.random.Generator) -> Path:
    left, bottom, right, top = transform_bounds("EPSG:4326", CRS_REF, *BOX, densify_pts=101)
    left, bottom = np.floor(left / RES_M) * RES_M, np.floor(bottom / RES_M) * RES_M
    right, top = np.ceil(right / RES_M) * RES_M, np.ceil(top / RES_M) * RES_M
    width, height = int(round((right - left) / RES_M)), int(round((top - bottom) / RES_M))
    transform = Affine(RES_M, 0.0, left, 0.0, -RES_M, top)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x, y = transform @ (cols, rows)
    lon, lat = Transformer.from_crs(CRS_REF, "EPSG:4326", always_xy=True).transform(x, y)
    z = pvlib_elevation_at(lon.ravel(), lat.ravel()).reshape(lon.shape)
    codes = np.where(z >= LOWER_LIMIT_M, PERMAFROST_CODE, SFG_CODE).astype(np.uint8)
    flip = rng.random(codes.shape) < LABEL_NOISE
    codes[flip] = np.where(codes[flip] == PERMAFROST_CODE, SFG_CODE, PERMAFROST_CODE)
    inside = (lon >= BOX[0]) & (lon <= BOX[2]) & (lat >= BOX[1]) & (lat <= BOX[3])
    codes[~inside | ~np.isfinite(z)] = NODATA
    out = HERE / "sample_reference_3995.tif"
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs=CRS_REF,
        transform=transform,
        nodata=NODATA,
        compress="DEFLATE",
    )
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(codes, 1)
        dst.set_band_description(
            1, "synthetic ground class: 11 permafrost, 12 seasonally frozen ground"
        )
        dst.update_tags(
            synthetic="true",
            note=SYNTHETIC_NOTE,
            seed=str(SEED),
            rule=f"permafrost where pvlib elevation >= {LOWER_LIMIT_M:.0f} m, "
            f"{LABEL_NOISE:.0%} label noise",
            codes="11 permafrost, 12 seasonally frozen ground, 0 nodata",
        )
        dst.write_colormap(
            1, {PERMAFROST_CODE: (33, 102, 172, 255), SFG_CODE: (166, 217, 106, 255)}
        )
    return out


def make_points(rng: np.random.Generator) -> Path:
    lon = rng.uniform(POINT_BOX[0], POINT_BOX[2], 4000)
    lat = rng.uniform(POINT_BOX[1], POINT_BOX[3], 4000)
    z = pvlib_elevation_at(lon, lat)
    bands = [2400, 2900, 3400, 3800, 4200, 4700]
    pick = []
    for lo, hi in zip(bands[:-1], bands[1:], strict=True):
        idx = np.flatnonzero((z >= lo) & (z < hi))
        pick += list(rng.choice(idx, 4, replace=False))
    pick = np.array(pick)
    n = len(pick)
    elev = np.round(z[pick] + rng.normal(0, 120, n), -1)
    magt = np.round(-MAGT_GRADIENT_C_PER_M * (elev - LOWER_LIMIT_M) + rng.normal(0, 0.6, n), 1)
    alt = np.round(np.clip(2.0 + 0.25 * magt + rng.normal(0, 0.25, n), 0.5, None), 2)
    depth = rng.choice([10.0, 12.0, 15.0], n)
    df = pd.DataFrame(
        {
            "id": [f"S{i + 1:02d}" for i in range(n)],
            "lon": np.round(lon[pick], 4),
            "lat": np.round(lat[pick], 4),
            "elevation_m": elev,
            "magt_c": magt,
            "alt_m": np.where(magt < 0, alt, np.nan),
            "permafrost": (magt < 0).astype(int),
            "depth_m": depth,
            "source": "synthetic borehole (config/validation/make_sample.py)",
        }
    )
    order = rng.permutation(n)
    df.loc[order[:3], "elevation_m"] = np.nan
    pits = order[3:7]
    df.loc[pits, ["magt_c", "alt_m", "depth_m"]] = np.nan
    df.loc[pits, "source"] = "synthetic pit, presence only (config/validation/make_sample.py)"
    out = HERE / "sample_points.csv"
    with out.open("w") as f:
        f.write(f"# {SYNTHETIC_NOTE}\n")
        df.to_csv(f, index=False, lineterminator="\n")
    return out


def main() -> None:
    rng = np.random.default_rng(SEED)
    for path in (make_reference(rng), make_points(rng)):
        print(path)


if __name__ == "__main__":
    main()
