"""The offline sample DEM decodes to known elevations; bad DEM files give clear errors."""

import numpy as np
import pytest
import rasterio
from affine import Affine

from permamap.dem import build_dem, decode_pvlib_altitude, read_pvlib_window
from permamap.errors import InputDataError
from permamap.grid import HALO_PX, Grid


def test_decoding_formula_matches_pvlib_lookup():
    # pvlib.location.lookup_altitude is the independent reference for the encoding
    from pvlib.location import lookup_altitude

    for lat, lon in [(36.62, 101.78), (36.9, 100.2), (37.6, 101.9), (38.7, 99.7)]:
        z, t = read_pvlib_window(lon - 0.2, lat - 0.2, lon + 0.2, lat + 0.2)
        row, col = rasterio.transform.rowcol(t, lon, lat)
        assert z[row, col] == pytest.approx(lookup_altitude(lat, lon))
    codes = np.array([0, 130, 254, 255], np.uint8)
    np.testing.assert_array_equal(decode_pvlib_altitude(codes)[:3], [-450, 3190, 6662])
    assert np.isnan(decode_pvlib_altitude(codes)[3])


def _tiny(config, bbox, res=60):
    config["region"]["bbox"] = list(bbox)
    config["region"]["resolution_arcsec"] = res
    return config


def test_qinghai_lake_surface_elevation(config, tmp_path):
    # Qinghai Lake's surface lies at about 3,190-3,200 m a.s.l. (issue #3; China's largest lake,
    # its gauged level is near 3,194 m). pvlib's 28 m code step puts it at 3,190 m, and the flat
    # lake stays flat after smooth resampling.
    cfg = _tiny(config, (99.9, 36.6, 100.5, 37.1))
    out = tmp_path / "dem.tif"
    build_dem(cfg, out)
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 4326 and src.nodata == -9999.0
        z = next(src.sample([(100.2, 36.85)]))[0]
        g = Grid.from_config(cfg).expanded(HALO_PX)
        assert (src.width, src.height) == (g.width, g.height)
    assert 3185 <= z <= 3200


def test_dem_without_crs(config, tmp_path):
    p = tmp_path / "nocrs.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="float32",
        transform=Affine(0.1, 0, 101, 0, -0.1, 37),
    ) as dst:
        dst.write(np.full((1, 10, 10), 3000, np.float32))
    config["dem"].update(source="file", path=str(p))
    with pytest.raises(InputDataError, match=r"has no CRS; assign one"):
        build_dem(_tiny(config, (101.2, 36.2, 101.6, 36.6)), tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def _write(p, data, west=101.0, north=37.0, res=0.1, crs="EPSG:4326"):
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="float32",
        crs=crs,
        transform=Affine(res, 0, west, 0, -res, north),
        nodata=-9999,
    ) as dst:
        dst.write(data.astype(np.float32)[None])


def test_dem_without_overlap(config, tmp_path):
    p = tmp_path / "far.tif"
    _write(p, np.full((10, 10), 3000.0), west=10.0, north=50.0)
    config["dem"].update(source="file", path=str(p))
    with pytest.raises(InputDataError, match="does not overlap the region bbox"):
        build_dem(_tiny(config, (101.2, 36.2, 101.6, 36.6)), tmp_path / "out.tif")


def test_dem_in_feet_is_rejected(config, tmp_path):
    p = tmp_path / "feet.tif"
    _write(p, np.full((10, 10), 3500.0 * 3.28084))
    config["dem"].update(source="file", path=str(p))
    with pytest.raises(InputDataError, match="is it in feet"):
        build_dem(_tiny(config, (101.2, 36.2, 101.6, 36.6)), tmp_path / "out.tif")


def test_dem_not_a_raster(config, tmp_path):
    p = tmp_path / "html.tif"
    p.write_text("<html>404 Not Found</html>")
    config["dem"].update(source="file", path=str(p))
    with pytest.raises(InputDataError, match="is not a readable raster"):
        build_dem(_tiny(config, (101.2, 36.2, 101.6, 36.6)), tmp_path / "out.tif")


def test_nodata_holes_stay_nodata(config, tmp_path):
    data = np.full((10, 10), 3000.0)
    data[3:6, 3:6] = -9999
    p = tmp_path / "holes.tif"
    _write(p, data)
    config["dem"].update(source="file", path=str(p), resampling="bilinear")
    out = tmp_path / "out.tif"
    build_dem(_tiny(config, (101.0, 36.0, 102.0, 37.0), res=360), out)
    with rasterio.open(out) as src:
        z = src.read(1)
    hole = z[HALO_PX + 4, HALO_PX + 4]
    assert hole == -9999.0
    assert z[z != -9999.0] == pytest.approx(3000.0)


def test_metres_labelled_as_degrees(config, tmp_path):
    p = tmp_path / "utm_as_4326.tif"
    _write(p, np.full((10, 10), 3000.0), west=400000.0, north=4100000.0, res=30.0)
    config["dem"].update(source="file", path=str(p))
    with pytest.raises(InputDataError, match="declares a geographic CRS .* look like metres"):
        build_dem(_tiny(config, (101.2, 36.2, 101.6, 36.6)), tmp_path / "out.tif")


def test_degrees_labelled_as_metres(config, tmp_path):
    p = tmp_path / "deg_as_utm.tif"
    _write(p, np.full((10, 10), 3000.0), crs="EPSG:32647")
    config["dem"].update(source="file", path=str(p))
    with pytest.raises(InputDataError, match="declares a projected CRS .* look like degrees"):
        build_dem(_tiny(config, (101.2, 36.2, 101.6, 36.6)), tmp_path / "out.tif")


def test_projected_dem_is_warped_to_the_geographic_grid(config, tmp_path):
    # A real UTM 47N DEM (metres) is a valid input: it is warped, not rejected.
    from pyproj import Transformer

    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32647", always_xy=True).transform(101.3, 36.5)
    p = tmp_path / "utm.tif"
    _write(
        p, np.full((200, 200), 3300.0), west=x0 - 3000, north=y0 + 3000, res=30.0, crs="EPSG:32647"
    )
    config["dem"].update(source="file", path=str(p), resampling="bilinear")
    out = tmp_path / "out.tif"
    build_dem(_tiny(config, (101.28, 36.48, 101.32, 36.52), res=10), out)
    with rasterio.open(out) as src:
        z = src.read(1)
    assert z == pytest.approx(3300.0)
