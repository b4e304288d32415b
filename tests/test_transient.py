"""Tests of the transient 1-D heat-conduction model against analytic solutions and conservation.

Every expected value comes from an analytic solution or a conservation law (cited per test), never
from the model's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import erf, erfc

from permamap import transient as tr
from permamap.errors import ConfigError

DAY_S = 86400.0
YEAR_S = 365 * DAY_S
OMEGA = 2 * np.pi / YEAR_S

# A "sharp" freezing characteristic: all water freezes between -0.001 and -0.0012 C, so the
# analytic solutions for isothermal phase change at T_m = T_f apply.
SHARP = dict(freeze_onset_c=-1e-3, unfrozen_exponent=20.0)


def _params(**kw):
    base = dict(
        water_content=0.30, porosity=0.35, k_frozen_w_per_m_k=1.9, k_thawed_w_per_m_k=1.3,
        c_frozen_j_per_m3_k=1.9e6, c_thawed_j_per_m3_k=2.5e6, geothermal_flux_w_per_m2=0.0,
    )
    base.update(kw)
    return tr.ColumnParams(**base)


# ------------------------------------------------------------------------------------------
# Constitutive relations
# ------------------------------------------------------------------------------------------


def test_grid_geometry():
    g = tr.make_grid(50.0, 0.05, 1.2)
    assert g.depth_m == pytest.approx(50.0)
    assert g.dz_m[0] == pytest.approx(0.05)
    assert np.all(np.diff(g.dz_m[:-1]) >= 0) and g.dz_m.max() <= 1.5 * 5.0
    assert np.allclose(g.z_center_m, np.cumsum(g.dz_m) - g.dz_m / 2)
    with pytest.raises(ConfigError):
        tr.make_grid(-1.0)


def test_freezing_characteristic_power_law():
    # theta_u = a |T|^-b with a = theta_w |T_f|^b (Anderson & Tice 1972): f = (|T_f|/|T|)^b.
    t = np.array([5.0, 0.0, -0.02, -0.1, -1.0, -5.0])
    f = tr.unfrozen_water_fraction(t, -0.02, 0.5)
    expected = np.array([1, 1, 1, (0.02 / 0.1) ** 0.5, 0.02**0.5, (0.02 / 5) ** 0.5])
    assert np.allclose(f, expected, rtol=1e-12)
    with pytest.raises(ConfigError):
        tr.unfrozen_water_fraction(t, 0.0, 0.5)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 2.0])
def test_enthalpy_derivative_inverse_and_kirchhoff(exponent):
    cf, ct, th, tf = 1.9e6, 2.5e6, 0.3, -0.05
    t = np.concatenate([np.linspace(-20, -0.06, 200), np.linspace(-0.049, 10, 50)])
    h = tr.enthalpy_j_per_m3(t, cf, ct, th, tf, exponent)
    c = tr.apparent_heat_capacity_j_per_m3_k(t, cf, ct, th, tf, exponent)
    # dH/dT by central differences equals the apparent heat capacity.
    eps = 1e-6
    num = (tr.enthalpy_j_per_m3(t + eps, cf, ct, th, tf, exponent)
           - tr.enthalpy_j_per_m3(t - eps, cf, ct, th, tf, exponent)) / (2 * eps)
    assert np.allclose(num, c, rtol=1e-5)
    # Sensible + latent parts: H = int C_sens dT + L theta_w f, with L = 3.34e8 J m-3.
    lv = 3.34e8
    hf = ct * tf + lv * th
    assert tr.enthalpy_j_per_m3(tf, cf, ct, th, tf, exponent) == pytest.approx(hf)
    assert np.allclose(h[t >= tf], ct * t[t >= tf] + lv * th)
    # Total latent heat released between T_f and -infinity: L theta_w.
    cold = -1e6 if exponent > 0.6 else -1e12
    h_cold = tr.enthalpy_j_per_m3(cold, cf, cf, th, tf, exponent)  # C_t = C_f: only latent
    assert (cf * tf + lv * th) - h_cold - cf * (tf - cold) == pytest.approx(lv * th, rel=2e-3)
    # Inverse.
    assert np.allclose(tr.temperature_from_enthalpy_c(h, cf, ct, th, tf, exponent), t,
                       atol=1e-9)
    # Kirchhoff transform: dU/dT = k(T).
    kf, kt = 1.9, 1.3
    u = tr.kirchhoff_potential_w_per_m(t, kf, kt, tf, exponent)
    du = (tr.kirchhoff_potential_w_per_m(t + eps, kf, kt, tf, exponent)
          - tr.kirchhoff_potential_w_per_m(t - eps, kf, kt, tf, exponent)) / (2 * eps)
    assert np.allclose(du, tr.mixed_conductivity_w_per_m_k(t, kf, kt, tf, exponent), rtol=1e-5)
    assert tr.kirchhoff_potential_w_per_m(0.0, kf, kt, tf, exponent) == 0.0
    assert np.all(np.diff(u) > 0)


def test_bulk_properties_mixing_rules():
    # de Vries (1963): C = (1 - phi) C_s + theta C_w ; geometric mean (Johansen 1975).
    assert tr.bulk_heat_capacity_j_per_m3_k(0.4, 0.4, False, 2.0e6) == pytest.approx(
        0.6 * 2.0e6 + 0.4 * 4.18e6)
    assert tr.bulk_heat_capacity_j_per_m3_k(0.4, 0.4, True, 2.0e6) == pytest.approx(
        0.6 * 2.0e6 + 0.4 * 1.93e6)
    assert tr.geometric_mean_conductivity_w_per_m_k(0.4, 0.4, True, 3.0) == pytest.approx(
        3.0**0.6 * 2.2**0.4)
    with pytest.raises(ConfigError):
        tr.geometric_mean_conductivity_w_per_m_k(0.3, 0.4)


# ------------------------------------------------------------------------------------------
# Conduction without phase change: the damped, lagged annual wave
# ------------------------------------------------------------------------------------------


def test_annual_temperature_wave():
    """Periodic surface temperature on a homogeneous half-space (Carslaw & Jaeger 1959, Conduction
    of Heat in Solids, sec. 2.6; Williams & Smith 1989, The Frozen Earth):

        T(z, t) = T_mean + A0 exp(-z/d) cos(omega t - z/d),   d = sqrt(2 kappa / omega)

    i.e. the amplitude decays as A0 exp(-z/d) and the wave lags by z / (omega d).
    The ground never freezes (mean 10 C, amplitude 8 C), and there is no geothermal flux.
    """
    grid = tr.make_grid()
    params = _params()
    kappa = 1.3 / 2.5e6
    d = np.sqrt(2 * kappa / OMEGA)
    a0, mean = 8.0, 10.0
    ts = tr.sinusoidal_annual_cycle_c(mean, a0, 4)[None]
    depths = np.array([0.25, 0.5, 1.0, 2.0, 3.0, 5.0])
    res = tr.run_columns(ts, params, grid, initial_temperature_c=mean, record_depths_m=depths)
    last = res.recorded_c[0, -365:]
    t_days = np.arange(365) + 0.5
    w = 2 * np.pi / 365
    design = np.column_stack([np.ones(365), np.cos(w * (t_days - 196)), np.sin(w * (t_days - 196))])
    coef = np.linalg.lstsq(design, last, rcond=None)[0]
    amp = np.hypot(coef[1], coef[2])
    lag_days = np.arctan2(coef[2], coef[1]) / w
    assert np.allclose(amp, a0 * np.exp(-depths / d), rtol=0.02)
    assert np.allclose(lag_days, depths / (OMEGA * d) / DAY_S, atol=2.0)
    assert np.allclose(coef[0], mean, atol=0.02)


# ------------------------------------------------------------------------------------------
# Phase change: the Neumann (Stefan) solution for a thawing front
# ------------------------------------------------------------------------------------------


def _neumann_lambda(st_l, st_s, nu):
    """Root of the two-phase Neumann equation for melting of a half-space initially at T_i < T_m
    with the surface held at T_s > T_m (Carslaw & Jaeger 1959, sec. 11.2; Alexiades & Solomon
    1993, Mathematical Modeling of Melting and Freezing Processes):

        St_l / (exp(lam^2) erf(lam)) - St_s / (nu exp(nu^2 lam^2) erfc(nu lam)) = lam sqrt(pi)

    St_l = C_t (T_s - T_m) / L, St_s = C_f (T_m - T_i) / L, nu = sqrt(kappa_t / kappa_f); the
    front is at X(t) = 2 lam sqrt(kappa_t t).
    """
    def f(lam):
        return (st_l / (np.exp(lam**2) * erf(lam))
                - st_s / (nu * np.exp(nu**2 * lam**2) * erfc(nu * lam)) - lam * np.sqrt(np.pi))
    return brentq(f, 1e-6, 5.0)


@pytest.mark.parametrize("t_initial", [-0.05, -2.0])
def test_neumann_thawing_front(t_initial):
    kf, kt, cf, ct, th = 1.9, 1.3, 1.9e6, 2.5e6, 0.3
    params = _params(**SHARP)
    grid = tr.make_grid(20.0)
    t_surface, n_days = 5.0, 365
    res = tr.run_columns(
        np.full((1, n_days), t_surface), params, grid, initial_temperature_c=t_initial,
        steps_per_year=n_days, record_depths_m=grid.z_center_m, magt_depth_m=1.0,
    )
    temp = res.recorded_c[0]  # cell temperatures, (days, layers)
    # Front position = thawed thickness = sum of liquid fractions x thickness (enthalpy method).
    f = tr.unfrozen_water_fraction(temp, SHARP["freeze_onset_c"], SHARP["unfrozen_exponent"])
    x_model = (f * grid.dz_m).sum(axis=1)
    tm = SHARP["freeze_onset_c"]
    lv = 3.34e8 * th
    lam = _neumann_lambda(ct * (t_surface - tm) / lv, cf * (tm - t_initial) / lv,
                          np.sqrt((kt / ct) / (kf / cf)))
    t_s = (np.arange(n_days) + 1) * DAY_S
    x_exact = 2 * lam * np.sqrt(kt / ct * t_s)
    days = np.array([10, 30, 100, 200, 364])
    # Within 1 % + 1 cm (the front cell is ~0.1-0.4 m thick here).
    assert np.all(np.abs(x_model[days] - x_exact[days]) <= 0.01 + 0.01 * x_exact[days])


# ------------------------------------------------------------------------------------------
# Conservation of energy
# ------------------------------------------------------------------------------------------


def test_energy_conservation():
    """sum_i dz_i (H_i(end) - H_i(start)) = int (surface flux + geothermal flux) dt, with H from
    the public enthalpy function on the start and end temperature profiles (first law)."""
    grid = tr.make_grid(30.0)
    rng = np.random.default_rng(1)
    n_years = 5
    ts = tr.sinusoidal_annual_cycle_c(np.array([-3.0, -0.5, 1.0]), 12.0, n_years)
    ts = ts + rng.normal(0.0, 3.0, ts.shape)
    params = tr.ColumnParams(geothermal_flux_w_per_m2=0.08)
    t0 = np.linspace(-2.0, 1.0, grid.n_layers)[None, :] * np.ones((3, 1))
    res = tr.run_columns(ts, params, grid, initial_temperature_c=t0)
    p = params.cell_arrays(grid, 3)

    def column_energy(temp):
        h = tr.enthalpy_j_per_m3(temp, p["cf"], p["ct"], p["theta"], -0.02, 0.5)
        return (h * grid.dz_m).sum(axis=1)

    gained = column_energy(res.temperature_c) - column_energy(t0)
    supplied = res.energy_in_top_j_per_m2 + res.energy_in_base_j_per_m2
    assert np.allclose(res.energy_in_base_j_per_m2, 0.08 * n_years * YEAR_S)
    # The seasonal throughput is ~1e8 J m-2; the balance closes to round-off.
    scale = np.abs(column_energy(t0))
    assert np.all(np.abs(gained - supplied) < 1e-9 * scale)
    assert np.all(np.abs(gained) > 1e6)  # a real change, not a trivial balance


# ------------------------------------------------------------------------------------------
# Steady states
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t_surface,k", [(3.0, 1.3), (-5.0, 1.9)])
def test_steady_geotherm_linear(t_surface, k):
    """Constant surface temperature and geothermal flux q: T(z) = T_s + q z / k (Fourier's law;
    Carslaw & Jaeger 1959). Thawed (k_t) or frozen with a sharp curve (k_f)."""
    q = 0.06
    grid = tr.make_grid(40.0)
    params = _params(geothermal_flux_w_per_m2=q, **SHARP)
    n_years = 600  # monthly steps; diffusion time L^2/kappa ~ 50 years
    ts = np.full((1, 12 * n_years), t_surface)
    res = tr.run_columns(ts, params, grid, initial_temperature_c=t_surface, dt_s=YEAR_S / 12,
                         steps_per_year=12)
    assert np.allclose(res.temperature_c[0], t_surface + q * grid.z_center_m / k, atol=2e-3)
    # The spin-up start state is this geotherm directly.
    geo = tr.spin_up(ts[:, :12], params, grid, dt_s=YEAR_S / 12).temperature_c[0]
    assert np.allclose(geo, t_surface + q * grid.z_center_m / k, atol=1e-6)


def test_steady_geotherm_two_layers():
    """Soil over bedrock: flux continuity gives gradients q/k_soil above and q/k_rock below
    (Carslaw & Jaeger 1959, composite slab)."""
    q, ts_c, k_soil, k_rock, z_rock = 0.06, 4.0, 1.3, 3.0, 6.0
    grid = tr.make_grid(40.0)
    params = _params(geothermal_flux_w_per_m2=q, k_thawed_w_per_m_k=k_soil,
                     bedrock_depth_m=z_rock, bedrock_conductivity_w_per_m_k=k_rock,
                     bedrock_water_content=0.0)
    geo = tr.spin_up(np.full((1, 12), ts_c), params, grid, dt_s=YEAR_S / 12).temperature_c[0]
    z = grid.z_center_m
    rock = z >= z_rock
    z_if = grid.z_top_m[np.argmax(rock)]  # the interface is a cell face
    expected = np.where(rock, ts_c + q * z_if / k_soil + q * (z - z_if) / k_rock,
                        ts_c + q * z / k_soil)
    assert np.allclose(geo, expected, atol=1e-9)
    res = tr.run_columns(np.full((1, 12 * 50), ts_c), params, grid, initial_temperature_c=geo,
                         dt_s=YEAR_S / 12, steps_per_year=12)
    assert np.allclose(res.temperature_c[0], expected, atol=1e-6)


def _ttop_c(surface_daily_c, k_frozen, k_thawed):
    """TTOP = (r_k n_t TDD - n_f FDD) / P with r_k = k_t / k_f (Smith & Riseborough 2002,
    doi:10.1002/ppp.410), degree-days of the surface temperature itself (n = 1)."""
    tdd = np.clip(surface_daily_c, 0, None).sum(axis=-1)
    fdd = np.clip(-surface_daily_c, 0, None).sum(axis=-1)
    return (k_thawed / k_frozen * tdd - fdd) / 365.0


def test_transient_matches_equilibrium_ttop():
    """After spin-up and a long run with a constant (periodic) climate, MAGT at depth z in
    permafrost equals TTOP + q z / k_f: the annual-mean heat flux is q at every depth, so the mean
    Kirchhoff potential is linear in depth (Romanovsky & Osterkamp 1995; Smith & Riseborough
    2002). Sharp freezing curve, so conductivity is k_t above and k_f below 0 C."""
    kf, kt, q = 1.9, 1.3, 0.06
    grid = tr.make_grid()
    iz = int(np.argmin(np.abs(grid.z_center_m - 15.0)))
    z = grid.z_center_m[iz]
    params = _params(geothermal_flux_w_per_m2=q, **SHARP)
    means = np.array([-5.0, -2.0, -0.5, 0.5])
    base = tr.sinusoidal_annual_cycle_c(means, 11.0, 1)
    res = tr.run_columns(np.tile(base, 40), params, grid, magt_depth_m=z)
    expected = _ttop_c(base, kf, kt) + q * z / kf
    assert np.all(expected < 0)  # all permafrost at z
    assert np.allclose(res.magt_c[:, 0], expected, atol=0.01)
    assert np.allclose(res.magt_c[:, -1], expected, atol=0.01)


def test_transient_matches_equilibrium_unfrozen_water():
    """Same with the default (smooth) freezing curve: mean U(T(z)) = mean U(T_s) + q z, so MAGT at a
    depth below the annual wave is U^-1(mean U(T_s) + q z); U from the closed-form Kirchhoff
    transform, inverted here by root finding."""
    params = tr.ColumnParams()
    grid = tr.make_grid()
    p = params.cell_arrays(grid, 1)
    kf, kt = p["kf"][0, 0], p["kt"][0, 0]
    iz = int(np.argmin(np.abs(grid.z_center_m - 15.0)))
    z = grid.z_center_m[iz]
    means = np.array([-4.0, -1.0, 0.5, 3.0])
    base = tr.sinusoidal_annual_cycle_c(means, 10.0, 1)
    res = tr.run_columns(np.tile(base, 30), params, grid, magt_depth_m=z)
    u_s = tr.kirchhoff_potential_w_per_m(base, kf, kt).mean(axis=1)
    expected = [
        brentq(lambda t, u=u: tr.kirchhoff_potential_w_per_m(t, kf, kt) - u, -30, 30)
        for u in u_s + 0.06 * z
    ]
    assert np.allclose(res.magt_c[:, 0], expected, atol=0.005)
    assert np.allclose(res.magt_c[:, -1], expected, atol=0.005)


# ------------------------------------------------------------------------------------------
# Diagnostics and behaviour under warming
# ------------------------------------------------------------------------------------------


def test_annual_diagnostics_on_constructed_envelopes():
    z = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    # Permafrost table between 1.5 (max +1) and 2.5 (max -1): ALT = 2.0 by linear interpolation.
    alt, pf, talik, sfd = tr.annual_diagnostics(
        z, [5, 1, -1, -2, -2], [-10, -5, -3, -2.5, -2.2], 12, -15)
    assert pf and not talik and alt == pytest.approx(2.0) and np.isnan(sfd)
    # Talik: cell at 2.5 m never froze, seasonal frost reaches 2.0 m; permafrost table 3.5 + 1/3.
    alt, pf, talik, sfd = tr.annual_diagnostics(
        z, [6, 3, 1, 0.5, -1], [-6, -1, 1, 0.5, -1.2], 12, -15)
    assert pf and talik
    assert alt == pytest.approx(3.5 + 0.5 / 1.5)
    assert sfd == pytest.approx(2.0)
    # Seasonally frozen ground only: frost depth where min crosses 0 (1.5 + 1 * 1/2 = 2.0).
    alt, pf, talik, sfd = tr.annual_diagnostics(
        z, [9, 8, 7, 6, 5], [-4, -1, 1, 2, 3], 12, -15)
    assert not pf and not talik and np.isnan(alt) and sfd == pytest.approx(2.0)


def test_warming_degrades_permafrost_monotonically():
    """Under a warming ramp, a warm permafrost column warms, its active layer deepens and it never
    gains permafrost; without warming it stays put."""
    grid = tr.make_grid()
    years = 60
    ts = tr.surface_temperature_daily(years, mean_c=np.array([-1.0, -1.0]), amplitude_c=11.0,
                                      warming_c=np.array([0.0, 4.0]), ramp_start_year=5,
                                      ramp_end_year=55)
    res = tr.run_columns(ts, None, grid)
    assert np.ptp(res.magt_c[0]) < 0.01 and np.ptp(res.alt_m[0]) < 0.05
    warm = res.magt_c[1]
    assert warm[-1] > warm[0] + 0.5
    assert np.all(np.diff(warm[5:]) > -1e-3)
    alt = np.where(np.isnan(res.alt_m[1]), np.inf, res.alt_m[1])
    assert alt[-1] > alt[0] + 0.3
    assert np.all(np.diff(alt) > -0.02)


def test_columns_are_independent_and_deterministic():
    grid = tr.make_grid()
    ts = tr.sinusoidal_annual_cycle_c(np.array([-3.0, -1.0, 0.0, 2.0]), 10.0, 3)
    t0 = np.zeros(grid.n_layers)
    all_cols = tr.run_columns(ts, None, grid, initial_temperature_c=t0)
    one = tr.run_columns(ts[2:3], None, grid, initial_temperature_c=t0)
    assert np.array_equal(all_cols.magt_c[2], one.magt_c[0])
    assert np.array_equal(all_cols.temperature_c[2], one.temperature_c[0])
    again = tr.run_columns(ts, None, grid, initial_temperature_c=t0)
    assert np.array_equal(again.magt_c, all_cols.magt_c)
    # Per-column parameters equal separate runs with scalar parameters.
    theta = np.array([0.1, 0.2, 0.3, 0.35])
    mixed = tr.run_columns(ts, tr.ColumnParams(water_content=theta), grid, initial_temperature_c=t0)
    single = tr.run_columns(ts[1:2], tr.ColumnParams(water_content=0.2), grid,
                            initial_temperature_c=t0)
    assert np.array_equal(mixed.magt_c[1], single.magt_c[0])


# ------------------------------------------------------------------------------------------
# Surface forcing
# ------------------------------------------------------------------------------------------


def test_surface_forcing_helpers():
    # Sinusoid: mean and half-range as given, warmest on the given day.
    s = tr.sinusoidal_annual_cycle_c(np.array([-2.0]), 10.0, 2)
    assert s.shape == (1, 730)
    assert s.mean() == pytest.approx(-2.0, abs=1e-9)
    assert s.max() - s.min() == pytest.approx(20.0, abs=0.01)
    assert int(np.argmax(s[0, :365])) in (195, 196)
    # n-factors (Lunardini 1978): surface degree-days = n x air degree-days, exactly.
    ts = tr.apply_n_factors(s, np.array([0.8]), np.array([0.5]))
    assert np.clip(ts, 0, None).sum() == pytest.approx(0.8 * np.clip(s, 0, None).sum())
    assert np.clip(-ts, 0, None).sum() == pytest.approx(0.5 * np.clip(-s, 0, None).sum())
    # Linear warming: 0 before the start, warming_c after the end, half-way in the middle.
    w = tr.linear_warming_c(10, np.array([2.0]), start_year=2, end_year=8)[0]
    assert np.all(w[: 2 * 365] == 0) and np.all(w[8 * 365:] == 2.0)
    assert w[5 * 365] == pytest.approx(1.0, abs=0.01)
    # Monthly: passes through the monthly means at mid-month and is periodic.
    monthly = np.array([-12, -9, -3, 2, 7, 11, 13, 12, 8, 2, -5, -10], float)
    daily = tr.monthly_to_daily_c(monthly, 1)
    mid = (np.cumsum([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
           - 0.5 * np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]))
    for m in (0, 6, 11):
        day = int(np.floor(mid[m] - 0.5))
        assert daily[day] == pytest.approx(monthly[m], abs=0.3)
    assert daily.mean() == pytest.approx(monthly.mean(), abs=0.2)
    full = tr.surface_temperature_daily(3, monthly_c=monthly[None], warming_c=1.0,
                                        n_thaw=1.0, n_freeze=1.0)
    assert full.shape == (1, 3 * 365)
    # Piecewise-linear scenario trajectory through (year, warming) knots.
    pw = tr.piecewise_warming_c(10, [0, 4, 8], np.array([[0.0, 1.0, 3.0]]))[0]
    assert pw[2 * 365] == pytest.approx(0.5, abs=0.01)
    assert pw[6 * 365] == pytest.approx(2.0, abs=0.01)
    assert np.all(pw[8 * 365:] == 3.0)
    assert np.allclose(tr.surface_temperature_daily(10, mean_c=0.0, amplitude_c=0.0,
                                                    warming_daily_c=pw), pw)


def test_bad_inputs_raise_config_error():
    grid = tr.make_grid()
    with pytest.raises(ConfigError):
        tr.run_columns(np.zeros((2, 100)), None, grid)  # not a whole number of years
    with pytest.raises(ConfigError):
        tr.run_columns(np.full((1, 365), np.nan), None, grid)
    with pytest.raises(ConfigError):
        tr.run_columns(np.zeros((1, 365)), tr.ColumnParams(water_content=0.5, porosity=0.3), grid)
    with pytest.raises(ConfigError):
        tr.run_columns(np.zeros((2, 365)), tr.ColumnParams(water_content=np.ones(3) * 0.1), grid)
