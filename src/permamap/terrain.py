"""Slope and aspect with Horn's 3 x 3 method on true metric cell sizes.

For the window::

    a b c
    d e f      (row 0 = north)
    g h i

Horn (1981, Proc. IEEE 69(1):14-47, doi:10.1109/PROC.1981.11918) estimates

    dz/dx_east  = ((c + 2f + i) - (a + 2d + g)) / (8 dx)
    dz/dy_north = ((a + 2b + c) - (g + 2h + i)) / (8 dy)

with dx, dy the east-west and north-south cell sizes in metres (on a geographic grid dx
shrinks with cos(latitude): degrees are not metres, see :mod:`permamap.grid`). Then

    slope  = atan(sqrt(dzdx^2 + dzdy^2))
    aspect = atan2(-dzdx, -dzdy)  (direction of steepest descent, clockwise from north, 0..360)

which is the convention of ``gdaldem slope/aspect`` (Burrough & McDonnell 1998). Flat cells
(both gradients exactly 0) get aspect ``FLAT_ASPECT`` = -1. A cell with any nodata neighbour
is nodata.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

FLAT_ASPECT = -1.0

_DEG_PER_RAD = 180.0 / math.pi

#: LLVM fast-math flags of the kernel: fused multiply-add ('contract'), reciprocal arithmetic
#: ('arcp') and ignoring the sign of zero ('nsz'). Never 'nnan'/'ninf': NaN is nodata here.
_FASTMATH = {"contract", "arcp", "nsz"}


@nb.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def horn_slope_aspect_kernel(z, dx_m, dy_m, slope_out, aspect_out):
    """Horn slope/aspect of the interior of ``z`` (a block with a 1-pixel halo).

    ``z``: (ny + 2, nx + 2) float32 or float64, NaN = nodata; ``dx_m``/``dy_m``: (ny,) cell
    sizes (m) of the output rows; ``slope_out``/``aspect_out``: (ny, nx) float32, written in
    place (NaN where any of the 9 cells is NaN).

    Arithmetic is float64 whatever the input dtype (float32 elevations are exact in it), so a
    cell's result depends only on its 9 elevations and its row's dx, dy: the same bits in every
    chunk, tile and thread. The gradient scales 1 / (8 dx), 1 / (8 dy) are computed once per
    row. NaN needs no test: a NaN among the 8 neighbours makes a gradient NaN and so slope
    (sqrt, atan) and aspect (atan2) NaN; the centre cell, which Horn does not use, is tested
    alone. The loop body has no data-dependent branch but selects.
    """
    ny, nx = slope_out.shape
    for r in range(ny):
        kx = 1.0 / (8.0 * dx_m[r])
        ky = 1.0 / (8.0 * dy_m[r])
        z0 = z[r]
        z1 = z[r + 1]
        z2 = z[r + 2]
        for col in range(nx):
            a = np.float64(z0[col])
            b = np.float64(z0[col + 1])
            c = np.float64(z0[col + 2])
            d = np.float64(z1[col])
            e = np.float64(z1[col + 1])
            f = np.float64(z1[col + 2])
            g = np.float64(z2[col])
            h = np.float64(z2[col + 1])
            i = np.float64(z2[col + 2])
            dzdx = ((c + 2.0 * f + i) - (a + 2.0 * d + g)) * kx
            dzdy = ((a + 2.0 * b + c) - (g + 2.0 * h + i)) * ky
            slope = math.atan(math.sqrt(dzdx * dzdx + dzdy * dzdy)) * _DEG_PER_RAD
            aspect = math.atan2(-dzdx, -dzdy) * _DEG_PER_RAD
            if aspect < 0.0:
                aspect += 360.0
            if dzdx == 0.0 and dzdy == 0.0:
                aspect = FLAT_ASPECT
            if math.isnan(e):
                slope = math.nan
                aspect = math.nan
            slope_out[r, col] = slope
            aspect_out[r, col] = aspect


def slope_aspect(z_with_halo: np.ndarray, dx_m: np.ndarray, dy_m: np.ndarray):
    """Slope and aspect (degrees, float32) of a haloed block; see the module docstring.

    ``z_with_halo`` float32 or float64 (other dtypes are converted to float64); float32 is read
    as is (half the memory traffic, the same results as its float64 copy)."""
    z = np.asarray(z_with_halo)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    z = np.ascontiguousarray(z)
    ny, nx = z.shape[0] - 2, z.shape[1] - 2
    slope = np.empty((ny, nx), np.float32)
    aspect = np.empty((ny, nx), np.float32)
    horn_slope_aspect_kernel(
        z,
        np.ascontiguousarray(dx_m, np.float64),
        np.ascontiguousarray(dy_m, np.float64),
        slope,
        aspect,
    )
    return slope, aspect


def northness(slope_deg, aspect_deg):
    """Northness = cos(aspect) * sin(slope) (e.g. Zhao 2026 review; 0 on flat ground)."""
    a = np.radians(aspect_deg)
    n = np.cos(a) * np.sin(np.radians(slope_deg))
    return np.where(np.asarray(aspect_deg) == FLAT_ASPECT, 0.0, n)
