"""permamap.sources against a local server laid out like the real hosts (no internet).

Every real host is mapped to a prefix of the local server through ``download.mirrors``, so the
modules build their real URLs and the mirror rewrite sends them to 127.0.0.1.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from permamap.download import manifest_entry
from permamap.errors import DownloadError, InputDataError
from permamap.sources import chelsa, cmip6, copernicus, reference, worldclim
from tests import http_fixtures as hf

HOSTS = {
    "https://copernicus-dem-30m.s3.amazonaws.com/": "/cop30/",
    "https://copernicus-dem-90m.s3.amazonaws.com/": "/cop90/",
    "https://geodata.ucdavis.edu/": "/ucdavis/",
    "https://os.zhdk.cloud.switch.ch/": "/zhdk/",
    "https://os.unil.cloud.switch.ch/": "/unil/",
    "https://store.pangaea.de/": "/pangaea/",
    "https://dap.ceda.ac.uk/": "/ceda/",
}


def local_path(real_url: str) -> str:
    for host, prefix in HOSTS.items():
        if real_url.startswith(host):
            return prefix + real_url[len(host):]
    raise AssertionError(f"no fixture host for {real_url}")


def serve(srv: hf.FixtureServer, real_url: str, data) -> str:
    return srv.add(local_path(real_url), data)


@pytest.fixture
def server():
    with hf.FixtureServer() as srv:
        yield srv


@pytest.fixture
def settings(tmp_path, server):
    return {
        "cache_dir": str(tmp_path / "cache"),
        "mirrors": {host: server.url + prefix for host, prefix in HOSTS.items()},
        "retries": 2,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
        "progress": False,
    }


def centres(transform, width, height):
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    c, r = np.meshgrid(cols, rows)
    x = transform.a * c + transform.b * r + transform.c
    y = transform.d * c + transform.e * r + transform.f
    return x, y


# ------------------------------------------------------------------------------ Copernicus


def test_copernicus_tile_names_and_urls():
    assert copernicus.tile_stem(36, 101) == "Copernicus_DSM_COG_10_N36_00_E101_00_DEM"
    assert copernicus.tile_stem(36, 101, "GLO-90") == "Copernicus_DSM_COG_30_N36_00_E101_00_DEM"
    assert copernicus.tile_stem(-1, -71) == "Copernicus_DSM_COG_10_S01_00_W071_00_DEM"
    assert copernicus.tile_url("Copernicus_DSM_COG_10_N36_00_E101_00_DEM") == (
        "https://copernicus-dem-30m.s3.amazonaws.com/Copernicus_DSM_COG_10_N36_00_E101_00_DEM/"
        "Copernicus_DSM_COG_10_N36_00_E101_00_DEM.tif"
    )
    assert copernicus.tile_url("X", "GLO-90").startswith("https://copernicus-dem-90m.s3")
    # the study region 100.5-102.5 E, 36-38 N: 2 rows x 3 columns of tiles, SW-corner names
    stems = copernicus.tile_stems((100.5, 36.0, 102.5, 38.0))
    assert len(stems) == 6 and stems[0].endswith("N36_00_E100_00_DEM")
    assert stems[-1].endswith("N37_00_E102_00_DEM")
    assert copernicus.tile_stems((101, 36, 102, 37)) == [
        "Copernicus_DSM_COG_10_N36_00_E101_00_DEM"
    ]
    assert copernicus.tile_corners((-0.5, -0.5, 0.5, 0.5)) == [(-1, -1), (-1, 0), (0, -1), (0, 0)]
    with pytest.raises(InputDataError, match="GLO-10"):
        copernicus.tile_stem(0, 0, "GLO-10")
    with pytest.raises(InputDataError, match="antimeridian"):
        copernicus.tile_stems((102, 36, 101, 37))


def _serve_dem_tiles(server, tmp_path, corners, product="GLO-30"):
    for lat, lon in corners:
        tile = hf.copernicus_tile(tmp_path, lat, lon, product)
        serve(server, copernicus.tile_url(tile.stem, product), tile)


def test_retrieve_dem_mosaics_and_clips(server, settings, tmp_path):
    _serve_dem_tiles(server, tmp_path, [(36, 101), (36, 102)])
    bbox = (101.5, 36.2, 102.5, 36.7)
    out = copernicus.retrieve_dem(bbox, "GLO-30", tmp_path / "dem.tif", settings)
    with rasterio.open(out) as src:
        z = src.read(1)
        b = src.bounds
        assert src.crs.to_epsg() == 4326 and src.nodata == -9999.0 and src.units == ("m",)
        assert src.tags()["missing_tiles_ocean"] == "none"
        x, y = centres(src.transform, src.width, src.height)
    res = 1 / 60
    assert b.left <= 101.5 < b.left + res and b.right - res < 102.5 <= b.right
    assert b.bottom <= 36.2 < b.bottom + res and b.top - res < 36.7 <= b.top
    np.testing.assert_allclose(z, hf.dem_value(x, y), atol=1e-3)  # both tiles, no seam shift
    # a margin adds whole native pixels on every side
    out2 = copernicus.retrieve_dem(bbox, "GLO-30", tmp_path / "dem2.tif", settings, margin_px=3)
    with rasterio.open(out2) as src:
        assert src.shape == (z.shape[0] + 6, z.shape[1] + 6)
    assert len(server.hits(local_path(copernicus.tile_url(
        "Copernicus_DSM_COG_10_N36_00_E101_00_DEM")))) == 1  # cached


def test_retrieve_dem_ocean_tile_is_nodata_and_offline_rerun(server, settings, tmp_path):
    _serve_dem_tiles(server, tmp_path, [(36, 101)])  # (36, 102) is "ocean": 404
    bbox = (101.5, 36.2, 102.5, 36.7)
    out = copernicus.retrieve_dem(bbox, "GLO-30", tmp_path / "dem.tif", settings)
    with rasterio.open(out) as src:
        z = src.read(1, masked=True)
        x, _ = centres(src.transform, src.width, src.height)
        assert "N36_00_E102_00" in src.tags()["missing_tiles_ocean"]
    assert z.mask[x > 102.0].all() and not z.mask[x < 101.99].any()
    stem = "Copernicus_DSM_COG_10_N36_00_E102_00_DEM"
    entry = manifest_entry(Path(settings["cache_dir"]) / "copernicus/GLO-30" / f"{stem}.tif",
                           settings)
    assert entry["missing"] is True
    server.stop()  # offline: cached tile + recorded ocean tile are enough
    out2 = copernicus.retrieve_dem(bbox, "GLO-30", tmp_path / "dem_off.tif",
                                   {**settings, "offline": True})
    with rasterio.open(out2) as src:
        np.testing.assert_array_equal(src.read(1, masked=True).mask, z.mask)


def test_retrieve_dem_all_ocean_is_an_error(server, settings, tmp_path):
    with pytest.raises(DownloadError, match=r"Copernicus GLO-90 DEM: bbox .* has no land"):
        copernicus.retrieve_dem((150.2, -40.8, 150.4, -40.6), "GLO-90", tmp_path / "d.tif",
                                settings)
    assert not (tmp_path / "d.tif").exists()


def test_retrieve_dem_corrupt_tile_is_reported_and_removed(server, settings, tmp_path):
    _serve_dem_tiles(server, tmp_path, [(36, 101)])
    path = local_path(copernicus.tile_url("Copernicus_DSM_COG_10_N36_00_E101_00_DEM"))
    server.fault(path, ("garbage",), ("garbage",))
    with pytest.raises(DownloadError, match=r"Copernicus GLO-30 DEM: .* not valid"):
        copernicus.retrieve_dem((101.2, 36.2, 101.4, 36.4), "GLO-30", tmp_path / "d.tif",
                                settings)
    cache = Path(settings["cache_dir"])
    assert [p.name for p in cache.rglob("*.tif")] == []
    assert not (tmp_path / "d.tif").exists()


# ------------------------------------------------------------------------------ WorldClim


def test_worldclim_tile_numbers_and_urls():
    assert worldclim.tile_id(101.8, 36.6) == 22  # Xining
    assert worldclim.tile_id(-118, 36.5) == 15  # geodata::worldclim_tile example (California)
    assert worldclim.tile_id(75, 20) == 33  # India
    assert worldclim.tile_ids((100.5, 36, 102.5, 38)) == [22]
    assert worldclim.tile_ids((118, 30, 122, 31)) == [22, 23]
    assert worldclim.tile_ids((100, 29, 101, 31)) == [22, 34]
    assert worldclim.tile_url(22, "tavg") == (
        "https://geodata.ucdavis.edu/climate/worldclim/2_1/tiles/tile/tile_22_wc2.1_30s_tavg.tif"
    )
    assert worldclim.zip_url("10m", "tavg") == (
        "https://geodata.ucdavis.edu/climate/worldclim/2_1/base/wc2.1_10m_tavg.zip"
    )
    assert worldclim.zip_member("2.5m", "tavg", 1) == "wc2.1_2.5m_tavg_01.tif"
    assert worldclim.zip_member("30s", "elev") == "wc2.1_30s_elev.tif"
    with pytest.raises(InputDataError, match="resolution '1m'"):
        worldclim.zip_url("1m", "tavg")


def _check_tavg(path, atol=1e-3):
    with rasterio.open(path) as src:
        data = src.read()
        assert src.count == 12 and src.descriptions[0] == "month 1"
        assert src.descriptions[11] == "month 12" and src.units[0] == "C"
        x, y = centres(src.transform, src.width, src.height)
    for m in range(1, 13):
        np.testing.assert_allclose(data[m - 1], hf.tavg_value(m, x, y), atol=atol)
    return data


def test_retrieve_worldclim_tiles(server, settings, tmp_path):
    for var in ("tavg", "elev"):
        serve(server, worldclim.tile_url(22, var), hf.worldclim_tile(tmp_path, 22, var))
    bbox = (100.5, 36.0, 102.5, 38.0)
    tavg, elev = worldclim.retrieve_worldclim(bbox, tmp_path / "t.tif", tmp_path / "e.tif",
                                              settings)
    _check_tavg(tavg)
    with rasterio.open(elev) as src, rasterio.open(tavg) as t:
        assert src.count == 1 and src.units == ("m",) and src.shape == t.shape
        b = src.bounds
        assert b.left < 100.5 and b.right > 102.5 and b.bottom < 36 and b.top > 38


def test_retrieve_worldclim_across_two_tiles(server, settings, tmp_path):
    for tid in (22, 23):
        for var in ("tavg", "elev"):
            serve(server, worldclim.tile_url(tid, var), hf.worldclim_tile(tmp_path, tid, var))
    tavg, _ = worldclim.retrieve_worldclim((119.0, 35.0, 121.0, 36.0), tmp_path / "t.tif",
                                           tmp_path / "e.tif", settings)
    data = _check_tavg(tavg)
    assert np.isfinite(data).all()


def test_retrieve_worldclim_global_zip(server, settings, tmp_path):
    for var in ("tavg", "elev"):
        serve(server, worldclim.zip_url("10m", var), hf.worldclim_zip(tmp_path, "10m", var))
    tavg, elev = worldclim.retrieve_worldclim((100.5, 36.0, 102.5, 38.0), tmp_path / "t.tif",
                                              tmp_path / "e.tif", settings, res="10m")
    _check_tavg(tavg)
    with rasterio.open(tavg) as src:
        assert abs(src.res[0] - 1 / 6) < 1e-9


def test_worldclim_bbox_outside_the_data_is_clear(server, settings, tmp_path):
    for var in ("tavg", "elev"):
        serve(server, worldclim.zip_url("10m", var), hf.worldclim_zip(tmp_path, "10m", var))
    with pytest.raises(InputDataError, match=r"wc2.1_10m_tavg_01.tif: bbox .* outside its extent"):
        worldclim.retrieve_worldclim((10, 10, 11, 11), tmp_path / "t.tif", tmp_path / "e.tif",
                                     settings, res="10m")


def test_worldclim_tile_500_then_success(server, settings, tmp_path):
    for var in ("tavg", "elev"):
        serve(server, worldclim.tile_url(22, var), hf.worldclim_tile(tmp_path, 22, var))
    server.fault(local_path(worldclim.tile_url(22, "tavg")), ("status", 500), ("drop", 0.4))
    tavg, _ = worldclim.retrieve_worldclim((101, 36, 102, 37), tmp_path / "t.tif",
                                           tmp_path / "e.tif", settings)
    _check_tavg(tavg)


# ------------------------------------------------------------------------------ CHELSA


def test_chelsa_urls():
    assert chelsa.month_url(1) == (
        "https://os.zhdk.cloud.switch.ch/chelsav2/GLOBAL/climatologies/1981-2010/tas/"
        "CHELSA_tas_01_1981-2010_V.2.1.tif"
    )
    assert chelsa.month_url(12, chelsa.CURRENT_BASE_URL) == (
        "https://os.unil.cloud.switch.ch/chelsa02/chelsa/global/climatologies/tas/1981-2010/"
        "CHELSA_tas_12_1981-2010_V.2.1.tif"
    )


@pytest.mark.parametrize("kind,base", [
    ("legacy", chelsa.BASE_URL), ("current", chelsa.CURRENT_BASE_URL), ("bare", chelsa.BASE_URL),
])
def test_retrieve_chelsa_decodes_to_celsius(server, settings, tmp_path, kind, base):
    for m in range(1, 13):
        serve(server, chelsa.month_url(m, base), hf.chelsa_file(tmp_path, m, kind))
    out = chelsa.retrieve_chelsa((100.5, 36.0, 102.5, 38.0), tmp_path / "c.tif", settings,
                                 base_url=base)
    _check_tavg(out, atol=0.051)  # stored in 0.1 K steps


def test_chelsa_decode_rejects_wrong_units():
    raw = np.full((3, 3), 2731.0)
    np.testing.assert_allclose(chelsa.decode_tas(raw, 0.1, -273.15), -0.05, atol=1e-4)
    np.testing.assert_allclose(chelsa.decode_tas(raw, 0.1, 0.0, "K"), -0.05, atol=1e-4)
    with pytest.raises(InputDataError, match="not an air temperature"):
        chelsa.decode_tas(raw, 1.0, -273.15)


# ------------------------------------------------------------------------------ CMIP6


def test_cmip6_url():
    assert cmip6.url("2.5m", "tmin", "MIROC6", "ssp585", "2081-2100") == (
        "https://geodata.ucdavis.edu/cmip6/2.5m/MIROC6/ssp585/"
        "wc2.1_2.5m_tmin_MIROC6_ssp585_2081-2100.tif"
    )
    with pytest.raises(InputDataError, match="ssp999"):
        cmip6.url("2.5m", "tmin", "MIROC6", "ssp999", "2081-2100")
    with pytest.raises(InputDataError, match="2050"):
        cmip6.url("2.5m", "tmin", "MIROC6", "ssp245", "2050")


def test_retrieve_cmip6_delta_ensemble(server, settings, tmp_path):
    serve(server, worldclim.zip_url("10m", "tavg"), hf.worldclim_zip(tmp_path, "10m", "tavg"))
    d1 = np.linspace(1.0, 2.1, 12)
    d2 = np.linspace(3.0, 1.9, 12)
    for gcm, d in (("MIROC6", d1), ("MRI-ESM2-0", d2)):
        for var in ("tmin", "tmax"):
            f = hf.cmip6_file(tmp_path, "10m", var, gcm, "ssp245", "2041-2060", d)
            serve(server, cmip6.url("10m", var, gcm, "ssp245", "2041-2060"), f)
    out = cmip6.retrieve_cmip6_delta((100.5, 36.0, 102.5, 38.0), ["MIROC6", "MRI-ESM2-0"],
                                     "ssp245", "2041-2060", tmp_path / "d.tif", settings,
                                     res="10m")
    with rasterio.open(out) as src:
        data = src.read()
        assert src.count == 12 and src.descriptions[6] == "month 7" and src.units[0] == "C"
        assert src.tags()["gcms"] == "MIROC6 MRI-ESM2-0"
    expected = (d1 + d2) / 2
    for m in range(12):
        np.testing.assert_allclose(data[m], expected[m], atol=1e-4)


def test_cmip6_missing_gcm_is_a_404_naming_it(server, settings, tmp_path):
    serve(server, worldclim.zip_url("10m", "tavg"), hf.worldclim_zip(tmp_path, "10m", "tavg"))
    with pytest.raises(DownloadError, match=r"WorldClim CMIP6 GFDL-ESM4 ssp245 .*HTTP 404"):
        cmip6.retrieve_cmip6_delta((101, 36, 102, 37), "GFDL-ESM4", "ssp245", "2021-2040",
                                   tmp_path / "d.tif", settings, res="10m")


# ------------------------------------------------------------------------------ reference maps


def _xining_grid(res=0.01):
    west, north = 100.5, 38.0
    return ("EPSG:4326", from_origin(west, north, res, res), int(2 / res), int(2 / res))


@pytest.mark.parametrize("with_crs", [True, False])
def test_retrieve_obu_magt_bilinear(server, settings, tmp_path, with_crs):
    serve(server, reference.obu_url("magt"), hf.obu_zip(tmp_path, with_crs=with_crs))
    target = _xining_grid(0.005)  # finer than the 1 km source, as a 30 m grid is
    out = reference.retrieve_obu("magt", target, tmp_path / "obu.tif", settings)
    with rasterio.open(out) as src:
        data = src.read(1, masked=True)
        assert src.crs.to_epsg() == 4326 and src.shape == (400, 400)
        x, y = centres(src.transform, src.width, src.height)
    px, py = warp_transform("EPSG:4326", "EPSG:3995", x.ravel(), y.ravel())
    expected = hf.obu_value(np.array(px), np.array(py)).reshape(x.shape)
    assert not data.mask.any()
    # bilinear reproduces a linear field; nearest would be off by up to ~0.02 C here
    np.testing.assert_allclose(data.filled(np.nan), expected, atol=2e-3)


def test_reproject_classes_uses_nearest(tmp_path):
    z = hf.obu_zip(tmp_path, name="zones", classes=True)
    gpath = f"/vsizip/{{{z}}}/zones/zones.tif"
    out = reference.reproject_to_grid(gpath, _xining_grid(0.005), kind="classes")
    assert out.dtype == np.uint8
    assert set(np.unique(out)) == {1, 4}  # bilinear would invent 2 and 3 along the edge
    cont = reference.reproject_to_grid(gpath, _xining_grid(0.005), kind="continuous")
    assert ((cont > 1.01) & (cont < 3.99)).any()  # the same edge, interpolated


def test_reference_target_as_object(tmp_path):
    z = hf.obu_zip(tmp_path)
    crs, tr, w, h = _xining_grid(0.05)
    grid = SimpleNamespace(crs=crs, transform=tr, width=w, height=h)
    out = reference.reproject_to_grid(f"/vsizip/{{{z}}}/{z.stem}/{z.stem}.tif", grid)
    assert out.shape == (h, w) and np.isfinite(out).all()


def test_reference_grid_outside_raster_is_clear(tmp_path):
    z = hf.obu_zip(tmp_path)
    far = ("EPSG:4326", from_origin(10, 50, 0.1, 0.1), 10, 10)
    with pytest.raises(InputDataError, match="lies outside the raster's extent"):
        reference.reproject_to_grid(f"/vsizip/{{{z}}}/{z.stem}/{z.stem}.tif", far)


def test_obu_urls():
    assert reference.obu_url("magt") == (
        "https://store.pangaea.de/Publications/ObuJ-etal_2018/"
        "UiO_PEX_MAGTM_5.0_20181127_2000_2016_NH.zip"
    )
    assert reference.obu_url("perprob").endswith("UiO_PEX_PERPROB_5.0_20181128_2000_2016_NH.zip")


def test_cci_urls():
    assert reference.cci_url("PFR", 2015) == (
        "https://dap.ceda.ac.uk/neodc/esacci/permafrost/data/permafrost_extent/L4/area4/pp/"
        "v04.0/ESACCI-PERMAFROST-L4-PFR-MODISLST_CRYOGRID-AREA4_PP-2015-fv04.0.nc"
    )
    assert reference.cci_url("ALT", 1998).endswith(
        "ESACCI-PERMAFROST-L4-ALT-ERA5_MODISLST_BIASCORRECTED-AREA4_PP-1998-fv04.0.nc"
    )
    assert reference.cci_url("ALT", 2015, "v05.0") == (
        "https://dap.ceda.ac.uk/neodc/esacci/permafrost/data/active_layer_thickness/L4/area4/pp/"
        "v05.0/northern_hemisphere/2015/"
        "ESACCI-PERMAFROST-L4-ALT-MODISLST_CRYOGRID-AREA4_PP-2015-fv05.0.nc"
    )


def test_retrieve_cci_from_netcdf(server, settings, tmp_path):
    z = hf.obu_zip(tmp_path)
    tif = tmp_path / "pfr.tif"
    with zipfile.ZipFile(z) as zf:
        tif.write_bytes(zf.read(f"{z.stem}/{z.stem}.tif"))
    nc = tmp_path / "pfr.nc"
    rasterio.shutil.copy(tif, nc, driver="netCDF")
    serve(server, reference.cci_url("PFR", 2015), nc)
    out = reference.retrieve_cci("PFR", 2015, _xining_grid(0.005), tmp_path / "cci.tif", settings,
                                 layer="Band1")
    with rasterio.open(out) as src:
        data = src.read(1)
        x, y = centres(src.transform, src.width, src.height)
        assert src.units == ("%",)
    px, py = warp_transform("EPSG:4326", "EPSG:3995", x.ravel(), y.ravel())
    np.testing.assert_allclose(data, hf.obu_value(np.array(px), np.array(py)).reshape(x.shape),
                               atol=2e-3)


def _class_map(tmp_path, name="zou.tif", crs="EPSG:4326", west=100.0, codes=(1, 2, 3),
               dtype="uint8"):
    data = np.array(codes, dtype=dtype)[np.indices((50, 50))[1] % len(codes)]
    return hf.write_tif(tmp_path / name, data, from_origin(west, 38.5, 0.05, 0.05), crs=crs,
                        nodata=0)


def test_check_local_reference(tmp_path):
    bbox = (100.5, 36.0, 102.5, 38.0)
    good = _class_map(tmp_path)
    reference.check_local_reference(good, bbox, allowed_classes=[1, 2, 3, 4])
    with pytest.raises(InputDataError, match=r"does not exist.*data.tpdc.ac.cn"):
        reference.check_local_reference(tmp_path / "nope.tif", bbox)
    nocrs = _class_map(tmp_path, "nocrs.tif", crs=None)
    with pytest.raises(InputDataError, match="nocrs.tif has no CRS"):
        reference.check_local_reference(nocrs, bbox)
    far = _class_map(tmp_path, "far.tif", west=10.0)
    with pytest.raises(InputDataError, match="far.tif covers lon/lat .* does not overlap"):
        reference.check_local_reference(far, bbox)
    odd = _class_map(tmp_path, "odd.tif", codes=(1, 7, 9))
    with pytest.raises(InputDataError, match=r"class codes \[7, 9\] .* allowed set \[1, 2, 3\]"):
        reference.check_local_reference(odd, bbox, allowed_classes=[1, 2, 3])
    flt = _class_map(tmp_path, "flt.tif", dtype="float32")
    with pytest.raises(InputDataError, match="must be integer"):
        reference.check_local_reference(flt, bbox)
    junk = tmp_path / "junk.tif"
    junk.write_text("login page")
    with pytest.raises(InputDataError, match="junk.tif is not a readable raster"):
        reference.check_local_reference(junk, bbox)


def test_retrieve_local_classes(tmp_path):
    src = _class_map(tmp_path)
    out = reference.retrieve_local(src, _xining_grid(0.02), tmp_path / "ref.tif",
                                   allowed_classes=[1, 2, 3])
    with rasterio.open(out) as ds:
        data = ds.read(1)
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
    assert set(np.unique(data)) <= {1, 2, 3}
