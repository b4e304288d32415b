"""Tests of the solar exposure index (permamap.solar).

Expected values come from closed-form textbook equations written out here, a textbook worked
example, an independent implementation (pvlib) and symmetry; none are copied from this
module's output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from permamap import solar

GSC = 1367.0  # W m-2, solar constant used by Duffie & Beckman (2013) and Iqbal (1983)


# ------------------------------------------------------------------ equations, one by one


def test_declination_and_eccentricity_match_pvlib():
    """Spencer (1971) series (Iqbal 1983 eqs. 1.2.1, 1.3.1) against pvlib's implementation."""
    pvlib = pytest.importorskip("pvlib")
    days = np.arange(1, 366, dtype=float)
    ref_decl = pvlib.solarposition.declination_spencer71(days)
    ref_e0 = pvlib.irradiance.get_extra_radiation(days, solar_constant=1.0, method="spencer")
    ours_decl = np.array([solar.solar_declination_rad(d) for d in days])
    ours_e0 = np.array([solar.eccentricity_correction(d) for d in days])
    np.testing.assert_allclose(ours_decl, ref_decl, atol=1e-12)
    np.testing.assert_allclose(ours_e0, ref_e0, rtol=1e-12)


def test_declination_at_solstices_and_equinox():
    """Declination reaches about +-23.44 deg at the solstices and ~0 at the March equinox
    (Iqbal 1983 sect. 1.3; Spencer's series is accurate to 0.0006 rad)."""
    assert math.degrees(solar.solar_declination_rad(172)) == pytest.approx(23.44, abs=0.1)
    assert math.degrees(solar.solar_declination_rad(355)) == pytest.approx(-23.44, abs=0.1)
    assert math.degrees(solar.solar_declination_rad(80)) == pytest.approx(0.0, abs=0.5)


def test_sunset_hour_angle():
    """Duffie & Beckman (2013) eq. 1.6.10: 90 deg at the equator or at zero declination;
    polar night 0 and polar day pi."""
    d = math.radians(20.0)
    assert solar.sunset_hour_angle_rad(0.0, d) == pytest.approx(math.pi / 2)
    assert solar.sunset_hour_angle_rad(math.radians(37.0), 0.0) == pytest.approx(math.pi / 2)
    assert solar.sunset_hour_angle_rad(math.radians(80.0), -d) == 0.0
    assert solar.sunset_hour_angle_rad(math.radians(80.0), d) == math.pi
    # 43 deg N, delta = 9.41 deg: 98.9 deg (Duffie & Beckman 2013, Example 1.10.1)
    ws = solar.sunset_hour_angle_rad(math.radians(43.0), math.radians(9.41))
    assert math.degrees(ws) == pytest.approx(98.9, abs=0.05)


def test_sun_direction_is_unit_vector_and_zenith_matches():
    for lat in (-60.0, 0.0, 37.0, 75.0):
        for decl in (-0.4, 0.0, 0.3):
            for w in np.linspace(-3.0, 3.0, 13):
                up, south, west = solar.sun_direction(math.radians(lat), decl, w)
                assert up**2 + south**2 + west**2 == pytest.approx(1.0, abs=1e-12)
                assert up == pytest.approx(solar.cos_solar_zenith(math.radians(lat), decl, w))


def test_cos_incidence_matches_pvlib_aoi():
    """Duffie & Beckman eq. 1.6.2 against pvlib.irradiance.aoi (independent vector form, with
    surface azimuth clockwise from north like our aspect)."""
    pvlib = pytest.importorskip("pvlib")
    rng = np.random.default_rng(42)
    for _ in range(200):
        lat = rng.uniform(-70, 70)
        decl = rng.uniform(-0.41, 0.41)
        w = rng.uniform(-math.pi, math.pi)
        slope = rng.uniform(0, 89)
        aspect = rng.uniform(0, 360)
        up, south, west = solar.sun_direction(math.radians(lat), decl, w)
        zen = math.degrees(math.acos(up))
        azi = math.degrees(math.atan2(-west, -south)) % 360.0  # from north, clockwise
        ref = math.cos(math.radians(pvlib.irradiance.aoi(slope, aspect, zen, azi)))
        ours = solar.cos_incidence(slope, aspect, math.radians(lat), decl, w)
        assert ours == pytest.approx(ref, abs=1e-9)


def test_beam_normal_irradiance():
    """Campbell & Norman (1998) eq. 11.11: B = Gsc E0 tau^m with m = (p/p0)/cos(zenith)."""
    e0 = solar.eccentricity_correction(100)
    assert solar.beam_normal_irradiance_w_per_m2(100, 1.0, 1.0, 1.0) == pytest.approx(GSC * e0)
    assert solar.beam_normal_irradiance_w_per_m2(100, 1.0, 0.7, 1.0) == pytest.approx(
        GSC * e0 * 0.7
    )
    # zenith 60 deg -> m = 2 at sea level, 1.2 at p/p0 = 0.6
    assert solar.beam_normal_irradiance_w_per_m2(100, 0.5, 0.7, 1.0) == pytest.approx(
        GSC * e0 * 0.49
    )
    assert solar.beam_normal_irradiance_w_per_m2(100, 0.5, 0.7, 0.6) == pytest.approx(
        GSC * e0 * 0.7**1.2
    )
    assert solar.beam_normal_irradiance_w_per_m2(100, -0.1, 0.7, 1.0) == 0.0


# ------------------------------------------------------------------ closed-form integrals


def _h0_textbook(lat_deg, doy):
    """Duffie & Beckman (2013) eq. 1.10.3, written out here independently:
    H0 = (24*3600/pi) Gsc E0 [cos(phi) cos(delta) sin(ws) + ws sin(phi) sin(delta)]."""
    phi = math.radians(lat_deg)
    d = solar.solar_declination_rad(doy)
    ws = math.acos(max(-1.0, min(1.0, -math.tan(phi) * math.tan(d))))
    e0 = solar.eccentricity_correction(doy)
    return (
        86400.0
        / math.pi
        * GSC
        * e0
        * (math.cos(phi) * math.cos(d) * math.sin(ws) + ws * math.sin(phi) * math.sin(d))
    )


@pytest.mark.parametrize("lat", [0.0, 20.0, 37.0, 45.0, -30.0])
@pytest.mark.parametrize("doy", [1, 80, 172, 266, 355])
def test_daily_horizontal_sum_matches_closed_form(lat, doy):
    """The time-stepped horizontal beam (no atmosphere) integrates to the textbook H0."""
    _, horizontal = solar.sun_table(lat, (doy, doy), steps_per_day=48)
    assert horizontal == pytest.approx(_h0_textbook(lat, doy), rel=5e-4)
    assert solar.daily_extraterrestrial_horizontal_j_per_m2(lat, doy) == pytest.approx(
        _h0_textbook(lat, doy), rel=1e-12
    )


def test_h0_equinox_closed_form():
    """At an equinox (delta = 0, ws = pi/2) eq. 1.10.3 reduces to H0 = (24*3600/pi) Gsc E0
    cos(phi); check the day with the smallest |delta| at 37 N to 0.3 %."""
    days = np.arange(60, 100)
    doy = int(days[np.argmin([abs(solar.solar_declination_rad(d)) for d in days])])
    expected = (
        86400.0 / math.pi * GSC * solar.eccentricity_correction(doy) * math.cos(math.radians(37.0))
    )
    _, horizontal = solar.sun_table(37.0, (doy, doy))
    assert horizontal == pytest.approx(expected, rel=3e-3)


def test_duffie_beckman_example_1_10_1():
    """Duffie & Beckman (2013) Example 1.10.1: 43 deg N, 15 April (n = 105) -> H0 = 33.8 MJ/m2
    (they use Cooper's declination and 1 + 0.033 cos(360 n/365); Spencer's differ slightly)."""
    _, horizontal = solar.sun_table(43.0, (105, 105))
    assert horizontal / 1e6 == pytest.approx(33.8, rel=5e-3)


@pytest.mark.parametrize("lat, beta", [(37.0, 10.0), (37.0, 30.0), (37.0, 60.0), (50.0, 25.0)])
def test_south_slope_equivalent_latitude_rule(lat, beta):
    """A south-facing slope beta at latitude phi receives, in the no-atmosphere case, the beam
    of a horizontal surface at phi - beta for the hours when the sun is above the real horizon
    and in front of the slope: daily H0 on the slope =
      (24*3600/pi) Gsc E0 [cos(phi-beta) cos(delta) sin(ws') + ws' sin(phi-beta) sin(delta)],
      ws' = min(ws, arccos(-tan(phi-beta) tan(delta)))
    (Duffie & Beckman 2013 sect. 2.19, after Klein 1977, Solar Energy 19:325).
    Summed over the year and compared with the time-stepped integral."""
    phi = math.radians(lat)
    pb = math.radians(lat - beta)
    expected_year = 0.0
    expected_h = 0.0
    for doy in range(1, 366):
        d = solar.solar_declination_rad(doy)
        e0 = solar.eccentricity_correction(doy)
        ws = math.acos(max(-1.0, min(1.0, -math.tan(phi) * math.tan(d))))
        ws2 = min(ws, math.acos(max(-1.0, min(1.0, -math.tan(pb) * math.tan(d)))))
        expected_year += (
            86400.0
            / math.pi
            * GSC
            * e0
            * (math.cos(pb) * math.cos(d) * math.sin(ws2) + ws2 * math.sin(pb) * math.sin(d))
        )
        expected_h += _h0_textbook(lat, doy)
    vec, hor = solar.sun_table(lat, None, steps_per_day=96)
    on_slope = solar.solar_index_from_table(beta, 180.0, vec, hor) * hor
    assert on_slope == pytest.approx(expected_year, rel=2e-4)
    # so the index is the ratio of the two closed forms
    idx = solar.solar_exposure_index(np.array([[beta]]), np.array([[180.0]]), [lat])[0, 0]
    assert idx == pytest.approx(expected_year / expected_h, abs=1e-3)


# ------------------------------------------------------------------ index properties


def _grid():
    slopes = np.array([[5.0, 15.0, 30.0, 45.0, 70.0]])
    return slopes


@pytest.mark.parametrize(
    "kwargs", [{}, {"transmissivity": 0.7, "pressure_ratio": 0.63}, {"doy_range": (121, 273)}]
)
def test_flat_ground_is_one(kwargs):
    slope = np.array([[0.0, 0.0, 0.0]])
    aspect = np.array([[-1.0, 0.0, 123.0]])
    for fn in (solar.solar_exposure_index, solar.solar_exposure_index_exact):
        out = fn(slope, aspect, [37.0], **kwargs)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, 1.0)
    vec, hor = solar.sun_table(37.0, kwargs.get("doy_range"))
    # a zero slope via the vector sum (not the shortcut) is also 1
    nu, ns, nw = solar.surface_normal(0.0, 77.0)
    assert (vec @ np.array([nu, ns, nw])).clip(min=0).sum() / hor == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs", [{}, {"transmissivity": 0.7, "pressure_ratio": 0.63}, {"doy_range": (121, 273)}]
)
@pytest.mark.parametrize("lat", [37.0, 36.3, -20.0])
def test_east_west_symmetry(kwargs, lat):
    """The daily sun path is symmetric about solar noon, so aspect 90 and 270 (and any
    a, 360 - a) receive the same beam."""
    slopes = np.repeat(_grid(), 3, axis=0)
    for a in (90.0, 45.0, 135.0):
        east = np.full_like(slopes, a)
        west = np.full_like(slopes, 360.0 - a)
        lats = [lat] * 3
        for fn in (solar.solar_exposure_index, solar.solar_exposure_index_exact):
            np.testing.assert_allclose(
                fn(slopes, east, lats, **kwargs), fn(slopes, west, lats, **kwargs), atol=2e-6
            )


@pytest.mark.parametrize(
    "kwargs, south_slopes",
    [
        ({}, [5.0, 15.0, 30.0]),
        ({"transmissivity": 0.7, "pressure_ratio": 0.63}, [5.0, 15.0, 30.0]),
        # in the thaw season the sun is high: only gentle south slopes beat flat ground
        ({"doy_range": (121, 273)}, [5.0, 10.0]),
    ],
)
def test_south_flat_north_ordering_at_37n(kwargs, south_slopes):
    """South-facing > flat > north-facing at 37 N. (Steep south slopes can get less than flat
    ground: by the equivalent-latitude rule a 70 deg south slope at 37 N is a horizontal
    surface at 33 S.)"""
    s = np.array([south_slopes])
    south = solar.solar_exposure_index(s, np.full_like(s, 180.0), [37.0], **kwargs)
    assert np.all(south > 1.0)
    slopes = _grid()
    north = solar.solar_exposure_index(slopes, np.full_like(slopes, 0.0), [37.0], **kwargs)
    assert np.all(north < 1.0)
    assert np.all(np.diff(north[0]) < 0)  # steeper north slopes get less
    if "doy_range" in kwargs:
        return  # in summer a SE/SW slope can beat a S slope (sun rises in the NE): no sweep
    # over the year the index decreases monotonically as aspect turns from south to north
    aspects = np.array([[180.0, 150.0, 120.0, 90.0, 60.0, 30.0, 0.0]])
    vals = solar.solar_exposure_index(np.full_like(aspects, 25.0), aspects, [37.0], **kwargs)
    assert np.all(np.diff(vals[0]) < 0)


def test_southern_hemisphere_prefers_north_slopes():
    s = np.array([[30.0, 30.0]])
    a = np.array([[0.0, 180.0]])
    out = solar.solar_exposure_index(s, a, [-37.0])
    assert out[0, 0] > 1.0 > out[0, 1]


def test_lookup_table_matches_exact_sum():
    rng = np.random.default_rng(7)
    nrows, ncols = 6, 300
    slope = rng.uniform(0.0, 75.0, (nrows, ncols))
    aspect = rng.uniform(0.0, 360.0, (nrows, ncols))
    lat = np.array([35.9, 36.13, 36.5, 36.77, 37.0, 38.41])
    for kwargs in ({}, {"transmissivity": 0.7, "pressure_ratio": 0.63}, {"doy_range": (121, 273)}):
        fast = solar.solar_exposure_index(slope, aspect, lat, **kwargs)
        exact = solar.solar_exposure_index_exact(slope, aspect, lat, **kwargs)
        assert np.max(np.abs(fast - exact)) < 1e-3


def test_nodata_and_nan_propagate():
    slope = np.array([[-9999.0, 10.0, np.nan, 10.0, 0.0]], dtype=np.float32)
    aspect = np.array([[90.0, -9999.0, 90.0, np.nan, -1.0]], dtype=np.float32)
    for fn in (solar.solar_exposure_index, solar.solar_exposure_index_exact):
        out = fn(slope, aspect, np.array([37.0]))
        assert np.isnan(out[0, :4]).all()
        assert out[0, 4] == 1.0
    out = solar.solar_exposure_index(np.array([[10.0]]), np.array([[90.0]]), [np.nan])
    assert np.isnan(out).all()


def test_aspect_360_equals_0():
    s = np.array([[20.0, 20.0]])
    a = np.array([[0.0, 360.0]])
    out = solar.solar_exposure_index(s, a, [37.0])
    assert out[0, 0] == pytest.approx(out[0, 1], abs=1e-6)


def test_season_range_wraps_and_adds_up():
    """Splitting the year into two seasons: beam sums (J/m2) add up; a wrapped range
    (start > end) covers the days at both ends of the year."""
    full_v, full_h = solar.sun_table(37.0)
    a_v, a_h = solar.sun_table(37.0, (1, 150))
    b_v, b_h = solar.sun_table(37.0, (151, 365))
    assert a_h + b_h == pytest.approx(full_h, rel=1e-12)
    w_v, w_h = solar.sun_table(37.0, (300, 60))
    c_v, c_h = solar.sun_table(37.0, (300, 365))
    d_v, d_h = solar.sun_table(37.0, (1, 60))
    assert w_h == pytest.approx(c_h + d_h, rel=1e-12)
    with pytest.raises(ValueError):
        solar.sun_table(37.0, (0, 400))


def test_winter_contrast_exceeds_summer_contrast():
    """At low sun (winter) aspect matters more: the north/south contrast is larger in a winter
    season than in a summer one."""
    s = np.array([[25.0, 25.0]])
    a = np.array([[180.0, 0.0]])
    summer = solar.solar_exposure_index(s, a, [37.0], doy_range=(152, 243))
    winter = solar.solar_exposure_index(s, a, [37.0], doy_range=(335, 59))
    assert winter[0, 0] - winter[0, 1] > summer[0, 0] - summer[0, 1]


def test_bad_arguments():
    with pytest.raises(ValueError):
        solar.solar_exposure_index(np.zeros((2, 2)), np.zeros((2, 3)), [37.0, 37.0])
    with pytest.raises(ValueError):
        solar.solar_exposure_index(np.zeros((2, 2)), np.zeros((2, 2)), [37.0])
    with pytest.raises(ValueError):
        solar.solar_exposure_index(
            np.zeros((2, 2)), np.zeros((2, 2)), [37.0, 37.0], transmissivity=0.0
        )
    with pytest.raises(ValueError):
        solar.solar_exposure_index(
            np.zeros((2, 2)), np.zeros((2, 2)), [37.0, 37.0], aspect_step_deg=7.0
        )
