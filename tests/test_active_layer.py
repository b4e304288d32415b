"""Tests of permamap.active_layer: Stefan and Kudryavtsev.

Expected numbers are hand calculations written out here, analytic limits, or permamodel's
published stage values (cited below); none are copied from this module's output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from permamap import active_layer as al

# ------------------------------------------------------------------------------ Stefan


def test_stefan_hand_calculation():
    """I = 900 C*day (ground-surface thawing index), k_t = 1.2 W/m/K, theta = 0.25 m3/m3:
    L_vol = 3.34e5 J/kg * 1000 kg/m3 * 0.25 = 8.35e7 J/m3
    2 k I 86400 = 2 * 1.2 W/m/K * 900 C*day * 86400 s/day = 1.86624e8 J/m
    Z^2 = 1.86624e8 / 8.35e7 = 2.235018 m2  ->  Z = 1.49500 m."""
    lat = al.volumetric_latent_heat_j_per_m3(0.25)
    assert lat == pytest.approx(8.35e7)
    assert al.stefan_depth_m(900.0, 1.2, 8.35e7) == pytest.approx(1.49500, abs=5e-6)
    # n-factor: air thawing index 1125 C*day with n_t = 0.8 is the same 900 at the surface
    assert al.stefan_depth_m(1125.0, 1.2, 8.35e7, n_factor=0.8) == pytest.approx(1.49500, abs=5e-6)
    out = al.stefan_depth_block(np.array([900.0]), np.array([1.2]), np.array([8.35e7]))
    assert out[0] == pytest.approx(1.49500, abs=5e-6)


def test_stefan_seasonal_freezing_hand_calculation():
    """Freezing depth in seasonally frozen ground: FDD = 1600 C*day at the surface,
    k_f = 1.8 W/m/K, theta = 0.20 with unfrozen water 0.04 -> L = 3.34e8 * 0.16 = 5.344e7 J/m3;
    Z^2 = 2 * 1.8 * 1600 * 86400 / 5.344e7 = 4.97664e8 / 5.344e7 = 9.31257 m2 -> Z = 3.05165 m.
    """
    lat = al.volumetric_latent_heat_j_per_m3(0.20, unfrozen_water_m3_per_m3=0.04)
    assert lat == pytest.approx(5.344e7)
    assert al.stefan_depth_m(1600.0, 1.8, lat) == pytest.approx(3.05165, abs=5e-5)


def test_stefan_monotone_and_scaling():
    idx = np.linspace(0.0, 3000.0, 31)
    z = al.stefan_depth_m(idx, 1.2, 8e7)
    assert z[0] == 0.0
    assert np.all(np.diff(z) > 0)  # deeper with a larger index
    # Z ~ sqrt(I): quadrupling the index doubles the depth
    assert al.stefan_depth_m(2000.0, 1.2, 8e7) == pytest.approx(
        2 * al.stefan_depth_m(500.0, 1.2, 8e7)
    )
    # wetter soil (more latent heat) thaws less deep; higher conductivity deeper
    assert al.stefan_depth_m(1000.0, 1.2, 1e8) < al.stefan_depth_m(1000.0, 1.2, 5e7)
    assert al.stefan_depth_m(1000.0, 2.0, 8e7) > al.stefan_depth_m(1000.0, 1.0, 8e7)


def test_stefan_block_nodata_dtype_and_broadcast():
    idx = np.array([[1000.0, np.nan], [-5.0, 0.0]], dtype=np.float32)
    k = np.float32(1.2)
    lat = np.array([8e7, 8e7], dtype=np.float32)
    out = al.stefan_depth_block(idx, k, lat)
    assert out.dtype == np.float32
    assert np.isnan(out[0, 1])
    assert out[1, 0] == 0.0 and out[1, 1] == 0.0
    np.testing.assert_allclose(out[0, 0], al.stefan_depth_m(1000.0, 1.2, 8e7), rtol=1e-6)
    assert np.isnan(al.stefan_depth_block(np.array([100.0]), np.array([np.nan]), 8e7)[0])
    assert np.isnan(al.stefan_depth_block(np.array([100.0]), np.array([1.0]), 0.0)[0])
    assert np.isnan(al.stefan_depth_m(np.nan, 1.2, 8e7))


def test_heat_capacity_de_vries():
    """rho_b = 1400 kg/m3, c_s = 870 J/kg/K, theta = 0.3:
    thawed 1400*870 + 1000*0.3*4180 = 1.218e6 + 1.254e6 = 2.472e6 J/m3/K;
    frozen 1.218e6 + 1000*0.3*2090 = 1.218e6 + 0.627e6 = 1.845e6 J/m3/K."""
    assert al.soil_volumetric_heat_capacity_j_per_m3_k(0.3, frozen=False) == pytest.approx(2.472e6)
    assert al.soil_volumetric_heat_capacity_j_per_m3_k(0.3, frozen=True) == pytest.approx(1.845e6)


# ------------------------------------------------------------------ Kudryavtsev: permamodel
#
# permamodel (CSDMS, https://github.com/permamodel/permamodel) publishes stage values of its
# Kudryavtsev model in permamodel/tests/test_Ku.py (commit
# c9f271139ca2545588ac24a542844e686e8f77bf; model permamodel/components/Ku.py, commit
# 0346b6109a6c23122e9229f31538daed0670d628), for cell [0, 0] of year 0 of the inputs in
# permamodel/data/test_directory/inputs with permamodel/examples/Ku_example_config.toml:
#   snow density 240 kg/m3, snow heat capacity 2090 J/kg/K, P = 31556926 s,
#   vegetation height 0.1 m (both seasons), diffusivity 2.39e-6 (frozen), 1.0556e-6 (thawed),
#   latent heat 3.34e5 J/kg (L_vol = 3.34e5 * 1e3 * vwc), 25 % each of sand/silt/clay/peat.
# Snow thickness of year 0 = 0.4465537 m (printed in
# permamodel/data/test_directory/inputs/prepare_input_data.ipynb).
# Published values (4 significant figures):
PM = dict(
    k_snow=0.08182,
    tau_cold=1.951e7,
    tau_warm=1.205e7,
    snow_insulation=5.610,
    snow_damping=3.571,
    t_vg=-1.297,
    a_vg=15.48,
    veg_winter=0.3051,
    veg_summer=0.4896,
    veg_damping=0.3756,
    veg_insulation=0.2391,
    t_gs=-1.058,
    a_gs=15.10,
    k_thawed=0.5880,
    k_frozen=1.0970,
    c_thawed=1.415e6,
    c_frozen=1.414e6,
    ttop=-3.006,
    a_z=8.783,
    z_c=0.7504,
    alt=1.226,
)
PM_PERIOD = 31556926.0
PM_SNOW_DEPTH = 0.4465537
# Air temperature and amplitude are not printed; they follow from the published stages:
# T_a = T_vg - snow insulation, A_a = A_vg + snow damping.
PM_MAAT = PM["t_vg"] - PM["snow_insulation"]  # -6.907 C
PM_AMP = PM["a_vg"] + PM["snow_damping"]  # 19.051 C


def _pm_water_content():
    """Soil water content of the test cell, not printed either: recovered from the published
    bulk conductivities with permamodel's mixing rule (Ku.py, update_soil_thermal_conductivity):
    k_t = k_dry,t^(1-w) 0.54^w, k_f = k_dry,f^(1-w) 2.35^(w-0.05) 0.54^0.05, k_dry the geometric
    mean of the four soils' dry conductivities (thawed 1.05, 1.05, 0.9, 0.14; frozen 1.25,
    1.25, 1.15, 0.32). The two estimates (0.3060, 0.3067) are averaged."""
    kd_t = (1.05 * 1.05 * 0.9 * 0.14) ** 0.25
    w_t = math.log(PM["k_thawed"] / kd_t) / math.log(0.54 / kd_t)
    kd_f = (1.25 * 1.25 * 1.15 * 0.32) ** 0.25
    # ln k_f = (1-w) ln kd_f + (w-0.05) ln 2.35 + 0.05 ln 0.54, solved for w
    w_f = (
        math.log(PM["k_frozen"]) - math.log(kd_f) + 0.05 * math.log(2.35) - 0.05 * math.log(0.54)
    ) / (math.log(2.35) - math.log(kd_f))
    assert abs(w_t - w_f) < 1e-3
    return 0.5 * (w_t + w_f)


def test_permamodel_snow_conductivity():
    """Sturm et al. (1997) eq. 4 at 240 kg/m3: 0.138 - 0.2424 + 0.1862 = 0.08182."""
    assert al.snow_thermal_conductivity_w_per_m_k(240.0) == pytest.approx(PM["k_snow"], rel=1e-4)


def test_permamodel_season_lengths():
    cold, warm = al.season_lengths_s(PM_MAAT, PM_AMP, PM_PERIOD)
    assert cold == pytest.approx(PM["tau_cold"], rel=1e-3)
    assert warm == pytest.approx(PM["tau_warm"], rel=1e-3)


def test_permamodel_snow_stage():
    k = al.snow_thermal_conductivity_w_per_m_k(240.0)
    kappa = al.snow_thermal_diffusivity_m2_per_s(k, 240.0, 2090.0)
    dt, da = al.snow_effect_c(PM_AMP, PM_SNOW_DEPTH, kappa, PM_PERIOD)
    assert dt == pytest.approx(PM["snow_insulation"], rel=1e-3)
    assert da == pytest.approx(PM["snow_damping"], rel=1e-3)


@pytest.fixture
def pm_vegetation():
    cold, warm = al.season_lengths_s(PM_MAAT, PM_AMP, PM_PERIOD)
    d1 = al.vegetation_season_damping_c(PM["a_vg"] - PM["t_vg"], 0.1, 2.39e-6, cold)
    d2 = al.vegetation_season_damping_c(PM["a_vg"] + PM["t_vg"], 0.1, 1.0556e-6, warm)
    return d1, d2, cold, warm


def test_permamodel_vegetation_and_surface_stage(pm_vegetation):
    d1, d2, cold, warm = pm_vegetation
    assert d1 == pytest.approx(PM["veg_winter"], rel=1e-3)
    assert d2 == pytest.approx(PM["veg_summer"], rel=1e-3)
    dt, da = al.vegetation_effect_c(d1, d2, cold, warm, PM_PERIOD, True)
    assert da == pytest.approx(PM["veg_damping"], rel=1e-3)
    assert dt == pytest.approx(PM["veg_insulation"], rel=1e-3)
    tg, ag = al.ground_surface_temperature_c(
        PM_MAAT, PM_AMP, PM["snow_insulation"], PM["snow_damping"], dt, da
    )
    assert tg == pytest.approx(PM["t_gs"], rel=1e-3)
    assert ag == pytest.approx(PM["a_gs"], rel=1e-3)


def test_vegetation_sign_published_vs_permamodel(pm_vegetation):
    """Published dT_v = (2/pi)(dA1 tau1 - dA2 tau2)/P. By hand from the published permamodel
    stages: dA1 tau1 = 0.3051 * 1.951e7 = 5.9525e6, dA2 tau2 = 0.4896 * 1.205e7 = 5.8997e6,
    (5.9525e6 - 5.8997e6) / 31556926 * 2/pi = 0.00107 C (permamodel's Ku.py: +0.2391 C)."""
    d1, d2, cold, warm = pm_vegetation
    dt_pub, da_pub = al.vegetation_effect_c(d1, d2, cold, warm, PM_PERIOD, False)
    dt_pm, da_pm = al.vegetation_effect_c(d1, d2, cold, warm, PM_PERIOD, True)
    assert da_pub == da_pm
    assert dt_pub == pytest.approx(0.00107, abs=1.5e-4)
    assert dt_pm == pytest.approx(0.2391, rel=1e-3)


def test_permamodel_ttop_and_published_form():
    """TTOP from the published surface stage (T_gs = -1.058, A_gs = 15.10, k_t = 0.5880,
    k_f = 1.0970). permamodel form (sqrt(1 - pi^2/A^2)) gives its published -3.006.
    Published form (Anisimov et al. 1997 eq. 14, sqrt(1 - T^2/A^2)), by hand:
      r = T/A = -0.0700662, arcsin r = -0.0701236, r arcsin r = 0.0049133,
      sqrt(1 - r^2) = 0.9975423, bracket = 1.0024556,
      A (k_t - k_f)/pi = 15.10 * (-0.509) / pi = -2.446498, times bracket = -2.452506,
      0.5 T (k_f + k_t) = -0.891365, numerator = -3.343871 < 0 -> divide by k_f:
      TTOP = -3.343871 / 1.0970 = -3.04820 C."""
    pm = al.ttop_kudryavtsev_c(PM["t_gs"], PM["a_gs"], PM["k_thawed"], PM["k_frozen"], True)
    pub = al.ttop_kudryavtsev_c(PM["t_gs"], PM["a_gs"], PM["k_thawed"], PM["k_frozen"], False)
    assert pm == pytest.approx(PM["ttop"], rel=1e-3)
    assert pub == pytest.approx(-3.04820, abs=2e-5)


def test_permamodel_active_layer_stage():
    """Romanovsky & Osterkamp (1997) eqs. 3-5 from the published stage values. permamodel uses
    the frozen properties (k_f = 1.097, C_f = 1.414e6) where TTOP < 0; the water content is
    reconstructed (see _pm_water_content), hence the 0.2 % tolerance on the depths."""
    w = _pm_water_content()
    lat = 3.34e5 * 1e3 * w
    az = al.permafrost_table_amplitude_c(PM["a_gs"], PM["ttop"], PM["c_frozen"], lat)
    assert az == pytest.approx(PM["a_z"], rel=1e-3)
    zc = al.critical_depth_m(
        PM["a_gs"], PM["ttop"], az, PM["k_frozen"], PM["c_frozen"], lat, PM_PERIOD
    )
    assert zc == pytest.approx(PM["z_c"], rel=2e-3)
    z = al.kudryavtsev_depth_m(
        PM["a_gs"], PM["ttop"], az, zc, PM["k_frozen"], PM["c_frozen"], lat, PM_PERIOD
    )
    assert z == pytest.approx(PM["alt"], rel=2e-3)
    assert (
        al.kudryavtsev_depth_from_surface_m(
            PM["a_gs"], PM["ttop"], PM["k_frozen"], PM["c_frozen"], lat, PM_PERIOD
        )
        == z
    )


def test_permamodel_end_to_end_and_published_differs():
    """The whole chain with form='permamodel' reproduces permamodel's TTOP and ALT from the
    reconstructed inputs; form='published' gives a colder TTOP (-3.05 instead of -3.01 with
    the same surface forcing), a colder surface (vegetation sign) and a thinner active layer
    (thawed instead of frozen conductivity)."""
    w = _pm_water_content()
    common = dict(
        k_thawed_w_per_m_k=PM["k_thawed"],
        k_frozen_w_per_m_k=PM["k_frozen"],
        c_thawed_j_per_m3_k=PM["c_thawed"],
        c_frozen_j_per_m3_k=PM["c_frozen"],
        latent_heat_j_per_m3=3.34e8 * w,
        snow_depth_m=PM_SNOW_DEPTH,
        snow_density_kg_per_m3=240.0,
        veg_height_frozen_m=0.1,
        veg_height_thawed_m=0.1,
        veg_diffusivity_frozen_m2_per_s=2.39e-6,
        veg_diffusivity_thawed_m2_per_s=1.0556e-6,
        period_s=PM_PERIOD,
    )
    pm = al.kudryavtsev(PM_MAAT, PM_AMP, form="permamodel", **common)
    assert float(pm.ground_surface_temperature_c) == pytest.approx(PM["t_gs"], rel=2e-3)
    assert float(pm.ground_surface_amplitude_c) == pytest.approx(PM["a_gs"], rel=1e-3)
    assert float(pm.ttop_c) == pytest.approx(PM["ttop"], rel=2e-3)
    assert float(pm.depth_m) == pytest.approx(PM["alt"], rel=3e-3)
    pub = al.kudryavtsev(PM_MAAT, PM_AMP, form="published", **common)
    assert float(pub.ground_surface_amplitude_c) == float(pm.ground_surface_amplitude_c)
    assert float(pub.ground_surface_temperature_c) < float(pm.ground_surface_temperature_c)
    assert float(pub.ttop_c) < float(pm.ttop_c)
    assert float(pub.depth_m) < float(pm.depth_m)
    with pytest.raises(ValueError):
        al.kudryavtsev(PM_MAAT, PM_AMP, form="other", **common)


# ------------------------------------------------------------------ Kudryavtsev: analytic


def test_ttop_no_offset_when_conductivities_equal():
    """k_t = k_f: the second term vanishes and TTOP = T_gs (no thermal offset), both forms."""
    for form in (False, True):
        assert al.ttop_kudryavtsev_c(-2.0, 12.0, 1.5, 1.5, form) == pytest.approx(-2.0)
        assert al.ttop_kudryavtsev_c(1.3, 12.0, 1.5, 1.5, form) == pytest.approx(1.3)


def test_ttop_thermal_offset_sign_and_limits():
    """k_t < k_f (the usual case) gives a negative thermal offset: TTOP < T_gs. When the
    surface never thaws (T_gs = -A_gs) the published numerator is
    0.5 T (k_f + k_t) + A (k_t - k_f)/pi * (1 * pi/2 + 0) = T k_f, so TTOP = T_gs; beyond
    (T_gs < -A_gs) there is no thaw and no thermal offset."""
    assert al.ttop_kudryavtsev_c(-1.0, 12.0, 1.0, 1.8) < -1.0
    assert al.ttop_kudryavtsev_c(1.0, 12.0, 1.0, 1.8) < 1.0
    assert al.ttop_kudryavtsev_c(-14.0, 12.0, 1.0, 1.8) == pytest.approx(-14.0)
    assert al.ttop_kudryavtsev_c(-12.0, 12.0, 1.0, 1.8) == pytest.approx(-12.0)
    # continuous at T_gs -> -A_gs: the sqrt term is A (k_t-k_f)/pi sqrt(2 eps / A) / k_f,
    # 7e-5 C for eps = 1e-8
    assert al.ttop_kudryavtsev_c(-12.0 + 1e-8, 12.0, 1.0, 1.8) == pytest.approx(-12.0, abs=2e-4)
    assert al.ttop_kudryavtsev_c(14.0, 12.0, 1.0, 1.8) == pytest.approx(14.0)
    # permamodel's form is undefined (NaN) for A < pi; the published one is not
    assert math.isnan(al.ttop_kudryavtsev_c(-1.0, 3.0, 1.0, 1.8, True))
    assert not math.isnan(al.ttop_kudryavtsev_c(-1.0, 3.0, 1.0, 1.8, False))


def test_ttop_sign_changes_with_numerator():
    """TTOP is continuous through 0 and changes sign where the numerator does; with
    k_t/k_f = 0.6 a slightly positive surface temperature still gives permafrost."""
    t = np.linspace(-3.0, 3.0, 601)
    ttop = np.array([al.ttop_kudryavtsev_c(x, 12.0, 0.9, 1.5) for x in t])
    assert np.all(np.diff(ttop) > 0)
    t0 = t[np.argmax(ttop >= 0)]
    assert 0.0 < t0 < 3.0


def test_dry_soil_limit_is_damped_wave_depth():
    """With no latent heat (L = 0) the Kudryavtsev depth is where the damped annual wave
    A exp(-z sqrt(pi C/(k P))) falls to |TTOP| (Carslaw & Jaeger 1959, periodic surface
    temperature): z = sqrt(k P / (pi C)) ln(A / |TTOP|); and A_z is then the logarithmic mean
    (A - |T|) / ln(A / |T|)."""
    a, t, k, c, p = 14.0, -1.5, 1.3, 2.0e6, 31556926.0
    az = al.permafrost_table_amplitude_c(a, t, c, 0.0)
    assert az == pytest.approx((a - 1.5) / math.log(a / 1.5))
    z = al.kudryavtsev_depth_from_surface_m(a, t, k, c, 0.0, p)
    assert z == pytest.approx(math.sqrt(k * p / (math.pi * c)) * math.log(a / 1.5), rel=1e-12)


def test_large_latent_heat_limit_of_permafrost_table_amplitude():
    """For x = L/(2C) >> A: with e = (A - |T|)/(|T| + x), 1/ln(1 + e) = 1/e + 1/2 - e/12 + ...
    gives A_z = (A_gs + |TTOP|)/2 - (A - |T|)^2 / (12 (|T| + x)) + ... -> (A_gs + |TTOP|)/2.
    Here x = 5e6 C, so the correction is 2.6e-6 C."""
    a_z = al.permafrost_table_amplitude_c(14.0, -1.5, 1.0, 1e7)
    assert a_z == pytest.approx((14.0 + 1.5) / 2.0, rel=1e-5)


def test_kudryavtsev_depth_monotone():
    p = 31556926.0
    k, c, lat = 1.2, 2.3e6, 1.0e8
    amps = np.linspace(4.0, 20.0, 17)
    z = [al.kudryavtsev_depth_from_surface_m(a, -2.0, k, c, lat, p) for a in amps]
    assert np.all(np.diff(z) > 0)  # larger surface amplitude (warmer summer) -> deeper
    lats = np.linspace(2e7, 1.5e8, 12)
    z = [al.kudryavtsev_depth_from_surface_m(12.0, -2.0, k, c, x, p) for x in lats]
    assert np.all(np.diff(z) < 0)  # wetter -> shallower
    ttops = np.linspace(-6.0, -0.1, 12)
    z = [al.kudryavtsev_depth_from_surface_m(12.0, x, k, c, lat, p) for x in ttops]
    assert np.all(np.diff(z) > 0)  # warmer permafrost -> deeper active layer
    # the 0 C isotherm never enters the ground when A_gs <= |TTOP|
    assert al.kudryavtsev_depth_from_surface_m(3.0, -3.0, k, c, lat, p) == 0.0
    assert al.kudryavtsev_depth_from_surface_m(2.0, -3.0, k, c, lat, p) == 0.0


def test_kudryavtsev_array_chain_matches_stages_and_picks_properties():
    """The array kernel equals the stage functions chained by hand, uses thawed properties
    for ALT (TTOP < 0) and frozen ones for seasonal freezing (TTOP >= 0) in the published
    form, and propagates NaN."""
    maat = np.array([[-5.0, 3.0], [np.nan, -2.0]])
    amp = np.array([[13.0, 13.0], [13.0, 12.0]])
    kw = dict(
        k_thawed_w_per_m_k=1.1,
        k_frozen_w_per_m_k=1.7,
        c_thawed_j_per_m3_k=2.5e6,
        c_frozen_j_per_m3_k=1.9e6,
        latent_heat_j_per_m3=8e7,
        snow_depth_m=0.1,
        snow_density_kg_per_m3=200.0,
    )
    res = al.kudryavtsev(maat, amp, **kw)
    assert res.ttop_c.shape == (2, 2)
    assert np.isnan(res.ttop_c[1, 0]) and np.isnan(res.depth_m[1, 0])
    for i, j in ((0, 0), (0, 1), (1, 1)):
        ta, aa = maat[i, j], amp[i, j]
        ksn = al.snow_thermal_conductivity_w_per_m_k(200.0)
        dsn = al.snow_thermal_diffusivity_m2_per_s(ksn, 200.0, 2090.0)
        dt, da = al.snow_effect_c(aa, 0.1, dsn, al.SECONDS_PER_YEAR)
        tg, ag = al.ground_surface_temperature_c(ta, aa, dt, da, 0.0, 0.0)
        tt = al.ttop_kudryavtsev_c(tg, ag, 1.1, 1.7)
        if tt < 0:
            z = al.kudryavtsev_depth_from_surface_m(ag, tt, 1.1, 2.5e6, 8e7)
        else:
            z = al.kudryavtsev_depth_from_surface_m(ag, tt, 1.7, 1.9e6, 8e7)
        assert res.ground_surface_temperature_c[i, j] == pytest.approx(tg)
        assert res.ttop_c[i, j] == pytest.approx(tt)
        assert res.depth_m[i, j] == pytest.approx(z)
    assert res.ttop_c[0, 0] < 0 < res.ttop_c[0, 1]


def test_kudryavtsev_warmer_climate_deeper_active_layer():
    maat = np.linspace(-8.0, -3.0, 11)
    res = al.kudryavtsev(
        maat,
        12.0,
        k_thawed_w_per_m_k=1.2,
        k_frozen_w_per_m_k=1.6,
        c_thawed_j_per_m3_k=2.4e6,
        c_frozen_j_per_m3_k=1.8e6,
        latent_heat_j_per_m3=8e7,
    )
    assert np.all(res.ttop_c < 0)
    assert np.all(np.diff(res.ttop_c) > 0)
    assert np.all(np.diff(res.depth_m) > 0)


def test_no_snow_no_vegetation_surface_equals_air():
    res = al.kudryavtsev(
        -4.0,
        12.0,
        k_thawed_w_per_m_k=1.2,
        k_frozen_w_per_m_k=1.6,
        c_thawed_j_per_m3_k=2.4e6,
        c_frozen_j_per_m3_k=1.8e6,
        latent_heat_j_per_m3=8e7,
    )
    assert float(res.ground_surface_temperature_c) == -4.0
    assert float(res.ground_surface_amplitude_c) == 12.0
