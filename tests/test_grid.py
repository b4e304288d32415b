"""Grid geometry against an independent geodesic implementation (pyproj.Geod / GeographicLib)."""

import numpy as np
import pytest
from pyproj import Geod

from permamap.grid import HALO_PX, Grid, cell_area_m2, cell_size_m, tile_halo_window

GEOD = Geod(ellps="WGS84")


@pytest.mark.parametrize("lat", [0.0, 36.6, 37.0, 60.0, 80.0])
def test_cell_size_matches_geodesic_distance(lat):
    res = 1.0 / 120.0  # 30 arc-seconds
    dx, dy = cell_size_m(lat, res)
    # east-west: along the parallel (a small arc, so the geodesic equals the parallel arc)
    _, _, ew = GEOD.inv(100.0, lat, 100.0 + res, lat)
    _, _, ns = GEOD.inv(100.0, lat - res / 2, 100.0, lat + res / 2)
    assert dx == pytest.approx(ew, rel=1e-6)
    assert dy == pytest.approx(ns, rel=1e-6)


def test_degrees_are_not_metres_at_37n():
    # At 37 N a 1-arcsecond cell is about 24.7 m wide and 30.8 m tall (DESIGN.md section 7).
    dx, dy = cell_size_m(37.0, 1.0 / 3600.0)
    assert dx == pytest.approx(24.7, abs=0.1)
    assert dy == pytest.approx(30.8, abs=0.1)


@pytest.mark.parametrize("lat_s", [0.0, 35.0, 38.9, 70.0])
def test_cell_area_matches_geodesic_polygon_area(lat_s):
    d = 0.25
    lons = [100.0, 100.0 + d, 100.0 + d, 100.0]
    lats = [lat_s, lat_s, lat_s + d, lat_s + d]
    area, _ = GEOD.polygon_area_perimeter(lons, lats)
    # pyproj's polygon edges are geodesics, ours follow the parallels: the difference is the
    # thin lens between a geodesic and a parallel, below 1e-4 of the area for 0.25 degree cells.
    assert cell_area_m2(lat_s, lat_s + d, d) == pytest.approx(abs(area), rel=1e-4)


def test_whole_earth_area():
    # Area of the WGS 84 ellipsoid: 510,065,621.7 km^2 (Moritz 1980, Geodetic Reference System 1980).
    assert cell_area_m2(-90.0, 90.0, 360.0) / 1e6 == pytest.approx(510_065_621.7, rel=1e-8)


def test_tiles_partition_the_grid_exactly():
    g = Grid.from_bbox((99.5, 35.0, 103.5, 39.0), 1 / 120)
    tiles = g.tiles(100)  # 480 px: 5 tiles per side, the last one 80 px
    cover = np.zeros((g.height, g.width), int)
    for t in tiles:
        w = t.window
        cover[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (cover == 1).all()
    assert len(tiles) == 25 and len({t.id for t in tiles}) == 25


def test_halo_window_is_in_expanded_grid_coordinates():
    g = Grid.from_bbox((100.0, 36.0, 101.0, 37.0), 1 / 60)
    t = g.tiles(16)[5]
    hw = tile_halo_window(t)
    big = g.expanded(HALO_PX)
    sub = big.subgrid(hw)
    core = g.subgrid(t.window)
    # the haloed tile starts exactly HALO_PX pixels north-west of the core
    assert sub.west == pytest.approx(core.west - HALO_PX * g.res_deg)
    assert sub.north == pytest.approx(core.north + HALO_PX * g.res_deg)
    assert (sub.width, sub.height) == (core.width + 2 * HALO_PX, core.height + 2 * HALO_PX)
