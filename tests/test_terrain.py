"""Horn slope and aspect against analytic planes (projected and geographic grids)."""

import math

import numba as nb
import numpy as np
import pytest

from permamap.grid import Grid
from permamap.terrain import (
    FLAT_ASPECT,
    atan2_quadrant,
    atan_nonneg,
    northness,
    slope_aspect,
)


def plane(ny, nx, dx, dy, gx, gy):
    """z = gx * east + gy * north (metres), rows north to south, with a 1-pixel halo."""
    e = (np.arange(nx + 2) * dx)[None, :]
    n = (-(np.arange(ny + 2)) * dy)[:, None]
    return gx * e + gy * n


# (gradient east, gradient north) -> expected aspect: the direction the slope FACES (downhill).
EIGHT = [
    ((0.0, -1.0), 0.0),  # falls to the north: faces N
    ((-1.0, -1.0), 45.0),  # NE
    ((-1.0, 0.0), 90.0),  # E
    ((-1.0, 1.0), 135.0),  # SE
    ((0.0, 1.0), 180.0),  # S
    ((1.0, 1.0), 225.0),  # SW
    ((1.0, 0.0), 270.0),  # W
    ((1.0, -1.0), 315.0),  # NW
]


@pytest.mark.parametrize(("grad", "aspect"), EIGHT)
def test_planes_in_eight_directions(grad, aspect):
    g = 0.3 * np.array(grad)
    z = plane(6, 7, 30.0, 30.0, *g)
    slope, asp = slope_aspect(z, np.full(6, 30.0), np.full(6, 30.0))
    expected_slope = math.degrees(math.atan(math.hypot(*g)))
    np.testing.assert_allclose(slope, expected_slope, rtol=1e-6)
    np.testing.assert_allclose(asp, aspect, atol=1e-4)


def test_rectangular_cells_use_their_own_sizes():
    # 45 degree plane rising to the east on cells 20 m wide and 40 m tall
    z = plane(4, 4, 20.0, 40.0, 1.0, 0.0)
    slope, asp = slope_aspect(z, np.full(4, 20.0), np.full(4, 40.0))
    np.testing.assert_allclose(slope, 45.0, rtol=1e-6)
    np.testing.assert_allclose(asp, 270.0, atol=1e-6)


def test_plane_on_geographic_grid_at_37n():
    """A metric plane sampled on a 1-arcsecond lon/lat grid at 37 N keeps its true slope.

    Treating degrees as square cells (as gdaldem does on EPSG:4326) would report the wrong
    slope for an east-facing plane: cells are 24.7 m wide but 30.8 m tall there.
    """
    g = Grid.from_bbox((101.0, 36.99, 101.01, 37.0), 1 / 3600)
    lat = np.concatenate([[g.north + g.res_deg / 2], g.row_latitudes(), [g.south - g.res_deg / 2]])
    lon = np.concatenate([[g.west - g.res_deg / 2], g.col_longitudes(), [g.east + g.res_deg / 2]])
    # local metric coordinates of every cell centre (east, north) from the grid origin
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    lon2, lat2 = np.meshgrid(lon, lat)
    az, _, dist = geod.inv(np.full(lon2.shape, lon[0]), np.full(lat2.shape, lat[0]), lon2, lat2)
    east = dist * np.sin(np.radians(az))
    north = dist * np.cos(np.radians(az))
    gx, gy = 0.2, -0.1  # rises to the east, falls to the north
    z = gx * east + gy * north
    dx, dy = g.row_cell_sizes_m()
    slope, asp = slope_aspect(z, dx, dy)
    expected_slope = math.degrees(math.atan(math.hypot(gx, gy)))
    expected_aspect = (math.degrees(math.atan2(-gx, -gy)) + 360) % 360
    np.testing.assert_allclose(slope, expected_slope, atol=0.01)
    np.testing.assert_allclose(asp, expected_aspect, atol=0.05)
    # and the naive square-degree answer is clearly wrong (guards against dx == dy bugs)
    naive, _ = slope_aspect(z, np.full(len(dy), dy[0]), dy)
    assert abs(float(naive.mean()) - expected_slope) > 1.0


def test_cone_aspect_points_away_from_the_summit():
    n = 41
    y, x = np.mgrid[0:n, 0:n]
    z = 1000.0 - 10.0 * np.hypot(x - 20, y - 20)  # summit in the centre
    slope, asp = slope_aspect(z, np.full(n - 2, 10.0), np.full(n - 2, 10.0))
    # the summit is at output pixel (19, 19); north of it (smaller row) faces north, etc.
    assert asp[19 - 8, 19] == pytest.approx(0.0, abs=1e-6)
    assert asp[19, 19 + 8] == pytest.approx(90.0, abs=1e-6)
    assert asp[19 + 8, 19] == pytest.approx(180.0, abs=1e-6)
    assert asp[19, 19 - 8] == pytest.approx(270.0, abs=1e-6)


def test_flat_and_nodata():
    z = np.full((5, 5), 3000.0)
    z[0, 0] = np.nan
    slope, asp = slope_aspect(z, np.full(3, 30.0), np.full(3, 30.0))
    assert np.isnan(slope[0, 0]) and np.isnan(asp[0, 0])  # touches the NaN corner
    assert slope[2, 2] == 0.0 and asp[2, 2] == FLAT_ASPECT
    assert northness(0.0, FLAT_ASPECT) == 0.0


@nb.njit(error_model="numpy")  # as the kernel: x / 0 gives inf, not an exception
def _atan_arrays(x, y, out1, out2):
    for k in range(x.shape[0]):
        out1[k] = atan_nonneg(abs(x[k]))
        out2[k] = atan2_quadrant(y[k], x[k])


def test_kernel_arctangents_match_libm():
    """The kernel's series arctangents against NumPy's (C libm) within 4 ulp, on magnitudes
    from 1e-12 to 1e12 in all four quadrants, on the axes and at the reduction boundaries."""
    rng = np.random.default_rng(11)
    n = 200_000
    x = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-12, 12, n)
    y = rng.choice([-1.0, 1.0], n) * 10.0 ** rng.uniform(-12, 12, n)
    edges = [0.0, 1.0, math.tan(math.pi / 8), np.nextafter(math.tan(math.pi / 8), 1.0), 1e-300]
    x = np.concatenate([x, edges, [-1.0, 1.0, 0.0, 0.0, -2.0, 3.0]])
    y = np.concatenate([y, [1.0] * len(edges), [0.0, 0.0, 1.0, -1.0, -0.5, 7.0]])
    a1, a2 = np.empty_like(x), np.empty_like(x)
    _atan_arrays(x, y, a1, a2)
    ref1, ref2 = np.arctan(np.abs(x)), np.arctan2(y, x)
    ulp1, ulp2 = np.spacing(np.abs(ref1)), np.spacing(np.abs(ref2))
    assert np.all(np.abs(a1 - ref1) <= 4 * ulp1)
    assert np.all(np.abs(a2 - ref2) <= 4 * ulp2)
    nan = np.full(1, np.nan)
    _atan_arrays(nan, np.ones(1), a1[:1], a2[:1])
    assert np.isnan(a1[0]) and np.isnan(a2[0])
    _atan_arrays(np.full(1, np.inf), np.ones(1), a1[:1], a2[:1])
    assert a1[0] == math.pi / 2 and a2[0] == 0.0


def test_kernel_bits_do_not_depend_on_column_position():
    """The loop runs several cells per SIMD instruction and the rest one by one: the same cell
    must get the same bits in either path, i.e. at any column offset and block width."""
    rng = np.random.default_rng(5)
    z = (3000.0 + np.cumsum(rng.normal(0, 5, (12, 40)), axis=1)).astype(np.float32)
    z[4, 9] = np.nan
    dx, dy = np.full(10, 24.6), np.full(10, 30.8)
    s0, a0 = slope_aspect(z, dx, dy)
    for off in range(1, 6):
        for width in (7, 13, 38 - off):
            s, a = slope_aspect(z[:, off : off + width + 2], dx, dy)
            np.testing.assert_array_equal(
                s.view(np.uint32), s0[:, off : off + width].view(np.uint32)
            )
            np.testing.assert_array_equal(
                a.view(np.uint32), a0[:, off : off + width].view(np.uint32)
            )
    # float32 input gives the bits of its float64 copy
    s64, a64 = slope_aspect(z.astype(np.float64), dx, dy)
    assert np.array_equal(s64.view(np.uint32), s0.view(np.uint32))
    assert np.array_equal(a64.view(np.uint32), a0.view(np.uint32))
