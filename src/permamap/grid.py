"""The working grid, its tiles and the true metric geometry of geographic cells.

The working grid is regular in longitude/latitude (EPSG:4326, WGS 84). Degrees are not metres:
every length and area here is computed on the WGS 84 ellipsoid for the latitude of the row.

Tiles cut the grid into blocks of ``tile_px`` x ``tile_px`` pixels (the last row/column of
tiles may be smaller). Each tile is processed with a halo of ``HALO_PX`` pixels so that the
3 x 3 terrain stencil never sees a seam: the region DEM is built ``HALO_PX`` pixels larger
than the grid on every side, so even the outermost tiles have real neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window

#: WGS 84 semi-major axis (m) and flattening (NIMA TR8350.2).
WGS84_A_M = 6378137.0
WGS84_F = 1.0 / 298.257223563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)
WGS84_B_M = WGS84_A_M * (1.0 - WGS84_F)

#: Radius of the largest stencil (Horn 3 x 3) in pixels; tiles carry this halo.
HALO_PX = 1

CRS = "EPSG:4326"


def meridional_radius_m(lat_deg):
    """Meridional radius of curvature M(phi) = a (1 - e^2) / (1 - e^2 sin^2 phi)^(3/2).

    Source: any geodesy text, e.g. Torge & Mueller (2012), Geodesy, eq. 4.18.
    """
    s = np.sin(np.radians(lat_deg))
    return WGS84_A_M * (1.0 - WGS84_E2) / (1.0 - WGS84_E2 * s * s) ** 1.5


def prime_vertical_radius_m(lat_deg):
    """Prime-vertical radius of curvature N(phi) = a / sqrt(1 - e^2 sin^2 phi) (Torge & Mueller)."""
    s = np.sin(np.radians(lat_deg))
    return WGS84_A_M / np.sqrt(1.0 - WGS84_E2 * s * s)


def cell_size_m(lat_deg, res_deg: float):
    """East-west and north-south size (m) of a cell of ``res_deg`` degrees centred at ``lat_deg``.

    dx = N(phi) cos(phi) * dlambda,  dy = M(phi) * dphi  (angles in radians).
    """
    d = math.radians(res_deg)
    lat = np.asarray(lat_deg, dtype=np.float64)
    dx = prime_vertical_radius_m(lat) * np.cos(np.radians(lat)) * d
    dy = meridional_radius_m(lat) * d
    return dx, dy


def _authalic_q(lat_deg):
    """q(phi) = (1 - e^2) [ sin phi / (1 - e^2 sin^2 phi) - 1/(2e) ln((1 - e sin phi)/(1 + e sin phi)) ].

    Area of the ellipsoid between the equator and latitude phi, per radian of longitude, is
    a^2 q(phi) / 2 (Snyder 1987, Map Projections: A Working Manual, USGS PP 1395, eq. 3-12).
    """
    e = math.sqrt(WGS84_E2)
    s = np.sin(np.radians(lat_deg))
    return (1.0 - WGS84_E2) * (
        s / (1.0 - WGS84_E2 * s * s) - (1.0 / (2.0 * e)) * np.log((1.0 - e * s) / (1.0 + e * s))
    )


def cell_area_m2(lat_south_deg, lat_north_deg, dlon_deg: float):
    """Exact area (m^2) on the WGS 84 ellipsoid of a cell between two latitudes, ``dlon_deg`` wide.

    A = a^2 / 2 * (q(phi_n) - q(phi_s)) * dlambda  (Snyder 1987, eq. 3-12).
    """
    return (
        0.5
        * WGS84_A_M**2
        * (_authalic_q(lat_north_deg) - _authalic_q(lat_south_deg))
        * math.radians(dlon_deg)
    )


@dataclass(frozen=True)
class Tile:
    """One tile: its id and its core window in grid pixel coordinates."""

    id: str
    row: int
    col: int
    window: Window


@dataclass(frozen=True)
class Grid:
    """A regular EPSG:4326 grid: ``west``/``north`` of the upper-left corner, square pixels."""

    west: float
    north: float
    res_deg: float
    width: int
    height: int

    @classmethod
    def from_bbox(cls, bbox, res_deg: float) -> Grid:
        west, south, east, north = (float(v) for v in bbox)
        width = int(round((east - west) / res_deg))
        height = int(round((north - south) / res_deg))
        return cls(west=west, north=north, res_deg=float(res_deg), width=width, height=height)

    @classmethod
    def from_config(cls, config: dict) -> Grid:
        region = config["region"]
        return cls.from_bbox(region["bbox"], region["resolution_arcsec"] / 3600.0)

    @property
    def transform(self) -> Affine:
        return Affine(self.res_deg, 0.0, self.west, 0.0, -self.res_deg, self.north)

    @property
    def east(self) -> float:
        return self.west + self.width * self.res_deg

    @property
    def south(self) -> float:
        return self.north - self.height * self.res_deg

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.west, self.south, self.east, self.north)

    def expanded(self, px: int) -> Grid:
        """The same grid grown by ``px`` pixels on every side."""
        return Grid(
            west=self.west - px * self.res_deg,
            north=self.north + px * self.res_deg,
            res_deg=self.res_deg,
            width=self.width + 2 * px,
            height=self.height + 2 * px,
        )

    def subgrid(self, window: Window) -> Grid:
        """The grid of a window of this grid."""
        return Grid(
            west=self.west + window.col_off * self.res_deg,
            north=self.north - window.row_off * self.res_deg,
            res_deg=self.res_deg,
            width=int(window.width),
            height=int(window.height),
        )

    def row_latitudes(self) -> np.ndarray:
        """Latitude (degrees) of each row's centre, north to south."""
        return self.north - (np.arange(self.height) + 0.5) * self.res_deg

    def col_longitudes(self) -> np.ndarray:
        return self.west + (np.arange(self.width) + 0.5) * self.res_deg

    def row_cell_sizes_m(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-row east-west and north-south cell sizes in metres."""
        return cell_size_m(self.row_latitudes(), self.res_deg)

    def row_pixel_areas_km2(self) -> np.ndarray:
        """Per-row true pixel area on the WGS 84 ellipsoid, km^2."""
        lat_n = self.north - np.arange(self.height) * self.res_deg
        lat_s = lat_n - self.res_deg
        return cell_area_m2(lat_s, lat_n, self.res_deg) / 1e6

    def index(self, lon: float, lat: float) -> tuple[int, int]:
        """(row, col) of the pixel containing a point."""
        return (
            int(math.floor((self.north - lat) / self.res_deg)),
            int(math.floor((lon - self.west) / self.res_deg)),
        )

    def tiles(self, tile_px: int) -> list[Tile]:
        """Cut the grid into tiles of ``tile_px`` pixels (row-major order, ids ``rRRcCC``)."""
        out = []
        n_rows = math.ceil(self.height / tile_px)
        n_cols = math.ceil(self.width / tile_px)
        for r in range(n_rows):
            for c in range(n_cols):
                row_off, col_off = r * tile_px, c * tile_px
                h = min(tile_px, self.height - row_off)
                w = min(tile_px, self.width - col_off)
                out.append(Tile(tile_id(r, c), r, c, Window(col_off, row_off, w, h)))
        return out


def tile_id(row: int, col: int) -> str:
    return f"r{row:02d}c{col:02d}"


#: Regular expression of a tile id, used to constrain the ``{tile}`` wildcard.
TILE_ID_REGEX = r"r\d{2,3}c\d{2,3}"


def find_tile(config: dict, tile_id: str) -> tuple[Grid, Tile]:
    """(region grid, tile) of ``tile_id`` under the config's tiling."""
    grid = Grid.from_config(config)
    for t in grid.tiles(int(config["tiles"]["size_px"])):
        if t.id == tile_id:
            return grid, t
    raise KeyError(f"tile {tile_id!r} is not in this region's tiling")


def tile_halo_window(tile: Tile) -> Window:
    """Window of a tile plus its halo, in pixel coordinates of the region DEM.

    The region DEM is the grid expanded by ``HALO_PX``; in its coordinates the tile's core
    starts at (row_off + HALO_PX, col_off + HALO_PX), so the haloed window starts at the
    tile's own grid offsets.
    """
    w = tile.window
    return Window(w.col_off, w.row_off, w.width + 2 * HALO_PX, w.height + 2 * HALO_PX)
