"""The retrieve stage wired into the workflow: what a config downloads and where it lands, the
gridded climate forcing, CMIP6 delta fields, the Copernicus DEM path of build_dem, and the
real-region workflow end to end against the local fixture server (no internet).

Expected values are analytic: the fixtures of tests/http_fixtures.py are planes in lon/lat (or
in EPSG:3995 metres), which bilinear interpolation and cell averaging reproduce exactly, so
every number here is computed from the fixture formulas, not from permamap's output.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from conftest import CORES, GREEDY, SNAKEMAKE, copy_workflow
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from permamap import climate, retrieve, steps
from permamap.config import load, load_schema, prepare
from permamap.errors import ConfigError, InputDataError
from permamap.grid import Grid
from permamap.sources import cmip6, copernicus, reference, worldclim
from tests import http_fixtures as hf

REPO = Path(__file__).resolve().parents[1]
DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)


def centres(transform: Affine, width: int, height: int):
    c, r = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return transform @ (c, r)


def xining_raw() -> dict:
    return yaml.safe_load((REPO / "config/xining.yaml").read_text())


# ------------------------------------------------------------------------------ config and plan


def test_cmip6_period_holds_the_horizon():
    # WorldClim CMIP6 periods: 2021-2040, 2041-2060, 2061-2080, 2081-2100
    assert retrieve.cmip6_period(2021) == "2021-2040"
    assert retrieve.cmip6_period(2040) == "2021-2040"
    assert retrieve.cmip6_period(2050) == "2041-2060"
    assert retrieve.cmip6_period(2070) == "2061-2080"
    assert retrieve.cmip6_period(2100) == "2081-2100"
    for bad in (2020, 2101):
        with pytest.raises(ConfigError, match=f"horizon {bad} has no WorldClim CMIP6 period"):
            retrieve.cmip6_period(bad)


def test_schema_gcm_list_matches_the_source_module():
    scen = load_schema()["properties"]["scenarios"]["additionalProperties"]
    assert scen["properties"]["cmip6"]["properties"]["gcms"]["items"]["enum"] == list(cmip6.GCMS)


def test_xining_config_plans_every_dataset():
    cfg = load(REPO / "config/xining.yaml")
    assert cfg["region"]["bbox"] == [100.5, 36.0, 102.5, 38.0]
    assert cfg["region"]["resolution_arcsec"] == 1
    assert cfg["dem"]["copernicus"]["product"] == "GLO-30"
    assert cfg["download"]["retries"] == 5 and cfg["download"]["manifest"] is None
    p = retrieve.plan(cfg)
    assert p["dem"] == "resources/xining/inputs/dem_copernicus_GLO-30.tif"
    assert p["climate"] == {"tavg": "resources/xining/inputs/climate_worldclim_tavg.tif",
                            "elev": "resources/xining/inputs/climate_worldclim_elev.tif"}
    assert len(p["cmip6"]) == 9
    assert p["cmip6"][("ssp585", 2100)] == "resources/xining/inputs/cmip6_delta/ssp585/2100.tif"
    assert {n: s["path"] for n, s in p["reference"].items()} == {
        "obu2019_magt": "resources/xining/reference/obu2019_magt.tif",
        "obu2019_perprob": "resources/xining/reference/obu2019_perprob.tif",
        "esa_cci_pfr": "resources/xining/reference/esa_cci_pfr.tif",
    }
    # the region + halo + margin of 1" GLO-30 pixels: 3 x 4 tiles of 1 degree
    grid = Grid.from_config(cfg).expanded(1)
    assert len(copernicus.tile_corners(grid.bounds)) == 12
    assert worldclim.tile_ids(grid.bounds) == [22]


def test_sample_config_retrieves_nothing(config):
    assert retrieve.plan(config) == {
        "dem": None,
        "climate": None,
        "cmip6": {},
        "reference": {},
        "land_cover": None,
    }
    # optional sections stay absent or empty: the sample's config is not changed by them
    assert "copernicus" not in config["dem"] and "worldclim" not in config["climate"]


def test_section_defaults_are_filled_only_for_the_source_used(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["climate"]["source"] = "chelsa"
    cfg = prepare(raw)
    assert cfg["climate"]["chelsa"]["base_url"].startswith("https://os.zhdk.cloud.switch.ch/")
    assert cfg["climate"]["chelsa"]["scale"] is None and "worldclim" not in cfg["climate"]


@pytest.mark.parametrize("mod, message", [
    (lambda c: c["dem"]["copernicus"].update(product="GLO-10"),
     "dem.copernicus.product = 'GLO-10' is not allowed; allowed: 'GLO-30', 'GLO-90'"),
    (lambda c: c["climate"].update(source="era5"), "climate.source = 'era5' is not allowed"),
    (lambda c: c["climate"]["worldclim"].update(res="1s"),
     "climate.worldclim.res = '1s' is not allowed"),
    (lambda c: c["scenarios"]["ssp245"]["cmip6"].update(ssp="ssp999"),
     "scenarios.ssp245.cmip6.ssp = 'ssp999' is not allowed"),
    (lambda c: c["scenarios"]["ssp245"]["cmip6"].update(gcms=["NoSuchGCM"]),
     "scenarios.ssp245.cmip6.gcms.0 = 'NoSuchGCM' is not allowed"),
    (lambda c: c["scenarios"]["ssp245"]["cmip6"].pop("gcms"),
     "scenarios.ssp245.cmip6: 'gcms' is a required property"),
    (lambda c: c["download"].update(retries=-1), "download.retries = -1 is out of range"),
    (lambda c: c["download"].update(proxy="x"), "unknown key 'proxy' in download"),
    (lambda c: c["reference"]["esa_cci"].update(year=1990),
     "reference.esa_cci.year = 1990 is out of range; must be >= 1997"),
    (lambda c: c["reference"].update(local=[{"name": "zou", "path": "z.tif", "kind": "zones"}]),
     "reference.local.0.kind = 'zones' is not allowed"),
])
def test_bad_retrieve_config_is_one_readable_line(mod, message):
    raw = xining_raw()
    mod(raw)
    with pytest.raises(ConfigError) as err:
        prepare(raw, source="config/xining.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cmip6_horizon_outside_the_periods_is_a_config_error():
    raw = xining_raw()
    raw["horizons"] = [2050, 2150]
    # caught when the config is prepared (permamap validate-config sees it too), naming the scenario
    with pytest.raises(ConfigError, match=r"in scenario 'ssp\d+': horizon 2150 has no WorldClim CMIP6 period"):
        prepare(raw)


def test_reference_names_must_be_unique():
    raw = xining_raw()
    raw["reference"]["local"] = [{"name": "obu2019_magt", "path": "x.tif"}]
    with pytest.raises(ConfigError, match="'obu2019_magt' is used twice"):
        retrieve.plan(prepare(raw))


# ------------------------------------------------------------------------------ gridded forcing


def _plane_tavg(month, lon, lat):
    """A monthly temperature field linear in lon/lat (C)."""
    return -8.0 + 1.5 * month - 0.6 * (lat - 36.0) + 0.2 * (lon - 101.0)


def _plane_elev(lon, lat):
    return 2500.0 + 300.0 * (lon - 101.0) - 200.0 * (lat - 36.0)


def _write_climate(tmp_path, res=1 / 120, west=100.9, north=37.1, n=24, hole=None):
    """A 30"-like climatology on its own grid (not aligned with the tile grid)."""
    tr = from_origin(west, north, res, res)
    lon, lat = centres(tr, n, n)
    tavg = np.stack([_plane_tavg(m, lon, lat) for m in range(1, 13)]).astype("float32")
    elev = _plane_elev(lon, lat).astype("float32")[None]
    if hole is not None:
        tavg[:, hole[0], hole[1]] = -9999.0
    t = hf.write_tif(tmp_path / "tavg.tif", tavg, tr, nodata=-9999.0)
    z = hf.write_tif(tmp_path / "elev.tif", elev, tr, nodata=-9999.0)
    return t, z


def _grid_config(raw_config, source="worldclim"):
    raw = copy.deepcopy(raw_config)
    raw["climate"]["source"] = source
    return prepare(raw)


def test_grid_forcing_bilinear_is_exact_for_a_plane(tmp_path, raw_config):
    t_path, z_path = _write_climate(tmp_path)
    forcing = climate.GridForcing(_grid_config(raw_config), t_path, z_path)
    tile = Grid(west=101.0, north=37.0, res_deg=3 / 3600, width=50, height=40)
    t_ref, z_ref = forcing.fields(tile)
    assert t_ref.shape == (12, 40, 50) and z_ref.shape == (40, 50)
    assert t_ref.dtype == np.float64 and z_ref.dtype == np.float64
    lon, lat = np.meshgrid(tile.col_longitudes(), tile.row_latitudes())
    for m in range(12):
        np.testing.assert_allclose(t_ref[m], _plane_tavg(m + 1, lon, lat), atol=2e-5)
    np.testing.assert_allclose(z_ref, _plane_elev(lon, lat), rtol=1e-6)


def test_grid_forcing_nodata_stays_nodata(tmp_path, raw_config):
    t_path, z_path = _write_climate(tmp_path, hole=(slice(0, 24), slice(0, 12)))  # west half
    forcing = climate.GridForcing(_grid_config(raw_config), t_path, z_path)
    tile = Grid(west=100.95, north=37.05, res_deg=1 / 240, width=30, height=30)  # inside
    t_ref, z_ref = forcing.fields(tile)
    lon = tile.col_longitudes()
    west_cols = lon < 100.9 + 11 / 120  # centres of the tile left of the last nodata column
    assert np.isnan(z_ref[:, west_cols]).all() and np.isnan(t_ref[:, :, west_cols]).all()
    east_cols = lon > 100.9 + 13 / 120  # right of the first valid column centre
    assert np.isfinite(t_ref[:, :, east_cols]).all() and np.isfinite(z_ref[:, east_cols]).all()


def _warp_whole_raster(path, grid):
    """The reference: the whole raster read into memory (nodata -> NaN, float64), then GDAL's
    bilinear warp of that array onto ``grid``, band by band (GDAL's multi-band warp with
    per-band nodata blanks whole neighbourhoods and stretches of rows around a hole of one
    band; one band at a time it re-weights the valid cells around a hole, as GDAL documents)."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    with rasterio.open(path) as src:
        data = src.read(masked=True).astype(np.float64).filled(np.nan)
        tr, crs = src.transform, src.crs
    out = np.full((data.shape[0], grid.height, grid.width), np.nan)
    for b in range(data.shape[0]):
        reproject(data[b], out[b], src_transform=tr, src_crs=crs, src_nodata=np.nan,
                  dst_transform=grid.transform, dst_crs=crs, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
    return out


def _curved_climate(tmp_path):
    """A 300 x 300 cell 30" climatology with curvature, noise and nodata holes (one in every
    month, one in one month only), not aligned with the working grid."""
    rng = np.random.default_rng(3)
    tr = from_origin(100.9, 37.1, 1 / 120, 1 / 120)
    lon, lat = centres(tr, 300, 300)
    tavg = np.stack(
        [
            np.sin(lon * 7 + m) * 5 + np.cos(lat * 9) + rng.normal(0, 0.3, lon.shape)
            for m in range(12)
        ]
    ).astype("float32")
    tavg[:, 40:55, 100:130] = -9999.0
    tavg[3, 200:203, 10:12] = -9999.0
    return hf.write_tif(tmp_path / "tavg.tif", tavg, tr, nodata=-9999.0)


def test_forcing_resampling_agrees_with_gdal_bilinear(tmp_path):
    """climate.warp_monthly_raster (numba bilinear on the source window a grid needs) against
    GDAL's bilinear warp of the whole raster held in memory, band by band: the same nodata
    pixels (holes, their re-weighted rims, the raster's edges: the region reaches past its east
    and south edges) and the same values to rounding."""
    path = _curved_climate(tmp_path)  # 100.9-103.4 E, 34.6-37.1 N
    region = Grid(west=100.95, north=37.0, res_deg=1 / 600, width=1500, height=1800)
    got = climate.warp_monthly_raster(path, region, what="test", count=12, region=region)
    ref = _warp_whole_raster(path, region)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got).mean() > 0.1 and np.isfinite(got).mean() > 0.5
    # GDAL places the centres through its approximate transformer: differences of ~3e-12 C
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11)
    # a grid wholly outside the raster is all nodata
    away = Grid(west=110.0, north=30.0, res_deg=1 / 900, width=10, height=10)
    assert np.isnan(climate.warp_monthly_raster(path, away, what="test", count=12)).all()


def test_forcing_of_a_chunk_is_the_regions_bits(tmp_path):
    """With the region grid, a chunk's forcing is the region's forcing at the same pixels bit
    for bit, whatever the chunk's offset (GDAL's warper of the chunk differs from the
    region's by up to 2e-14 C at most of its pixels: tile seams would show in the last bits)."""
    path = _curved_climate(tmp_path)
    region = Grid(west=101.0, north=37.0, res_deg=1 / 900, width=1500, height=1400)
    whole = climate.warp_monthly_raster(path, region, what="test", count=12, region=region)
    for r0, c0, h, w in ((0, 0, 256, 256), (517, 333, 300, 211), (1200, 1289, 200, 211)):
        chunk = region.subgrid(Window(c0, r0, w, h))
        got = climate.warp_monthly_raster(path, chunk, what="test", count=12, region=region)
        np.testing.assert_array_equal(got, whole[:, r0 : r0 + h, c0 : c0 + w])


def test_grid_forcing_answers_a_repeated_grid_from_memory(tmp_path, raw_config):
    """A chunk's climate, ground, probability and scenarios ask the forcing for the same grid:
    the thread's last grid is answered without resampling again, read-only (so no caller can
    change another's fields), and another grid is resampled anew; a pickled copy works."""
    import pickle

    t_path, z_path = _write_climate(tmp_path)
    forcing = climate.GridForcing(_grid_config(raw_config), t_path, z_path)
    a = Grid(west=101.0, north=37.0, res_deg=3 / 3600, width=50, height=40)
    b = Grid(west=101.1, north=36.9, res_deg=3 / 3600, width=20, height=30)
    t1, z1 = forcing.fields(a)
    t2, z2 = forcing.fields(a)
    assert t2 is t1 and z2 is z1
    assert not t1.flags.writeable and not z1.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        t1[0, 0, 0] = 0.0
    tb, _ = forcing.fields(b)
    assert tb.shape == (12, 30, 20)
    t3, _ = forcing.fields(a)  # resampled again: the same values, a new array
    assert t3 is not t1
    np.testing.assert_array_equal(t3, t1)
    copy_ = pickle.loads(pickle.dumps(forcing))
    np.testing.assert_array_equal(copy_.fields(a)[0], t1)


def test_gridded_climate_lapse_correction_by_hand(tmp_path, raw_config):
    t_path, z_path = _write_climate(tmp_path)
    cfg = _grid_config(raw_config)
    forcing = climate.GridForcing(cfg, t_path, z_path)
    tile = Grid(west=101.0, north=37.0, res_deg=6 / 3600, width=30, height=30)
    lon, lat = np.meshgrid(tile.col_longitudes(), tile.row_latitudes())
    z = 3000.0 + 10.0 * np.sin(lon * 50) + np.cos(lat * 40)
    maat, fdd, tdd = climate.compute_climate(z, forcing, grid=tile)[:3]
    lapse = cfg["climate"]["lapse_rate_c_per_m"]
    monthly = np.stack([_plane_tavg(m, lon, lat) for m in range(1, 13)])
    expected = (DAYS[:, None, None] * monthly).sum(0) / 365.0 + lapse * (_plane_elev(lon, lat) - z)
    np.testing.assert_allclose(maat, expected, atol=1e-4)
    assert (fdd >= 0).all() and (tdd >= 0).all()


def test_forcing_from_config_needs_the_retrieved_files(tmp_path, raw_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputDataError, match=r"climate_worldclim_tavg.tif does not exist; run "
                                             "the retrieve rules first"):
        climate.forcing_from_config(_grid_config(raw_config))


# ------------------------------------------------------------------------------ CMIP6 delta fields


def test_scenario_delta_fields_read_the_cmip6_rasters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = xining_raw()
    raw["horizons"] = [2050, 2100]
    raw["scenarios"]["ssp126"].pop("cmip6")  # a uniform-trend scenario beside CMIP6 ones
    cfg = prepare(raw)
    tile = Grid(west=101.0, north=37.0, res_deg=1 / 3600, width=64, height=48)
    d = {2050: np.linspace(1.0, 2.1, 12), 2100: np.linspace(2.0, 4.2, 12)}
    tr = from_origin(100.5, 37.5, 1 / 6, 1 / 6)
    for h, delta in d.items():
        path = Path(retrieve.cmip6_delta_path(cfg, "ssp245", h))
        path.parent.mkdir(parents=True, exist_ok=True)
        hf.write_tif(path, np.broadcast_to(delta[:, None, None], (12, 6, 6)).astype("float32"), tr)
    fields = steps.scenario_delta_fields(cfg, "ssp245", tile)
    assert fields.shape == (2, 12, 48, 64)
    for k, h in enumerate((2050, 2100)):
        for m in range(12):
            np.testing.assert_allclose(fields[k, m], d[h][m], atol=1e-6)
    uniform = steps.scenario_delta_fields(cfg, "ssp126", tile)
    # 0.12 C per decade from 1985: 0.78 C in 2050, 1.38 C in 2100
    np.testing.assert_allclose(uniform[:, 0, 0, 0], [0.78, 1.38])
    with pytest.raises(InputDataError, match=r"ssp585/2050.tif does not exist"):
        steps.scenario_delta_fields(cfg, "ssp585", tile)


# ------------------------------------------------------------------ DEM and CHELSA elevation


def test_build_dem_reads_the_copernicus_mosaic(tmp_path, monkeypatch):
    from permamap.dem import build_dem

    monkeypatch.chdir(tmp_path)
    raw = xining_raw()
    raw["region"].update(bbox=[101.2, 37.2, 101.3, 37.3], resolution_arcsec=6)
    cfg = prepare(raw)
    with pytest.raises(InputDataError, match="run the retrieve_dem rule first"):
        build_dem(cfg, tmp_path / "dem.tif")
    tile = hf.copernicus_tile(tmp_path, 37, 101)
    mosaic = Path(retrieve.dem_path(cfg))
    mosaic.parent.mkdir(parents=True)
    shutil.copy(tile, mosaic)
    build_dem(cfg, tmp_path / "dem.tif")
    with rasterio.open(tmp_path / "dem.tif") as src:
        z = src.read(1)
        lon, lat = centres(src.transform, src.width, src.height)
        assert src.shape == (62, 62)  # 60 px + the 1-pixel halo on each side
        assert src.tags()["source"].startswith("Copernicus GLO-30 DEM")
    np.testing.assert_allclose(z, hf.dem_value(lon, lat), atol=0.01)  # bilinear of a plane


def test_cell_mean_elevation_of_a_plane_is_the_centre_value(tmp_path):
    res = 1 / 120
    dem_tr = from_origin(101.0, 37.0, res / 10, res / 10)
    lon, lat = centres(dem_tr, 100, 100)
    dem = hf.write_tif(tmp_path / "dem.tif", hf.dem_value(lon, lat).astype("float32"), dem_tr,
                       nodata=-9999.0)
    # two cells of border: the outer ring lies away from the DEM (cells that merely touch its
    # edge are left to GDAL, which gives them the edge pixels' mean)
    like_tr = from_origin(101.0 - 2 * res, 37.0 + 2 * res, res, res)
    like = hf.write_tif(tmp_path / "like.tif", np.zeros((1, 14, 14), "float32"), like_tr)
    out = retrieve.cell_mean_elevation(dem, like, tmp_path / "elev.tif")
    with rasterio.open(out) as src:
        z = src.read(1, masked=True)
        clon, clat = centres(src.transform, src.width, src.height)
    inner = (slice(2, 12), slice(2, 12))
    np.testing.assert_allclose(z[inner], hf.dem_value(clon, clat)[inner], atol=1e-3)
    assert z.mask[0].all() and z.mask[:, 0].all() and z.mask[-1].all() and z.mask[:, -1].all()


def test_retrieve_chelsa_with_the_dem_cell_means(tmp_path, monkeypatch):
    """climate.source chelsa: tas decoded to C, and z_ref = the region DEM averaged per cell."""
    monkeypatch.chdir(tmp_path)
    raw = xining_raw()
    raw["region"].update(bbox=[101.2, 37.2, 101.4, 37.4], resolution_arcsec=6)
    raw["climate"] = {"source": "chelsa", "baseline_year": 1995, "lapse_rate_c_per_m": 0.0056}
    with hf.FixtureServer() as srv:
        from permamap.sources import chelsa

        for m in range(1, 13):
            url = chelsa.month_url(m)
            srv.add("/zhdk/" + url.removeprefix("https://os.zhdk.cloud.switch.ch/"),
                    hf.chelsa_file(tmp_path, m))
        raw["download"] = {"mirrors": {"https://os.zhdk.cloud.switch.ch/": srv.url + "/zhdk/"},
                           "progress": False}
        cfg = prepare(raw)
        dem_tr = from_origin(101.1, 37.5, 6 / 3600, 6 / 3600)  # a DEM plane around the region
        lon, lat = centres(dem_tr, 300, 300)
        dem = hf.write_tif(tmp_path / "dem.tif", hf.dem_value(lon, lat).astype("float32"), dem_tr,
                           nodata=-9999.0)
        paths = retrieve.climate_paths(cfg)
        retrieve.retrieve_climate_files(cfg, paths["tavg"], paths["elev"], str(dem))
    t, tr, meta = _read(paths["tavg"])
    clon, clat = centres(tr, meta.width, meta.height)
    assert meta.count == 12
    for m in range(12):  # stored as 0.1 K integers: within 0.05 C of the fixture field
        np.testing.assert_allclose(t[m], hf.tavg_value(m + 1, clon, clat), atol=0.051)
    z, tr_z, _ = _read(paths["elev"])
    assert tr_z == tr  # the elevation grid is the CHELSA grid
    np.testing.assert_allclose(z[0], hf.dem_value(clon, clat), atol=0.01)  # mean of a plane
    forcing = climate.forcing_from_config(cfg)
    assert isinstance(forcing, climate.GridForcing) and forcing.name == "chelsa"


def test_local_reference_map_lands_on_the_working_grid(tmp_path, monkeypatch):
    """The NCDC/TPDC route: a class map on local disk, checked and resampled (nearest)."""
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "zou2017.tif"
    codes = np.array([1, 2, 3], "uint8")[np.indices((40, 40))[1] % 3]  # columns 1, 2, 3, 1, ...
    hf.write_tif(local, codes, from_origin(101.5, 37.6, 0.01, 0.01), nodata=0)
    raw = xining_raw()
    raw["region"].update(bbox=E2E_BBOX, resolution_arcsec=30)
    raw["reference"] = {"local": [{"name": "zou2017", "path": str(local),
                                   "allowed_classes": [1, 2, 3]}]}
    cfg = prepare(raw)
    spec = retrieve.reference_specs(cfg)["zou2017"]
    assert spec["path"] == "resources/xining/reference/zou2017.tif"
    out = retrieve.retrieve_reference_file(cfg, "zou2017", spec["path"])
    data, tr, meta = _read(out)
    assert meta.shape == (12, 12) and meta.dtypes[0] == "uint8"
    lon, _ = centres(tr, meta.width, meta.height)
    expected = np.array([1, 2, 3])[(np.floor((lon - 101.5) / 0.01)).astype(int) % 3]
    np.testing.assert_array_equal(data[0], expected)  # nearest: the class of the source cell
    raw["reference"]["local"][0]["allowed_classes"] = [1, 2]
    with pytest.raises(InputDataError, match=r"class codes \[3\] .* allowed set \[1, 2\]"):
        retrieve.retrieve_reference_file(prepare(raw), "zou2017", tmp_path / "x.tif")


# ------------------------------------------------------------------------------ dry run


def _job_counts(text: str) -> dict[str, int]:
    counts, on = {}, False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            on, counts = True, {}
        elif on and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.workflow
def test_xining_dry_run(tmp_path):
    copy_workflow(tmp_path)
    proc = subprocess.run([SNAKEMAKE, "-n", "--cores", "2", "--configfile", "config/xining.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = _job_counts(out)
    assert counts["retrieve_dem"] == 1 and counts["retrieve_climate"] == 1
    assert counts["retrieve_cmip6"] == 9 and counts["retrieve_reference"] == 3
    for rule in ("tile_dem_retrieved", "terrain", "climate_retrieved", "ground_retrieved",
                 "scenarios_retrieved"):
        assert counts[rule] == 64, (rule, counts)
    assert "build_dem" not in counts and "climate" not in counts  # the retrieved variants run
    assert counts["total"] < 400
    # the downloads are localrules: never sent to a compute node (a dry run does not show it,
    # so ask the parsed workflow)
    script = (
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings\n"
        "with SnakemakeApi(OutputSettings()) as api:\n"
        "    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path('Snakefile'),\n"
        "        config_settings=ConfigSettings(configfiles=[Path('config/xining.yaml')]),\n"
        "        workdir=Path('.'))\n"
        "    w = wf._workflow\n"
        "    print('LOCAL', sorted(w._localrules))\n"
        "    print('GROUPS', sorted((r.name, r._group) for r in w.rules if r._group))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert ("LOCAL ['retrieve_climate', 'retrieve_cmip6', 'retrieve_dem', 'retrieve_reference']"
            in proc.stdout), proc.stdout + proc.stderr
    # on SLURM the *_retrieved per-tile stages join the profile's per-tile group
    assert ("GROUPS [('climate_retrieved', 'tile'), ('ground_retrieved', 'tile'), "
            "('scenarios_retrieved', 'tile'), ('tile_dem_retrieved', 'tile')]" in proc.stdout)


# ------------------------------------------------------------------------------ end to end

HOSTS = {
    "https://copernicus-dem-30m.s3.amazonaws.com/": "/cop30/",
    "https://geodata.ucdavis.edu/": "/ucdavis/",
    "https://store.pangaea.de/": "/pangaea/",
    "https://dap.ceda.ac.uk/": "/ceda/",
}
E2E_BBOX = [101.70, 37.40, 101.80, 37.50]  # 0.1 x 0.1 degree on the Daban Shan north of Xining
DELTAS = {"ssp126": np.linspace(0.5, 1.6, 12), "ssp245": np.linspace(1.0, 2.1, 12),
          "ssp585": np.linspace(2.0, 4.2, 12)}
GCM = "MRI-ESM2-0"
E2E_TARGETS = [
    *(f"results/xsmall/{p}.tif" for p in ("terrain/elevation", "climate/maat", "baseline/magt",
                                          "baseline/class")),
    *(f"results/xsmall/scenarios/{s}/2050/{p}.tif" for s in DELTAS for p in ("magt", "class")),
    "results/xsmall/tables/areas.csv",
    "resources/xsmall/reference/obu2019_magt.tif", "resources/xsmall/reference/esa_cci_pfr.tif",
]


def _local(url: str) -> str:
    for host, prefix in HOSTS.items():
        if url.startswith(host):
            return prefix + url[len(host):]
    raise AssertionError(url)


def _serve_region(srv: hf.FixtureServer, fx: Path) -> dict[str, str]:
    """Serve every file of the small real-region config; return {what: local path}."""
    paths = {}

    def serve(what, url, data):
        paths[what] = _local(url)
        srv.add(paths[what], data)

    tile = hf.copernicus_tile(fx, 37, 101)
    serve("dem", copernicus.tile_url(tile.stem), tile)
    for var in ("tavg", "elev"):
        serve(f"wc_{var}", worldclim.tile_url(22, var), hf.worldclim_tile(fx, 22, var))
    serve("wc_zip", worldclim.zip_url("10m", "tavg"), hf.worldclim_zip(fx, "10m", "tavg"))
    for name, delta in DELTAS.items():
        for var in ("tmin", "tmax"):
            f = hf.cmip6_file(fx, "10m", var, GCM, name, "2041-2060", delta)
            serve(f"{name}_{var}", cmip6.url("10m", var, GCM, name, "2041-2060"), f)
    obu = hf.obu_zip(fx)
    serve("obu", reference.obu_url("magt"), obu)
    tif = fx / "pfr.tif"
    tif.write_bytes(zipfile.ZipFile(obu).read(f"{obu.stem}/{obu.stem}.tif"))
    with rasterio.open(tif, "r+") as ds:
        ds.update_tags(1, NETCDF_VARNAME="PFR")  # the NetCDF variable name of the real files
    rasterio.shutil.copy(tif, fx / "pfr.nc", driver="netCDF")
    serve("cci", reference.cci_url("PFR", 2019), fx / "pfr.nc")
    return paths


def _small_config(server_url: str, **download) -> dict:
    """config/xining.yaml cut to 0.1 x 0.1 degree at 3 arc-seconds (one tile), hosts mirrored."""
    cfg = xining_raw()
    cfg["run"] = "xsmall"
    cfg["region"].update(bbox=E2E_BBOX, resolution_arcsec=3)
    cfg["tiles"]["size_px"] = 120
    cfg["horizons"] = [2050]
    for name in cfg["scenarios"]:
        cfg["scenarios"][name]["cmip6"].update(gcms=[GCM], res="10m")
    cfg["reference"] = {"obu2019": {"products": ["magt"]},
                        "esa_cci": {"variable": "PFR", "year": 2019}}
    cfg["output"] = {"figures": False}
    # one thread per job (one 120 px tile, one chunk): jobs run side by side on 2 cores
    cfg["compute"] = {"threads": 1}
    cfg["download"] = {"mirrors": {h: server_url + p for h, p in HOSTS.items()}, "retries": 2,
                       "timeout_s": 10, "backoff_s": 0.01, "progress": False, **download}
    return cfg


def _snakemake(work: Path, configfile: str, *targets: str, timeout=600):
    cmd = [SNAKEMAKE, "--cores", str(CORES), *GREEDY, "--configfile", configfile,
           "--workflow-profile", "workflow/profiles/default", *targets]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)


class _Meta:
    """What a test needs of a closed raster."""

    def __init__(self, src):
        self.shape, self.width, self.height = src.shape, src.width, src.height
        self.crs, self.count, self.dtypes = src.crs, src.count, src.dtypes
        self._tags = src.tags()

    def tags(self):
        return self._tags


def _read(path):
    with rasterio.open(path) as src:
        return src.read(masked=True), src.transform, _Meta(src)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    work = tmp_path_factory.mktemp("xsmall")
    fx = tmp_path_factory.mktemp("fixtures")
    copy_workflow(work)
    with hf.FixtureServer(max_lifetime_s=600) as srv:
        paths = _serve_region(srv, fx)
        srv.fault(paths["wc_tavg"], ("status", 500))  # 500 then success
        srv.fault(paths["dem"], ("drop", 0.4))  # connection dropped mid-body, then resumed
        cfg = _small_config(srv.url)
        (work / "config" / "xsmall.yaml").write_text(yaml.safe_dump(cfg))
        # downloads -> DEM -> tiles -> mosaics and the area table (the other deliverables of
        # rule all are other stages' business and only cost time here)
        proc = _snakemake(work, "config/xsmall.yaml", *E2E_TARGETS)
        hits = {k: len(srv.hits(p)) for k, p in paths.items()}
        # a required file that is not there (a GCM the server does not hold): one line
        bad = copy.deepcopy(cfg)
        bad["run"] = "xsmall404"
        bad["scenarios"]["ssp245"]["cmip6"]["gcms"] = ["GFDL-ESM4"]
        (work / "config" / "x404.yaml").write_text(yaml.safe_dump(bad))
        proc404 = _snakemake(work, "config/x404.yaml",
                             "resources/xsmall404/inputs/cmip6_delta/ssp245/2050.tif")
    return {"work": work, "cfg": cfg, "proc": proc, "hits": hits, "proc404": proc404}


@pytest.mark.workflow
def test_real_region_runs_end_to_end(e2e):
    proc, work = e2e["proc"], e2e["work"]
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    res, out = work / "resources/xsmall", work / "results/xsmall"
    for p in ("terrain/elevation.tif", "climate/maat.tif", "baseline/magt.tif",
              "baseline/class.tif", "scenarios/ssp245/2050/magt.tif", "tables/areas.csv"):
        assert (out / p).exists(), p
    # raw downloads are cached per data set with a manifest of URL, size and sha256
    manifest = json.loads((work / "data/manifest.json").read_text())["files"]
    key = "copernicus/GLO-30/Copernicus_DSM_COG_10_N37_00_E101_00_DEM.tif"
    assert manifest[key]["url"].startswith("https://copernicus-dem-30m.s3.amazonaws.com/")
    assert len(manifest[key]["sha256"]) == 64
    assert (work / "data/worldclim/tiles/tile_22_wc2.1_30s_tavg.tif").exists()
    assert not list((work / "data").rglob("*.part*"))  # nothing partial left behind

    # the DEM actually used: the Copernicus plane, bilinear (exact for a plane)
    z, tr, src = _read(out / "terrain/elevation.tif")
    lon, lat = centres(tr, src.width, src.height)
    assert src.shape == (120, 120) and src.crs.to_epsg() == 4326
    assert not z.mask.any()
    np.testing.assert_allclose(z[0], hf.dem_value(lon, lat), atol=0.02)

    # MAAT = day-weighted WorldClim tavg (bilinear) + lapse * (WorldClim elev - DEM), by hand
    maat, _, _ = _read(out / "climate/maat.tif")
    monthly = np.stack([hf.tavg_value(m, lon, lat) for m in range(1, 13)])
    elev_ref = 2000.0 + 10 * (lat - 30)  # the WorldClim elev fixture
    lapse = e2e["cfg"]["climate"]["lapse_rate_c_per_m"]
    expected = (DAYS[:, None, None] * monthly).sum(0) / 365.0 + lapse * (
        elev_ref - hf.dem_value(lon, lat))
    assert not maat.mask.any()
    np.testing.assert_allclose(maat[0], expected, atol=2e-3)

    # CMIP6 deltas: (tmin + tmax)/2 - baseline = the fixture's monthly delta, per scenario
    for name, delta in DELTAS.items():
        d, _, src = _read(res / f"inputs/cmip6_delta/{name}/2050.tif")
        assert src.count == 12 and src.tags()["period"] == "2041-2060"
        for m in range(12):
            np.testing.assert_allclose(d[m], delta[m], atol=1e-4)
    # warmer air never cools the ground; more warming warms it more
    base, _, _ = _read(out / "baseline/magt.tif")
    m126, _, _ = _read(out / "scenarios/ssp126/2050/magt.tif")
    m585, _, _ = _read(out / "scenarios/ssp585/2050/magt.tif")
    assert (m126[0] >= base[0] - 1e-4).all() and (m585[0] > m126[0]).all()


@pytest.mark.workflow
def test_reference_maps_on_the_working_grid(e2e):
    assert e2e["proc"].returncode == 0
    ref = e2e["work"] / "resources/xsmall/reference"
    assert sorted(p.name for p in ref.glob("*.tif")) == ["esa_cci_pfr.tif", "obu2019_magt.tif"]
    # Obu MAGT: linear in EPSG:3995 metres, so bilinear reproduces it on the lon/lat grid
    magt, tr, src = _read(ref / "obu2019_magt.tif")
    assert src.shape == (120, 120) and src.crs.to_epsg() == 4326 and src.dtypes[0] == "float32"
    lon, lat = centres(tr, src.width, src.height)
    x, y = warp_transform("EPSG:4326", "EPSG:3995", lon.ravel(), lat.ravel())
    expected = hf.obu_value(np.array(x), np.array(y)).reshape(lon.shape)
    np.testing.assert_allclose(magt[0], expected, atol=2e-3)
    pfr, _, _ = _read(ref / "esa_cci_pfr.tif")
    np.testing.assert_allclose(pfr[0], expected, atol=2e-3)  # same fixture field as NetCDF


@pytest.mark.workflow
def test_injected_faults_recover_inside_the_workflow(e2e):
    assert e2e["proc"].returncode == 0
    assert e2e["hits"]["wc_tavg"] == 2  # 500, then the file
    assert e2e["hits"]["dem"] == 2  # dropped mid-body, then resumed
    assert e2e["hits"]["wc_elev"] == 1 and e2e["hits"]["obu"] == 1


@pytest.mark.workflow
def test_missing_required_file_is_one_readable_line(e2e):
    proc = e2e["proc404"]
    assert proc.returncode != 0
    err = proc.stderr
    lines = [ln for ln in err.splitlines() if ln.startswith("permamap error:")]
    assert len(lines) == 1, err[-4000:]
    assert "WorldClim CMIP6 GFDL-ESM4 ssp245 2041-2060 tmin (10m)" in lines[0]
    assert ("(mirror of https://geodata.ucdavis.edu/cmip6/10m/GFDL-ESM4/ssp245/"
            "wc2.1_10m_tmin_GFDL-ESM4_ssp245_2041-2060.tif) does not exist (HTTP 404)") in lines[0]
    assert "Traceback" not in err
    assert not (e2e["work"] / "resources/xsmall404/inputs/cmip6_delta/ssp245/2050.tif").exists()


@pytest.mark.workflow
def test_offline_rerun_finds_everything_in_the_cache(e2e):
    """With the server gone and download.offline set, the retrieve rules rebuild their outputs
    from data/ alone; the same bytes come out."""
    work = e2e["work"]
    assert e2e["proc"].returncode == 0
    res = work / "resources/xsmall"
    targets = sorted(str(p.relative_to(work)) for d in ("inputs", "reference")
                     for p in (res / d).rglob("*.tif"))
    assert len(targets) == 1 + 2 + 3 + 2  # DEM, tavg + elev, 3 deltas, 2 reference maps
    before = {t: _read(work / t)[0] for t in targets}
    manifest = (work / "data/manifest.json").read_text()
    for t in targets:
        (work / t).unlink()
    cfg = _small_config("http://127.0.0.1:9", offline=True)  # port 9: discard
    (work / "config" / "offline.yaml").write_text(yaml.safe_dump(cfg))
    proc = _snakemake(work, "config/offline.yaml", *targets)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for t in targets:
        after = _read(work / t)[0]
        np.testing.assert_array_equal(after.filled(0), before[t].filled(0))
    assert (work / "data/manifest.json").read_text() == manifest
