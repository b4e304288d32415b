"""Surface types (permamap.surface): multipliers, land cover -> surface index, and the TTOP
model per surface type through the wrappers and the chunked path (permamap.blocks).

Every land cover here is generated in the test (no committed binaries). Expected surface
indices are written down from the construction of the raster (which codes a working pixel
covers), not computed with the module's own sampling.
"""

from __future__ import annotations

import copy
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


# -- the TTOP model per surface type: wrappers and the chunked path ----------------------------

TYPE_CODES = (GRASS, BARE, FOREST, WETLAND, WATER, SNOW)  # one code per working pixel


def _dem_halo(grid: Grid) -> np.ndarray:
    """Haloed DEM: a ramp from 3,000 to 4,600 m west to east (across the ~3,650 m lower limit
    of permafrost) with ridges, so every surface type spans permafrost and seasonal frost."""
    big = grid.expanded(1)
    r, c = np.mgrid[0 : big.height, 0 : big.width].astype(np.float64)
    return 3000.0 + 1600.0 * c / (big.width - 1) + 150.0 * np.sin(r / 3.1) * np.cos(c / 4.3)


def _pixel_codes(grid: Grid) -> np.ndarray:
    r, c = np.mgrid[0 : grid.height, 0 : grid.width]
    return np.asarray(TYPE_CODES)[(r + 2 * c) % len(TYPE_CODES)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """(config with a land cover of one code per working pixel, terrain stack, pixel codes)."""
    from permamap import blocks

    d = tmp_path_factory.mktemp("surface")
    grid = Grid.from_config(_cfg())
    codes = _pixel_codes(grid)
    fine = np.repeat(np.repeat(codes, FINE, 0), FINE, 1)
    path = _write(d / "lc.tif", fine, _fine_transform(grid))
    cfg = _cfg(path)
    from rasterio.windows import Window

    window = Window(0, 0, grid.width, grid.height)
    t = blocks.terrain_stack(_dem_halo(grid), cfg, grid, window, 16, "numpy")
    return cfg, t, codes, d


def _model(cfg, t, chunk_px=None):
    """Every product of the per-pixel model, {name: array} (class codes as uint8): dask chunks
    of ``chunk_px`` or numpy (None)."""
    from rasterio.windows import Window

    from permamap import blocks

    grid = Grid.from_config(cfg)
    window = Window(0, 0, grid.width, grid.height)
    if chunk_px is None:
        stack = blocks.model_stack(t, cfg, grid, window, 16, backend="numpy")
    else:
        with blocks.scheduler(2):
            stack = blocks.model_stack(t, cfg, grid, window, chunk_px).compute()
    return {
        n: a.astype(np.uint8) if n in blocks.CODE_BANDS or n.endswith("_class") else a
        for n, a in blocks.model_fields(stack, cfg).items()
    }


def _one_surface(cfg, name):
    """``cfg`` with one surface, ``ground.ttop`` = type ``name``'s values, and the Monte Carlo
    ranges of its parameters scaled by the type's multipliers (module docstring)."""
    one = copy.deepcopy(cfg)
    t = cfg["ground"]["surface"]["types"][name]
    tt = one["ground"]["ttop"]
    ranges = one["ground"]["probability"]["ranges"]
    for p in surface.PARAMS:
        m = t[p] / tt[p]
        if p in ranges:
            ranges[p] = [ranges[p][0] * m, ranges[p][1] * m]
        tt[p] = t[p]
    one["ground"]["surface"]["land_cover"] = None
    return one


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}[a.dtype.itemsize])


def test_each_type_gets_the_maps_of_a_one_surface_run(mixed):
    """Chunked run with the land cover: the pixels of each type have the MAGT, class,
    stability, active layer, probability and scenario maps of a one-surface run with that
    type's parameters; water and glacier pixels are nodata in the ground products."""
    cfg, t, codes, _ = mixed
    got = _model(cfg, t, chunk_px=7)
    lookup = surface.code_lookup(cfg)
    types = cfg["ground"]["surface"]["types"]
    names = surface.type_names(cfg)
    n_checked = 0
    for code in TYPE_CODES:
        name = names[lookup[code]]
        px = codes == code
        if types[name].get("mask"):
            assert np.isnan(got["magt"][px]).all() and (got["class"][px] == 255).all(), name
            assert (got["probability"][px] == 255).all() and np.isnan(got["alt"][px]).all()
            assert (got["s0_class"][px] == 255).all()
            assert np.isfinite(got["maat"][px]).all()  # the climate is still there
            continue
        ref = _model(_one_surface(cfg, name), t)
        for f in got:
            a, b = got[f][px], ref[f][px]
            if a.dtype.kind == "f":
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{name} {f}")
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{name} {f}")
        pf = got["class"][px] == 1
        assert 0 < pf.sum() < px.sum(), name  # the boundary runs through every type
        n_checked += 1
    assert n_checked == 4


def test_wrappers_with_a_surface_index(mixed):
    """ground.compute_ground / active_layer with ``surface``/``surface_mult`` equal, per type,
    the wrappers without them on a config holding that type's parameters."""
    from permamap import climate, ground

    cfg, t, codes, _ = mixed
    z, slope, aspect, solar = (np.asarray(t[i], np.float64) for i in range(4))
    grid = Grid.from_config(cfg)
    forcing = climate.forcing_from_config(cfg)
    maat, fdd, tdd, amp = climate.compute_climate(z, forcing, grid=grid)
    surf = surface.from_config(cfg).index(grid)
    mult = surface.multipliers(cfg)
    magt, cls, stab = ground.compute_ground(
        cfg, z, slope, aspect, fdd, tdd, solar=solar, surface=surf, surface_mult=mult
    )
    alt, fd = ground.active_layer(
        cfg, cls, fdd, tdd, solar=solar, maat=maat, amplitude=amp, surface=surf, surface_mult=mult
    )
    for name in ("alpine_meadow", "bare_ground", "forest_shrub", "wetland"):
        one = _one_surface(cfg, name)
        px = surf == surface.type_names(cfg).index(name)
        m1, c1, s1 = ground.compute_ground(one, z, slope, aspect, fdd, tdd, solar=solar)
        a1, f1 = ground.active_layer(one, c1, fdd, tdd, solar=solar, maat=maat, amplitude=amp)
        np.testing.assert_allclose(magt[px], m1[px], rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(cls[px], c1[px], err_msg=name)
        np.testing.assert_array_equal(stab[px], s1[px], err_msg=name)
        np.testing.assert_allclose(alt[px], a1[px], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(fd[px], f1[px], rtol=1e-12, err_msg=name)


def test_chunked_land_cover_run_equals_whole_tile(mixed):
    cfg, t, _, _ = mixed
    ref = _model(cfg, t)
    for chunk in (5, 16):
        got = _model(cfg, t, chunk_px=chunk)
        for f in ref:
            np.testing.assert_array_equal(_bits(got[f]), _bits(ref[f]), err_msg=f)


def test_a_land_cover_of_the_default_type_is_bit_identical_to_none(mixed):
    """Grassland everywhere maps to alpine_meadow, ground.ttop's own values (multipliers
    exactly 1): the maps are bit-identical to a run without a land cover."""
    cfg, t, codes, d = mixed
    grid = Grid.from_config(cfg)
    fine = np.full((grid.height * FINE, grid.width * FINE), GRASS, np.uint8)
    meadow = _cfg(_write(d / "grass.tif", fine, _fine_transform(grid)))
    a, b = _model(meadow, t, chunk_px=7), _model(_cfg(), t, chunk_px=7)
    for f in a:
        np.testing.assert_array_equal(_bits(a[f]), _bits(b[f]), err_msg=f)


def test_higher_thawing_n_factor_warms_and_raises_the_limit(mixed):
    """bare_ground n_thawing 1.3 -> 1.5: its pixels get warmer (wherever the air thaws) and
    lose permafrost at the lower limit; every other pixel keeps its bits."""
    cfg, t, codes, _ = mixed
    base = _model(cfg, t)
    warm_cfg = copy.deepcopy(cfg)
    warm_cfg["ground"]["surface"]["types"]["bare_ground"]["n_thawing"] = 1.5
    warm = _model(warm_cfg, t)
    bare = codes == BARE
    thaws = bare & (base["tdd"] > 0)
    assert thaws.sum() > 50
    assert (warm["magt"][thaws] > base["magt"][thaws]).all()
    pf0, pf1 = base["class"][bare] == 1, warm["class"][bare] == 1
    assert not (pf1 & ~pf0).any() and (pf0 & ~pf1).sum() > 0
    z = np.asarray(t[0])[bare]
    assert z[pf1].min() > z[pf0].min()  # the lowest permafrost on bare ground moved up
    for f in base:
        np.testing.assert_array_equal(_bits(warm[f][~bare]), _bits(base[f][~bare]), err_msg=f)


# -- ESA WorldCover tiles (local HTTP fixture laid out like the real host) -----------------------


def _worldcover_code(lon, lat):
    """Class codes of the fixture tiles: WorldCover codes in 0.25-degree stripes."""
    codes = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    return codes[(np.floor(np.asarray(lon) * 4) + np.floor(np.asarray(lat) * 4)).astype(int) % 10]


def _worldcover_tile(tmp, lat, lon, n=120):
    """A 3x3 degree uint8 tile like the real ones (``n`` pixels a degree instead of 12000)."""
    from rasterio.transform import from_origin

    from permamap.sources import worldcover
    from tests import http_fixtures as hf

    res = 1.0 / n
    cols = lon + (np.arange(3 * n) + 0.5) * res
    rows = lat + 3 - (np.arange(3 * n) + 0.5) * res
    x, y = np.meshgrid(cols, rows)
    name = f"ESA_WorldCover_10m_2021_v200_{worldcover.tile_name(lat, lon)}_Map.tif"
    return hf.write_tif(
        tmp / name,
        _worldcover_code(x, y).astype(np.uint8),
        from_origin(lon, lat + 3, res, res),
        nodata=0,
    )


def test_worldcover_names_urls_and_mosaic(tmp_path):
    from permamap.sources import worldcover
    from tests import http_fixtures as hf

    assert worldcover.tile_name(36, 99) == "N36E099"
    assert worldcover.tile_name(-3, -72) == "S03W072"
    assert worldcover.tile_url("N36E099") == (
        "https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map/"
        "ESA_WorldCover_10m_2021_v200_N36E099_Map.tif"
    )
    # Xining (36.6 N, 101.8 E) is in N36E099; this bbox spans four tiles
    assert worldcover.tile_corners((101.0, 36.5, 102.0, 37.5)) == [(36, 99)]
    assert worldcover.tile_corners((98.5, 35.5, 99.5, 36.5)) == [
        (33, 96),
        (33, 99),
        (36, 96),
        (36, 99),
    ]
    with pytest.raises(ValueError, match="lattice"):
        worldcover.tile_name(37, 99)
    host = "https://esa-worldcover.s3.eu-central-1.amazonaws.com/"
    with hf.FixtureServer() as srv:
        settings = {
            "cache_dir": str(tmp_path / "cache"),
            "mirrors": {host: srv.url + "/wc/"},
            "retries": 1,
            "timeout_s": 5.0,
            "backoff_s": 0.01,
            "progress": False,
        }
        for lat, lon in [(33, 96), (33, 99), (36, 96)]:  # (36, 99) is "all water": 404
            tile = _worldcover_tile(tmp_path, lat, lon)
            srv.add("/wc/" + worldcover.tile_url(tile.stem.split("_")[-2])[len(host) :], tile)
        out = worldcover.retrieve_land_cover(
            (98.5, 35.5, 99.5, 36.5), tmp_path / "lc.tif", settings
        )
    with rasterio.open(out) as src:
        codes = src.read(1)
        assert src.crs.to_epsg() == 4326 and src.nodata == 0 and src.dtypes[0] == "uint8"
        assert src.tags()["missing_tiles_water"] == "N36E099"
        b = src.bounds
        t = src.transform
    assert (b.left, b.bottom, b.right, b.top) == pytest.approx((98.5, 35.5, 99.5, 36.5))
    x = t.c + (np.arange(codes.shape[1]) + 0.5) * t.a
    y = t.f + (np.arange(codes.shape[0]) + 0.5) * t.e
    lon, lat = np.meshgrid(x, y)
    water = (lon > 99) & (lat > 36)
    assert (codes[water] == 0).all()
    np.testing.assert_array_equal(codes[~water], _worldcover_code(lon, lat)[~water])


def test_a_scenario_may_change_a_types_parameters(mixed):
    """ssp245 with alpine_meadow n_thawing 1.1 -> 1.3 (e.g. meadow degradation): its maps are
    warmer on meadow pixels only; the baseline and the other scenarios keep their bits."""
    cfg, t, codes, _ = mixed
    raw = tiny_raw_config(_raw(), bbox=BBOX, res_arcsec=RES_ARCSEC, tile_px=16)
    raw["ground"]["surface"]["land_cover"] = cfg["ground"]["surface"]["land_cover"]
    raw["ground"]["probability"]["samples"] = 20
    raw["scenarios"]["ssp245"]["overrides"] = {
        "ground": {"surface": {"types": {"alpine_meadow": {"n_thawing": 1.3}}}}
    }
    base, over = _model(cfg, t), _model(prepare(raw), t)
    names = list(cfg["scenarios"])
    n_h = len(cfg["horizons"])
    meadow = codes == GRASS
    for f in base:
        k = int(f[1 : f.index("_")]) if f.startswith("s") and f[1].isdigit() else None
        if k is not None and names[k // n_h] == "ssp245" and f.endswith("_magt"):
            thaws = meadow & (base["tdd"] > 0)
            assert (over[f][thaws] > base[f][thaws]).all(), f
            np.testing.assert_array_equal(_bits(over[f][~meadow]), _bits(base[f][~meadow]))
        elif k is None or names[k // n_h] != "ssp245":
            np.testing.assert_array_equal(_bits(over[f]), _bits(base[f]), err_msg=f)


def test_workflow_takes_the_land_cover_as_an_input(tmp_path):
    """With ground.surface.land_cover the ground and scenarios jobs list it as an input (a new
    land cover reruns them); without it (the sample) they do not."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    snakemake = str(Path(sys.executable).parent / "snakemake")
    shutil.copy(REPO / "Snakefile", tmp_path / "Snakefile")
    for d in ("workflow", "config", "envs"):
        shutil.copytree(REPO / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    raw = _raw()
    grid = Grid.from_config(prepare(copy.deepcopy(raw)))
    fine = np.full((grid.height, grid.width), GRASS, np.uint8)
    _write(tmp_path / "lc.tif", fine, grid.transform)
    raw["ground"]["surface"]["land_cover"] = "lc.tif"
    (tmp_path / "lc.yaml").write_text(yaml.safe_dump(raw))

    def jobs(*extra):
        proc = subprocess.run(
            [snakemake, "-n", "--cores", "2", *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out, rule = {}, None
        for line in proc.stdout.splitlines():
            s = line.strip()
            if s.startswith(("rule ", "localrule ")):
                rule = s.split()[1].rstrip(":")
            elif s.startswith("input:") and rule:
                out.setdefault(rule, []).append(s)
        return out

    with_lc = jobs("--configfile", "lc.yaml")
    assert with_lc["ground"] and all("lc.tif" in s for s in with_lc["ground"])
    assert with_lc["scenarios"] and all("lc.tif" in s for s in with_lc["scenarios"])
    assert not any("lc.tif" in s for s in with_lc.get("climate", []))
    without = jobs()
    assert without["ground"] and not any("lc.tif" in s for v in without.values() for s in v)


@pytest.mark.parametrize("dtype", ["uint16", "int16", "int32"])
def test_any_integer_dtype_gives_the_same_index(checkerboard, tmp_path, dtype):
    """uint8/16 and int16 codes go through a table over every code, wider ones through
    np.unique: the same types either way (nodata and unmapped codes included)."""
    path, grid, _, _ = checkerboard
    with rasterio.open(path) as src:
        codes = src.read(1)
    other = _write(tmp_path / f"lc_{dtype}.tif", codes, _fine_transform(grid), dtype=dtype)
    np.testing.assert_array_equal(_index_of(_cfg(other)), _index_of(_cfg(path)))


def test_point_model_uses_the_surface_type_of_the_map(mixed):
    """validation.model_at_points (boreholes, calibration) at pixel centres gives the map's MAGT
    and class with a land cover: each point gets its pixel's surface type (masked types nodata),
    and differs from the one-surface point model where the type's parameters differ."""
    from permamap import validation

    cfg, t, codes, _ = mixed
    grid = Grid.from_config(cfg)
    got = _model(cfg, t)
    rows, cols = np.mgrid[0 : grid.height : 5, 0 : grid.width : 3]
    rows, cols = rows.ravel(), cols.ravel()
    lon = grid.west + (cols + 0.5) * grid.res_deg
    lat = grid.north - (rows + 0.5) * grid.res_deg
    z, slope, aspect, solar = (np.asarray(t[i], np.float64)[rows, cols] for i in range(4))
    pts = validation.model_at_points(cfg, lon, lat, z, slope, aspect, solar)
    # the map stores MAGT in float32
    np.testing.assert_allclose(pts["magt"], got["magt"][rows, cols], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(pts["cls"], got["class"][rows, cols])
    assert np.isnan(pts["magt"]).any()  # points on water / glacier pixels: not modelled
    one = copy.deepcopy(cfg)
    one["ground"]["surface"]["land_cover"] = None
    plain = validation.model_at_points(one, lon, lat, z, slope, aspect, solar)
    default = surface.type_names(cfg).index(cfg["ground"]["surface"]["default_type"])
    lookup = surface.code_lookup(cfg)
    other = np.array([lookup[c] != default for c in codes[rows, cols]]) & np.isfinite(pts["magt"])
    assert other.any() and not np.allclose(pts["magt"][other], plain["magt"][other])


def test_land_cover_worldcover_is_retrieved_and_used(tmp_path, monkeypatch):
    """``land_cover: worldcover``: the retrieve stage fetches the region's WorldCover tile (local
    HTTP fixture standing in for the AWS bucket) to resources/<run>/inputs/, the ground stages
    open that file, and a dry run lists retrieve_land_cover before the ground jobs."""
    from conftest import copy_workflow, snakemake

    from permamap import retrieve
    from tests import http_fixtures as hf

    monkeypatch.chdir(tmp_path)
    cfg = _cfg("worldcover")  # BBOX 101.0-101.4 E, 36.6-37.0 N: inside tile N36E099
    path = surface.land_cover_path(cfg)
    assert path == f"resources/{cfg['run']}/inputs/land_cover_worldcover.tif"
    assert retrieve.plan(cfg)["land_cover"] == path
    host = "https://esa-worldcover.s3.eu-central-1.amazonaws.com/"
    with hf.FixtureServer() as srv:
        tile = _worldcover_tile(tmp_path, 36, 99)
        srv.add("/wc/" + "v200/2021/map/" + tile.name, tile)
        cfg.setdefault("download", {}).update(
            mirrors={host: srv.url + "/wc/"}, retries=1, progress=False
        )
        retrieve.retrieve_land_cover_file(cfg, path)
    grid = Grid.from_config(cfg)
    idx = surface.from_config(cfg).index(grid)
    x = grid.west + (np.arange(grid.width) + 0.5) * grid.res_deg
    y = grid.north - (np.arange(grid.height) + 0.5) * grid.res_deg
    lon, lat = np.meshgrid(x, y)
    expected = _types_of(cfg, _worldcover_code(lon, lat))
    inside = (np.abs(lon * 4 - np.round(lon * 4)) > 0.1) & (
        np.abs(lat * 4 - np.round(lat * 4)) > 0.1
    )
    np.testing.assert_array_equal(idx[inside], expected[inside])  # away from stripe edges
    work = tmp_path / "wf"
    work.mkdir()
    copy_workflow(work)
    (work / "wc.yaml").write_text("ground:\n  surface:\n    land_cover: worldcover\n")
    proc = snakemake(work, "-n", "--cores", "1", "--configfile", "wc.yaml", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = {line.split()[0] for line in proc.stdout.splitlines() if len(line.split()) == 2}
    assert {"retrieve_land_cover", "ground", "scenarios"} <= jobs
