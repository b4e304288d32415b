"""Degradation classes and tables (permamap.degradation) on constructed inputs.

Expected values come from the class rules written out case by case, from the TTOP and Stefan
equations evaluated by hand in this file (not with permamap's kernels), and from pyproj's
geodesic areas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from conftest import REPO, tiny_raw_config
from pyproj import Geod

from permamap import degradation as dg
from permamap import ground, steps
from permamap.config import prepare
from permamap.errors import InputDataError
from permamap.grid import Grid
from permamap.products import CLASS_NODATA, DEGRADATION_CLASSES, FLOAT_NODATA, PRODUCTS, colormap
from permamap.rasterio_io import read_bands, write_bands

TH = [-5.0, -3.0, -1.5, -0.5]  # Cheng (1984) stability thresholds, DESIGN.md 4.5


# -- stability codes ------------------------------------------------------------------------


def test_stability_codes_follow_the_cheng_scheme():
    # DESIGN.md 4.5: extremely stable < -5.0 <= stable < -3.0 <= sub-stable < -1.5 <=
    # transitional < -0.5 <= unstable < 0
    magt = np.array(
        [-7.0, -5.0001, -5.0, -3.0001, -3.0, -1.6, -1.5, -0.51, -0.5, -0.01, 0.0, 0.3, 0.3, np.nan]
    )
    pf = magt < 0
    pf[-2] = True  # a transient permafrost column whose MAGT at depth is above 0 C
    want = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 0, 5, 255]
    assert dg.stability_codes(magt, pf, TH).tolist() == want
    # where permafrost means MAGT < 0 it is the ground kernel's stability, pixel for pixel
    m = np.linspace(-8, 2, 2001)
    ref = [ground.stability_pixel(v, *TH) for v in m]
    assert dg.stability_codes(m, m < 0, TH).tolist() == ref


# -- the class rules --------------------------------------------------------------------------


# (base_pf, base_stab, base_alt, scen_pf, scen_stab, scen_alt, talik, valid) -> code
CASES = [
    ((False, 0, np.nan, False, 0, np.nan, False, True), 0),  # never permafrost
    ((True, 3, 1.0, True, 3, 1.2, False, True), 1),  # persisting, ALT +0.2 m
    ((True, 3, 1.0, True, 4, 1.2, False, True), 2),  # one stability class warmer
    ((True, 1, 1.0, True, 5, 1.0, False, True), 2),  # several classes warmer
    ((True, 4, 1.0, True, 4, 1.0, True, True), 3),  # talik
    ((True, 4, 1.0, True, 4, 1.6, False, True), 3),  # ALT +0.6 m > 0.5 m
    ((True, 4, 1.0, True, 4, 1.5, False, True), 1),  # ALT +0.5 m: not more than the threshold
    ((True, 4, 1.0, True, 5, 1.8, False, True), 3),  # at depth wins over warming
    ((True, 4, np.nan, True, 5, 3.0, False, True), 2),  # ALT unknown: only the talik counts
    ((True, 4, 1.0, False, 0, np.nan, True, True), 4),  # thawed wins over everything
    ((False, 0, np.nan, True, 5, 1.0, False, True), 5),  # new permafrost
    ((True, 4, 1.0, True, 3, 0.8, False, True), 1),  # colder class (an override): persisting
    ((True, 4, 1.0, False, 0, np.nan, False, False), 255),  # nodata
]


def test_classify_constructed_cases():
    cols = list(zip(*[c for c, _ in CASES], strict=True))
    got = dg.classify(*cols[:7], alt_increase_m=0.5, valid=cols[7])
    assert got.dtype == np.uint8
    assert got.tolist() == [want for _, want in CASES]


def test_product_contract_has_every_code_with_a_colour():
    prod = PRODUCTS["degradation"]
    assert prod.dtype == "uint8" and prod.nodata == CLASS_NODATA and prod.resampling == "mode"
    assert set(prod.categories) == {0, 1, 2, 3, 4, 5} == set(DEGRADATION_CLASSES)
    cmap = colormap(prod)
    assert len({cmap[c] for c in cmap}) == len(cmap)  # distinct colours


# -- areas and losses -----------------------------------------------------------------------


def test_area_row_arithmetic():
    areas = {0: 100.0, 1: 10.0, 2: 5.0, 3: 3.0, 4: 2.0, 5: 1.0}
    row = dg.area_row(areas)
    assert row["baseline_permafrost_km2"] == 20.0  # 10 + 5 + 3 + 2
    assert row["permafrost_km2"] == 19.0  # 10 + 5 + 3 + 1
    assert row["permafrost_lost_km2"] == 2.0
    assert row["permafrost_lost_pct"] == pytest.approx(10.0)
    assert row["permafrost_gained_km2"] == 1.0
    assert row["permafrost_net_change_km2"] == -1.0
    assert row["permafrost_net_change_pct"] == pytest.approx(-5.0)
    assert row["degrading_km2"] == 10.0
    assert math.isnan(dg.area_row({0: 5.0})["permafrost_lost_pct"])


def _config(bbox, res_arcsec=36, tile_px=64, **extra):
    raw = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = tiny_raw_config(raw, bbox=bbox, res_arcsec=res_arcsec, tile_px=tile_px)
    cfg.update(extra)
    return prepare(cfg)


def test_degradation_table_areas_are_geodesic(tmp_path):
    # 20 x 10 px of 0.01 degree; rows 0-4 class 4 (thawed), rows 5-9 class 1 except nodata.
    bbox = (101.0, 36.9, 101.2, 37.0)
    cfg = _config(bbox, horizons=[2050], scenarios={"s": {"trend_c_per_decade": 0.3}})
    grid = Grid.from_config(cfg)
    assert (grid.width, grid.height) == (20, 10)
    deg = np.full((10, 20), 1, np.uint8)
    deg[:5] = 4
    deg[9, :] = CLASS_NODATA
    path = tmp_path / "degradation.tif"
    write_bands(path, deg, grid, dtype="uint8", nodata=CLASS_NODATA, descriptions=["d"])
    out = tmp_path / "degradation.csv"
    dg.degradation_table(cfg, {("s", 2050): path}, out)
    df = pd.read_csv(out)
    geod = Geod(ellps="WGS84")

    def box(west, south, east, north):
        a, _ = geod.polygon_area_perimeter([west, east, east, west], [south, south, north, north])
        return abs(a) / 1e6

    thawed = box(101.0, 36.95, 101.2, 37.0)
    persisting = box(101.0, 36.91, 101.2, 36.95)
    r = df.iloc[0]
    assert (r["scenario"], r["horizon"], r["response"]) == ("s", 2050, "equilibrium")
    assert r["warming_c"] == pytest.approx(0.3 * 5.5)
    # the table rounds km2 to 3 decimals
    assert r["thawed_km2"] == pytest.approx(thawed, abs=6e-4)
    assert r["persisting_km2"] == pytest.approx(persisting, abs=6e-4)
    assert r["baseline_permafrost_km2"] == pytest.approx(thawed + persisting, abs=6e-4)
    assert r["permafrost_lost_pct"] == pytest.approx(100 * thawed / (thawed + persisting), rel=1e-5)
    assert r["no_permafrost_km2"] == 0 and r["new_permafrost_km2"] == 0


# -- lower limit rise -----------------------------------------------------------------------


def _lower_limit_rows():
    rows = []
    for scen, h, w, ll, low, pf, st in [
        ("baseline", 1995, 0.0, 3600.0, 3575.0, 100.0, "ok"),
        ("s", 2050, 1.0, 3780.5, 3750.0, 40.0, "ok"),
        ("s", 2100, 2.0, np.nan, np.nan, 0.0, "none"),
    ]:
        for sector, shift in (("flat", 0.0), ("N", -20.0)):
            rows.append(
                dict(
                    scenario=scen,
                    horizon=h,
                    warming_c=w,
                    sector=sector,
                    lower_limit_m=ll + shift,
                    lowest_permafrost_band_m=low + shift,
                    permafrost_km2=pf,
                    area_km2=500.0,
                    status=st,
                )
            )
    return pd.DataFrame(rows)


def test_lower_limit_rise(tmp_path):
    src = tmp_path / "ll.csv"
    _lower_limit_rows().to_csv(src, index=False)
    out = tmp_path / "rise.csv"
    dg.lower_limit_rise_table(src, out)
    df = pd.read_csv(out)
    assert len(df) == 4  # 2 scenario rows x 2 sectors, no baseline rows
    r = df[(df.horizon == 2050) & (df.sector == "N")].iloc[0]
    assert r["rise_m"] == pytest.approx(180.5)
    assert r["baseline_lower_limit_m"] == pytest.approx(3580.0)
    assert r["lowest_band_rise_m"] == pytest.approx(175.0)
    assert r["permafrost_change_pct"] == pytest.approx(-60.0)
    gone = df[df.horizon == 2100].iloc[0]
    assert math.isnan(gone["rise_m"]) and gone["status"] == "none"
    assert gone["permafrost_change_pct"] == pytest.approx(-100.0)


def test_lower_limit_rise_bad_table_names_the_file(tmp_path):
    src = tmp_path / "ll.csv"
    _lower_limit_rows().drop(columns=["status"]).to_csv(src, index=False)
    with pytest.raises(InputDataError, match=r"ll\.csv: missing columns \['status'\]"):
        dg.lower_limit_rise_table(src, tmp_path / "rise.csv")
    assert not (tmp_path / "rise.csv").exists()


# -- the equilibrium tile step against TTOP and Stefan by hand ------------------------------


def _ttop_by_hand(z, warming):
    """Station sinusoid (Xining normals of config/config.yaml) at elevation z, its analytic
    degree-days (positive lobe of a cosine), TTOP (Smith & Riseborough 2002 eq. 5, n_f 0.7,
    n_t 1.1, r_k 0.9, solar index 1) and the Stefan ALT (k_t 1.2, 25 % water)."""
    a = (17.3 - -7.4) / 2
    m = 6.1 + 0.0056 * (2295.0 - z) + warming
    theta = np.arccos(np.clip(-m / a, -1, 1))
    tdd = 365 / np.pi * (m * theta + a * np.sin(theta))
    fdd = tdd - 365 * m
    num = 0.9 * 1.1 * tdd - 0.7 * fdd
    ttop = np.where(num < 0, num / 365, (1.1 * tdd - 0.7 * fdd / 0.9) / 365)
    alt = np.sqrt(2 * 1.2 * 1.1 * tdd * 86400 / (0.25 * 1000 * 334000))
    return ttop, alt


def _stab_by_hand(t):
    return np.select([t >= 0, t < -5, t < -3, t < -1.5, t < -0.5], [0, 1, 2, 3, 4], 5)


def test_equilibrium_tile_degradation_matches_hand_calculation(tmp_path):
    bbox = (101.0, 36.9, 101.3, 37.0)  # 30 x 10 px
    scen = {
        "w0": {"warming_c": {2050: 0.0}},
        "w1": {"warming_c": {2050: 1.0}},
        "w3": {"warming_c": {2050: 3.0}},
    }
    # +3 C deepens the Stefan ALT by 0.40-0.47 m in the permafrost left (3,300-5,094 m)
    cfg = _config(
        bbox, horizons=[2050], scenarios=scen, response={"degradation": {"alt_increase_m": 0.42}}
    )
    grid = Grid.from_config(cfg)
    tile = grid.tiles(64)[0]
    z = (3300 + 6 * np.arange(300)).reshape(10, 30).astype(np.float64)
    z[3, 4] = np.nan
    terrain = np.stack([z, np.zeros_like(z), np.full_like(z, -1.0), np.ones_like(z)])
    terrain[:, 3, 4] = np.nan
    t = tmp_path / "terrain.tif"
    write_bands(
        t,
        np.where(np.isnan(terrain), FLOAT_NODATA, terrain).astype(np.float32),
        grid,
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=["elevation", "slope", "aspect", "solar"],
    )
    steps.climate_tile(cfg, t, tile.id, tmp_path / "climate.tif")
    steps.ground_tile(
        cfg,
        t,
        tmp_path / "climate.tif",
        tile.id,
        tmp_path / "gm.tif",
        tmp_path / "gc.tif",
        out_alt=tmp_path / "ga.tif",
    )
    steps.scenarios_tile(
        cfg,
        t,
        tile.id,
        tmp_path / "sm.tif",
        tmp_path / "sc.tif",
        climate_path=tmp_path / "climate.tif",
        ground_alt_path=tmp_path / "ga.tif",
        ground_class_path=tmp_path / "gc.tif",
        out_degradation=tmp_path / "sd.tif",
    )
    deg = read_bands(tmp_path / "sd.tif")
    with rasterio.open(tmp_path / "sd.tif") as src:
        assert src.descriptions == ("w0/2050", "w1/2050", "w3/2050")
    valid = np.isfinite(z)
    assert np.all(deg[:, ~valid] == CLASS_NODATA)
    t0, alt0 = _ttop_by_hand(z, 0.0)
    pf0 = t0 < 0
    # zero warming: the baseline itself, permafrost persists everywhere it is
    assert np.array_equal(deg[0][valid], np.where(pf0, 1, 0)[valid])
    seen = set()
    for band, w in ((1, 1.0), (2, 3.0)):
        t1, alt1 = _ttop_by_hand(z, w)
        pf1 = t1 < 0
        want = np.select(
            [
                ~pf0 & ~pf1,
                pf0 & ~pf1,
                pf0 & pf1 & (alt1 - alt0 > 0.42),
                pf0 & pf1 & (_stab_by_hand(t1) > _stab_by_hand(t0)),
            ],
            [0, 4, 3, 2],
            1,
        )
        # leave out pixels within rounding of a threshold
        near = (np.abs(t0) < 1e-6) | (np.abs(t1) < 1e-6) | (np.abs(alt1 - alt0 - 0.42) < 1e-6)
        for th in TH:
            near |= (np.abs(t0 - th) < 1e-6) | (np.abs(t1 - th) < 1e-6)
        ok = valid & ~near
        assert ok.sum() > 250
        assert np.array_equal(deg[band][ok], want[ok]), (w, deg[band][ok], want[ok])
        seen |= set(np.unique(want[ok]).tolist())
    assert {0, 1, 2, 3, 4} <= seen  # the landscape exercises every warming class
