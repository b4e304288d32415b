"""Active layer thickness (ALT) in permafrost and maximum seasonal freezing depth in seasonally
frozen ground: the Stefan solution and the Kudryavtsev method.

Units: temperatures C, degree-days C*day, depths m, times s unless named otherwise, thermal
conductivity W m-1 K-1, volumetric heat capacity and latent heat J m-3 (K-1). Nodata is NaN and
propagates.

Stefan
------
:func:`stefan_depth_m` (NumPy) and :func:`stefan_depth_block` (numba ufunc for tile kernels):
``Z = sqrt(2 k I 86400 / L)`` with ``I`` the (n-factor corrected) surface thawing index for ALT
with the *thawed* conductivity, or the freezing index for the seasonal freezing depth with the
*frozen* conductivity.

Kudryavtsev
-----------
One function per stage, following Anisimov, Shiklomanov & Nelson (1997, Global and Planetary
Change 15:61-77; the project brief cites doi:10.1111/j.1600-0889.1997.00009.x), Romanovsky &
Osterkamp (1997, Permafrost Periglac. Process. 8:1-22) and Sazonova & Romanovsky (2003,
Permafrost Periglac. Process. 14:125-139, doi:10.1002/ppp.449):

1. :func:`season_lengths_s` - lengths of the cold and warm seasons;
2. :func:`snow_thermal_conductivity_w_per_m_k`, :func:`snow_thermal_diffusivity_m2_per_s`,
   :func:`snow_effect_c` - snow warming of the mean and damping of the amplitude;
3. :func:`vegetation_season_damping_c`, :func:`vegetation_effect_c` - vegetation effect;
4. :func:`ground_surface_temperature_c` - mean and amplitude at the ground surface;
5. :func:`ttop_kudryavtsev_c` - thermal offset: mean annual temperature at the top of
   permafrost (or at the base of the seasonally frozen layer);
6. :func:`permafrost_table_amplitude_c` - amplitude at the permafrost table (or at the depth of
   seasonal freezing);
7. :func:`critical_depth_m` and :func:`kudryavtsev_depth_m` - the ALT (freezing depth) formula.

:func:`kudryavtsev` chains them over arrays (numba kernel) and returns TTOP, the ground surface
temperature and amplitude and the depth (ALT where TTOP < 0, maximum seasonal freezing depth
otherwise).

``form='published'`` (default) versus ``form='permamodel'``: permamodel (the CSDMS
implementation, github.com/permamodel/permamodel, ``permamodel/components/Ku.py``) differs from
the published equations in three places, and ``'permamodel'`` reproduces it so that its test
values can be checked stage by stage:

* TTOP (Anisimov et al. 1997 eq. 14): published ``sqrt(1 - T^2/A^2)``; permamodel
  ``sqrt(1 - pi^2/A^2)``.
* Vegetation effect on the mean: published (and permamodel's older ``Ku_method.py``)
  ``dT_v = (2/pi)(dA1 tau1 - dA2 tau2)/P`` (winter vegetation warms, summer vegetation cools);
  permamodel's ``Ku.py`` adds the two terms.
* Soil properties in the ALT formula: published (Romanovsky & Osterkamp 1997) thawed
  properties for thaw in permafrost and frozen ones for freezing in seasonally frozen ground;
  ``Ku.py`` uses the frozen ones where TTOP < 0 and the thawed ones otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, vectorize

__all__ = [
    "SECONDS_PER_DAY",
    "SECONDS_PER_YEAR",
    "LATENT_HEAT_FUSION_J_PER_KG",
    "WATER_DENSITY_KG_PER_M3",
    "volumetric_latent_heat_j_per_m3",
    "soil_volumetric_heat_capacity_j_per_m3_k",
    "stefan_depth_m",
    "stefan_depth_block",
    "season_lengths_s",
    "snow_thermal_conductivity_w_per_m_k",
    "snow_thermal_diffusivity_m2_per_s",
    "snow_effect_c",
    "vegetation_season_damping_c",
    "vegetation_effect_c",
    "ground_surface_temperature_c",
    "ttop_kudryavtsev_c",
    "permafrost_table_amplitude_c",
    "critical_depth_m",
    "kudryavtsev_depth_m",
    "kudryavtsev_depth_from_surface_m",
    "KudryavtsevResult",
    "kudryavtsev",
]

SECONDS_PER_DAY = 86400.0
#: Tropical year (365.2422 d) in seconds, the period P of the annual temperature wave (also the
#: value in permamodel's example configuration).
SECONDS_PER_YEAR = 31_556_926.0
#: Specific latent heat of fusion of water (J kg-1), 333.6 kJ/kg rounded as usual in the
#: permafrost literature (e.g. Williams & Smith 1989, *The Frozen Earth*).
LATENT_HEAT_FUSION_J_PER_KG = 3.34e5
#: Density of liquid water (kg m-3).
WATER_DENSITY_KG_PER_M3 = 1000.0
#: Specific heat of liquid water and of ice (J kg-1 K-1); ice 2090 is also permamodel's snow value.
_C_WATER_J_PER_KG_K = 4180.0
_C_ICE_J_PER_KG_K = 2090.0

_PUBLISHED = 0
_PERMAMODEL = 1


def _form_code(form: str) -> int:
    if form == "published":
        return _PUBLISHED
    if form == "permamodel":
        return _PERMAMODEL
    raise ValueError(f"form={form!r}: use 'published' or 'permamodel'")


# --------------------------------------------------------------------------------------------
# Soil properties
# --------------------------------------------------------------------------------------------


def volumetric_latent_heat_j_per_m3(
    water_content_m3_per_m3,
    unfrozen_water_m3_per_m3=0.0,
    latent_heat_fusion_j_per_kg: float = LATENT_HEAT_FUSION_J_PER_KG,
    water_density_kg_per_m3: float = WATER_DENSITY_KG_PER_M3,
):
    """Volumetric latent heat of the soil water that changes phase (J m-3).

    L_vol = L_f * rho_w * (theta - theta_u)

    theta the volumetric (total) water content, theta_u the unfrozen water content at the
    temperatures reached; L_f = 3.34e5 J/kg, rho_w = 1000 kg/m3.
    Source: e.g. Nelson & Outcalt (1987, Arctic Alpine Res. 19:279); Williams & Smith (1989).
    """
    theta = np.asarray(water_content_m3_per_m3, dtype=np.float64) - unfrozen_water_m3_per_m3
    return latent_heat_fusion_j_per_kg * water_density_kg_per_m3 * theta


def soil_volumetric_heat_capacity_j_per_m3_k(
    water_content_m3_per_m3,
    frozen: bool,
    dry_bulk_density_kg_per_m3=1400.0,
    solids_specific_heat_j_per_kg_k: float = 870.0,
    unfrozen_water_m3_per_m3=0.0,
):
    """Volumetric heat capacity of a moist soil, thawed or frozen (J m-3 K-1).

    C = rho_b c_s + rho_w theta_liquid c_w + rho_w theta_ice c_i

    thawed: theta_liquid = theta, theta_ice = 0; frozen: theta_liquid = theta_u,
    theta_ice = theta - theta_u (volumes as liquid-water equivalent). c_w = 4180, c_i = 2090
    J kg-1 K-1; default c_s = 870 J kg-1 K-1 (soil minerals) and rho_b = 1400 kg m-3.
    Source: de Vries (1963) mixing rule; mineral and water properties as tabulated by
    Campbell & Norman (1998, *An Introduction to Environmental Biophysics*, table 8.2).
    """
    theta = np.asarray(water_content_m3_per_m3, dtype=np.float64)
    if frozen:
        liquid = np.minimum(unfrozen_water_m3_per_m3, theta)
        ice = theta - liquid
    else:
        liquid = theta
        ice = 0.0
    return np.asarray(
        dry_bulk_density_kg_per_m3, dtype=np.float64
    ) * solids_specific_heat_j_per_kg_k + WATER_DENSITY_KG_PER_M3 * (
        liquid * _C_WATER_J_PER_KG_K + ice * _C_ICE_J_PER_KG_K
    )


# --------------------------------------------------------------------------------------------
# Stefan
# --------------------------------------------------------------------------------------------


def stefan_depth_m(index_cday, k_w_per_m_k, latent_heat_j_per_m3, n_factor=1.0):
    """Stefan depth of thaw or freeze (m).

    Z = sqrt(2 * k * (n * I) * 86400 / L_vol)

    I: thawing (ALT) or freezing (seasonal frost depth) index in C*day of the *air* (then give
    the n-factor) or of the ground surface (n = 1); 86400 s/day converts it to C*s.
    k: thermal conductivity of the thawed (ALT) or frozen (freezing depth) soil, W m-1 K-1.
    L_vol: volumetric latent heat, J m-3 (:func:`volumetric_latent_heat_j_per_m3`).
    I <= 0 gives 0; NaN propagates. Neglects sensible heat, so it overestimates the depth
    somewhat in dry soils.

    Source: Stefan (1891); Lunardini (1981, *Heat Transfer in Cold Climates*); e.g. Nelson et
    al. (1997, Arctic Alpine Res. 29:367) for ALT mapping with n-factors.
    """
    i = np.asarray(index_cday, dtype=np.float64) * n_factor
    k = np.asarray(k_w_per_m_k, dtype=np.float64)
    lat = np.asarray(latent_heat_j_per_m3, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.sqrt(2.0 * k * np.maximum(i, 0.0) * SECONDS_PER_DAY / lat)
        z = np.where((k > 0) & (lat > 0), z, np.nan)
        z = np.where(np.isnan(i), np.nan, z)
    return z if z.ndim else float(z)


@njit(cache=True, nogil=True, inline="always")
def stefan_depth_pixel(index_cday, k_w_per_m_k, latent_heat_j_per_m3):
    """Stefan depth (m) of one pixel: see :func:`stefan_depth_m` (index already n-factor
    corrected). NaN in -> NaN out; index <= 0 -> 0; k <= 0 or L <= 0 -> NaN."""
    if (
        math.isnan(index_cday)
        or math.isnan(k_w_per_m_k)
        or math.isnan(latent_heat_j_per_m3)
        or k_w_per_m_k <= 0.0
        or latent_heat_j_per_m3 <= 0.0
    ):
        return math.nan
    if index_cday <= 0.0:
        return 0.0
    return math.sqrt(2.0 * k_w_per_m_k * index_cday * SECONDS_PER_DAY / latent_heat_j_per_m3)


@vectorize(["float32(float32, float32, float32)", "float64(float64, float64, float64)"], cache=True)
def stefan_depth_block(index_cday, k_w_per_m_k, latent_heat_j_per_m3):
    """:func:`stefan_depth_pixel` element-wise, a numba ufunc over broadcast arrays."""
    return stefan_depth_pixel(index_cday, k_w_per_m_k, latent_heat_j_per_m3)


# --------------------------------------------------------------------------------------------
# Kudryavtsev, one function per stage (scalar, numba; callable from Python)
# --------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def season_lengths_s(maat_c, amplitude_c, period_s=SECONDS_PER_YEAR):
    """Lengths of the cold and warm seasons (s) of a sinusoidal annual temperature wave.

    tau_cold = P (0.5 - arcsin(T / A) / pi),   tau_warm = P - tau_cold

    (T/A clipped to [-1, 1]). Source: Sazonova & Romanovsky (2003) p. 129 (cold and warm
    seasons as in Nelson & Outcalt 1987).
    """
    if amplitude_c <= 0.0:
        r = -1.0 if maat_c > 0.0 else 1.0
    else:
        r = min(1.0, max(-1.0, maat_c / amplitude_c))
    cold = period_s * (0.5 - math.asin(r) / math.pi)
    return cold, period_s - cold


@njit(cache=True, error_model="numpy")
def snow_thermal_conductivity_w_per_m_k(snow_density_kg_per_m3):
    """Effective thermal conductivity of seasonal snow (W m-1 K-1).

    k_sn = 0.138 - 1.01 rho + 3.233 rho^2,  rho in g cm-3 (valid 0.156 <= rho <= 0.6)

    Source: Sturm, Holmgren, Koenig & Morris (1997), J. Glaciol. 43(143):26-41, eq. 4.
    """
    r = snow_density_kg_per_m3 / 1000.0
    return 0.138 - 1.01 * r + 3.233 * r * r


@njit(cache=True, error_model="numpy")
def snow_thermal_diffusivity_m2_per_s(
    k_snow_w_per_m_k, snow_density_kg_per_m3, snow_heat_capacity_j_per_kg_k=2090.0
):
    """Thermal diffusivity of snow kappa_sn = k_sn / (rho_sn c_sn) (m2 s-1); c_sn defaults to
    the specific heat of ice, 2090 J kg-1 K-1 (Goodrich 1982, Can. Geotech. J. 19:421)."""
    return k_snow_w_per_m_k / (snow_density_kg_per_m3 * snow_heat_capacity_j_per_kg_k)


@njit(cache=True, error_model="numpy")
def snow_effect_c(
    amplitude_air_c, snow_depth_m, snow_diffusivity_m2_per_s, period_s=SECONDS_PER_YEAR
):
    """Snow cover effect: warming of the mean and damping of the amplitude, (dT_sn, dA_sn) in C.

    dT_sn = A_a [1 - exp(-h_sn sqrt(pi / (P kappa_sn)))]
    dA_sn = (2 / pi) dT_sn

    so that below the snow T_vg = T_a + dT_sn and A_vg = A_a - dA_sn.
    Source: Anisimov et al. (1997) eq. 7 and Sazonova & Romanovsky (2003) eq. 2, in the
    arrangement of permamodel (both its ``Ku.py`` and ``Ku_method.py``).
    No snow (h_sn <= 0) gives (0, 0).
    """
    if snow_depth_m <= 0.0:
        return 0.0, 0.0
    dt = amplitude_air_c * (
        1.0 - math.exp(-snow_depth_m * math.sqrt(math.pi / (period_s * snow_diffusivity_m2_per_s)))
    )
    return dt, dt * 2.0 / math.pi


@njit(cache=True, error_model="numpy")
def vegetation_season_damping_c(
    half_range_c, veg_height_m, veg_diffusivity_m2_per_s, season_length_s
):
    """Damping of the amplitude by vegetation during one season (C).

    winter: dA_1 = (A_vg - T_vg) [1 - exp(-H_1 sqrt(pi / (2 D_1 tau_1)))]
    summer: dA_2 = (A_vg + T_vg) [1 - exp(-H_2 sqrt(pi / (2 D_2 tau_2)))]

    ``half_range_c`` is (A_vg - T_vg) for the cold season, (A_vg + T_vg) for the warm one;
    H vegetation height (m), D its thermal diffusivity (m2 s-1), tau the season length (s).
    Source: Anisimov et al. (1997) eqs. 10-11. Height <= 0 gives 0.
    """
    if veg_height_m <= 0.0:
        return 0.0
    return half_range_c * (
        1.0
        - math.exp(
            -veg_height_m * math.sqrt(math.pi / (2.0 * veg_diffusivity_m2_per_s * season_length_s))
        )
    )


@njit(cache=True, error_model="numpy")
def vegetation_effect_c(
    damping_winter_c,
    damping_summer_c,
    tau_cold_s,
    tau_warm_s,
    period_s=SECONDS_PER_YEAR,
    permamodel_sign=False,
):
    """Annual vegetation effect on the mean and the amplitude, (dT_v, dA_v) in C.

    dA_v = (dA_1 tau_1 + dA_2 tau_2) / P
    dT_v = (2 / pi) (dA_1 tau_1 - dA_2 tau_2) / P        (published)
    dT_v = (2 / pi) (dA_1 tau_1 + dA_2 tau_2) / P        (permamodel Ku.py)

    Source: Anisimov et al. (1997) eqs. 8-9; Sazonova & Romanovsky (2003). The minus sign
    (winter insulation warms, summer shading cools the ground) is the one in permamodel's
    ``Ku_method.py``; ``permamodel_sign=True`` reproduces ``Ku.py``.
    """
    a1 = damping_winter_c * tau_cold_s
    a2 = damping_summer_c * tau_warm_s
    da = (a1 + a2) / period_s
    if permamodel_sign:
        dt = (a1 + a2) / period_s * (2.0 / math.pi)
    else:
        dt = (a1 - a2) / period_s * (2.0 / math.pi)
    return dt, da


@njit(cache=True, error_model="numpy")
def ground_surface_temperature_c(maat_c, amplitude_air_c, dt_snow_c, da_snow_c, dt_veg_c, da_veg_c):
    """Mean annual ground surface temperature and its amplitude, (T_gs, A_gs) in C.

    T_gs = T_a + dT_sn + dT_v,   A_gs = A_a - dA_sn - dA_v

    Source: Sazonova & Romanovsky (2003) (ground surface = below snow and vegetation).
    """
    return maat_c + dt_snow_c + dt_veg_c, amplitude_air_c - da_snow_c - da_veg_c


@njit(cache=True, error_model="numpy")
def ttop_kudryavtsev_c(
    t_gs_c, a_gs_c, k_thawed_w_per_m_k, k_frozen_w_per_m_k, permamodel_form=False
):
    """Mean annual temperature at the top of permafrost / base of the seasonal layer (C).

    TTOP = [0.5 T_gs (k_f + k_t) + A_gs (k_t - k_f) / pi
            * (T_gs / A_gs arcsin(T_gs / A_gs) + sqrt(1 - T_gs^2 / A_gs^2))] / k*

    k* = k_f if the numerator < 0 (permafrost), else k_t. The thermal offset is TTOP - T_gs.
    Source: Kudryavtsev et al. (1974); Anisimov et al. (1997) eq. 14; Romanovsky & Osterkamp
    (1995, Permafrost Periglac. Process. 6:313). ``permamodel_form=True`` uses
    sqrt(1 - pi^2 / A_gs^2) as permamodel does (NaN when A_gs < pi).
    For |T_gs| >= A_gs (the surface never thaws, or never freezes) the published form gives
    its limit TTOP = T_gs (permamodel's gives NaN for |T_gs| > A_gs).
    """
    if abs(t_gs_c) >= a_gs_c:
        # no 0 C crossing at the surface: the published form tends to TTOP = T_gs; permamodel's
        # arcsin is undefined there
        return math.nan if (permamodel_form and abs(t_gs_c) > a_gs_c) else t_gs_c
    r = t_gs_c / a_gs_c
    if permamodel_form:
        root = math.sqrt(1.0 - math.pi * math.pi / (a_gs_c * a_gs_c))
    else:
        root = math.sqrt(max(0.0, 1.0 - r * r))
    num = 0.5 * t_gs_c * (k_frozen_w_per_m_k + k_thawed_w_per_m_k) + a_gs_c * (
        k_thawed_w_per_m_k - k_frozen_w_per_m_k
    ) / math.pi * (r * math.asin(r) + root)
    if num < 0.0:
        return num / k_frozen_w_per_m_k
    return num / k_thawed_w_per_m_k


@njit(cache=True, error_model="numpy")
def permafrost_table_amplitude_c(a_gs_c, ttop_c, c_j_per_m3_k, latent_heat_j_per_m3):
    """Amplitude of the temperature wave at the permafrost table (or at the maximum depth of
    seasonal freezing), A_z in C.

    A_z = (A_gs - |TTOP|) / ln[(A_gs + L/(2C)) / (|TTOP| + L/(2C))] - L/(2C)

    C volumetric heat capacity (J m-3 K-1), L volumetric latent heat (J m-3).
    Source: Romanovsky & Osterkamp (1997) eq. 4; Anisimov et al. (1997).
    """
    l2c = latent_heat_j_per_m3 / (2.0 * c_j_per_m3_k)
    t = abs(ttop_c)
    # ln[(A + x)/(T + x)] written as log1p((A - T)/(T + x)) to keep precision when x >> A
    return (a_gs_c - t) / math.log1p((a_gs_c - t) / (t + l2c)) - l2c


@njit(cache=True, error_model="numpy")
def critical_depth_m(
    a_gs_c,
    ttop_c,
    a_z_c,
    k_w_per_m_k,
    c_j_per_m3_k,
    latent_heat_j_per_m3,
    period_s=SECONDS_PER_YEAR,
):
    """Critical depth Z_c (m) of the Kudryavtsev solution.

    Z_c = 2 (A_gs - |TTOP|) sqrt(k C P / pi) / (2 A_z C + L)

    Source: Romanovsky & Osterkamp (1997) eq. 5.
    """
    return (
        2.0
        * (a_gs_c - abs(ttop_c))
        * math.sqrt(k_w_per_m_k * c_j_per_m3_k * period_s / math.pi)
        / (2.0 * a_z_c * c_j_per_m3_k + latent_heat_j_per_m3)
    )


@njit(cache=True, error_model="numpy")
def kudryavtsev_depth_m(
    a_gs_c,
    ttop_c,
    a_z_c,
    z_c_m,
    k_w_per_m_k,
    c_j_per_m3_k,
    latent_heat_j_per_m3,
    period_s=SECONDS_PER_YEAR,
):
    """Kudryavtsev active layer thickness (or maximum seasonal freezing depth), m.

    Z = { 2 (A_gs - |TTOP|) sqrt(k C P / pi)
          + (2 A_z C + L) Z_c L sqrt(k P / (pi C))
            / [(2 A_z C + L) Z_c + (2 A_z C + L) sqrt(k P / (pi C))] } / (2 A_z C + L)

    (the second term simplifies to L Z_c s / (Z_c + s), s = sqrt(k P / (pi C))).
    k, C of the thawed soil for ALT, of the frozen soil for seasonal freezing.
    Source: Kudryavtsev et al. (1974); Romanovsky & Osterkamp (1997) eq. 3; Anisimov et al.
    (1997) eq. 15.
    """
    s = math.sqrt(k_w_per_m_k * period_s / (math.pi * c_j_per_m3_k))
    b = 2.0 * a_z_c * c_j_per_m3_k + latent_heat_j_per_m3
    first = (
        2.0 * (a_gs_c - abs(ttop_c)) * math.sqrt(k_w_per_m_k * c_j_per_m3_k * period_s / math.pi)
    )
    second = latent_heat_j_per_m3 * z_c_m * s / (z_c_m + s)
    return (first + second) / b


@njit(cache=True, error_model="numpy")
def kudryavtsev_depth_from_surface_m(
    a_gs_c, ttop_c, k_w_per_m_k, c_j_per_m3_k, latent_heat_j_per_m3, period_s=SECONDS_PER_YEAR
):
    """Depth (m) from the surface amplitude and TTOP: :func:`permafrost_table_amplitude_c`,
    :func:`critical_depth_m` and :func:`kudryavtsev_depth_m` chained. 0 when
    A_gs <= |TTOP| (the 0 C isotherm never enters the ground); NaN propagates."""
    if math.isnan(a_gs_c) or math.isnan(ttop_c):
        return math.nan
    if a_gs_c <= abs(ttop_c):
        return 0.0
    az = permafrost_table_amplitude_c(a_gs_c, ttop_c, c_j_per_m3_k, latent_heat_j_per_m3)
    zc = critical_depth_m(
        a_gs_c, ttop_c, az, k_w_per_m_k, c_j_per_m3_k, latent_heat_j_per_m3, period_s
    )
    return kudryavtsev_depth_m(
        a_gs_c, ttop_c, az, zc, k_w_per_m_k, c_j_per_m3_k, latent_heat_j_per_m3, period_s
    )


# --------------------------------------------------------------------------------------------
# Whole chain over arrays
# --------------------------------------------------------------------------------------------


class KudryavtsevResult(NamedTuple):
    """Outputs of :func:`kudryavtsev` (arrays of the broadcast input shape)."""

    ground_surface_temperature_c: np.ndarray
    ground_surface_amplitude_c: np.ndarray
    ttop_c: np.ndarray
    #: ALT where ``ttop_c < 0`` (permafrost), maximum seasonal freezing depth otherwise (m)
    depth_m: np.ndarray


@njit(cache=True, error_model="numpy")
def _kudryavtsev_kernel(
    ta,
    aa,
    hsn,
    rsn,
    hvf,
    dvf,
    hvt,
    dvt,
    kt,
    kf,
    ct,
    cf,
    lat,
    csn,
    period,
    form,
    t_gs,
    a_gs,
    ttop,
    depth,
):
    pm = form == _PERMAMODEL
    for i in range(ta.shape[0]):
        bad = False
        for v in (
            ta[i],
            aa[i],
            hsn[i],
            rsn[i],
            hvf[i],
            dvf[i],
            hvt[i],
            dvt[i],
            kt[i],
            kf[i],
            ct[i],
            cf[i],
            lat[i],
        ):
            if math.isnan(v):
                bad = True
        if bad:
            t_gs[i] = math.nan
            a_gs[i] = math.nan
            ttop[i] = math.nan
            depth[i] = math.nan
            continue
        tau_c, tau_w = season_lengths_s(ta[i], aa[i], period)
        if hsn[i] > 0.0:
            ksn = snow_thermal_conductivity_w_per_m_k(rsn[i])
            dsn = snow_thermal_diffusivity_m2_per_s(ksn, rsn[i], csn)
            dt_sn, da_sn = snow_effect_c(aa[i], hsn[i], dsn, period)
        else:
            dt_sn, da_sn = 0.0, 0.0
        t_vg = ta[i] + dt_sn
        a_vg = aa[i] - da_sn
        d1 = vegetation_season_damping_c(a_vg - t_vg, hvf[i], dvf[i], tau_c)
        d2 = vegetation_season_damping_c(a_vg + t_vg, hvt[i], dvt[i], tau_w)
        dt_v, da_v = vegetation_effect_c(d1, d2, tau_c, tau_w, period, pm)
        tg, ag = ground_surface_temperature_c(ta[i], aa[i], dt_sn, da_sn, dt_v, da_v)
        tt = ttop_kudryavtsev_c(tg, ag, kt[i], kf[i], pm)
        frozen_props = tt >= 0.0  # freezing in seasonally frozen ground
        if pm:
            frozen_props = not frozen_props
        if frozen_props:
            z = kudryavtsev_depth_from_surface_m(ag, tt, kf[i], cf[i], lat[i], period)
        else:
            z = kudryavtsev_depth_from_surface_m(ag, tt, kt[i], ct[i], lat[i], period)
        t_gs[i] = tg
        a_gs[i] = ag
        ttop[i] = tt
        depth[i] = z


def kudryavtsev(
    maat_c,
    amplitude_c,
    *,
    k_thawed_w_per_m_k,
    k_frozen_w_per_m_k,
    c_thawed_j_per_m3_k,
    c_frozen_j_per_m3_k,
    latent_heat_j_per_m3,
    snow_depth_m=0.0,
    snow_density_kg_per_m3=240.0,
    veg_height_frozen_m=0.0,
    veg_diffusivity_frozen_m2_per_s=2.39e-6,
    veg_height_thawed_m=0.0,
    veg_diffusivity_thawed_m2_per_s=1.0556e-6,
    snow_heat_capacity_j_per_kg_k: float = 2090.0,
    period_s: float = SECONDS_PER_YEAR,
    form: str = "published",
) -> KudryavtsevResult:
    """Kudryavtsev model over arrays (all inputs broadcast; NaN propagates).

    Parameters
    ----------
    maat_c, amplitude_c
        Mean annual air temperature and the amplitude (half the annual range) of its
        sinusoidal annual cycle, C.
    k_thawed_w_per_m_k, k_frozen_w_per_m_k
        Soil thermal conductivity, thawed and frozen (W m-1 K-1).
    c_thawed_j_per_m3_k, c_frozen_j_per_m3_k
        Soil volumetric heat capacity (J m-3 K-1), e.g. from
        :func:`soil_volumetric_heat_capacity_j_per_m3_k`.
    latent_heat_j_per_m3
        Volumetric latent heat (:func:`volumetric_latent_heat_j_per_m3`).
    snow_depth_m, snow_density_kg_per_m3
        Winter-mean snow depth and density; default no snow; density 240 kg m-3 as in
        permamodel's example configuration (within Sturm et al. 1997's 156-600 range).
    veg_height_frozen_m, veg_diffusivity_frozen_m2_per_s, veg_height_thawed_m,
    veg_diffusivity_thawed_m2_per_s
        Vegetation (and organic cover) height and thermal diffusivity in the cold and warm
        seasons; default no vegetation; diffusivities default to permamodel's example values.
    form
        ``'published'`` (default) or ``'permamodel'`` (see module docstring).

    Returns
    -------
    KudryavtsevResult
        ground surface temperature and amplitude, TTOP (C) and depth (m): ALT where TTOP < 0,
        maximum seasonal freezing depth where TTOP >= 0.
    """
    code = _form_code(form)
    arrays = np.broadcast_arrays(
        *(
            np.asarray(a, dtype=np.float64)
            for a in (
                maat_c,
                amplitude_c,
                snow_depth_m,
                snow_density_kg_per_m3,
                veg_height_frozen_m,
                veg_diffusivity_frozen_m2_per_s,
                veg_height_thawed_m,
                veg_diffusivity_thawed_m2_per_s,
                k_thawed_w_per_m_k,
                k_frozen_w_per_m_k,
                c_thawed_j_per_m3_k,
                c_frozen_j_per_m3_k,
                latent_heat_j_per_m3,
            )
        )
    )
    shape = arrays[0].shape
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    n = flat[0].shape[0]
    outs = [np.empty(n, dtype=np.float64) for _ in range(4)]
    _kudryavtsev_kernel(*flat, float(snow_heat_capacity_j_per_kg_k), float(period_s), code, *outs)
    return KudryavtsevResult(*(o.reshape(shape) for o in outs))
