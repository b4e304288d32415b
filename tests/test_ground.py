"""TTOP and lapse models by hand, class thresholds, and scenario/baseline consistency."""

import copy

import numpy as np
import pytest

from permamap.climate import StationForcing, compute_climate
from permamap.ground import (
    classify_pixel,
    compute_ground,
    compute_scenarios,
    lapse_magt_pixel,
    stability_pixel,
    ttop_c,
    ttop_pixel,
)
from permamap.products import PERMAFROST, SEASONALLY_FROZEN, UNFROZEN


def test_ttop_by_hand_permafrost_branch():
    # r_k n_t TDD - n_f FDD = 0.9*1.1*1000 - 0.7*2000 = 990 - 1400 = -410 -> TTOP = -410/365
    assert ttop_pixel(2000.0, 1000.0, 0.7, 1.1, 0.9, 365.0) == pytest.approx(-410 / 365)


def test_ttop_by_hand_thawed_branch():
    # numerator positive -> (n_t TDD - n_f FDD / r_k) / P = (2200 - 700/0.9) / 365
    assert ttop_pixel(1000.0, 2000.0, 0.7, 1.1, 0.9, 365.0) == pytest.approx((2200 - 700 / 0.9) / 365)


def test_ttop_sign_changes_exactly_where_r_k_n_t_tdd_equals_n_f_fdd():
    nf, nt, rk, fdd = 0.7, 1.1, 0.9, 1500.0
    tdd_star = nf * fdd / (rk * nt)
    assert ttop_pixel(fdd, tdd_star, nf, nt, rk, 365.0) == pytest.approx(0.0, abs=1e-12)
    assert ttop_pixel(fdd, tdd_star * (1 - 1e-6), nf, nt, rk, 365.0) < 0
    assert ttop_pixel(fdd, tdd_star * (1 + 1e-6), nf, nt, rk, 365.0) > 0


def test_ttop_numpy_and_numba_agree():
    rng = np.random.default_rng(0)
    fdd = rng.uniform(0, 4000, 200)
    tdd = rng.uniform(0, 4000, 200)
    ref = ttop_c(fdd, tdd, 0.8, 1.2, 0.85)
    got = np.array([ttop_pixel(f, t, 0.8, 1.2, 0.85, 365.0) for f, t in zip(fdd, tdd, strict=True)])
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_lapse_model_rates_by_aspect():
    # 100 m above the anchor (MAGT 0 C): flat -0.5 C, north-facing -0.6 C, south-facing -0.4 C
    args = (0.006, 0.004, 3700.0, 0.0, np.sin(np.radians(30.0)))
    assert lapse_magt_pixel(3800.0, 0.0, -1.0, *args) == pytest.approx(-0.5)
    assert lapse_magt_pixel(3800.0, 35.0, 0.0, *args) == pytest.approx(-0.6)
    assert lapse_magt_pixel(3800.0, 35.0, 180.0, *args) == pytest.approx(-0.4)
    assert lapse_magt_pixel(3800.0, 35.0, 90.0, *args) == pytest.approx(-0.5)
    # half the full-contrast slope's sine: half the contrast
    s = np.degrees(np.arcsin(0.5 * np.sin(np.radians(30.0))))
    assert lapse_magt_pixel(3800.0, s, 0.0, *args) == pytest.approx(-0.55)


def test_classes():
    assert classify_pixel(-0.01, 100.0) == PERMAFROST
    assert classify_pixel(0.0, 100.0) == SEASONALLY_FROZEN
    assert classify_pixel(3.0, 0.5) == SEASONALLY_FROZEN
    assert classify_pixel(3.0, 0.0) == UNFROZEN


@pytest.mark.parametrize(
    ("magt", "code"),
    [(-7.0, 1), (-5.01, 1), (-5.0, 2), (-3.01, 2), (-3.0, 3), (-1.5, 4), (-0.51, 4),
     (-0.5, 5), (-0.01, 5), (0.0, 0), (2.0, 0)],
)
def test_stability_thresholds_cheng_1984(magt, code):
    assert stability_pixel(magt, -5.0, -3.0, -1.5, -0.5) == code


def _terrain_block():
    z = np.array([[2300.0, 3000.0, 3600.0], [3900.0, 4400.0, np.nan]])
    slope = np.array([[0.0, 10.0, 25.0], [30.0, 5.0, 1.0]])
    aspect = np.array([[-1.0, 0.0, 180.0], [90.0, 270.0, 10.0]])
    return z, slope, aspect


@pytest.mark.parametrize("model", ["ttop", "lapse"])
def test_zero_warming_scenario_equals_baseline_bitwise(config, model):
    cfg = copy.deepcopy(config)
    cfg["ground"]["model"] = model
    z, slope, aspect = _terrain_block()
    forcing = StationForcing(cfg)
    _, fdd, tdd = compute_climate(z, forcing)
    magt, cls, _ = compute_ground(cfg, z, slope, aspect, fdd, tdd)
    smagt, scls = compute_scenarios(cfg, forcing, z, slope, aspect, [0.0])
    np.testing.assert_array_equal(smagt[0], magt)  # NaN == NaN in assert_array_equal
    np.testing.assert_array_equal(scls[0], cls)


def test_warming_never_creates_permafrost(config):
    rng = np.random.default_rng(1)
    z = rng.uniform(2000, 5000, (20, 20))
    slope = rng.uniform(0, 40, (20, 20))
    aspect = rng.uniform(0, 360, (20, 20))
    forcing = StationForcing(config)
    magt, cls = compute_scenarios(config, forcing, z, slope, aspect, [0.0, 0.5, 1.0, 2.0, 4.0])
    assert (np.diff(magt, axis=0) > 0).all()
    pf = cls == PERMAFROST
    assert (pf[1:] <= pf[:-1]).all()
    assert pf[0].sum() > pf[-1].sum() > 0 or pf[-1].sum() == 0


def test_nodata_propagates_never_cold_permafrost(config):
    z, slope, aspect = _terrain_block()
    forcing = StationForcing(config)
    _, fdd, tdd = compute_climate(z, forcing)
    magt, cls, stab = compute_ground(config, z, slope, aspect, fdd, tdd)
    assert np.isnan(magt[1, 2]) and cls[1, 2] == 255 and stab[1, 2] == 255
    assert (cls[np.isfinite(z)] != 255).all()
