"""The fused per-pixel kernels (climate, scenarios, probability) against an independent
reference: the 12-month formulas written out per pixel in plain Python with the C library's
arccos and sin, and a least-squares harmonic operator re-derived here.

Stated tolerance (permamap.climate module docstring, "Speed"): MAGT within 1e-9 C, degree-days
within 1e-7 C*day, classes equal wherever the reference MAGT is farther than that from 0 C.
"""

import copy
import math
from decimal import Decimal, getcontext

import numpy as np
import pytest

from permamap import climate, ground
from permamap.climate import ACOS_POLY_MAX_ERROR_RAD, StationForcing, acos_poly
from permamap.scenario_response import scenario_climate

MAGT_TOL_C = 1e-9
DD_TOL_CDAY = 1e-7
DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)


# -- arccos -------------------------------------------------------------------------------------


def _pi_decimal():
    """pi to the context precision by Machin's formula, pi = 16 atan(1/5) - 4 atan(1/239)."""

    def atan_inv(n):
        x = Decimal(1) / n
        total, term, k = x, x, 1
        while True:
            term = -term * x * x
            k += 2
            if abs(term / k) < Decimal(10) ** -45:
                return total
            total += term / k

    return 16 * atan_inv(5) - 4 * atan_inv(239)


def _asin_series(s):
    """asin(s) = sum_n (2n)! / (4^n n!^2 (2n + 1)) s^(2n+1), Decimal, |s| <= 0.71."""
    total, term, n = s, s, 0
    while True:
        n += 1
        term = term * s * s * (2 * n - 1) ** 2 / ((2 * n) * (2 * n + 1))
        if term < Decimal(10) ** -45:
            return total
        total += term


def _acos_decimal(x, pi):
    x = Decimal(x)
    y = abs(x)
    if y <= Decimal("0.5"):
        r = pi / 2 - _asin_series(y)
    else:
        r = 2 * _asin_series(((1 - y) / 2).sqrt())
    return r if x >= 0 else pi - r


def test_acos_poly_error_bound_against_a_40_digit_reference():
    getcontext().prec = 50
    pi = _pi_decimal()
    rng = np.random.default_rng(0)
    xs = np.concatenate(
        [
            np.linspace(-1.0, 1.0, 1001),
            1.0 - np.logspace(-16, 0, 60),
            -1.0 + np.logspace(-16, 0, 60),
            np.nextafter([0.5, -0.5], 0.0),
            np.nextafter([0.5, -0.5], 2.0 * np.array([0.5, -0.5])),
            rng.uniform(-1.0, 1.0, 1000),
        ]
    )
    err = max(abs(Decimal(acos_poly(float(x))) - _acos_decimal(float(x), pi)) for x in xs)
    assert float(err) <= ACOS_POLY_MAX_ERROR_RAD
    # and the C library's arccos within the same bound plus its own half ulp
    got = np.array([acos_poly(float(x)) for x in xs])
    lib = np.array([math.acos(float(x)) for x in xs])
    assert np.max(np.abs(got - lib)) <= ACOS_POLY_MAX_ERROR_RAD + 2.3e-16
    assert acos_poly(1.0) == 0.0 and acos_poly(-1.0) == math.pi and acos_poly(0.0) == math.pi / 2
    assert math.isnan(acos_poly(1.5))


# -- an independent per-pixel reference ---------------------------------------------------------


def _operator():
    w = 2.0 * math.pi / 365.0
    e = np.concatenate([[0.0], np.cumsum(DAYS)])
    t0, t1 = e[:-1], e[1:]
    design = np.column_stack(
        [
            np.ones(12),
            (np.sin(w * t1) - np.sin(w * t0)) / (w * (t1 - t0)),
            (np.cos(w * t0) - np.cos(w * t1)) / (w * (t1 - t0)),
        ]
    )
    return np.linalg.pinv(design)


OP = _operator()


def _ref_climate(t):
    """(MAAT, FDD, TDD, A) of 12 monthly means, sinusoid degree-days with libm acos and sin."""
    mean = float(np.dot(t, DAYS) / 365.0)
    amp = math.hypot(float(OP[1] @ t), float(OP[2] @ t))
    if amp <= abs(mean):
        return (mean, 0.0, mean * 365.0, amp) if mean >= 0 else (mean, -mean * 365.0, 0.0, amp)
    theta = math.acos(-mean / amp)
    tdd = 365.0 / math.pi * (mean * theta + amp * math.sin(theta))
    return mean, tdd - mean * 365.0, tdd, amp


def _ref_monthly(t):
    return float(np.sum(np.maximum(0.0, -t) * DAYS)), float(np.sum(np.maximum(0.0, t) * DAYS))


def _ref_magt(cfg, fdd, tdd, z, slope, aspect, solar, surface_row, warming, mult):
    g = cfg["ground"]
    if g["model"] == "ttop":
        tt = g["ttop"]
        nf = tt["n_freezing"] * mult[surface_row, 0]
        nt = tt["n_thawing"] * mult[surface_row, 1]
        rk = tt["conductivity_ratio"] * mult[surface_row, 2]
        nt *= max(0.0, 1.0 + tt["solar_effect"] * (solar - 1.0))
        p = tt["period_days"]
        num = rk * nt * tdd - nf * fdd
        return num / p if num < 0 else (nt * tdd - nf * fdd / rk) / p
    la = g["lapse"]
    if aspect < 0:
        w = 0.0
    else:
        w = math.cos(math.radians(aspect)) * math.sin(math.radians(slope))
        w = min(1.0, max(-1.0, w / math.sin(math.radians(la["full_contrast_slope_deg"]))))
    rn, rs = la["rate_north_c_per_m"], la["rate_south_c_per_m"]
    rate = 0.5 * (rn + rs) + 0.5 * (rn - rs) * w
    return la["reference_magt_c"] - rate * (z - la["reference_elevation_m"]) + warming


def _reference_scenarios(
    cfg, t_ref, z_ref, lapse, method, z, slope, aspect, solar, deltas, surf, mult
):
    n = deltas.shape[0]
    magt = np.full((n, *z.shape), np.nan)
    cls = np.full((n, *z.shape), 255, np.uint8)
    for r, c in np.ndindex(z.shape):
        if np.isnan(z[r, c] + slope[r, c] + solar[r, c]):
            continue
        for k in range(n):
            d = deltas[k, :, r, c]
            t = t_ref[:, r, c] + lapse * (z_ref[r, c] - z[r, c]) + d
            if np.isnan(t).any():
                continue
            _, fdd, tdd, _ = _ref_climate(t)
            if method == "monthly":
                fdd, tdd = _ref_monthly(t)
            warming = float(np.dot(d, DAYS) / 365.0)
            m = _ref_magt(
                cfg,
                fdd,
                tdd,
                z[r, c],
                slope[r, c],
                aspect[r, c],
                solar[r, c],
                surf[r, c],
                warming,
                mult,
            )
            magt[k, r, c] = m
            cls[k, r, c] = 1 if m < 0 else (2 if fdd > 0 else 3)
    return magt, cls


class _Gridded:
    """A forcing whose reference climate varies per pixel (like WorldClim), not zero-stride."""

    def __init__(self, forcing, shape, seed=3):
        rng = np.random.default_rng(seed)
        self.lapse, self.method = forcing.lapse, forcing.method
        self.t = forcing.t_ref[:, None, None] + rng.normal(0.0, 1.5, (12, *shape))
        self.z = forcing.z_ref + rng.uniform(-300.0, 300.0, shape)
        self.t[:, 0, 3] = np.nan  # no climate data at one pixel

    def fields(self, grid):
        return self.t, self.z


def _landscape(shape=(9, 23), seed=11):
    rng = np.random.default_rng(seed)
    # 300-7000 m covers both sides of A = |M| (always thawed, always frozen) and the lobes
    z = rng.uniform(300.0, 7000.0, shape)
    slope = rng.uniform(0.0, 40.0, shape)
    aspect = rng.uniform(0.0, 360.0, shape)
    aspect[1, ::3] = -1.0  # flat
    solar = rng.uniform(0.6, 1.4, shape)
    z[2, 5] = np.nan
    slope[4, 7] = np.nan
    solar[5, 1] = np.nan
    surf = (rng.uniform(0, 1, shape) < 0.4).astype(np.uint8)
    return z, slope, aspect, solar, surf


MULT = np.array([[1.0, 1.0, 1.0], [0.85, 1.2, 0.8]])


def _deltas(kind, n_warm, shape, seed=4):
    rng = np.random.default_rng(seed)
    w = np.linspace(0.0, 5.0, n_warm)
    if kind == "uniform":
        return w
    if kind == "uniform_by_month":  # zero-stride, different per month
        per_month = w[:, None] + rng.uniform(-0.5, 0.5, (n_warm, 12))
        return np.broadcast_to(per_month[:, :, None, None], (n_warm, 12, *shape))
    if kind == "constant_in_month":  # varies over space, equal in every month
        f = w[:, None, None] + rng.uniform(0.0, 1.0, (n_warm, *shape))
        return np.repeat(f[:, None], 12, axis=1)
    f = w[:, None, None, None] + rng.normal(0.0, 0.6, (n_warm, 12, *shape))  # CMIP6-like
    f[1, :, 3, 4] = np.nan  # no delta data at one pixel
    return f


@pytest.mark.parametrize("model", ["ttop", "lapse"])
@pytest.mark.parametrize("method", ["sinusoid", "monthly"])
@pytest.mark.parametrize("kind", ["uniform", "uniform_by_month", "constant_in_month", "cmip6"])
@pytest.mark.parametrize("gridded", [False, True])
def test_scenario_kernel_matches_the_12_month_reference(config, model, method, kind, gridded):
    cfg = copy.deepcopy(config)
    cfg["ground"]["model"] = model
    cfg["climate"]["degree_days"] = method
    z, slope, aspect, solar, surf = _landscape()
    forcing = StationForcing(cfg)
    if gridded:
        forcing = _Gridded(forcing, z.shape)
    deltas = _deltas(kind, 5, z.shape)
    magt, cls = ground.compute_scenarios(
        cfg, forcing, z, slope, aspect, deltas, solar=solar, surface=surf, surface_mult=MULT
    )
    fields = np.asarray(deltas, float)
    if fields.ndim == 1:
        fields = climate.uniform_delta_fields(fields, z.shape)
    t_ref, z_ref = forcing.fields(climate._ShapeGrid(z.shape))
    t_ref = np.broadcast_to(t_ref, (12, *z.shape))
    z_ref = np.broadcast_to(z_ref, z.shape)
    rm, rc = _reference_scenarios(
        cfg, t_ref, z_ref, forcing.lapse, method, z, slope, aspect, solar, fields, surf, MULT
    )
    np.testing.assert_array_equal(np.isnan(magt), np.isnan(rm))
    np.testing.assert_allclose(magt, rm, rtol=0, atol=MAGT_TOL_C)
    clear = np.isnan(rm) | (np.abs(rm) > MAGT_TOL_C)
    np.testing.assert_array_equal(cls[clear], rc[clear])
    assert {1, 2, 3} <= set(np.unique(cls)) or model == "lapse"


@pytest.mark.parametrize("method", ["sinusoid", "monthly"])
@pytest.mark.parametrize("gridded", [False, True])
def test_climate_kernels_match_the_12_month_reference(config, method, gridded):
    cfg = copy.deepcopy(config)
    cfg["climate"]["degree_days"] = method
    z, *_ = _landscape()
    forcing = StationForcing(cfg)
    if gridded:
        forcing = _Gridded(forcing, z.shape)
    delta = _deltas("cmip6", 2, z.shape)[1]
    t_ref, z_ref = forcing.fields(climate._ShapeGrid(z.shape))
    t_ref = np.broadcast_to(t_ref, (12, *z.shape))
    z_ref = np.broadcast_to(z_ref, z.shape)
    for got, dfield in (
        (climate.compute_climate(z, forcing, delta_c=1.5), np.full((12, *z.shape), 1.5)),
        (scenario_climate(forcing, z, delta, climate._ShapeGrid(z.shape)), delta),
    ):
        ref = np.full((4, *z.shape), np.nan)
        for r, c in np.ndindex(z.shape):
            t = t_ref[:, r, c] + forcing.lapse * (z_ref[r, c] - z[r, c]) + dfield[:, r, c]
            if not np.isnan(t).any():
                ref[:, r, c] = _ref_climate(t)
                if method == "monthly":
                    ref[1:3, r, c] = _ref_monthly(t)
        maat, fdd, tdd, amp = got
        np.testing.assert_array_equal(np.isnan(maat), np.isnan(ref[0]))
        np.testing.assert_allclose(maat, ref[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(amp, ref[3], rtol=0, atol=1e-12)
        np.testing.assert_allclose(fdd, ref[1], rtol=0, atol=DD_TOL_CDAY)
        np.testing.assert_allclose(tdd, ref[2], rtol=0, atol=DD_TOL_CDAY)


@pytest.mark.parametrize("model", ["ttop", "lapse"])
@pytest.mark.parametrize("gridded", [False, True])
def test_probability_kernel_matches_the_member_by_member_reference(config, model, gridded):
    cfg = copy.deepcopy(config)
    cfg["ground"]["model"] = model
    cfg["ground"]["probability"]["samples"] = 40
    cfg["ground"]["probability"]["ranges"]["rate_north_c_per_m"] = [0.005, 0.007]
    cfg["ground"]["probability"]["ranges"]["reference_magt_c"] = [-1.5, 1.5]
    z, slope, aspect, solar, surf = _landscape((6, 11), seed=8)
    z = np.where(np.isnan(z), z, 3000.0 + (z - 300.0) / 6700.0 * 2200.0)  # the transition belt
    forcing = StationForcing(cfg)
    if gridded:
        forcing = _Gridded(forcing, z.shape)
    prob = ground.compute_probability(
        cfg, forcing, z, slope, aspect, solar=solar, surface=surf, surface_mult=MULT
    )
    samples, lapses = ground.sample_parameters(cfg, forcing.lapse)
    t_ref, z_ref = forcing.fields(climate._ShapeGrid(z.shape))
    t_ref = np.broadcast_to(t_ref, (12, *z.shape))
    z_ref = np.broadcast_to(z_ref, z.shape)
    members = []  # the config of every member: its drawn values in their config sections
    for q in samples:
        mc = copy.deepcopy(cfg)
        for key, idx in ground.MC_PARAMS.items():
            section = "lapse" if key.startswith("rate_") or key == "reference_magt_c" else "ttop"
            mc["ground"][section][key] = q[idx]
        members.append(mc)
    ref = np.full(z.shape, 255, np.uint8)
    for r, c in np.ndindex(z.shape):
        if np.isnan(z[r, c] + slope[r, c] + solar[r, c]):
            continue
        count, missing = 0, False
        for mc, lapse in zip(members, lapses, strict=True):
            t = t_ref[:, r, c] + lapse * (z_ref[r, c] - z[r, c])
            if np.isnan(t).any():
                missing = True
                break
            _, fdd, tdd, _ = _ref_climate(t)
            m = _ref_magt(
                mc, fdd, tdd, z[r, c], slope[r, c], aspect[r, c], solar[r, c], surf[r, c], 0.0, MULT
            )
            count += m < 0
        if not missing:
            ref[r, c] = math.floor(100.0 * count / len(samples) + 0.5)
    np.testing.assert_array_equal(prob, ref)
    assert ((ref > 0) & (ref < 100)).any()


def test_same_bits_for_any_chunking(config):
    """Row and column splits (odd widths exercise the vector remainder loops) give the bits of
    the whole block, for scenarios, climate and probability."""
    z, slope, aspect, solar, surf = _landscape((12, 37), seed=21)
    forcing = StationForcing(config)
    deltas = _deltas("cmip6", 4, z.shape)
    kw = dict(surface=surf, surface_mult=MULT)
    whole = ground.compute_scenarios(config, forcing, z, slope, aspect, deltas, solar=solar, **kw)
    whole_u = ground.compute_scenarios(
        config, forcing, z, slope, aspect, [0, 1, 2], solar=solar, **kw
    )
    whole_c = climate.compute_climate(z, forcing, delta_c=0.7)
    whole_p = ground.compute_probability(config, forcing, z, slope, aspect, solar=solar, **kw)
    for rows, cols in (
        (slice(0, 5), slice(0, 13)),
        (slice(5, 12), slice(13, 37)),
        (slice(3, 4), slice(1, 2)),
    ):
        sub = (z[rows, cols], slope[rows, cols], aspect[rows, cols])
        skw = dict(solar=solar[rows, cols], surface=surf[rows, cols], surface_mult=MULT)
        part = ground.compute_scenarios(config, forcing, *sub, deltas[:, :, rows, cols], **skw)
        part_u = ground.compute_scenarios(config, forcing, *sub, [0, 1, 2], **skw)
        for a, b in zip(part + part_u, whole + whole_u, strict=True):
            np.testing.assert_array_equal(a, b[:, rows, cols])
        for a, b in zip(
            climate.compute_climate(sub[0], forcing, delta_c=0.7), whole_c, strict=True
        ):
            np.testing.assert_array_equal(a, b[rows, cols])
        np.testing.assert_array_equal(
            ground.compute_probability(config, forcing, *sub, **skw), whole_p[rows, cols]
        )


def test_the_cmip6_path_gives_the_uniform_path_bits(config):
    """A delta field that happens to be uniform but is not zero-stride (per-pixel harmonics)
    gives exactly the bits of the zero-stride uniform path (harmonics once per warming)."""
    z, slope, aspect, solar, _ = _landscape((7, 19), seed=2)
    forcing = StationForcing(config)
    for fields in (_deltas("uniform", 3, z.shape), _deltas("uniform_by_month", 3, z.shape)):
        if np.ndim(fields) == 1:
            fields = climate.uniform_delta_fields(fields, z.shape)
        a = ground.compute_scenarios(config, forcing, z, slope, aspect, fields, solar=solar)
        b = ground.compute_scenarios(
            config, forcing, z, slope, aspect, np.array(fields), solar=solar
        )
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
