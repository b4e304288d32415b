"""Air temperature at the DEM and the annual freezing and thawing indices.

Temperatures in C, degree-days in C*day, elevations in m, lapse rates in C per m.

Monthly air temperature at a pixel (DESIGN.md 4.2)::

    T_m(z) = T_m,ref + lapse_m * (z_ref - z) + dT

with T_m,ref the reference (station) monthly mean at elevation z_ref and dT a scenario warming.
MAAT is the day-weighted mean of the twelve months. The freezing index FDD = integral of
max(0, -T) dt and thawing index TDD = integral of max(0, T) dt over the year are computed
either

* ``sinusoid`` (default): the annual cycle through the 12 monthly means is fitted by least
  squares with T(t) = M + A cos(w (t - t0)), each month's regressors being the *month averages*
  of the cosine and sine (so monthly averaging does not damp A), and integrated analytically
  (the positive lobe of a cosine)::

      theta = arccos(-M / A),  TDD = (P / pi) (M theta + A sin theta),  FDD = TDD - M P

  with M the day-weighted mean (MAAT). Exact when the cycle is sinusoidal, which the
  continental monsoon climate of the NE Tibetan Plateau nearly is; the higher harmonics of a
  real station (Xining's warm season is broader than its cold one) are ignored. Or
* ``monthly``: FDD = sum_m days_m * max(0, -T_m) (the classic monthly sum; it misses the
  freezing or thawing inside months whose mean is on the other side of 0 C, so both indices
  are biased low in spring and autumn: 46 C*day each for MAAT 0 C and a 12.35 C amplitude,
  against 1,435 C*day exact).

(Linear interpolation between mid-month values was tried and rejected: its chords cut the
peaks and bias both indices low by about 3 %, more than the monthly sum.)

Speed (the kernels evaluate this for every pixel and warming). M, a and b are linear in the
monthly temperatures, so with H = :func:`harmonics`::

    (M, a, b) = H(T_ref) + (z_ref - z) H(lapse) + H(delta)

H(lapse) is computed once per block, H(T_ref) once per block for a station (zero-stride
field) or once per pixel for a gridded climatology, H(delta) once per warming for a uniform
warming ((d, 0, 0) exactly when every month warms by d) or per pixel for CMIP6 fields; MAAT and
amplitude are the M and A = sqrt(a^2 + b^2) of the fit. The ``monthly`` method still sums the
12 warmed months. In the sinusoid, sin(arccos u) = sqrt((1 - u)(1 + u)) and arccos is
:func:`acos_poly`, a branch-free polynomial (so the loops vectorise) whose error is at most
5e-16 rad (libm's: 2.2e-16). TDD is stationary in theta at fixed M and A (dTDD/dtheta =
(P / pi)(M + A cos theta) = 0), so that error moves TDD and FDD by at most (P / pi)|M| 5e-16,
about 1e-12 C*day for |M| < 20 C, and TTOP by less than 1e-13 C. Against the 12-month
summation with libm arccos and sin these kernels agree to 1e-9 C in MAGT and 1e-7 C*day in the
degree-days (tested, tests/test_model_kernels.py; about 1e-14 C and 1e-11 C*day measured).
"""

from __future__ import annotations

import math
import threading

import numba as nb
import numpy as np

#: Days per month of a 365-day year.
DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.float64)
YEAR_DAYS = 365.0
#: Mid-July (day 196.5 counted from 1 January 00:00) is the peak of the sinusoidal cycle.
SINUSOID_PEAK_DAY = 181.0 + 15.5

METHOD_SINUSOID = 0
METHOD_MONTHLY = 1
METHODS = {"sinusoid": METHOD_SINUSOID, "monthly": METHOD_MONTHLY}


def sinusoid_monthly_means(
    maat_c: float, amplitude_c: float, peak_day: float = SINUSOID_PEAK_DAY
) -> np.ndarray:
    """Monthly means of T(t) = MAAT + A cos(2 pi (t - t_peak) / 365), exact month averages.

    The average of the cosine over a month [t0, t1] is
    (P / (2 pi (t1 - t0))) [sin(w (t1 - t_peak)) - sin(w (t0 - t_peak))], w = 2 pi / P.
    """
    w = 2.0 * math.pi / YEAR_DAYS
    edges = np.concatenate([[0.0], np.cumsum(DAYS_IN_MONTH)])
    t0, t1 = edges[:-1], edges[1:]
    mean_cos = (np.sin(w * (t1 - peak_day)) - np.sin(w * (t0 - peak_day))) / (w * (t1 - t0))
    return maat_c + amplitude_c * mean_cos


def station_monthly_c(station: dict) -> np.ndarray:
    """The station's 12 monthly normals (C): given ``monthly_c`` or the sinusoid.

    The sinusoid has mean ``maat_c`` and amplitude (``july_c`` - ``january_c``) / 2.
    """
    if station.get("monthly_c") is not None:
        return np.asarray(station["monthly_c"], dtype=np.float64)
    amplitude = 0.5 * (station["july_c"] - station["january_c"])
    return sinusoid_monthly_means(station["maat_c"], amplitude)


def lapse_rates_c_per_m(value) -> np.ndarray:
    """Twelve monthly lapse rates (C per m) from one number or twelve."""
    arr = np.asarray(value, dtype=np.float64)
    return np.full(12, float(arr)) if arr.ndim == 0 else arr.copy()


def annual_mean_c(monthly_c) -> float:
    """Day-weighted annual mean of 12 monthly means."""
    return float(np.dot(monthly_c, DAYS_IN_MONTH) / YEAR_DAYS)


def _month_averaged_harmonics() -> np.ndarray:
    """Least-squares operator (3 x 12) giving (M, a, b) of T = M + a cos(wt) + b sin(wt) from
    twelve month means, with the cosine and sine averaged over each month exactly."""
    w = 2.0 * math.pi / YEAR_DAYS
    edges = np.concatenate([[0.0], np.cumsum(DAYS_IN_MONTH)])
    t0, t1 = edges[:-1], edges[1:]
    cos_avg = (np.sin(w * t1) - np.sin(w * t0)) / (w * (t1 - t0))
    sin_avg = (np.cos(w * t0) - np.cos(w * t1)) / (w * (t1 - t0))
    design = np.column_stack([np.ones(12), cos_avg, sin_avg])
    return np.linalg.pinv(design)


HARMONIC_OPERATOR = _month_averaged_harmonics()
DAYS_IN_MONTH_NB = DAYS_IN_MONTH  # numba freezes module-level arrays as constants

# arccos by a polynomial (module docstring "Speed"): asin(s) = s + s t Q(t), t = s^2 in
# [0, 1/4], Q of degree 12 interpolating the Taylor series of asin at the 13 Chebyshev nodes
# of [0, 1/4] (solved in exact rational arithmetic, rounded to double).
_Q0 = 0.16666666666666669
_Q1 = 0.07499999999998433
_Q2 = 0.04464285714635543
_Q3 = 0.030381944138531247
_Q4 = 0.02237217294214989
_Q5 = 0.017352392720869973
_Q6 = 0.013971212973552933
_Q7 = 0.011479177415184906
_Q8 = 0.01032281435018578
_Q9 = 0.005457506718640357
_Q10 = 0.017400879442694025
_Q11 = -0.014851887071247207
_Q12 = 0.028757851367421566
#: Largest error of :func:`acos_poly` (radians) found against a 50-digit reference on
#: -1..1 (tests/test_climate.py checks it); the C library's acos is within 2.2e-16.
ACOS_POLY_MAX_ERROR_RAD = 5.0e-16


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def acos_poly(x):
    """arccos(x) (radians) for -1 <= x <= 1, branch-free so loops over it vectorise.

    |x| <= 1/2: pi/2 - asin(x); |x| > 1/2: acos(|x|) = 2 asin(sqrt((1 - |x|) / 2)) and
    acos(-y) = pi - acos(y), with asin(s) = s + s t Q(t) (t = s^2 <= 1/4, Q above). Error
    <= ``ACOS_POLY_MAX_ERROR_RAD``. NaN outside [-1, 1].
    """
    y = abs(x)
    small = y <= 0.5
    t = x * x if small else (1.0 - y) * 0.5
    s = y if small else math.sqrt(t)
    q = _Q12
    q = q * t + _Q11
    q = q * t + _Q10
    q = q * t + _Q9
    q = q * t + _Q8
    q = q * t + _Q7
    q = q * t + _Q6
    q = q * t + _Q5
    q = q * t + _Q4
    q = q * t + _Q3
    q = q * t + _Q2
    q = q * t + _Q1
    q = q * t + _Q0
    a = s + s * (t * q)
    if small:
        return 0.5 * math.pi - (a if x >= 0.0 else -a)
    return 2.0 * a if x > 0.0 else math.pi - 2.0 * a


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sinusoid_degree_days(mean_c, amplitude_c, period_days):
    """(FDD, TDD) of T(t) = M + A cos(w t) over one period, analytically.

    TDD = (P / pi) (M theta + A sin theta), theta = arccos(u), u = -M / A, with
    sin theta = sqrt((1 - u)(1 + u)) and arccos by :func:`acos_poly`; FDD = TDD - M P.
    """
    if amplitude_c <= abs(mean_c):
        if mean_c >= 0.0:
            return 0.0, mean_c * period_days
        return -mean_c * period_days, 0.0
    u = -mean_c / amplitude_c
    theta = acos_poly(u)
    sin_theta = math.sqrt((1.0 - u) * (1.0 + u))
    tdd = period_days / math.pi * (mean_c * theta + amplitude_c * sin_theta)
    return tdd - mean_c * period_days, tdd


@nb.njit(cache=True, nogil=True, error_model="numpy")
def harmonics(t_monthly):
    """(M, a, b) of 12 monthly values: the day-weighted annual mean M and the month-averaged
    least-squares harmonics a, b of T = M + a cos(wt) + b sin(wt) (``HARMONIC_OPERATOR``).
    Linear in ``t_monthly``."""
    s = 0.0
    a = 0.0
    b = 0.0
    for m in range(12):
        t = t_monthly[m]
        s += t * DAYS_IN_MONTH_NB[m]
        a += HARMONIC_OPERATOR[1, m] * t
        b += HARMONIC_OPERATOR[2, m] * t
    return s / 365.0, a, b


@nb.njit(cache=True, nogil=True, error_model="numpy")
def delta_harmonics(d_monthly):
    """:func:`harmonics` of a monthly warming; exactly (d, 0, 0) when all 12 months warm by
    the same d (the fit of a constant), so a uniform warming shifts the annual mean only."""
    d0 = d_monthly[0]
    same = True
    for m in range(1, 12):
        if d_monthly[m] != d0:
            same = False
    if same:
        return d0, 0.0, 0.0
    return harmonics(d_monthly)


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def annual_amplitude_c(a, b):
    """Amplitude A = sqrt(a^2 + b^2) (C, half the annual range) of the fitted sinusoid."""
    return math.sqrt(a * a + b * b)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def degree_days(t_monthly, method):
    """(FDD, TDD) in C*day from 12 monthly means; ``method`` 0 = sinusoid, 1 = monthly sum."""
    if method == METHOD_MONTHLY:
        return monthly_degree_days(t_monthly)
    m, a, b = harmonics(t_monthly)
    return sinusoid_degree_days(m, annual_amplitude_c(a, b), YEAR_DAYS)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def monthly_degree_days(t_monthly):
    """(FDD, TDD) = sum_m days_m max(0, -T_m), sum_m days_m max(0, T_m) (C*day)."""
    fdd = 0.0
    tdd = 0.0
    for m in range(12):
        t = t_monthly[m]
        d = DAYS_IN_MONTH_NB[m]
        if t > 0.0:
            tdd += t * d
        else:
            fdd -= t * d
    return fdd, tdd


@nb.njit(cache=True, nogil=True, error_model="numpy")
def air_monthly_at(t_ref, z_ref, z, lapse, delta, out):
    """T_m = T_m,ref + lapse_m (z_ref - z) + delta_m for the 12 months, written to ``out``."""
    for m in range(12):
        out[m] = t_ref[m] + lapse[m] * (z_ref - z) + delta[m]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def maat_from_monthly(t_monthly):
    """Day-weighted annual mean (C) of 12 monthly means (the M of :func:`harmonics`)."""
    return harmonics(t_monthly)[0]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def is_spatially_uniform(field):
    """True when a (k, ny, nx) array repeats one value per leading index over the block: a
    zero-stride broadcast (a station's reference climate, a uniform warming)."""
    return field.strides[field.ndim - 2] == 0 and field.strides[field.ndim - 1] == 0


@nb.njit(cache=True, nogil=True, error_model="numpy")
def base_harmonics_row(r, z, t_ref, z_ref, ref_h, lapse_h, uniform_ref, m_out, a_out, b_out):
    """(M, a, b) of the undisturbed air temperature T_m = T_m,ref + lapse_m (z_ref - z) of
    every pixel of row ``r``, by linearity::

        (M, a, b) = H(T_ref) + (z_ref - z) H(lapse)

    with H = :func:`harmonics`. ``lapse_h`` = H(lapse); ``ref_h`` = H(T_ref) when
    ``uniform_ref`` (zero-stride ``t_ref``: computed once per block), else H(T_ref) is summed
    here per pixel, month by month in the order of :func:`harmonics` (the same bits).
    """
    nx = z.shape[1]
    if uniform_ref:
        for c in range(nx):
            m_out[c] = ref_h[0]
            a_out[c] = ref_h[1]
            b_out[c] = ref_h[2]
    else:
        for c in range(nx):
            m_out[c] = 0.0
            a_out[c] = 0.0
            b_out[c] = 0.0
        for m in range(12):
            d = DAYS_IN_MONTH_NB[m]
            h1 = HARMONIC_OPERATOR[1, m]
            h2 = HARMONIC_OPERATOR[2, m]
            for c in range(nx):
                t = t_ref[m, r, c]
                m_out[c] += t * d
                a_out[c] += h1 * t
                b_out[c] += h2 * t
        for c in range(nx):
            m_out[c] = m_out[c] / 365.0
    for c in range(nx):
        dz = z_ref[r, c] - z[r, c]
        m_out[c] = m_out[c] + dz * lapse_h[0]
        a_out[c] = a_out[c] + dz * lapse_h[1]
        b_out[c] = b_out[c] + dz * lapse_h[2]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def reference_harmonics(t_ref, lapse):
    """(H(T_ref) of the block's first pixel if ``t_ref`` is uniform, else zeros; H(lapse);
    uniform flag) for :func:`base_harmonics_row`."""
    ref_h = np.zeros(3)
    uniform = is_spatially_uniform(t_ref) and t_ref.shape[1] > 0 and t_ref.shape[2] > 0
    if uniform:
        ref_h[0], ref_h[1], ref_h[2] = harmonics(t_ref[:, 0, 0])
    lapse_h = np.empty(3)
    lapse_h[0], lapse_h[1], lapse_h[2] = harmonics(lapse)
    return ref_h, lapse_h, uniform


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def pixel_climate(mean_c, amplitude_c, method, t_monthly):
    """(MAAT, FDD, TDD, amplitude) of one pixel from the M and A of its (warmed) air
    temperature; ``t_monthly`` (the 12 warmed monthly means) is read by the ``monthly``
    method only. All four NaN when the climate is missing."""
    if method == METHOD_MONTHLY:
        f, th = monthly_degree_days(t_monthly)
    else:
        f, th = sinusoid_degree_days(mean_c, amplitude_c, YEAR_DAYS)
    if math.isnan(mean_c + amplitude_c):
        return np.nan, np.nan, np.nan, np.nan
    return mean_c, f, th, amplitude_c


@nb.njit(cache=True, nogil=True, error_model="numpy")
def climate_kernel(z, t_ref, z_ref, lapse, delta, method, maat, fdd, tdd, amplitude):
    """MAAT, FDD, TDD and annual amplitude for every pixel of ``z`` (NaN = nodata) under a
    uniform warming ``delta`` (C, every month).

    ``t_ref``: (12, ny, nx) reference monthly temperature (C) valid at ``z_ref`` (ny, nx);
    broadcast (zero-stride) arrays are fine for a single station (and faster: the reference
    harmonics are then computed once). MAAT and amplitude are the M and A of the harmonic fit
    (:func:`base_harmonics_row` plus the warming's (delta, 0, 0)), computed once per pixel and
    shared with the degree-days; the sinusoid loop over a row is branch-free (vectorises).
    """
    ny, nx = z.shape
    ref_h, lapse_h, uniform = reference_harmonics(t_ref, lapse)
    m0 = np.empty(nx)
    a0 = np.empty(nx)
    b0 = np.empty(nx)
    t = np.empty(12)
    for r in range(ny):
        base_harmonics_row(r, z, t_ref, z_ref, ref_h, lapse_h, uniform, m0, a0, b0)
        if method == METHOD_MONTHLY:
            for c in range(nx):
                for m in range(12):
                    t[m] = t_ref[m, r, c] + lapse[m] * (z_ref[r, c] - z[r, c]) + delta
                mm, f, th, amp = pixel_climate(
                    m0[c] + delta, annual_amplitude_c(a0[c], b0[c]), METHOD_MONTHLY, t
                )
                maat[r, c] = mm
                fdd[r, c] = f
                tdd[r, c] = th
                amplitude[r, c] = amp
        else:
            for c in range(nx):
                mm, f, th, amp = pixel_climate(
                    m0[c] + delta, annual_amplitude_c(a0[c], b0[c]), METHOD_SINUSOID, t
                )
                maat[r, c] = mm
                fdd[r, c] = f
                tdd[r, c] = th
                amplitude[r, c] = amp


class StationForcing:
    """Reference monthly air temperature from one station (constant over the region)."""

    def __init__(self, config: dict):
        clim = config["climate"]
        st = clim["station"]
        self.name = st["name"]
        self.t_ref = station_monthly_c(st)
        self.z_ref = float(st["elevation_m"])
        self.lapse = lapse_rates_c_per_m(clim["lapse_rate_c_per_m"])
        self.method = METHODS[clim.get("degree_days", "sinusoid")]

    def fields(self, grid):
        """(t_ref (12, ny, nx), z_ref (ny, nx)) on ``grid`` (a tile's Grid) as zero-copy
        broadcast arrays."""
        ny, nx = grid.height, grid.width
        t = np.broadcast_to(self.t_ref[:, None, None], (12, ny, nx))
        z = np.broadcast_to(np.float64(self.z_ref), (ny, nx))
        return t, z


def uniform_delta_fields(warmings_c, shape) -> np.ndarray:
    """(n, 12, ny, nx) zero-copy monthly warming fields from one warming (C) per horizon."""
    w = np.asarray(warmings_c, np.float64)
    return np.broadcast_to(w[:, None, None, None], (len(w), 12, *shape))


def _open_monthly_raster(path, *, what: str, count: int):
    """The open rasterio dataset of a retrieved raster (a ``resources/<run>/inputs/`` file),
    checked for CRS and band count; one readable error if it is missing or bad."""
    from pathlib import Path

    import rasterio

    from .errors import InputDataError

    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"{what}: {path} does not exist; run the retrieve rules first (snakemake with this "
            "config runs them) or check climate.source"
        )
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputDataError(f"{what}: {path} is not a readable raster ({first})") from None
    if src.crs is None or src.count != count:
        src.close()
        raise InputDataError(
            f"{what}: {path} has no CRS"
            if src.crs is None
            else f"{what}: {path} has {src.count} band(s), expected {count}"
        )
    return src


def pixel_centres(grid, region=None) -> tuple[np.ndarray, np.ndarray]:
    """(latitudes (ny,), longitudes (nx,)) of the pixel centres of ``grid``, degrees.

    When ``grid`` is a window of ``region`` (same resolution, origin on the region's lattice:
    every tile and chunk grid), they are computed from the region's row and column indices with
    the expression of ``Grid.row_latitudes`` (as ``blocks.row_geometry`` does), so a pixel has
    the same bits in every tile and chunk; otherwise from ``grid`` itself."""
    if region is not None and grid.res_deg == region.res_deg:
        c = (grid.west - region.west) / grid.res_deg
        r = (region.north - grid.north) / grid.res_deg
        ci, ri = round(c), round(r)
        if abs(c - ci) < 1e-6 and abs(r - ri) < 1e-6:
            rows = np.arange(ri, ri + grid.height)
            cols = np.arange(ci, ci + grid.width)
            lat = region.north - (rows + 0.5) * region.res_deg
            lon = region.west + (cols + 0.5) * region.res_deg
            return lat, lon
    return grid.row_latitudes(), grid.col_longitudes()


@nb.njit(cache=True, nogil=True, error_model="numpy")
def bilinear_kernel(src, row_off, col_off, src_h, src_w, sy, sx, out):
    """Bilinear interpolation of every band of ``src`` at source pixel coordinates.

    ``src`` (bands, rows, cols): the window of a (src_h, src_w) raster whose first cell is
    (``row_off``, ``col_off``), NaN nodata; ``sy`` (ny,), ``sx`` (nx,): the destination pixel
    centres in the raster's pixel coordinates (cell k spans [k, k + 1)); ``out`` (bands, ny, nx).
    With (y0, x0) = floor(s - 1/2) and f = s - 1/2 - floor(s - 1/2)::

        v = sum w_k v_k / sum w_k,  w = (1 - fy)(1 - fx), (1 - fy) fx, fy (1 - fx), fy fx

    over the four cells around the centre that lie inside the raster and hold data (GDAL's
    bilinear rule, ``GWKBilinearResample4Sample``: a cell missing from the four re-weights the
    others); NaN where the centre falls outside the raster or in a cell without data (GDAL's
    warper skips those) or the weight is below 1e-6."""
    nbands, ny, nx = out.shape
    wr, wc = src.shape[1], src.shape[2]
    for i in range(ny):
        y = sy[i]
        yc = y - 0.5
        y0 = math.floor(yc)
        fy = yc - y0
        iy0 = int(y0) - row_off
        for j in range(nx):
            x = sx[j]
            if not (0.0 <= y < src_h and 0.0 <= x < src_w):
                for k in range(nbands):
                    out[k, i, j] = np.nan
                continue
            xc = x - 0.5
            x0 = math.floor(xc)
            fx = xc - x0
            ix0 = int(x0) - col_off
            # the cell holding the centre (inside the window: it spans every centre's cell)
            rc, cc = int(math.floor(y)) - row_off, int(math.floor(x)) - col_off
            for k in range(nbands):
                if not src[k, rc, cc] == src[k, rc, cc]:
                    out[k, i, j] = np.nan
                    continue
                acc = 0.0
                wsum = 0.0
                for dy in range(2):
                    r = iy0 + dy
                    if r < 0 or r >= wr:
                        continue
                    wy = fy if dy else 1.0 - fy
                    for dx in range(2):
                        c = ix0 + dx
                        if c < 0 or c >= wc:
                            continue
                        v = src[k, r, c]
                        if v == v:
                            w = wy * (fx if dx else 1.0 - fx)
                            acc += w * v
                            wsum += w
                out[k, i, j] = acc / wsum if wsum >= 1e-6 else np.nan


def warp_monthly_raster(path, grid, *, what: str, count: int = 12, region=None) -> np.ndarray:
    """(count, ny, nx) float64 bilinear resampling of a retrieved raster onto ``grid`` (a
    :class:`~permamap.grid.Grid`), NaN where the source has no data (its nodata value or NaN).
    Bilinear interpolation reproduces a field that is linear in longitude and latitude exactly.

    Only the window of source cells the grid needs is read, so a chunk's forcing costs memory
    for the chunk, not for the region's climate raster. On an EPSG:4326 north-up source,
    :func:`bilinear_kernel` interpolates at the pixel centres of :func:`pixel_centres` (with
    ``region``, the region grid: the same bits for a pixel in every tile and chunk, which GDAL's
    warper does not give: its value for a pixel depends on the destination's extent, by up to
    2e-14 C in tests/test_retrieve.py). It agrees with GDAL's single-band bilinear warp to
    3e-12 C with the same nodata pixels (tested) and took 3.5 ns per pixel and band against
    GDAL's 27 (measured on 512 x 512 chunks of a 30" climatology). Other sources go through
    GDAL's warper."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window

    from .grid import CRS

    out = np.full((count, grid.height, grid.width), np.nan, np.float64)
    with _open_monthly_raster(path, what=what, count=count) as src:
        t = src.transform
        nodata = np.nan if src.nodata is None else src.nodata
        if src.crs != CRS or t.b != 0.0 or t.d != 0.0 or t.a <= 0.0 or t.e >= 0.0:
            reproject(
                rasterio.band(src, list(range(1, count + 1))),
                out,
                src_nodata=nodata,
                dst_transform=grid.transform,
                dst_crs=CRS,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
            return out
        lat, lon = pixel_centres(grid, region)
        sy = (t.f - lat) / -t.e
        sx = (lon - t.c) / t.a
        # the source cells the interpolation can touch, clipped to the raster
        r0 = max(0, math.floor(sy.min() - 0.5))
        r1 = min(src.height, math.floor(sy.max() - 0.5) + 2)
        c0 = max(0, math.floor(sx.min() - 0.5))
        c1 = min(src.width, math.floor(sx.max() - 0.5) + 2)
        if r1 <= r0 or c1 <= c0:
            return out
        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = src.read(window=win, masked=True).astype(np.float64).filled(np.nan)
    bilinear_kernel(data, r0, c0, src.height, src.width, sy, sx, out)
    return out


class GridForcing:
    """Reference monthly air temperature from a gridded climatology (``climate.source``
    ``worldclim`` or ``chelsa``), retrieved by the ``retrieve_climate`` rule.

    ``t_ref``: the 12 monthly means (C) of ``resources/<run>/inputs/climate_<source>_tavg.tif``;
    ``z_ref``: the elevation (m) they are valid at, ``..._elev.tif``: WorldClim 2.1's own
    ``elev`` grid, or for CHELSA V2.1 the region DEM averaged over each CHELSA cell (CHELSA's
    GMTED2010 orography is not distributed; see :mod:`permamap.retrieve`). Both are resampled
    bilinearly to the tile or chunk grid (:func:`warp_monthly_raster`: read window by window,
    never the whole region); the lapse-rate correction T = T_ref + lapse (z_ref - z) is then
    the same as for a station.
    """

    def __init__(self, config: dict, tavg_path=None, elev_path=None):
        clim = config["climate"]
        if tavg_path is None or elev_path is None:
            from .retrieve import climate_paths

            paths = climate_paths(config)
            tavg_path, elev_path = paths["tavg"], paths["elev"]
        self.name = clim["source"]
        self.lapse = lapse_rates_c_per_m(clim["lapse_rate_c_per_m"])
        self.method = METHODS[clim.get("degree_days", "sinusoid")]
        self._files = (
            (tavg_path, f"{self.name} monthly temperature", 12),
            (elev_path, f"{self.name} elevation", 1),
        )
        from .grid import Grid

        self._region = Grid.from_config(config)  # pixel centres from region indices
        # the last grid's fields, per thread: a chunk's climate, ground, probability and every
        # scenario ask for the same fields
        self._recent = threading.local()
        for path, what, count in self._files:  # checked once, read per chunk
            _open_monthly_raster(path, what=what, count=count).close()

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_recent"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _recent=threading.local())

    def fields(self, grid):
        """(t_ref (12, ny, nx) float64 C, z_ref (ny, nx) float64 m) on ``grid`` (a tile's
        :class:`~permamap.grid.Grid`), NaN where either has no data. Read-only arrays: the
        thread's last grid is answered from memory."""
        if not hasattr(grid, "transform"):
            raise TypeError("GridForcing.fields needs the tile's Grid (with a transform)")
        last = getattr(self._recent, "value", None)
        if last is not None and last[0] == grid:
            return last[1], last[2]
        (tp, tw, tn), (zp, zw, zn) = self._files
        t = warp_monthly_raster(tp, grid, what=tw, count=tn, region=self._region)
        z = warp_monthly_raster(zp, grid, what=zw, count=zn, region=self._region)[0]
        bad = ~np.isfinite(z) | ~np.isfinite(t).all(axis=0)
        t[:, bad] = np.nan
        z[bad] = np.nan
        t.flags.writeable = z.flags.writeable = False
        self._recent.value = (grid, t, z)
        return t, z


def delta_fields_from_rasters(paths, grid, region=None) -> np.ndarray:
    """(n, 12, ny, nx) monthly warming (C) on ``grid`` from n 12-band delta rasters (bilinear,
    :func:`warp_monthly_raster` with the region grid ``region``; NaN where a raster has no
    data)."""
    out = np.empty((len(paths), 12, grid.height, grid.width), np.float64)
    for i, p in enumerate(paths):
        out[i] = warp_monthly_raster(p, grid, what="CMIP6 warming delta", region=region)
    return out


def forcing_from_config(config: dict):
    source = config["climate"]["source"]
    if source == "station":
        return StationForcing(config)
    if source in ("worldclim", "chelsa"):
        return GridForcing(config)
    raise NotImplementedError(f"climate.source {source!r}")


class _ShapeGrid:
    """Stand-in for a Grid when only the block shape matters (station forcing)."""

    def __init__(self, shape):
        self.height, self.width = shape


def compute_climate(z: np.ndarray, forcing, delta_c: float = 0.0, grid=None):
    """(MAAT, FDD, TDD, amplitude) float64 arrays for an elevation block (NaN nodata) on ``grid``."""
    z = np.ascontiguousarray(z, np.float64)
    t_ref, z_ref = forcing.fields(grid if grid is not None else _ShapeGrid(z.shape))
    maat = np.empty_like(z)
    fdd = np.empty_like(z)
    tdd = np.empty_like(z)
    amp = np.empty_like(z)
    climate_kernel(
        z, t_ref, z_ref, forcing.lapse, float(delta_c), forcing.method, maat, fdd, tdd, amp
    )
    return maat, fdd, tdd, amp
