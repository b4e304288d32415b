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


@nb.njit(cache=True, nogil=True)
def _horn_cell(a, b, c, d, f, g, h, i, dx, dy):
    dzdx = ((c + 2.0 * f + i) - (a + 2.0 * d + g)) / (8.0 * dx)
    dzdy = ((a + 2.0 * b + c) - (g + 2.0 * h + i)) / (8.0 * dy)
    slope = math.degrees(math.atan(math.sqrt(dzdx * dzdx + dzdy * dzdy)))
    if dzdx == 0.0 and dzdy == 0.0:
        aspect = FLAT_ASPECT
    else:
        aspect = math.degrees(math.atan2(-dzdx, -dzdy))
        if aspect < 0.0:
            aspect += 360.0
    return slope, aspect


@nb.njit(cache=True, nogil=True)
def horn_slope_aspect_kernel(z, dx_m, dy_m, slope_out, aspect_out):
    """Horn slope/aspect of the interior of ``z`` (a block with a 1-pixel halo).

    ``z``: (ny + 2, nx + 2) float, NaN = nodata; ``dx_m``/``dy_m``: (ny,) cell sizes (m) of
    the output rows; ``slope_out``/``aspect_out``: (ny, nx) float32, written in place
    (NaN where any of the 9 cells is NaN).
    """
    ny, nx = slope_out.shape
    for r in range(ny):
        dx = dx_m[r]
        dy = dy_m[r]
        for col in range(nx):
            a = z[r, col]
            b = z[r, col + 1]
            c = z[r, col + 2]
            d = z[r + 1, col]
            e = z[r + 1, col + 1]
            f = z[r + 1, col + 2]
            g = z[r + 2, col]
            h = z[r + 2, col + 1]
            i = z[r + 2, col + 2]
            s = a + b + c + d + e + f + g + h + i
            if math.isnan(s):
                slope_out[r, col] = np.nan
                aspect_out[r, col] = np.nan
            else:
                sl, asp = _horn_cell(a, b, c, d, f, g, h, i, dx, dy)
                slope_out[r, col] = sl
                aspect_out[r, col] = asp


def slope_aspect(z_with_halo: np.ndarray, dx_m: np.ndarray, dy_m: np.ndarray):
    """Slope and aspect (degrees, float32) of a haloed block; see the module docstring."""
    z = np.ascontiguousarray(z_with_halo, dtype=np.float64)
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
