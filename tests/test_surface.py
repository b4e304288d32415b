"""Surface types (permamap.surface): multipliers, land cover -> surface index, and the TTOP
model per surface type through the wrappers and the chunked path (permamap.blocks).

Every land cover here is generated in the test (no committed binaries). Expected surface
indices are written down from the construction of the raster (which codes a working pixel
covers), not computed with the module's own sampling.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from conftest import REPO, tiny_raw_config

from permamap import surface
from permamap.config import prepare
from permamap.errors import ConfigError, InputDataError
from permamap.grid import Grid

BBOX = (101.0, 36.6, 101.4, 37.0)  # 48 x 48 px at 30"
RES_ARCSEC = 30
FINE = 3  # land-cover pixels per working pixel and axis (10" land cover)
# ESA WorldCover codes of the default mapping
FOREST, GRASS, BARE, SNOW, WATER, WETLAND = 10, 30, 60, 70, 80, 90


def _raw():
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def _cfg(land_cover=None, **surface_overrides):
    raw = tiny_raw_config(_raw(), bbox=BBOX, res_arcsec=RES_ARCSEC, tile_px=16)
    raw["ground"]["surface"]["land_cover"] = None if land_cover is None else str(land_cover)
    raw["ground"]["surface"].update(surface_overrides)
    raw["ground"]["probability"]["samples"] = 20
    return prepare(raw)


def _write(path, codes, transform, crs="EPSG:4326", nodata=0, dtype="uint8"):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=codes.shape[1],
        height=codes.shape[0],
        count=1,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(codes.astype(dtype), 1)
    return path


def _fine_transform(grid: Grid, fine: int = FINE) -> Affine:
    res = grid.res_deg / fine
    return Affine(res, 0.0, grid.west, 0.0, -res, grid.north)


def _index_of(cfg, grid=None):
    sm = surface.from_config(cfg)
    return sm.index(grid if grid is not None else Grid.from_config(cfg))


def _type(cfg, name):
    return surface.type_names(cfg).index(name)


# -- multipliers and config ------------------------------------------------------------------


def test_multipliers_give_each_type_its_own_values():
    cfg = _cfg()
    tt = cfg["ground"]["ttop"]
    m = surface.multipliers(cfg)
    types = cfg["ground"]["surface"]["types"]
    assert m.shape == (len(types), 3)
    for i, (name, t) in enumerate(types.items()):
        if t.get("mask"):
            assert (m[i] == 1.0).all(), name
            continue
        for j, p in enumerate(surface.PARAMS):
            assert tt[p] * m[i, j] == pytest.approx(t[p], rel=1e-15), (name, p)
    # the default type is ground.ttop's parameter set: multipliers exactly 1
    assert (m[_type(cfg, cfg["ground"]["surface"]["default_type"])] == 1.0).all()


def test_every_type_has_a_source_and_default_mapping_is_worldcover():
    cfg = _cfg()
    sec = cfg["ground"]["surface"]
    assert all(t["source"].strip() for t in sec["types"].values())
    # ESA WorldCover v200 legend (product user manual): every class is mapped
    codes = {10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}
    assert {int(c) for c in sec["land_cover_classes"]} == codes
    assert sec["types"][sec["land_cover_classes"]["80"]]["mask"] is True
    assert sec["types"][sec["land_cover_classes"]["70"]]["mask"] is True


@pytest.mark.parametrize(
    "change,message",
    [
        ({"default_type": "tundra"}, "ground.surface.default_type = 'tundra' is not one of"),
        ({"land_cover_classes": {30: "tundra"}}, "ground.surface.land_cover_classes.30 = 'tundra'"),
        (
            {"types": {"meadow": {"n_freezing": 0.7, "source": "x"}}, "default_type": "meadow"},
            "ground.surface.types.meadow needs n_thawing, conductivity_ratio",
        ),
        ({"resampling": "bilinear"}, "ground.surface.resampling = 'bilinear' is not allowed"),
        (
            {"types": {"m": {"n_freezing": 0.7, "n_thawing": 1.1, "conductivity_ratio": 0.9}}},
            "source",
        ),
    ],
)
def test_config_errors_name_the_key(change, message):
    raw = tiny_raw_config(_raw(), bbox=BBOX, res_arcsec=RES_ARCSEC, tile_px=16)
    sec = raw["ground"]["surface"]
    if "types" in change and "land_cover_classes" not in change:
        sec["land_cover_classes"] = {}
    sec.update(change)
    with pytest.raises(ConfigError, match=message):
        prepare(raw)


def test_land_cover_without_types_and_scenario_override_are_config_errors(tmp_path):
    raw = tiny_raw_config(_raw(), bbox=BBOX, res_arcsec=RES_ARCSEC, tile_px=16)
    raw["ground"]["surface"] = {"land_cover": "lc.tif"}
    with pytest.raises(ConfigError, match="ground.surface.land_cover needs ground.surface.types"):
        prepare(raw)
    raw = tiny_raw_config(_raw(), bbox=BBOX, res_arcsec=RES_ARCSEC, tile_px=16)
    raw["scenarios"]["ssp245"]["overrides"] = {"ground": {"surface": {"land_cover": "x.tif"}}}
    with pytest.raises(ConfigError, match="scenario 'ssp245' overrides ground.surface.land_cover"):
        prepare(raw)
    # a scenario may change a type's parameters (e.g. meadow degradation)
    raw["scenarios"]["ssp245"]["overrides"] = {
        "ground": {"surface": {"types": {"alpine_meadow": {"n_thawing": 1.3}}}}
    }
    prepare(raw)


# -- land cover -> surface index -------------------------------------------------------------


def _checkerboard_land_cover(grid: Grid):
    """Land cover 3x finer than ``grid``: working pixel (r, c) holds 5 fine pixels of code A and
    4 of code B (A, B from its position), except the last 4 columns, which the raster does not
    reach, and row 0, whose fine pixels are all nodata; pixel (1, 0) holds an unmapped code."""
    a_codes = np.array([GRASS, BARE, FOREST, WETLAND])
    b_codes = np.array([BARE, FOREST, WETLAND, GRASS])
    ny, nx = grid.height, grid.width - 4
    rr, cc = np.mgrid[0:ny, 0:nx]
    a = a_codes[(rr + 2 * cc) % 4]
    b = b_codes[(rr + 2 * cc) % 4]
    fine = np.repeat(np.repeat(b, FINE, 0), FINE, 1)
    # 5 of the 9 fine pixels of each working pixel are A: the centre and the 4 corners
    for i, j in ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2)):
        fine[i::FINE, j::FINE] = a
    fine[0:FINE, :] = 0  # nodata row
    fine[FINE : 2 * FINE, 0:FINE] = 123  # an unmapped code
    return fine, a, b


@pytest.fixture()
def checkerboard(tmp_path):
    cfg0 = _cfg()
    grid = Grid.from_config(cfg0)
    fine, a, b = _checkerboard_land_cover(grid)
    path = _write(tmp_path / "lc.tif", fine, _fine_transform(grid))
    return path, grid, a, b


def _types_of(cfg, codes):
    lookup = surface.code_lookup(cfg)
    return np.vectorize(lambda c: lookup[int(c)])(codes).astype(np.uint8)


def test_mode_picks_the_majority_class(checkerboard):
    path, grid, a, b = checkerboard
    cfg = _cfg(path)
    assert surface.from_config(cfg).k == FINE
    got = _index_of(cfg)
    default = _type(cfg, "alpine_meadow")
    nx = grid.width - 4
    expected = _types_of(cfg, a)
    expected[0, :] = default  # nodata: no votes -> default type
    expected[1, 0] = default  # unmapped code 123 (5 votes) -> default type
    np.testing.assert_array_equal(got[:, :nx], expected)
    assert (got[:, nx:] == default).all()  # outside the raster -> default type
    assert len(np.unique(got)) == 4


def test_nearest_takes_the_centre_pixel(checkerboard):
    path, grid, a, _ = checkerboard
    cfg = _cfg(path, resampling="nearest")
    assert surface.from_config(cfg).k == 1
    got = _index_of(cfg)
    expected = _types_of(cfg, a)  # the centre fine pixel is an A pixel
    expected[0, :] = _type(cfg, "alpine_meadow")
    expected[1, 0] = _type(cfg, "alpine_meadow")
    np.testing.assert_array_equal(got[:, : grid.width - 4], expected)


def test_ties_go_to_the_type_listed_first(tmp_path):
    cfg0 = _cfg()
    grid = Grid.from_config(cfg0)
    fine = np.full((grid.height * FINE, grid.width * FINE), FOREST, np.uint8)
    # per working pixel: 4 bare, 4 forest, 1 nodata -> tie between bare_ground and forest_shrub
    for i, j in ((0, 0), (0, 1), (0, 2), (1, 0)):
        fine[i::FINE, j::FINE] = BARE
    fine[1::FINE, 1::FINE] = 0
    cfg = _cfg(_write(tmp_path / "tie.tif", fine, _fine_transform(grid)))
    names = surface.type_names(cfg)
    assert names.index("bare_ground") < names.index("forest_shrub")
    assert (_index_of(cfg) == names.index("bare_ground")).all()


def test_index_is_the_same_in_any_chunk(checkerboard):
    """A pixel's type does not depend on the block it is computed in (tile seams)."""
    path, grid, _, _ = checkerboard
    cfg = _cfg(path)
    sm = surface.from_config(cfg)
    whole = sm.index(grid)
    from rasterio.windows import Window

    for step in (5, 7, 16):
        got = np.empty_like(whole)
        for r0 in range(0, grid.height, step):
            for c0 in range(0, grid.width, step):
                w = Window(c0, r0, min(step, grid.width - c0), min(step, grid.height - r0))
                got[r0 : r0 + w.height, c0 : c0 + w.width] = sm.index(grid.subgrid(w))
        np.testing.assert_array_equal(got, whole)


def test_projected_land_cover(tmp_path):
    """A UTM 47N land cover (25 m pixels): grassland west of easting E0, bare ground east of it;
    each working pixel's centre is classified by its own easting (rasterio.warp.transform)."""
    from rasterio.warp import transform

    cfg0 = _cfg()
    grid = Grid.from_config(cfg0)
    crs = "EPSG:32647"
    xs, ys = transform("EPSG:4326", crs, [grid.west, grid.east], [grid.south, grid.north])
    x0, y1 = min(xs) - 1000.0, max(ys) + 1000.0
    width = int((max(xs) - x0 + 1000.0) // 25) + 1
    height = int((y1 - min(ys) + 1000.0) // 25) + 1
    e0 = x0 + 25.0 * (width // 2)  # the pixel edge between the two halves
    codes = np.full((height, width), GRASS, np.uint8)
    codes[:, width // 2 :] = BARE
    path = _write(tmp_path / "utm.tif", codes, Affine(25.0, 0, x0, 0, -25.0, y1), crs=crs)
    cfg = _cfg(path, resampling="nearest")
    got = _index_of(cfg)
    lon = np.broadcast_to(grid.col_longitudes(), (grid.height, grid.width))
    lat = np.broadcast_to(grid.row_latitudes()[:, None], (grid.height, grid.width))
    east, _ = transform("EPSG:4326", crs, lon.ravel().tolist(), lat.ravel().tolist())
    east = np.asarray(east).reshape(lon.shape)
    expected = np.where(east < e0, _type(cfg, "alpine_meadow"), _type(cfg, "bare_ground"))
    np.testing.assert_array_equal(got, expected)
    assert 0 < (got == _type(cfg, "bare_ground")).sum() < got.size
    # mode: a 30" working pixel (~745 x 925 m) spans ~30 x 37 UTM pixels -> k capped at 16
    assert surface.from_config(_cfg(path)).k == surface.MAX_SAMPLES_PER_AXIS == 16
    # and the 10" checkerboard of the other tests gives k = 3 (see test_mode_picks_...)


def test_land_cover_errors(tmp_path):
    cfg0 = _cfg()
    grid = Grid.from_config(cfg0)
    codes = np.full((30, 30), GRASS, np.uint8)
    with pytest.raises(InputDataError, match=r"ground.surface.land_cover: .*missing.tif does not"):
        surface.from_config(_cfg(tmp_path / "missing.tif"))
    nocrs = _write(tmp_path / "nocrs.tif", codes, _fine_transform(grid), crs=None)
    with pytest.raises(InputDataError, match="has no CRS"):
        surface.from_config(_cfg(nocrs))
    far = Affine(0.01, 0, 10.0, 0, -0.01, 50.0)
    with pytest.raises(InputDataError, match="does not overlap the region"):
        surface.from_config(_cfg(_write(tmp_path / "far.tif", codes, far)))
    flt = _write(tmp_path / "f.tif", codes, _fine_transform(grid), dtype="float32", nodata=None)
    with pytest.raises(InputDataError, match="integer .categorical. raster"):
        surface.from_config(_cfg(flt))
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(InputDataError, match="is not a readable raster"):
        surface.from_config(_cfg(tmp_path / "junk.tif"))


def test_mode_kernel_analytic():
    s = np.array([[[0, 1, 1, 255], [255, 255, 255, 255], [2, 2, 1, 1]]], np.uint8)
    out = np.empty((1, 3), np.uint8)
    surface.mode_kernel(s, 3, 0, out)
    np.testing.assert_array_equal(out, [[1, 0, 1]])


# -- soil defaults (ground.active_layer) -------------------------------------------------------


def _johansen(porosity, saturation, quartz, fine=True, frozen=False):
    """Johansen (1975) soil conductivity (W/m/K) as summarised by Farouki (1981, CRREL
    Monograph 81-1): k = k_dry + Ke (k_sat - k_dry), k_sat the geometric mean of solids
    (quartz 7.7, other minerals 2.0) and water (0.57) or ice (2.2), k_dry =
    (0.135 rho_d + 64.7) / (2700 - 0.947 rho_d); Kersten number Ke = Sr frozen,
    log10(Sr) + 1 fine / 0.7 log10(Sr) + 1 coarse unfrozen. Written here independently of
    the package to check its soil defaults."""
    k_solids = 7.7**quartz * 2.0 ** (1.0 - quartz)
    k_fluid = 2.2 if frozen else 0.57
    k_sat = k_solids ** (1.0 - porosity) * k_fluid**porosity
    rho_d = 2700.0 * (1.0 - porosity)
    k_dry = (0.135 * rho_d + 64.7) / (2700.0 - 0.947 * rho_d)
    if frozen:
        ke = saturation
    else:
        ke = (1.0 if fine else 0.7) * math.log10(saturation) + 1.0
    return k_dry + ke * (k_sat - k_dry)


def test_soil_defaults_match_johansen_for_a_silty_soil():
    """ground.active_layer's k_thawed 1.2 and k_frozen 1.6 W/m/K (water 0.25 m3/m3) against
    Johansen's method for a fine mineral soil of porosity 0.35 (response.transient.soil) at
    the same water content: the defaults are within 10 % of a quartz-poor soil (quartz 0.1)
    and below a quartz-rich one (0.4); the ratio k_thawed / k_frozen is Johansen's for any
    quartz content (the Kersten numbers and the water/ice contrast set it)."""
    cfg = _cfg()
    soil = cfg["ground"]["active_layer"]
    n = cfg["response"]["transient"]["soil"]["porosity"]
    sr = soil["water_content_m3_per_m3"] / n
    lo_t, hi_t = (_johansen(n, sr, q) for q in (0.1, 0.4))
    lo_f, hi_f = (_johansen(n, sr, q, frozen=True) for q in (0.1, 0.4))
    assert 0.9 * lo_t <= soil["k_thawed_w_per_m_k"] <= hi_t
    assert 0.9 * lo_f <= soil["k_frozen_w_per_m_k"] <= hi_f
    ratio = soil["k_thawed_w_per_m_k"] / soil["k_frozen_w_per_m_k"]
    assert ratio == pytest.approx(lo_t / lo_f, abs=0.02)
    assert ratio == pytest.approx(hi_t / hi_f, abs=0.02)
    # saturated soil: r_k = (k_water / k_ice)^porosity, 0.60 at porosity 0.38 (wetland type)
    assert (0.57 / 2.2) ** 0.38 == pytest.approx(
        cfg["ground"]["surface"]["types"]["wetland"]["conductivity_ratio"], abs=0.005
    )
