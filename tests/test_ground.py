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
    assert ttop_pixel(1000.0, 2000.0, 0.7, 1.1, 0.9, 365.0) == pytest.approx(
        (2200 - 700 / 0.9) / 365
    )


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
    [
        (-7.0, 1),
        (-5.01, 1),
        (-5.0, 2),
        (-3.01, 2),
        (-3.0, 3),
        (-1.5, 4),
        (-0.51, 4),
        (-0.5, 5),
        (-0.01, 5),
        (0.0, 0),
        (2.0, 0),
    ],
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
    _, fdd, tdd, _ = compute_climate(z, forcing)
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
    _, fdd, tdd, _ = compute_climate(z, forcing)
    magt, cls, stab = compute_ground(config, z, slope, aspect, fdd, tdd)
    assert np.isnan(magt[1, 2]) and cls[1, 2] == 255 and stab[1, 2] == 255
    assert (cls[np.isfinite(z)] != 255).all()


# -- solar exposure, active layer, probability (issue 5) ----------------------------------------

from permamap.ground import active_layer, compute_probability, ipa_zone, thawing_n_factor  # noqa: E402


def test_thawing_n_factor_scales_with_solar_index():
    assert thawing_n_factor(1.1, 1.0, 1.0) == pytest.approx(1.1)  # flat ground: unchanged
    assert thawing_n_factor(1.1, 1.0, 1.2) == pytest.approx(1.32)
    assert thawing_n_factor(1.1, 0.0, 0.5) == pytest.approx(1.1)  # effect switched off
    assert thawing_n_factor(1.1, 3.0, 0.5) == 0.0  # never negative


def test_south_slope_warmer_than_north_slope_in_ttop(config):
    z = np.full((1, 2), 3650.0)
    slope = np.full((1, 2), 20.0)
    aspect = np.array([[180.0, 0.0]])
    solar = np.array([[1.15, 0.80]])  # south-facing gets more beam, north-facing less
    forcing = StationForcing(config)
    _, fdd, tdd, _ = compute_climate(z, forcing)
    magt, _, _ = compute_ground(config, z, slope, aspect, fdd, tdd, solar=solar)
    assert magt[0, 0] > magt[0, 1]


def test_stefan_active_layer_by_hand(config):
    # Permafrost pixel, TDD = 1000 C day, flat (SI = 1): surface index 1.1 * 1000 = 1100 C day;
    # L = 0.25 * 1000 kg/m3 * 334,000 J/kg = 8.35e7 J/m3; k = 1.2 W/m/K:
    # Z = sqrt(2 * 1.2 * 1100 * 86400 / 8.35e7) = sqrt(2.7317) = 1.6528 m.
    cls = np.array([[1, 2, 3]], np.uint8)
    fdd = np.array([[2000.0, 1500.0, 0.0]])
    tdd = np.array([[1000.0, 1500.0, 4000.0]])
    alt, freeze = active_layer(config, cls, fdd, tdd)
    assert alt[0, 0] == pytest.approx(np.sqrt(2 * 1.2 * 1100 * 86400 / 8.35e7), rel=1e-9)
    # seasonal frost: n_f FDD = 0.7 * 1500 = 1050 C day with the frozen conductivity 1.6
    assert freeze[0, 1] == pytest.approx(np.sqrt(2 * 1.6 * 1050 * 86400 / 8.35e7), rel=1e-9)
    assert (
        np.isnan(alt[0, 1])
        and np.isnan(alt[0, 2])
        and np.isnan(freeze[0, 0])
        and np.isnan(freeze[0, 2])
    )


def _landscape(n=12, seed=5):
    rng = np.random.default_rng(seed)
    z = rng.uniform(3000, 4600, (n, n))
    slope = rng.uniform(0, 35, (n, n))
    aspect = rng.uniform(0, 360, (n, n))
    solar = rng.uniform(0.7, 1.25, (n, n))
    return z, slope, aspect, solar


@pytest.mark.parametrize("model", ["ttop", "lapse"])
def test_probability_without_spread_is_the_deterministic_map(config, model):
    cfg = copy.deepcopy(config)
    cfg["ground"]["model"] = model
    g = cfg["ground"]
    g["probability"]["samples"] = 7
    g["probability"]["ranges"] = {
        "n_thawing": [g["ttop"]["n_thawing"]] * 2,
        "lapse_rate_c_per_m": [cfg["climate"]["lapse_rate_c_per_m"]] * 2,
        "rate_north_c_per_m": [g["lapse"]["rate_north_c_per_m"]] * 2,
    }
    z, slope, aspect, solar = _landscape()
    forcing = StationForcing(cfg)
    _, fdd, tdd, _ = compute_climate(z, forcing)
    _, cls, _ = compute_ground(cfg, z, slope, aspect, fdd, tdd, solar=solar)
    prob = compute_probability(cfg, forcing, z, slope, aspect, solar=solar)
    np.testing.assert_array_equal(prob, np.where(cls == PERMAFROST, 100, 0))


def test_probability_is_reproducible_and_spread_gives_intermediate_values(config):
    z, slope, aspect, solar = _landscape(20)
    forcing = StationForcing(config)
    p1 = compute_probability(config, forcing, z, slope, aspect, solar=solar)
    p2 = compute_probability(config, forcing, z, slope, aspect, solar=solar)
    np.testing.assert_array_equal(p1, p2)
    assert ((p1 > 0) & (p1 < 100)).any()
    cfg = copy.deepcopy(config)
    cfg["ground"]["probability"]["seed"] += 1
    p3 = compute_probability(cfg, forcing, z, slope, aspect, solar=solar)
    assert not np.array_equal(p1, p3)
    # higher ground is never less likely to be permafrost, all else equal
    zz = np.linspace(3000, 4600, 30)[None, :]
    flat = np.zeros_like(zz)
    prob = compute_probability(config, forcing, zz, flat, flat - 1, solar=np.ones_like(zz))
    assert (np.diff(prob[0].astype(int)) >= 0).all() and prob[0, 0] == 0 and prob[0, -1] == 100


def test_ipa_zone_thresholds():
    # ESA CCI Permafrost / IPA: continuous >= 90 %, discontinuous 50-90, sporadic 10-50, isolated < 10
    p = np.array([100, 90, 89, 50, 49, 10, 9, 1, 0, 255], np.uint8)
    np.testing.assert_array_equal(ipa_zone(p), [1, 1, 2, 2, 3, 3, 4, 4, 0, 255])


class _NaNClimate:
    """Forcing with no climate data in the second pixel (e.g. ocean in a WorldClim grid)."""

    def __init__(self, forcing):
        self.lapse, self.method = forcing.lapse, forcing.method
        self._f = forcing

    def fields(self, grid):
        t, z = self._f.fields(grid)
        t = np.array(t)
        t[:, 0, 1] = np.nan
        return t, z


def test_missing_climate_is_nodata_in_scenarios_and_probability(config):
    z = np.array([[3500.0, 3500.0]])
    flat = np.zeros_like(z)
    forcing = _NaNClimate(StationForcing(config))
    magt, cls = compute_scenarios(config, forcing, z, flat, flat - 1, [0.0, 1.0])
    assert np.isnan(magt[:, 0, 1]).all() and (cls[:, 0, 1] == 255).all()
    assert (cls[:, 0, 0] != 255).all()
    prob = compute_probability(config, forcing, z, flat, flat - 1)
    assert prob[0, 1] == 255 and prob[0, 0] != 255


def test_lapse_model_responds_to_warming_one_to_one(config):
    cfg = copy.deepcopy(config)
    cfg["ground"]["model"] = "lapse"
    z, slope, aspect = _terrain_block()
    magt, _ = compute_scenarios(cfg, StationForcing(cfg), z, slope, aspect, [0.0, 1.5])
    finite = np.isfinite(magt[0])
    np.testing.assert_allclose(magt[1][finite] - magt[0][finite], 1.5, atol=1e-12)


# -- surface types (issue 5 interface) ----------------------------------------------------------

SURFACE_MULT = np.array([[1.0, 1.0, 1.0], [0.8, 1.3, 0.7]])


def _surface_config(config, row):
    """The config whose own TTOP parameters are those of surface type ``row``."""
    cfg = copy.deepcopy(config)
    tt = cfg["ground"]["ttop"]
    tt["n_freezing"] *= SURFACE_MULT[row, 0]
    tt["n_thawing"] *= SURFACE_MULT[row, 1]
    tt["conductivity_ratio"] *= SURFACE_MULT[row, 2]
    return cfg


def test_two_surface_types_each_get_the_magt_of_their_own_parameters(config):
    z, slope, aspect, solar = _landscape(16, seed=9)
    surface = (np.add.outer(np.arange(16), np.arange(16)) % 2).astype(np.uint8)
    forcing = StationForcing(config)
    _, fdd, tdd, _ = compute_climate(z, forcing)
    kw = dict(surface=surface, surface_mult=SURFACE_MULT)
    magt, cls, stab = compute_ground(config, z, slope, aspect, fdd, tdd, solar=solar, **kw)
    smagt, scls = compute_scenarios(
        config, forcing, z, slope, aspect, [0.0, 2.0], solar=solar, **kw
    )
    alt, frz = active_layer(config, cls, fdd, tdd, solar=solar, **kw)
    for row in (0, 1):
        cfg = _surface_config(config, row)
        here = surface == row
        m, c, s = compute_ground(cfg, z, slope, aspect, fdd, tdd, solar=solar)
        sm, sc = compute_scenarios(cfg, forcing, z, slope, aspect, [0.0, 2.0], solar=solar)
        a, f = active_layer(cfg, c, fdd, tdd, solar=solar)
        np.testing.assert_array_equal(magt[here], m[here])
        np.testing.assert_array_equal(cls[here], c[here])
        np.testing.assert_array_equal(stab[here], s[here])
        np.testing.assert_array_equal(smagt[:, here], sm[:, here])
        np.testing.assert_array_equal(scls[:, here], sc[:, here])
        np.testing.assert_array_equal(alt[here], a[here])
        np.testing.assert_array_equal(frz[here], f[here])
    # the types differ (lower n_f, higher n_t and lower r_k: warmer ground)
    assert (
        magt[surface == 1]
        > compute_ground(config, z, slope, aspect, fdd, tdd, solar=solar)[0][surface == 1]
    ).all()


def test_surface_types_in_the_probability_ensemble(config):
    z, slope, aspect, solar = _landscape(14, seed=4)
    surface = (np.arange(14)[:, None] % 2 * np.ones((1, 14))).astype(np.uint8)
    forcing = StationForcing(config)
    prob = compute_probability(
        config, forcing, z, slope, aspect, solar=solar, surface=surface, surface_mult=SURFACE_MULT
    )
    # Ranges of the multiplied parameters scale with the multiplier: a config whose draws are
    # the multiplied draws (same seed, same sorted keys, ranges times the multiplier) is the
    # independent run of that type.
    for row in (0, 1):
        cfg = _surface_config(config, row)
        ranges = cfg["ground"]["probability"]["ranges"]
        for key, col in (("n_freezing", 0), ("n_thawing", 1), ("conductivity_ratio", 2)):
            if key in ranges:
                ranges[key] = [v * SURFACE_MULT[row, col] for v in ranges[key]]
        p = compute_probability(cfg, forcing, z, slope, aspect, solar=solar)
        here = surface == row
        np.testing.assert_array_equal(prob[here], p[here])


def test_default_surface_is_bit_identical_to_type_zero_of_a_unit_table(config):
    z, slope, aspect, solar = _landscape(10, seed=2)
    forcing = StationForcing(config)
    _, fdd, tdd, _ = compute_climate(z, forcing)
    zeros = np.zeros(z.shape, np.uint8)
    kw = dict(surface=zeros, surface_mult=[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    for a, b in zip(
        compute_ground(config, z, slope, aspect, fdd, tdd, solar=solar),
        compute_ground(config, z, slope, aspect, fdd, tdd, solar=solar, **kw),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("surface", "mult", "match"),
    [
        (np.full((2, 3), 2, np.uint8), SURFACE_MULT, "surface index 2 is outside"),
        (np.full((2, 3), -1, np.int16), SURFACE_MULT, "surface index -1 is outside"),
        (np.zeros((3, 2), np.uint8), SURFACE_MULT, r"surface has shape \(3, 2\)"),
        (np.zeros((2, 3)), SURFACE_MULT, "surface has dtype float64"),
        (np.zeros((2, 3), np.uint8), np.ones((2, 2)), r"surface_mult has shape \(2, 2\)"),
        (np.zeros((2, 3), np.uint8), [[1.0, 0.0, 1.0]], "finite and > 0"),
        (np.zeros((2, 3), np.uint8), [[1.0, np.nan, 1.0]], "finite and > 0"),
    ],
)
def test_bad_surface_input_is_named(config, surface, mult, match):
    z = np.full((2, 3), 3500.0)
    flat = np.zeros_like(z)
    with pytest.raises(ValueError, match=match):
        compute_ground(config, z, flat, flat - 1, flat, flat, surface=surface, surface_mult=mult)
