"""Mean annual ground temperature (MAGT), ground classes and thermal stability.

Two MAGT models (``ground.model``):

``ttop`` (default): temperature at the top of permafrost (Smith & Riseborough 2002,
Permafrost Periglac. Process. 13:1-15, doi:10.1002/ppp.410, eq. 5)::

    TTOP = (r_k n_t TDD - n_f FDD) / P          if r_k n_t TDD < n_f FDD  (permafrost)
    TTOP = (n_t TDD - n_f FDD / r_k) / P        otherwise                 (no permafrost)

with n_f, n_t the freezing/thawing n-factors (surface / air degree-days), r_k = k_thawed /
k_frozen and P the period (365 d). The second branch is the mean temperature at the bottom
of the seasonally thawed layer where no permafrost exists; both branches are 0 where
r_k n_t TDD = n_f FDD, so TTOP is continuous.

Aspect and slope enter ``ttop`` through the solar exposure index SI (potential clear-sky
direct radiation on the slope relative to flat ground over the thaw season,
:mod:`permamap.solar`): the thawing n-factor becomes::

    n_t,eff = n_t * max(0, 1 + e_solar (SI - 1))

so with ``solar_effect`` e_solar = 1 a slope receiving 20 % more beam radiation than flat
ground thaws its surface 20 % more (e_solar = 0 switches the effect off). Direct radiation
drives the summer surface-air temperature difference that the thawing n-factor represents
(Lunardini 1978; Klene et al. 2001, Permafrost Periglac. Process. 12:337); the proportional
form and e_solar are a calibratable modelling choice, not a published constant.

``lapse``: the empirical aspect-dependent elevation lapse of MAGT summarised by the Zhao
(2026) review of Xining-area permafrost (0.6 C/100 m on north-facing and 0.4 C/100 m on
south-facing slopes, Bayan Har Mountains)::

    MAGT = MAGT_ref - rate(w) (z - z_ref),  rate(w) = (r_N + r_S)/2 + (r_N - r_S)/2 w
    w = clip(cos(aspect) sin(slope) / sin(slope_full), -1, 1)

so flat ground uses the mean rate and slopes steeper than ``full_contrast_slope_deg`` facing
due north/south get the full rates.

Surface types: the TTOP parameters may vary by surface type (land cover: meadow, barren,
shrub, ...). Every kernel and wrapper takes a per-pixel surface index ``surface`` ((ny, nx)
uint8, s in [0, n_surface)) and a multiplier table ``surface_mult`` ((n_surface, 3) float64,
finite and > 0) of (n_freezing, n_thawing, conductivity_ratio); a pixel of type s uses::

    n_f = n_freezing * surface_mult[s, 0]
    n_t = n_thawing * surface_mult[s, 1]      (then the solar adjustment above)
    r_k = conductivity_ratio * surface_mult[s, 2]

(for the Monte Carlo ensemble, each member's drawn value times the multiplier). With the
defaults ``surface=None, surface_mult=None`` every pixel is type 0 of the table [[1, 1, 1]]
(a zero-stride array, no memory), which is bit-identical to uniform parameters (x * 1.0 == x).
The ``lapse`` model has no n-factors and ignores the surface; in :func:`active_layer` the
Stefan method uses the pixel's n_f and n_t, Kudryavtsev uses neither.

Classes (DESIGN.md 4.5): perennial permafrost where MAGT < 0; seasonally frozen ground where
MAGT >= 0 and the air freezes in winter (FDD > 0); unfrozen otherwise. Thermal stability of
permafrost (Cheng 1984): extremely stable < -5.0 <= stable < -3.0 <= sub-stable < -1.5 <=
transitional < -0.5 <= unstable < 0 (thresholds in config).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .active_layer import stefan_depth_pixel as al_stefan_depth_pixel
from .climate import (
    METHOD_MONTHLY,
    YEAR_DAYS,
    air_monthly_at,
    annual_amplitude_c,
    base_harmonics_row,
    delta_harmonics,
    harmonics,
    is_spatially_uniform,
    maat_from_monthly,
    monthly_degree_days,
    reference_harmonics,
    sinusoid_degree_days,
)
from .products import CLASS_NODATA, NO_PERMAFROST, PERMAFROST, SEASONALLY_FROZEN, UNFROZEN

MODEL_TTOP = 0
MODEL_LAPSE = 1
MODELS = {"ttop": MODEL_TTOP, "lapse": MODEL_LAPSE}

# Indices into the packed parameter vector passed to the kernels.
P_MODEL, P_NF, P_NT, P_RK, P_PERIOD, P_RN, P_RS, P_ZREF, P_MAGTREF, P_SINFULL = range(10)
P_TH0 = 10  # four stability thresholds follow
P_SOLAR = 14
N_PARAMS = 15


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def thawing_n_factor_pixel(n_thawing, solar_effect, solar_index):
    """n_t,eff = n_t * max(0, 1 + e_solar (SI - 1)) (module docstring); NaN propagates."""
    f = 1.0 + solar_effect * (solar_index - 1.0)
    return n_thawing * f if f > 0.0 else 0.0 * solar_index


@nb.vectorize(
    ["float64(float64, float64, float64)", "float32(float32, float32, float32)"], cache=True
)
def thawing_n_factor(n_thawing, solar_effect, solar_index):
    """:func:`thawing_n_factor_pixel` element-wise."""
    return thawing_n_factor_pixel(n_thawing, solar_effect, solar_index)


def ttop_c(fdd, tdd, n_freezing, n_thawing, conductivity_ratio, period_days=365.0):
    """TTOP (C), Smith & Riseborough (2002) eq. 5; vectorised NumPy reference implementation."""
    fdd = np.asarray(fdd, dtype=np.float64)
    tdd = np.asarray(tdd, dtype=np.float64)
    num = conductivity_ratio * n_thawing * tdd - n_freezing * fdd
    frozen = num < 0
    thawed = (n_thawing * tdd - n_freezing * fdd / conductivity_ratio) / period_days
    return np.where(frozen, num / period_days, thawed)


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def ttop_pixel(fdd, tdd, n_f, n_t, r_k, period):
    """Numba scalar TTOP (C); same equation as :func:`ttop_c`."""
    num = r_k * n_t * tdd - n_f * fdd
    if num < 0.0:
        return num / period
    return (n_t * tdd - n_f * fdd / r_k) / period


@nb.njit(cache=True, nogil=True, error_model="numpy")
def northness(slope_deg, aspect_deg):
    """cos(aspect) sin(slope), the northness of the ``lapse`` model before scaling; NaN on
    flat ground (aspect < 0)."""
    if aspect_deg < 0.0:
        return np.nan
    return math.cos(math.radians(aspect_deg)) * math.sin(math.radians(slope_deg))


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def lapse_magt_northness(z, north, rate_n, rate_s, z_ref, magt_ref, sin_full):
    """MAGT (C) of the aspect-dependent lapse model from :func:`northness` (module docstring)."""
    if math.isnan(north):  # flat
        w = 0.0
    else:
        w = north / sin_full
        if w > 1.0:
            w = 1.0
        elif w < -1.0:
            w = -1.0
    rate = 0.5 * (rate_n + rate_s) + 0.5 * (rate_n - rate_s) * w
    return magt_ref - rate * (z - z_ref)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def lapse_magt_pixel(z, slope_deg, aspect_deg, rate_n, rate_s, z_ref, magt_ref, sin_full):
    """MAGT (C) of the aspect-dependent lapse model (module docstring)."""
    north = northness(slope_deg, aspect_deg)
    return lapse_magt_northness(z, north, rate_n, rate_s, z_ref, magt_ref, sin_full)


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def classify_pixel(magt, fdd):
    """Ground class code: 1 permafrost, 2 seasonally frozen, 3 unfrozen."""
    if magt < 0.0:
        return PERMAFROST
    if fdd > 0.0:
        return SEASONALLY_FROZEN
    return UNFROZEN


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def stability_pixel(magt, th0, th1, th2, th3):
    """Stability code: 0 no permafrost, 1 extremely stable, ..., 5 unstable."""
    if magt >= 0.0:
        return NO_PERMAFROST
    if magt < th0:
        return 1
    if magt < th1:
        return 2
    if magt < th2:
        return 3
    if magt < th3:
        return 4
    return 5


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def surface_params(p, surf_mult, s):
    """(n_f, n_t, r_k) of surface type ``s``: the parameter vector's values times the row ``s``
    of ``surf_mult`` (module docstring; n_t before the solar adjustment)."""
    return p[P_NF] * surf_mult[s, 0], p[P_NT] * surf_mult[s, 1], p[P_RK] * surf_mult[s, 2]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def magt_pixel(p, n_f, n_t, r_k, fdd, tdd, z, slope, aspect, solar, warming_c=0.0):
    """MAGT (C) of the configured model with the pixel's n-factors and conductivity ratio
    (:func:`surface_params`). ``warming_c`` (annual-mean air warming vs the baseline) enters
    ``ttop`` through the degree-days already; the empirical ``lapse`` model has no climate
    input, so its equilibrium response to warming is taken as 1:1 (MAGT + warming)."""
    if p[P_MODEL] == MODEL_TTOP:
        n_t_eff = thawing_n_factor_pixel(n_t, p[P_SOLAR], solar)
        return ttop_pixel(fdd, tdd, n_f, n_t_eff, r_k, p[P_PERIOD])
    return (
        lapse_magt_pixel(z, slope, aspect, p[P_RN], p[P_RS], p[P_ZREF], p[P_MAGTREF], p[P_SINFULL])
        + warming_c
    )


@nb.njit(cache=True, nogil=True, error_model="numpy")
def ground_kernel(
    p, z, slope, aspect, solar, fdd, tdd, surf, surf_mult, magt_out, class_out, stab_out
):
    """MAGT, class and stability from degree-days and terrain (NaN nodata in any input);
    ``surf`` (ny, nx) uint8 surface index into ``surf_mult`` (n_surface, 3). For ``ttop`` the
    loop over a row is branch-free (vectorises)."""
    ny, nx = z.shape
    ttop = p[P_MODEL] == MODEL_TTOP
    th0, th1, th2, th3 = p[P_TH0], p[P_TH0 + 1], p[P_TH0 + 2], p[P_TH0 + 3]
    e_solar, period = p[P_SOLAR], p[P_PERIOD]
    nf = np.empty(nx)
    nt = np.empty(nx)
    rk = np.empty(nx)
    for r in range(ny):
        if ttop:
            for c in range(nx):  # the surface table look-ups (gathers) apart
                nf[c], nt[c], rk[c] = surface_params(p, surf_mult, surf[r, c])
            for c in range(nx):
                f = fdd[r, c]
                t = tdd[r, c]
                si = solar[r, c]
                n_t_eff = thawing_n_factor_pixel(nt[c], e_solar, si)
                m = ttop_pixel(f, t, nf[c], n_t_eff, rk[c], period)
                bad = math.isnan(z[r, c] + slope[r, c] + si + f + t)
                magt_out[r, c] = np.nan if bad else m
                class_out[r, c] = CLASS_NODATA if bad else classify_pixel(m, f)
                stab_out[r, c] = CLASS_NODATA if bad else stability_pixel(m, th0, th1, th2, th3)
        else:
            for c in range(nx):
                f = fdd[r, c]
                t = tdd[r, c]
                si = solar[r, c]
                n_f, n_t, r_k = surface_params(p, surf_mult, surf[r, c])
                m = magt_pixel(p, n_f, n_t, r_k, f, t, z[r, c], slope[r, c], aspect[r, c], si)
                bad = math.isnan(z[r, c] + slope[r, c] + si + f + t)
                magt_out[r, c] = np.nan if bad else m
                class_out[r, c] = CLASS_NODATA if bad else classify_pixel(m, f)
                stab_out[r, c] = CLASS_NODATA if bad else stability_pixel(m, th0, th1, th2, th3)


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def warming_pixel(ttop, mean_c, amplitude_c, warming_c, n_f, n_t_eff, r_k, period, lapse_magt, ok):
    """(MAGT, class) of one pixel under one warming from the annual mean M and amplitude A of
    its warmed air temperature (sinusoid degree-days); ``lapse_magt``: the ``lapse`` model's
    baseline MAGT; ``ok`` False (no terrain) or a NaN climate gives (NaN, nodata)."""
    f, th = sinusoid_degree_days(mean_c, amplitude_c, YEAR_DAYS)
    if ttop:
        m = ttop_pixel(f, th, n_f, n_t_eff, r_k, period)
    else:
        m = lapse_magt + warming_c
    if not ok or math.isnan(m + f):
        return np.nan, CLASS_NODATA
    return m, classify_pixel(m, f)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def scenario_kernel(
    p,
    z,
    slope,
    aspect,
    solar,
    t_ref,
    z_ref,
    lapse,
    method,
    deltas,
    surf,
    surf_mult,
    magt_out,
    class_out,
):
    """Fused air temperature -> degree-days -> MAGT -> class for every warming in ``deltas``.

    One pass over the block, row by row: per pixel the terrain, the surface parameters and
    the (M, a, b) of the undisturbed air temperature (:func:`permamap.climate.
    base_harmonics_row`) once; per warming only its (dM, da, db) is added (linearity: computed
    once per block for zero-stride uniform ``deltas``, per pixel otherwise, e.g. CMIP6
    fields; a warming equal in every month only shifts M, so the amplitude is reused) and the
    sinusoid degree-days, MAGT and class follow. The inner loops are branch-free over a row,
    so they vectorise. ``deltas``: (n, 12, ny, nx) monthly air warming (C); ``surf``/
    ``surf_mult``: surface types (module docstring); ``magt_out``/``class_out``: (n, ny, nx).
    The ``monthly`` degree-day method sums the 12 warmed months per warming
    (:func:`scenario_kernel_monthly`).
    """
    if method == METHOD_MONTHLY:
        scenario_kernel_monthly(
            p,
            z,
            slope,
            aspect,
            solar,
            t_ref,
            z_ref,
            lapse,
            deltas,
            surf,
            surf_mult,
            magt_out,
            class_out,
        )
        return
    ny, nx = z.shape
    nd = deltas.shape[0]
    ref_h, lapse_h, uniform_ref = reference_harmonics(t_ref, lapse)
    uniform_delta = is_spatially_uniform(deltas) and ny > 0 and nx > 0
    dh = np.zeros((nd, 3))
    if uniform_delta:
        for k in range(nd):
            dh[k, 0], dh[k, 1], dh[k, 2] = delta_harmonics(deltas[k, :, 0, 0])
    ttop = p[P_MODEL] == MODEL_TTOP
    period = p[P_PERIOD]
    m0 = np.empty(nx)
    a0 = np.empty(nx)
    b0 = np.empty(nx)
    amp0 = np.empty(nx)
    nf = np.empty(nx)
    nt = np.empty(nx)
    rk = np.empty(nx)
    lm = np.empty(nx)
    ok = np.empty(nx, np.bool_)
    mrow = np.empty(nx)
    for r in range(ny):
        base_harmonics_row(r, z, t_ref, z_ref, ref_h, lapse_h, uniform_ref, m0, a0, b0)
        for c in range(nx):
            amp0[c] = annual_amplitude_c(a0[c], b0[c])
            si = solar[r, c]
            ok[c] = not math.isnan(z[r, c] + slope[r, c] + si)
            n_f, n_t, r_k = surface_params(p, surf_mult, surf[r, c])
            nf[c] = n_f
            nt[c] = thawing_n_factor_pixel(n_t, p[P_SOLAR], si)
            rk[c] = r_k
            lm[c] = 0.0
            if not ttop:
                lm[c] = lapse_magt_pixel(
                    z[r, c],
                    slope[r, c],
                    aspect[r, c],
                    p[P_RN],
                    p[P_RS],
                    p[P_ZREF],
                    p[P_MAGTREF],
                    p[P_SINFULL],
                )
        for k in range(nd):
            if uniform_delta:
                dm, da, db = dh[k, 0], dh[k, 1], dh[k, 2]
                if da == 0.0 and db == 0.0:  # a0 + 0 == a0: the amplitude is amp0
                    for c in range(nx):
                        m, cl = warming_pixel(
                            ttop, m0[c] + dm, amp0[c], dm, nf[c], nt[c], rk[c], period, lm[c], ok[c]
                        )
                        mrow[c] = m
                        class_out[k, r, c] = cl
                else:
                    for c in range(nx):
                        amp = annual_amplitude_c(a0[c] + da, b0[c] + db)
                        m, cl = warming_pixel(
                            ttop, m0[c] + dm, amp, dm, nf[c], nt[c], rk[c], period, lm[c], ok[c]
                        )
                        mrow[c] = m
                        class_out[k, r, c] = cl
            else:
                for c in range(nx):
                    dm, da, db = delta_harmonics(deltas[k, :, r, c])
                    amp = annual_amplitude_c(a0[c] + da, b0[c] + db)
                    m, cl = warming_pixel(
                        ttop, m0[c] + dm, amp, dm, nf[c], nt[c], rk[c], period, lm[c], ok[c]
                    )
                    mrow[c] = m
                    class_out[k, r, c] = cl
            for c in range(nx):
                magt_out[k, r, c] = mrow[c]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def scenario_kernel_monthly(
    p, z, slope, aspect, solar, t_ref, z_ref, lapse, deltas, surf, surf_mult, magt_out, class_out
):
    """:func:`scenario_kernel` for the ``monthly`` degree-day method: per pixel and warming
    the 12 warmed months T_m = T_m,ref + lapse_m (z_ref - z) + delta_m and their sum."""
    ny, nx = z.shape
    nd = deltas.shape[0]
    t = np.empty(12)
    for r in range(ny):
        for c in range(nx):
            zz = z[r, c]
            if math.isnan(zz + slope[r, c] + solar[r, c]):
                for k in range(nd):
                    magt_out[k, r, c] = np.nan
                    class_out[k, r, c] = CLASS_NODATA
                continue
            n_f, n_t, r_k = surface_params(p, surf_mult, surf[r, c])
            for k in range(nd):
                air_monthly_at(t_ref[:, r, c], z_ref[r, c], zz, lapse, deltas[k, :, r, c], t)
                f, th = monthly_degree_days(t)
                w = maat_from_monthly(deltas[k, :, r, c])
                m = magt_pixel(
                    p, n_f, n_t, r_k, f, th, zz, slope[r, c], aspect[r, c], solar[r, c], w
                )
                if math.isnan(m + f):  # no climate or no delta here: nodata, never a class
                    magt_out[k, r, c] = np.nan
                    class_out[k, r, c] = CLASS_NODATA
                    continue
                magt_out[k, r, c] = m
                class_out[k, r, c] = classify_pixel(m, f)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def probability_kernel(
    samples, lapse_samples, z, slope, aspect, solar, t_ref, z_ref, method, surf, surf_mult, prob_out
):
    """Permafrost probability (percent, uint8) over a Monte Carlo parameter ensemble.

    ``samples``: (n, N_PARAMS) parameter vectors (one ``ground.model`` for all), ``lapse_samples``:
    (n, 12) air lapse rates; for each pixel the share of members with MAGT < 0, rounded to
    whole percent. Each member's n-factors and r_k are multiplied by the pixel's surface
    multipliers (module docstring). By linearity a member's (M, a, b) is H(T_ref) + (z_ref - z)
    H(lapse_i) (:func:`permamap.climate.base_harmonics_row`): H(lapse_i) once per block, H(T_ref)
    once per pixel; the loop over members is branch-free, so it vectorises. The ``monthly``
    method sums 12 months per member (:func:`probability_kernel_monthly`).
    """
    if method == METHOD_MONTHLY:
        probability_kernel_monthly(
            samples, lapse_samples, z, slope, aspect, solar, t_ref, z_ref, surf, surf_mult, prob_out
        )
        return
    ny, nx = z.shape
    n = samples.shape[0]
    lm = np.empty(n)
    la = np.empty(n)
    lb = np.empty(n)
    for i in range(n):
        lm[i], la[i], lb[i] = harmonics(lapse_samples[i])
    nf = np.ascontiguousarray(samples[:, P_NF])
    nt = np.ascontiguousarray(samples[:, P_NT])
    rk = np.ascontiguousarray(samples[:, P_RK])
    period = np.ascontiguousarray(samples[:, P_PERIOD])
    e_solar = np.ascontiguousarray(samples[:, P_SOLAR])
    ttop = n > 0 and samples[0, P_MODEL] == MODEL_TTOP
    ref_h, _, uniform_ref = reference_harmonics(t_ref, lapse_samples[0])
    zero_h = np.zeros(3)
    rm = np.empty(nx)
    ra = np.empty(nx)
    rb = np.empty(nx)
    for r in range(ny):
        # H(T_ref) of the row (+ (z_ref - z) * 0, which keeps NaN for a missing z_ref or z)
        base_harmonics_row(r, z, t_ref, z_ref, ref_h, zero_h, uniform_ref, rm, ra, rb)
        for c in range(nx):
            zz = z[r, c]
            si = solar[r, c]
            dz = z_ref[r, c] - zz
            if math.isnan(zz + slope[r, c] + si + rm[c] + ra[c] + rb[c] + dz):
                prob_out[r, c] = CLASS_NODATA  # no terrain or no climate here
                continue
            s = surf[r, c]
            mult_f, mult_t, mult_k = surf_mult[s, 0], surf_mult[s, 1], surf_mult[s, 2]
            rmc, rac, rbc = rm[c], ra[c], rb[c]
            count = 0
            if ttop:
                for i in range(n):
                    mean = rmc + dz * lm[i]
                    amp = annual_amplitude_c(rac + dz * la[i], rbc + dz * lb[i])
                    f, th = sinusoid_degree_days(mean, amp, YEAR_DAYS)
                    n_t = thawing_n_factor_pixel(nt[i] * mult_t, e_solar[i], si)
                    m = ttop_pixel(f, th, nf[i] * mult_f, n_t, rk[i] * mult_k, period[i])
                    if m < 0.0:
                        count += 1
            else:
                north = northness(slope[r, c], aspect[r, c])
                for i in range(n):
                    q = samples[i]
                    m = lapse_magt_northness(
                        zz, north, q[P_RN], q[P_RS], q[P_ZREF], q[P_MAGTREF], q[P_SINFULL]
                    )
                    if m < 0.0:
                        count += 1
            prob_out[r, c] = np.uint8(math.floor(100.0 * count / n + 0.5))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def probability_kernel_monthly(
    samples, lapse_samples, z, slope, aspect, solar, t_ref, z_ref, surf, surf_mult, prob_out
):
    """:func:`probability_kernel` with ``monthly`` degree-days (12 months per member)."""
    ny, nx = z.shape
    n = samples.shape[0]
    t = np.empty(12)
    zero = np.zeros(12)
    for r in range(ny):
        for c in range(nx):
            zz = z[r, c]
            if math.isnan(zz + slope[r, c] + solar[r, c]):
                prob_out[r, c] = CLASS_NODATA
                continue
            s = surf[r, c]
            count = 0
            missing = False
            for i in range(n):
                air_monthly_at(t_ref[:, r, c], z_ref[r, c], zz, lapse_samples[i], zero, t)
                f, th = monthly_degree_days(t)
                n_f, n_t, r_k = surface_params(samples[i], surf_mult, s)
                m = magt_pixel(
                    samples[i], n_f, n_t, r_k, f, th, zz, slope[r, c], aspect[r, c], solar[r, c]
                )
                if math.isnan(m + f):  # no climate here
                    missing = True
                    break
                if m < 0.0:
                    count += 1
            if missing:
                prob_out[r, c] = CLASS_NODATA
            else:
                prob_out[r, c] = np.uint8(math.floor(100.0 * count / n + 0.5))


def pack_params(config: dict) -> np.ndarray:
    """Model parameters of a (scenario-merged) config as the kernels' parameter vector."""
    g = config["ground"]
    tt = g["ttop"]
    la = g["lapse"]
    p = np.zeros(N_PARAMS)
    p[P_MODEL] = MODELS[g["model"]]
    p[P_NF] = tt["n_freezing"]
    p[P_NT] = tt["n_thawing"]
    p[P_RK] = tt["conductivity_ratio"]
    p[P_PERIOD] = tt["period_days"]
    p[P_RN] = la["rate_north_c_per_m"]
    p[P_RS] = la["rate_south_c_per_m"]
    p[P_ZREF] = la["reference_elevation_m"]
    p[P_MAGTREF] = la["reference_magt_c"]
    p[P_SINFULL] = math.sin(math.radians(la["full_contrast_slope_deg"]))
    p[P_TH0 : P_TH0 + 4] = config["classes"]["stability_thresholds_c"]
    p[P_SOLAR] = tt["solar_effect"]
    return p


#: Monte Carlo parameters: config key under ground.probability.ranges -> parameter index.
MC_PARAMS = {
    "n_freezing": P_NF,
    "n_thawing": P_NT,
    "conductivity_ratio": P_RK,
    "solar_effect": P_SOLAR,
    "rate_north_c_per_m": P_RN,
    "rate_south_c_per_m": P_RS,
    "reference_magt_c": P_MAGTREF,
}


def sample_parameters(config: dict, lapse_c_per_m: np.ndarray):
    """(samples (n, N_PARAMS), lapse (n, 12)) of the Monte Carlo ensemble.

    Each parameter with a range in ``ground.probability.ranges`` is drawn uniformly and
    independently from [low, high] with ``numpy.random.default_rng(seed)``; the others keep
    their config value. The air lapse rate scales all twelve monthly rates alike. The draws
    depend only on the config, so every tile uses the same ensemble.
    """
    prob = config["ground"]["probability"]
    n = int(prob["samples"])
    rng = np.random.default_rng(int(prob["seed"]))
    base = pack_params(config)
    samples = np.tile(base, (n, 1))
    ranges = prob.get("ranges") or {}
    for key in sorted(ranges):
        lo, hi = ranges[key]
        draw = rng.uniform(lo, hi, n) if hi > lo else np.full(n, float(lo))
        if key == "lapse_rate_c_per_m":
            continue
        samples[:, MC_PARAMS[key]] = draw
    lapse = np.tile(np.asarray(lapse_c_per_m, np.float64), (n, 1))
    if "lapse_rate_c_per_m" in ranges:
        lo, hi = ranges["lapse_rate_c_per_m"]
        rng2 = np.random.default_rng([int(prob["seed"]), 1])
        draw = rng2.uniform(lo, hi, n) if hi > lo else np.full(n, float(lo))
        mean = float(np.mean(lapse_c_per_m))
        lapse = lapse * (draw / mean)[:, None] if mean > 0 else np.tile(draw[:, None], (1, 12))
    return samples, lapse


def ipa_zone(probability_pct: np.ndarray) -> np.ndarray:
    """IPA permafrost zone from probability (percent), as ESA CCI Permafrost maps it:
    1 continuous >= 90, 2 discontinuous 50-90, 3 sporadic 10-50, 4 isolated 0-10 (> 0),
    0 none (probability 0), 255 nodata (Brown et al. 1997, IPA circum-Arctic map)."""
    p = np.asarray(probability_pct)
    z = np.select(
        [p == CLASS_NODATA, p >= 90, p >= 50, p >= 10, p > 0], [CLASS_NODATA, 1, 2, 3, 4], 0
    )
    return z.astype(np.uint8)


def _f64(a):
    return np.ascontiguousarray(a, np.float64)


def _solar_or_flat(solar, shape):
    """The solar index block, or 1.0 everywhere (flat-ground exposure) when not given."""
    if solar is None:
        return np.ones(shape)
    return _f64(solar)


#: The surface table when no surface types are given: one type, parameters unchanged.
UNIFORM_SURFACE_MULT = np.ones((1, 3))


def surface_arrays(surface, surface_mult, shape) -> tuple[np.ndarray, np.ndarray]:
    """(surf (ny, nx) uint8, surf_mult (n_surface, 3) float64) for the kernels (module
    docstring). ``surface=None``: type 0 everywhere (zero-stride, no memory); ``surface_mult=
    None``: [[1, 1, 1]]. ValueError naming the argument when a shape, dtype or value is wrong."""
    if surface_mult is None:
        mult = UNIFORM_SURFACE_MULT
    else:
        mult = np.ascontiguousarray(surface_mult, np.float64)
        if mult.ndim != 2 or mult.shape[1] != 3 or not 1 <= mult.shape[0] <= 256:
            raise ValueError(
                f"surface_mult has shape {mult.shape}; expected (n_surface, 3) with 1 <= "
                "n_surface <= 256, columns (n_freezing, n_thawing, conductivity_ratio) multipliers"
            )
        if not (np.isfinite(mult).all() and (mult > 0).all()):
            raise ValueError("surface_mult: every multiplier must be finite and > 0")
    if surface is None:
        return np.broadcast_to(np.uint8(0), shape), mult
    surf = np.asarray(surface)
    if surf.shape != tuple(shape):
        raise ValueError(f"surface has shape {surf.shape}; expected the block's {tuple(shape)}")
    if surf.dtype.kind not in "ui":
        raise ValueError(f"surface has dtype {surf.dtype}; expected integer surface indices")
    if surf.size:
        lo, hi = int(surf.min()), int(surf.max())
        if lo < 0 or hi >= mult.shape[0]:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"surface index {bad} is outside the surface_mult table (rows 0..{mult.shape[0] - 1}); "
                "give one multiplier row per surface type"
            )
    return np.ascontiguousarray(surf, np.uint8), mult


def compute_ground(
    config: dict, z, slope, aspect, fdd, tdd, solar=None, surface=None, surface_mult=None
):
    """(magt float64, class uint8, stability uint8) for blocks of equal shape; ``surface``,
    ``surface_mult``: surface types (:func:`surface_arrays`)."""
    z = _f64(z)
    surf, mult = surface_arrays(surface, surface_mult, z.shape)
    magt = np.empty_like(z)
    cls = np.empty(z.shape, np.uint8)
    stab = np.empty(z.shape, np.uint8)
    ground_kernel(
        pack_params(config),
        z,
        _f64(slope),
        _f64(aspect),
        _solar_or_flat(solar, z.shape),
        _f64(fdd),
        np.ascontiguousarray(tdd, np.float64),
        surf,
        mult,
        magt,
        cls,
        stab,
    )
    return magt, cls, stab


def compute_scenarios(
    config: dict,
    forcing,
    z,
    slope,
    aspect,
    deltas,
    grid=None,
    solar=None,
    surface=None,
    surface_mult=None,
    out=None,
):
    """(magt (n, ny, nx) float64, class (n, ny, nx) uint8) under air warming.

    ``deltas``: one warming (C) per horizon, or (n, 12, ny, nx) monthly warming fields;
    ``surface``, ``surface_mult``: surface types (:func:`surface_arrays`); ``out``: (magt,
    class) arrays of that shape to fill instead, e.g. float32 bands of a model stack (the
    kernel computes in float64 and casts each row on storing; class codes are exact in float32).
    """
    from .climate import _ShapeGrid, uniform_delta_fields

    z = np.ascontiguousarray(z, np.float64)
    surf, mult = surface_arrays(surface, surface_mult, z.shape)
    deltas = np.asarray(deltas, np.float64)
    if deltas.ndim == 1:
        deltas = uniform_delta_fields(deltas, z.shape)
    t_ref, z_ref = forcing.fields(grid if grid is not None else _ShapeGrid(z.shape))
    shape = (len(deltas), *z.shape)
    if out is None:
        magt, cls = np.empty(shape), np.empty(shape, np.uint8)
    else:
        magt, cls = out
        if magt.shape != shape or cls.shape != shape:
            raise ValueError(f"out: shapes {magt.shape}, {cls.shape}; need {shape}")
    scenario_kernel(
        pack_params(config),
        z,
        _f64(slope),
        _f64(aspect),
        _solar_or_flat(solar, z.shape),
        t_ref,
        z_ref,
        forcing.lapse,
        forcing.method,
        deltas,
        surf,
        mult,
        magt,
        cls,
    )
    return magt, cls


def compute_probability(
    config: dict, forcing, z, slope, aspect, solar=None, grid=None, surface=None, surface_mult=None
):
    """Permafrost probability (percent, uint8, 255 nodata) of a block; see
    :func:`probability_kernel` and :func:`sample_parameters`; ``surface``, ``surface_mult``:
    surface types (:func:`surface_arrays`)."""
    from .climate import _ShapeGrid

    z = _f64(z)
    surf, mult = surface_arrays(surface, surface_mult, z.shape)
    samples, lapse = sample_parameters(config, forcing.lapse)
    t_ref, z_ref = forcing.fields(grid if grid is not None else _ShapeGrid(z.shape))
    prob = np.empty(z.shape, np.uint8)
    probability_kernel(
        samples,
        lapse,
        z,
        _f64(slope),
        _f64(aspect),
        _solar_or_flat(solar, z.shape),
        t_ref,
        z_ref,
        forcing.method,
        surf,
        mult,
        prob,
    )
    return prob


@nb.njit(cache=True, nogil=True, error_model="numpy")
def stefan_kernel(
    cls, fdd, tdd, solar, surf, surf_mult, n_f, n_t, solar_effect, k_t, k_f, latent, alt, freeze
):
    """:func:`active_layer`'s Stefan method in one pass over a block: where ``cls`` is
    permafrost, ALT = Stefan depth of n_t,eff TDD with the thawed conductivity; where it is
    seasonally frozen ground, the freezing depth of n_f FDD with the frozen one; NaN elsewhere
    (:func:`permamap.active_layer.stefan_depth_pixel`; n-factors of the pixel's surface type,
    n_t,eff from :func:`thawing_n_factor_pixel`)."""
    ny, nx = cls.shape
    for r in range(ny):
        for c in range(nx):
            s = surf[r, c]
            alt[r, c] = np.nan
            freeze[r, c] = np.nan
            if cls[r, c] == PERMAFROST:
                nt = thawing_n_factor_pixel(n_t * surf_mult[s, 1], solar_effect, solar[r, c])
                alt[r, c] = al_stefan_depth_pixel(nt * tdd[r, c], k_t, latent)
            elif cls[r, c] == SEASONALLY_FROZEN:
                nf = n_f * surf_mult[s, 0]
                freeze[r, c] = al_stefan_depth_pixel(nf * fdd[r, c], k_f, latent)


def active_layer(
    config: dict,
    cls,
    fdd,
    tdd,
    solar=None,
    maat=None,
    amplitude=None,
    surface=None,
    surface_mult=None,
):
    """(alt_m, freeze_depth_m) float64: active layer thickness where ``cls`` is permafrost and
    maximum seasonal freezing depth where it is seasonally frozen ground; NaN elsewhere.

    ``ground.active_layer.method``: ``stefan`` (surface indices = n-factor x air indices, the
    same n-factors as the TTOP model, per surface type: ``surface``, ``surface_mult`` as in
    :func:`surface_arrays`) or ``kudryavtsev`` (Anisimov et al. 1997 chain from air MAAT and
    amplitude, :func:`permamap.active_layer.kudryavtsev`, no n-factors, so the surface types are
    validated but do not enter; pixels where its own TTOP sign disagrees with the class are NaN).
    """
    from . import active_layer as al

    g = config["ground"]
    soil = g["active_layer"]
    latent = al.volumetric_latent_heat_j_per_m3(
        soil["water_content_m3_per_m3"], soil["unfrozen_water_m3_per_m3"]
    )
    cls = np.asarray(cls)
    surf, mult = surface_arrays(surface, surface_mult, cls.shape)
    pf = cls == PERMAFROST
    sfg = cls == SEASONALLY_FROZEN
    if soil["method"] == "stefan":
        tt = g["ttop"]
        alt = np.empty(cls.shape)
        freeze = np.empty(cls.shape)
        stefan_kernel(
            cls,
            _f64(fdd),
            _f64(tdd),
            _solar_or_flat(solar, cls.shape),
            surf,
            mult,
            float(tt["n_freezing"]),
            float(tt["n_thawing"]),
            float(tt["solar_effect"]),
            float(soil["k_thawed_w_per_m_k"]),
            float(soil["k_frozen_w_per_m_k"]),
            float(latent),
            alt,
            freeze,
        )
        return alt, freeze
    c_t = al.soil_volumetric_heat_capacity_j_per_m3_k(soil["water_content_m3_per_m3"], False)
    c_f = al.soil_volumetric_heat_capacity_j_per_m3_k(
        soil["water_content_m3_per_m3"], True, unfrozen_water=soil["unfrozen_water_m3_per_m3"]
    )
    res = al.kudryavtsev(
        _f64(maat),
        _f64(amplitude),
        k_thawed_w_per_m_k=soil["k_thawed_w_per_m_k"],
        k_frozen_w_per_m_k=soil["k_frozen_w_per_m_k"],
        c_thawed_j_per_m3_k=c_t,
        c_frozen_j_per_m3_k=c_f,
        latent_heat_j_per_m3=latent,
        snow_depth_m=soil["snow_depth_m"],
    )
    depth = np.asarray(res.depth_m, np.float64)
    ttop_k = np.asarray(res.ttop_c, np.float64)
    return np.where(pf & (ttop_k < 0), depth, np.nan), np.where(sfg & (ttop_k >= 0), depth, np.nan)


__all__ = [
    "ttop_c",
    "ttop_pixel",
    "lapse_magt_pixel",
    "classify_pixel",
    "stability_pixel",
    "compute_ground",
    "compute_scenarios",
    "pack_params",
    "surface_arrays",
    "maat_from_monthly",
]
