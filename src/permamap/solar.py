"""Solar exposure index: potential clear-sky direct-beam radiation on a slope relative to flat
ground, integrated over the year or over a season given as a day-of-year range.

How aspect and slope enter the ground-temperature model: a cell's index is

    I = sum_t B(t) * max(0, cos(theta_t)) / sum_t B(t) * cos(theta_z,t)

where the sums run over the sun-up time steps t of the chosen days, ``B`` is the beam
irradiance at normal incidence, ``theta`` the angle of incidence on the slope and ``theta_z``
the solar zenith angle (incidence on a horizontal surface). ``I`` is 1.0 on flat ground, above
1 on slopes facing the sun (south in the northern hemisphere) and below 1 on slopes facing away.

Geometry and sources
--------------------
* Day angle, declination and eccentricity correction: Spencer (1971) Fourier series as given
  by Iqbal (1983), *An Introduction to Solar Radiation*, Academic Press, eqs. 1.2.1-1.3.1.
* Sunset hour angle, zenith angle, incidence on a tilted plane and daily extraterrestrial
  irradiation: Duffie & Beckman (2013), *Solar Engineering of Thermal Processes*, 4th ed.,
  Wiley, eqs. 1.6.2, 1.6.5, 1.6.10, 1.10.3.
* Atmosphere: either none (``transmissivity=1``, the classic *potential* beam of Frank & Lee
  1966, USDA Forest Service Res. Pap. RM-18) or a constant broadband transmissivity with a
  plane-parallel air mass, ``B = Gsc * E0 * tau ** m``, ``m = (p / p0) / cos(theta_z)``
  (Campbell & Norman 1998, *An Introduction to Environmental Biophysics*, 2nd ed., Springer,
  eqs. 11.11-11.12; clear-sky ``tau`` is typically about 0.6-0.75 there).
  Diffuse and reflected radiation and shading by surrounding terrain (horizon) are not
  included: the index describes the slope's own orientation only.

Time integration
----------------
Each day is split into ``steps_per_day`` equal hour-angle intervals between sunrise and sunset
(``-omega_s .. omega_s``), evaluated at their midpoints (midpoint rule); days are integer days
of year 1..365. The sun-position table (beam-weighted sun vectors) depends on latitude only and
is built once per latitude.

Speed
-----
The index depends only on (latitude, slope, aspect). :func:`solar_exposure_index` therefore
builds, for latitude nodes on a fixed global grid (``lat_step_deg``), a look-up table over slope
(0-90 deg) and aspect (0-360 deg) from the exact sum, and evaluates each pixel by bilinear
interpolation in (slope, aspect) and linear interpolation in latitude. Tables are cached per
process and built once (a lock: chunks run in threads), so the per-pixel work is eight table
reads. A table entry sums the season's sun positions in a SIMD loop (about 0.02 s per table);
the table and interpolation kernels release the GIL. :func:`solar_exposure_index_exact`
evaluates the sum per pixel (slow; the reference the tables are tested against).

Conventions: slope in degrees from horizontal; aspect in degrees clockwise from north, the
direction the slope faces; flat cells have aspect -1 and slope 0 (index 1.0); ``nodata`` cells
(default -9999) and NaN give NaN. Latitude in degrees north, one value per row.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit

__all__ = [
    "SOLAR_CONSTANT_W_PER_M2",
    "day_angle_rad",
    "eccentricity_correction",
    "solar_declination_rad",
    "sunset_hour_angle_rad",
    "cos_solar_zenith",
    "sun_direction",
    "surface_normal",
    "cos_incidence",
    "relative_air_mass",
    "beam_normal_irradiance_w_per_m2",
    "daily_extraterrestrial_horizontal_j_per_m2",
    "sun_table",
    "solar_index_from_table",
    "solar_index_lut",
    "solar_exposure_index",
    "solar_exposure_index_exact",
]

#: Solar constant (W m-2), WMO 1981 value used by Iqbal (1983) and Duffie & Beckman (2013).
SOLAR_CONSTANT_W_PER_M2 = 1367.0

_SECONDS_PER_DAY = 86400.0
_DAYS_PER_YEAR = 365


# --------------------------------------------------------------------------------------------
# One function per equation (scalar, numba-compiled; callable from Python too)
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def day_angle_rad(doy):
    """Day angle Gamma (rad) of day of year ``doy`` (1 = 1 January).

    Gamma = 2 pi (n - 1) / 365

    Source: Spencer (1971), Search 2(5):172; Iqbal (1983) eq. 1.2.2.
    """
    return 2.0 * math.pi * (doy - 1.0) / 365.0


@njit(cache=True)
def eccentricity_correction(doy):
    """Eccentricity correction factor E0 = (r0 / r)^2 of the Earth's orbit (dimensionless).

    E0 = 1.000110 + 0.034221 cos G + 0.001280 sin G + 0.000719 cos 2G + 0.000077 sin 2G,
    G the day angle.

    Source: Spencer (1971); Iqbal (1983) eq. 1.2.1 (max. error ~1e-4).
    """
    g = day_angle_rad(doy)
    return (
        1.000110
        + 0.034221 * math.cos(g)
        + 0.001280 * math.sin(g)
        + 0.000719 * math.cos(2.0 * g)
        + 0.000077 * math.sin(2.0 * g)
    )


@njit(cache=True)
def solar_declination_rad(doy):
    """Solar declination delta (rad) on day of year ``doy``.

    delta = 0.006918 - 0.399912 cos G + 0.070257 sin G - 0.006758 cos 2G
            + 0.000907 sin 2G - 0.002697 cos 3G + 0.00148 sin 3G,   G the day angle.

    Source: Spencer (1971); Iqbal (1983) eq. 1.3.1 (max. error 0.0006 rad).
    """
    g = day_angle_rad(doy)
    return (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2.0 * g)
        + 0.000907 * math.sin(2.0 * g)
        - 0.002697 * math.cos(3.0 * g)
        + 0.00148 * math.sin(3.0 * g)
    )


@njit(cache=True)
def sunset_hour_angle_rad(lat_rad, decl_rad):
    """Sunset hour angle omega_s (rad) on a horizontal surface; sunrise is -omega_s.

    cos(omega_s) = -tan(phi) tan(delta), clipped to [-1, 1] so that polar night gives 0 and
    polar day gives pi.

    Source: Duffie & Beckman (2013) eq. 1.6.10.
    """
    c = -math.tan(lat_rad) * math.tan(decl_rad)
    if c >= 1.0:
        return 0.0
    if c <= -1.0:
        return math.pi
    return math.acos(c)


@njit(cache=True)
def cos_solar_zenith(lat_rad, decl_rad, hour_angle_rad):
    """Cosine of the solar zenith angle (incidence on a horizontal surface).

    cos(theta_z) = cos(phi) cos(delta) cos(omega) + sin(phi) sin(delta)

    omega is the hour angle, 0 at solar noon, negative in the morning (15 deg per hour).
    Source: Duffie & Beckman (2013) eq. 1.6.5.
    """
    return math.cos(lat_rad) * math.cos(decl_rad) * math.cos(hour_angle_rad) + math.sin(
        lat_rad
    ) * math.sin(decl_rad)


@njit(cache=True)
def sun_direction(lat_rad, decl_rad, hour_angle_rad):
    """Unit vector towards the sun in local (up, south, west) components.

    up    = cos(theta_z) = sin(phi) sin(delta) + cos(phi) cos(delta) cos(omega)
    south = cos(delta) sin(phi) cos(omega) - sin(delta) cos(phi)
    west  = cos(delta) sin(omega)

    These are the three groups of terms of Duffie & Beckman (2013) eq. 1.6.2 (incidence on a
    plane of slope beta and surface azimuth gamma), which reads cos(theta) = up cos(beta)
    + south sin(beta) cos(gamma) + west sin(beta) sin(gamma).
    """
    sd = math.sin(decl_rad)
    cd = math.cos(decl_rad)
    sp = math.sin(lat_rad)
    cp = math.cos(lat_rad)
    cw = math.cos(hour_angle_rad)
    up = sp * sd + cp * cd * cw
    south = cd * sp * cw - sd * cp
    west = cd * math.sin(hour_angle_rad)
    return up, south, west


@njit(cache=True)
def surface_normal(slope_deg, aspect_deg):
    """Unit normal of a slope in local (up, south, west) components.

    up = cos(beta), south = sin(beta) cos(gamma), west = sin(beta) sin(gamma), with beta the
    slope and gamma = aspect - 180 deg the surface azimuth of Duffie & Beckman (2013) sect. 1.6
    (0 facing south, east negative, west positive). Aspect is clockwise from north.
    """
    b = math.radians(slope_deg)
    g = math.radians(aspect_deg - 180.0)
    sb = math.sin(b)
    return math.cos(b), sb * math.cos(g), sb * math.sin(g)


@njit(cache=True)
def cos_incidence(slope_deg, aspect_deg, lat_rad, decl_rad, hour_angle_rad):
    """Cosine of the angle of incidence of the beam on a slope (negative: sun behind it).

    cos(theta) = sin(delta) sin(phi) cos(beta) - sin(delta) cos(phi) sin(beta) cos(gamma)
               + cos(delta) cos(phi) cos(beta) cos(omega)
               + cos(delta) sin(phi) sin(beta) cos(gamma) cos(omega)
               + cos(delta) sin(beta) sin(gamma) sin(omega)

    evaluated as the dot product of :func:`surface_normal` and :func:`sun_direction`.
    Source: Duffie & Beckman (2013) eq. 1.6.2.
    """
    nu, ns, nw = surface_normal(slope_deg, aspect_deg)
    su, ss, sw = sun_direction(lat_rad, decl_rad, hour_angle_rad)
    return nu * su + ns * ss + nw * sw


@njit(cache=True)
def relative_air_mass(cos_zenith, pressure_ratio):
    """Relative optical air mass of a plane-parallel atmosphere.

    m = (p / p0) / cos(theta_z)

    Source: Campbell & Norman (1998) eq. 11.12. Returns inf for the sun at or below the horizon.
    """
    if cos_zenith <= 0.0:
        return math.inf
    return pressure_ratio / cos_zenith


@njit(cache=True)
def beam_normal_irradiance_w_per_m2(doy, cos_zenith, transmissivity, pressure_ratio):
    """Clear-sky beam irradiance at normal incidence (W m-2).

    B = Gsc E0 tau^m, with Gsc the solar constant, E0 the eccentricity correction, tau a
    constant broadband transmissivity and m the relative air mass. ``transmissivity = 1``
    gives the extraterrestrial beam (no atmosphere).

    Source: Campbell & Norman (1998) eq. 11.11 (with S_p0 = Gsc E0, Iqbal 1983 eq. 1.2.1).
    """
    if cos_zenith <= 0.0:
        return 0.0
    b = SOLAR_CONSTANT_W_PER_M2 * eccentricity_correction(doy)
    if transmissivity < 1.0:
        b *= transmissivity ** relative_air_mass(cos_zenith, pressure_ratio)
    return b


@njit(cache=True)
def daily_extraterrestrial_horizontal_j_per_m2(lat_deg, doy):
    """Daily extraterrestrial irradiation on a horizontal surface H0 (J m-2).

    H0 = (24 * 3600 / pi) Gsc E0 [cos(phi) cos(delta) sin(omega_s)
                                  + omega_s sin(phi) sin(delta)]      (omega_s in rad)

    Source: Duffie & Beckman (2013) eq. 1.10.3 (with Spencer's E0 in place of their
    1 + 0.033 cos(360 n / 365)).
    """
    phi = math.radians(lat_deg)
    d = solar_declination_rad(doy)
    ws = sunset_hour_angle_rad(phi, d)
    return (
        _SECONDS_PER_DAY
        / math.pi
        * SOLAR_CONSTANT_W_PER_M2
        * eccentricity_correction(doy)
        * (math.cos(phi) * math.cos(d) * math.sin(ws) + ws * math.sin(phi) * math.sin(d))
    )


# --------------------------------------------------------------------------------------------
# Sun-position table and the per-pixel sum
# --------------------------------------------------------------------------------------------


def _days(doy_range):
    """Days of year (1..365) of a season ``(start, end)``, inclusive; wraps if start > end."""
    if doy_range is None:
        return np.arange(1, _DAYS_PER_YEAR + 1, dtype=np.float64)
    start, end = (int(v) for v in doy_range)
    if not (1 <= start <= _DAYS_PER_YEAR and 1 <= end <= _DAYS_PER_YEAR):
        raise ValueError(f"doy_range {doy_range!r}: days of year must lie in 1..365")
    if start <= end:
        return np.arange(start, end + 1, dtype=np.float64)
    return np.concatenate([np.arange(start, 366), np.arange(1, end + 1)]).astype(np.float64)


@njit(cache=True, nogil=True)
def _sun_table_kernel(lat_deg, days, steps_per_day, transmissivity, pressure_ratio):
    phi = math.radians(lat_deg)
    n = days.shape[0] * steps_per_day
    vec = np.empty((n, 3), dtype=np.float64)
    k = 0
    horizontal = 0.0
    for i in range(days.shape[0]):
        doy = days[i]
        d = solar_declination_rad(doy)
        ws = sunset_hour_angle_rad(phi, d)
        if ws <= 0.0:
            continue
        h = 2.0 * ws / steps_per_day
        dt_s = h * _SECONDS_PER_DAY / (2.0 * math.pi)  # seconds per step of hour angle
        for j in range(steps_per_day):
            w = -ws + (j + 0.5) * h
            up, south, west = sun_direction(phi, d, w)
            if up <= 0.0:
                continue
            e = beam_normal_irradiance_w_per_m2(doy, up, transmissivity, pressure_ratio) * dt_s
            if e <= 0.0:
                continue
            vec[k, 0] = e * up
            vec[k, 1] = e * south
            vec[k, 2] = e * west
            horizontal += e * up
            k += 1
    return vec[:k].copy(), horizontal


def sun_table(
    lat_deg: float,
    doy_range: tuple[int, int] | None = None,
    steps_per_day: int = 48,
    transmissivity: float = 1.0,
    pressure_ratio: float = 1.0,
) -> tuple[np.ndarray, float]:
    """Beam-weighted sun vectors for one latitude.

    Returns ``(vectors, horizontal_j_per_m2)``: ``vectors`` has shape (T, 3), one row per
    sun-up time step, ``B * dt * (up, south, west)`` in J m-2 (see :func:`sun_direction`,
    :func:`beam_normal_irradiance_w_per_m2`); ``horizontal_j_per_m2`` is the beam irradiation
    on a horizontal surface over the season, ``sum(vectors[:, 0])``. The irradiation on a slope
    with unit normal ``n`` is ``sum(max(0, vectors @ n))``.
    """
    _check_params(steps_per_day, transmissivity, pressure_ratio)
    return _sun_table_kernel(
        float(lat_deg),
        _days(doy_range),
        int(steps_per_day),
        float(transmissivity),
        float(pressure_ratio),
    )


@njit(cache=True)
def solar_index_from_table(slope_deg, aspect_deg, vectors, horizontal):
    """Solar exposure index of one slope from a sun table (:func:`sun_table`).

    I = sum_t max(0, n . v_t) / sum_t v_t,up

    with n the slope's unit normal (:func:`surface_normal`) and v_t the beam-weighted sun
    vectors. 1.0 for slope 0; NaN if the sun never rises in the season.
    """
    if horizontal <= 0.0:
        return math.nan
    if slope_deg <= 0.0:
        return 1.0
    nu, ns, nw = surface_normal(slope_deg, aspect_deg)
    s = 0.0
    for t in range(vectors.shape[0]):
        c = nu * vectors[t, 0] + ns * vectors[t, 1] + nw * vectors[t, 2]
        if c > 0.0:
            s += c
    return s / horizontal


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _positive_sum(nu, ns, nw, up, south, west):
    """sum_t max(0, nu up_t + ns south_t + nw west_t), the numerator of
    :func:`solar_index_from_table` over the columns of a sun table. 'reassoc' lets the sum be
    split into SIMD lanes (a fixed order for a given table, so the same bits every call)."""
    s = 0.0
    for t in range(up.shape[0]):
        c = nu * up[t] + ns * south[t] + nw * west[t]
        s += max(c, 0.0)
    return s


@njit(cache=True, nogil=True)
def _lut_kernel(vectors, horizontal, slope_step, aspect_step):
    """Index at slope ``i * slope_step`` and aspect ``j * aspect_step`` (the sum of
    :func:`solar_index_from_table`, vectorised over the sun table's columns)."""
    ns = int(round(90.0 / slope_step)) + 1
    na = int(round(360.0 / aspect_step)) + 1
    lut = np.empty((ns, na), dtype=np.float64)
    up = np.ascontiguousarray(vectors[:, 0])
    south = np.ascontiguousarray(vectors[:, 1])
    west = np.ascontiguousarray(vectors[:, 2])
    for i in range(ns):
        for j in range(na):
            if horizontal <= 0.0:
                lut[i, j] = math.nan
            elif i == 0:
                lut[i, j] = 1.0
            else:
                nu, nsouth, nwest = surface_normal(i * slope_step, j * aspect_step)
                lut[i, j] = _positive_sum(nu, nsouth, nwest, up, south, west) / horizontal
    return lut


def _check_params(steps_per_day, transmissivity, pressure_ratio):
    if int(steps_per_day) < 2:
        raise ValueError(f"steps_per_day={steps_per_day}: use at least 2")
    if not 0.0 < float(transmissivity) <= 1.0:
        raise ValueError(f"transmissivity={transmissivity}: must be in (0, 1]")
    if not float(pressure_ratio) > 0.0:
        raise ValueError(f"pressure_ratio={pressure_ratio}: must be > 0")


_LUTS: dict = {}
_LUTS_MAX = 256
_LUT_LOCK = threading.Lock()


def _lut_cached(*key):
    """The table of ``key`` (the arguments of :func:`solar_index_lut`), built once per process.

    Chunks of a tile run in threads and neighbouring chunks need the same latitude nodes: the
    lock makes the second thread wait for the table instead of building it again (the kernels
    release the GIL, so other chunks keep computing meanwhile)."""
    lut = _LUTS.get(key)
    if lut is not None:
        return lut
    with _LUT_LOCK:
        lut = _LUTS.get(key)
        if lut is None:
            lat_deg, doy_range, steps_per_day, transmissivity, pressure_ratio = key[:5]
            vec, hor = sun_table(lat_deg, doy_range, steps_per_day, transmissivity, pressure_ratio)
            lut = _lut_kernel(vec, hor, float(key[5]), float(key[6]))
            lut.setflags(write=False)
            if len(_LUTS) >= _LUTS_MAX:
                _LUTS.pop(next(iter(_LUTS)))
            _LUTS[key] = lut
    return lut


def solar_index_lut(
    lat_deg: float,
    doy_range: tuple[int, int] | None = None,
    steps_per_day: int = 48,
    transmissivity: float = 1.0,
    pressure_ratio: float = 1.0,
    slope_step_deg: float = 1.0,
    aspect_step_deg: float = 2.0,
) -> np.ndarray:
    """Look-up table of the index at one latitude: shape (n_slope, n_aspect), entry [i, j] at
    slope ``i * slope_step_deg`` (0..90) and aspect ``j * aspect_step_deg`` (0..360, the last
    column repeating aspect 0). Cached per process; read-only."""
    if doy_range is not None:
        doy_range = (int(doy_range[0]), int(doy_range[1]))
    for name, step, full in (
        ("slope_step_deg", slope_step_deg, 90.0),
        ("aspect_step_deg", aspect_step_deg, 360.0),
    ):
        if not step > 0 or abs(full / step - round(full / step)) > 1e-9:
            raise ValueError(f"{name}={step}: must divide {full:g} deg evenly")
    return _lut_cached(
        float(lat_deg),
        doy_range,
        int(steps_per_day),
        float(transmissivity),
        float(pressure_ratio),
        float(slope_step_deg),
        float(aspect_step_deg),
    )


@njit(cache=True, nogil=True, fastmath={"contract", "arcp", "nsz"})
def _interp_block(slope, aspect, node_lo, node_w, luts, slope_step, aspect_step, nodata, out):
    """Per pixel: bilinear in (slope, aspect) on two latitude nodes, linear between them."""
    nrows, ncols = slope.shape
    ns = luts.shape[1]
    na = luts.shape[2]
    to_is = 1.0 / slope_step
    to_ia = 1.0 / aspect_step
    for r in range(nrows):
        k = node_lo[r]
        wl = node_w[r]
        if math.isnan(wl):
            out[r, :] = math.nan
            continue
        lo = luts[k]
        hi = luts[k + 1]
        for c in range(ncols):
            s = np.float64(slope[r, c])
            a = np.float64(aspect[r, c])
            if math.isnan(s) or math.isnan(a) or s == nodata or a == nodata:
                out[r, c] = math.nan
                continue
            if s <= 0.0 or a < 0.0:
                out[r, c] = 1.0
                continue
            if a >= 360.0:
                a = a % 360.0
            fs = min(s * to_is, ns - 1.000001)
            fa = min(a * to_ia, na - 1.000001)
            i = int(fs)
            j = int(fa)
            ts = fs - i
            ta = fa - j
            b0 = (1.0 - ts) * ((1.0 - ta) * lo[i, j] + ta * lo[i, j + 1]) + ts * (
                (1.0 - ta) * lo[i + 1, j] + ta * lo[i + 1, j + 1]
            )
            b1 = (1.0 - ts) * ((1.0 - ta) * hi[i, j] + ta * hi[i, j + 1]) + ts * (
                (1.0 - ta) * hi[i + 1, j] + ta * hi[i + 1, j + 1]
            )
            out[r, c] = (1.0 - wl) * b0 + wl * b1


def _as_block(x, name):
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D block, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr


def _row_latitudes(lat_deg_rows, nrows):
    lat = np.asarray(lat_deg_rows, dtype=np.float64)
    if lat.ndim == 0:
        lat = np.full(nrows, float(lat))
    lat = lat.reshape(-1)
    if lat.shape[0] != nrows:
        raise ValueError(f"lat_deg_rows has {lat.shape[0]} values for {nrows} rows")
    if np.any(np.abs(lat[np.isfinite(lat)]) > 90.0):
        raise ValueError("lat_deg_rows: latitudes must lie in -90..90 degrees")
    return lat


def solar_exposure_index(
    slope_deg: np.ndarray,
    aspect_deg: np.ndarray,
    lat_deg_rows: np.ndarray | float,
    *,
    doy_range: tuple[int, int] | None = None,
    transmissivity: float = 1.0,
    pressure_ratio: float = 1.0,
    steps_per_day: int = 48,
    lat_step_deg: float = 0.25,
    slope_step_deg: float = 1.0,
    aspect_step_deg: float = 2.0,
    nodata: float = -9999.0,
) -> np.ndarray:
    """Solar exposure index of a 2-D block (float32; 1.0 on flat ground, NaN where nodata).

    Parameters
    ----------
    slope_deg, aspect_deg
        2-D arrays, degrees; aspect clockwise from north, -1 on flat cells; ``nodata`` or NaN
        propagate to NaN.
    lat_deg_rows
        Latitude (deg N) of each row, shape (nrows,) (or a scalar).
    doy_range
        ``(first_day, last_day)`` of the season, days of year 1..365 inclusive (wraps if
        first > last), e.g. the thaw season; ``None`` = the whole year.
    transmissivity
        Constant broadband beam transmissivity tau; 1.0 = no atmosphere (potential
        extraterrestrial beam, default). Campbell & Norman (1998) ch. 11 give roughly
        0.6-0.75 for clear skies.
    pressure_ratio
        p / p0 of the scene, scales the air mass (only used when tau < 1); about
        exp(-z / 8200 m) at elevation z (Campbell & Norman 1998 eq. 3.7).
    steps_per_day
        Hour-angle steps between sunrise and sunset (midpoint rule).
    lat_step_deg, slope_step_deg, aspect_step_deg
        Look-up-table spacing (see module docstring). Interpolation error with the defaults is
        below 1e-3 in the index (tested).
    nodata
        Input nodata value of slope and aspect.
    """
    slope = _as_block(slope_deg, "slope_deg")
    aspect = _as_block(aspect_deg, "aspect_deg")
    if slope.shape != aspect.shape:
        raise ValueError(f"slope {slope.shape} and aspect {aspect.shape} differ in shape")
    if not lat_step_deg > 0:
        raise ValueError(f"lat_step_deg={lat_step_deg}: must be > 0")
    nrows = slope.shape[0]
    lat = _row_latitudes(lat_deg_rows, nrows)
    out = np.empty(slope.shape, dtype=np.float32)
    finite = np.isfinite(lat)
    if slope.size == 0:
        return out
    # Latitude nodes on a fixed global grid (multiples of lat_step_deg) so tables are shared
    # between tiles through the cache.
    if not finite.any():
        out[:] = np.nan
        return out
    pos = lat / lat_step_deg
    k_fin = np.floor(pos[finite]).astype(np.int64)
    k_min = int(k_fin.min())
    k_max = int(k_fin.max()) + 1
    k_row = np.full(nrows, k_min, dtype=np.int64)
    k_row[finite] = k_fin
    w_row = np.full(nrows, np.nan)
    w_row[finite] = pos[finite] - k_fin
    luts = np.stack(
        [
            solar_index_lut(
                float(np.clip(k * lat_step_deg, -90.0, 90.0)),
                doy_range,
                steps_per_day,
                transmissivity,
                pressure_ratio,
                slope_step_deg,
                aspect_step_deg,
            )
            for k in range(k_min, k_max + 1)
        ]
    )
    _interp_block(
        slope,
        aspect,
        (k_row - k_min).astype(np.int64),
        w_row.astype(np.float64),
        luts,
        float(slope_step_deg),
        float(aspect_step_deg),
        float(nodata),
        out,
    )
    return out


@njit(cache=True)
def _exact_block(slope, aspect, row_tables, row_offsets, row_horizontal, nodata, out):
    nrows, ncols = slope.shape
    for r in range(nrows):
        vec = row_tables[row_offsets[r] : row_offsets[r + 1]]
        hor = row_horizontal[r]
        for c in range(ncols):
            s = slope[r, c]
            a = aspect[r, c]
            if math.isnan(s) or math.isnan(a) or s == nodata or a == nodata or math.isnan(hor):
                out[r, c] = math.nan
            elif s <= 0.0 or a < 0.0:
                out[r, c] = 1.0
            else:
                out[r, c] = solar_index_from_table(s, a, vec, hor)


def solar_exposure_index_exact(
    slope_deg: np.ndarray,
    aspect_deg: np.ndarray,
    lat_deg_rows: np.ndarray | float,
    *,
    doy_range: tuple[int, int] | None = None,
    transmissivity: float = 1.0,
    pressure_ratio: float = 1.0,
    steps_per_day: int = 48,
    nodata: float = -9999.0,
) -> np.ndarray:
    """Same as :func:`solar_exposure_index` but summing the sun table for every pixel (no
    look-up table): exact to the time discretisation, about 1e4 times slower. One sun table is
    built per distinct row latitude."""
    slope = _as_block(slope_deg, "slope_deg")
    aspect = _as_block(aspect_deg, "aspect_deg")
    if slope.shape != aspect.shape:
        raise ValueError(f"slope {slope.shape} and aspect {aspect.shape} differ in shape")
    lat = _row_latitudes(lat_deg_rows, slope.shape[0])
    tables = {}
    parts, offsets, hor = [], [0], []
    for value in lat:
        if not np.isfinite(value):
            parts.append(np.empty((0, 3)))
            hor.append(np.nan)
        else:
            if value not in tables:
                tables[value] = sun_table(
                    value, doy_range, steps_per_day, transmissivity, pressure_ratio
                )
            vec, h = tables[value]
            parts.append(vec)
            hor.append(h)
        offsets.append(offsets[-1] + parts[-1].shape[0])
    out = np.empty(slope.shape, dtype=np.float32)
    _exact_block(
        slope,
        aspect,
        np.concatenate(parts) if parts else np.empty((0, 3)),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(hor, dtype=np.float64),
        float(nodata),
        out,
    )
    return out
