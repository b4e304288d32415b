"""Air temperature at the DEM and degree-days: hand calculations and the analytic sinusoid."""

import math

import numpy as np
import pytest

from permamap.climate import (
    METHOD_MONTHLY,
    METHOD_SINUSOID,
    StationForcing,
    annual_mean_c,
    compute_climate,
    degree_days,
    sinusoid_monthly_means,
)


def sinusoid_degree_days(mean_c, amp_c, period=365.0):
    """Exact indices of T(t) = M + A cos(wt): TDD = (P/pi)(M theta + A sin theta),
    theta = arccos(-M/A), FDD = TDD - M P (integrate the positive lobe of the cosine)."""
    theta = math.acos(max(-1.0, min(1.0, -mean_c / amp_c)))
    tdd = period / math.pi * (mean_c * theta + amp_c * math.sin(theta))
    return tdd - mean_c * period, tdd


def test_hand_calculation_monthly_sum():
    t = np.array([-10.0] * 6 + [10.0] * 6)
    fdd, tdd = degree_days(t, METHOD_MONTHLY)
    assert fdd == pytest.approx(10 * (31 + 28 + 31 + 30 + 31 + 30))  # 1810
    assert tdd == pytest.approx(10 * (31 + 31 + 30 + 31 + 30 + 31))  # 1840


@pytest.mark.parametrize("mean_c", [-20.0, -8.0, -3.0, -0.5, 0.0, 2.0, 6.1, 15.0])
@pytest.mark.parametrize("amp_c", [5.0, 12.35])
def test_sinusoid_method_is_exact_for_a_sinusoidal_cycle(mean_c, amp_c):
    # Reference: the positive lobe of a cosine integrated by hand (sinusoid_degree_days above),
    # independent of the kernel's least-squares fit through month averages.
    fdd_exact, tdd_exact = sinusoid_degree_days(mean_c, amp_c)
    fdd, tdd = degree_days(sinusoid_monthly_means(mean_c, amp_c), METHOD_SINUSOID)
    assert fdd == pytest.approx(fdd_exact, abs=1e-6)
    assert tdd == pytest.approx(tdd_exact, abs=1e-6)


def test_sinusoid_method_recovers_a_shifted_phase():
    months = sinusoid_monthly_means(-1.0, 10.0, peak_day=120.0)
    fdd_exact, tdd_exact = sinusoid_degree_days(-1.0, 10.0)
    fdd, tdd = degree_days(months, METHOD_SINUSOID)
    assert (fdd, tdd) == (pytest.approx(fdd_exact, abs=1e-6), pytest.approx(tdd_exact, abs=1e-6))


def test_monthly_sum_is_biased_low_near_zero():
    # The documented bias of the monthly sum: both indices too small when months straddle 0 C.
    fdd_exact, tdd_exact = sinusoid_degree_days(0.0, 12.35)
    fdd, tdd = degree_days(sinusoid_monthly_means(0.0, 12.35), METHOD_MONTHLY)
    assert fdd < fdd_exact - 30 and tdd < tdd_exact - 30


def test_degree_day_balance_equals_annual_mean():
    # TDD - FDD = integral of T = 365 * MAAT for both methods, whatever the monthly shape.
    rng = np.random.default_rng(3)
    for _ in range(20):
        t = rng.normal(0, 10, 12)
        maat = annual_mean_c(t)
        for method in (METHOD_SINUSOID, METHOD_MONTHLY):
            fdd, tdd = degree_days(t, method)
            assert tdd - fdd == pytest.approx(365 * maat, abs=1e-9)
            assert fdd >= 0 and tdd >= 0


def test_sinusoid_keeps_the_annual_mean():
    assert annual_mean_c(sinusoid_monthly_means(6.1, 12.35)) == pytest.approx(6.1, abs=1e-9)


def test_lapse_rate_applied_to_elevation(config):
    forcing = StationForcing(config)
    z0 = config["climate"]["station"]["elevation_m"]
    z = np.array([[z0, z0 + 1000.0, np.nan]])
    maat, fdd, tdd, _ = compute_climate(z, forcing)
    assert maat[0, 0] == pytest.approx(6.1, abs=1e-9)  # Xining station
    assert maat[0, 1] == pytest.approx(6.1 - 5.6, abs=1e-9)  # 5.6 C/km (Chen et al. 2014)
    assert np.isnan(maat[0, 2]) and np.isnan(fdd[0, 2]) and np.isnan(tdd[0, 2])
    assert fdd[0, 1] > fdd[0, 0] and tdd[0, 1] < tdd[0, 0]


def test_warming_delta_shifts_every_month(config):
    forcing = StationForcing(config)
    z = np.array([[3500.0]])
    m0, _, _, _ = compute_climate(z, forcing)
    m2, _, _, _ = compute_climate(z, forcing, delta_c=2.0)
    assert m2[0, 0] - m0[0, 0] == pytest.approx(2.0, abs=1e-12)
