"""Scaled products (MAGT as int16 in 0.01 degC): encoding, the chunked writer, the mosaic COG,
the readers and the metadata GIS tools use (DESIGN.md 8, issue 7).

Physical value = stored value * scale + offset (GDAL's convention). The stored value of a
physical MAGT x is rint(x / 0.01) by definition, so a value read back is within half a step
(0.005 degC) of x.
"""

from __future__ import annotations

import subprocess

import dask.array as da
import numpy as np
import pytest
import rasterio
from conftest import requires_gdal_tool

from permamap import blocks
from permamap.grid import Grid
from permamap.mosaic import mosaic_product
from permamap.products import INT16_NODATA, PRODUCTS, decode, encode, stored_range
from permamap.rasterio_io import read_bands, read_physical, write_bands

MAGT = PRODUCTS["magt"]
GRID = Grid.from_bbox((101.0, 36.0, 101.5, 36.5), 1 / 600)  # 300 x 300: a tiled GeoTIFF
HALF_STEP_C = 0.005


def _field(seed=3):
    """Smooth MAGT -8..6 degC (float32, as the model writes it) with NaN holes."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:300, 0:300]
    x = -1.0 + 5.0 * np.sin(rows / 23.0) * np.cos(cols / 31.0) + rng.normal(0, 0.3, (300, 300))
    x = x.astype(np.float32)
    x[10:20, 40:45] = np.nan
    x[:, -3:] = np.nan
    return x


def test_magt_contract():
    assert (MAGT.dtype, MAGT.nodata, MAGT.scale, MAGT.offset, MAGT.units) == (
        "int16",
        -32768,
        0.01,
        0.0,
        "degC",
    )
    assert stored_range(MAGT) == pytest.approx((-327.67, 327.67))
    # every other product is unscaled
    assert [p.name for p in PRODUCTS.values() if p.is_scaled] == ["magt"]


def test_encode_by_hand():
    x = np.array([-1.234, 2.5, -0.006, 0.004, np.nan, 327.67, -327.67, 0.0, -0.0149])
    want = [-123, 250, -1, 0, INT16_NODATA, 32767, -32767, 0, -1]
    got = encode(MAGT, x)
    assert got.dtype == np.int16 and got.tolist() == want


def test_encode_is_rint_of_hundredths_and_decode_within_half_a_step():
    x = _field().astype(np.float64)
    q = encode(MAGT, x)
    ok = ~np.isnan(x)
    np.testing.assert_array_equal(q[ok], np.rint(x[ok] / 0.01).astype(np.int16))
    assert (q[~ok] == INT16_NODATA).all()
    back = decode(q, MAGT.nodata, MAGT.scale, MAGT.offset)
    assert np.array_equal(np.isnan(back), ~ok)
    assert np.nanmax(np.abs(back - x)) <= HALF_STEP_C + 1e-12
    # float32 input (the model's dtype) encodes the same as its float64 value
    np.testing.assert_array_equal(encode(MAGT, x.astype(np.float32)), q)


@pytest.mark.parametrize("bad", [327.68, -327.68, 400.0, np.inf, -np.inf])
def test_encode_rejects_values_outside_the_int16_range(bad):
    with pytest.raises(ValueError, match=r"magt: value .* outside the int16 range .*-327\.67"):
        encode(MAGT, np.array([0.0, bad, np.nan]))


def test_decode_nodata_and_mask_become_nan_and_input_is_untouched():
    stored = np.array([[-123, INT16_NODATA], [5, 7]], np.int16)
    masked = np.ma.masked_array(stored, mask=[[False, False], [False, True]])
    got = decode(masked, INT16_NODATA, 0.01, 0.0)
    np.testing.assert_allclose(got, [[-1.23, np.nan], [0.05, np.nan]])
    assert stored[0, 1] == INT16_NODATA
    f = np.array([1.5, -9999.0], np.float64)
    np.testing.assert_array_equal(decode(f, -9999.0), [1.5, np.nan])
    assert f[1] == -9999.0  # a float64 input is copied, not changed


def _write_chunked(path, x, chunks=37):
    blocks.store(
        [
            blocks.RasterOut.of(
                MAGT, path, GRID, [(da.from_array(x, chunks=chunks), "magt", "degC")]
            )
        ],
        blocks.Options(threads=2),
    )


def test_chunked_writer_round_trip_and_metadata(tmp_path):
    x = _field()
    _write_chunked(tmp_path / "m.tif", x)
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.dtypes == ("int16",) and src.nodata == INT16_NODATA
        assert src.scales == (0.01,) and src.offsets == (0.0,) and src.units == ("degC",)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"  # integer differencing
        raw = src.read(1)
        phys = read_physical(src, 1)
    ok = ~np.isnan(x)
    # exactly rint of the input in stored units, nodata where the input is NaN
    np.testing.assert_array_equal(raw[ok], np.rint(x[ok].astype(np.float64) / 0.01))
    assert (raw[~ok] == INT16_NODATA).all()
    # physical values within half a step (0.005 degC) of the float input
    assert np.array_equal(np.isnan(phys), ~ok)
    assert np.nanmax(np.abs(phys - x)) <= HALF_STEP_C + 1e-6
    # read_bands: physical by default, the stored bits with fill_nan=False
    np.testing.assert_array_equal(read_bands(tmp_path / "m.tif")[0], phys)
    assert read_bands(tmp_path / "m.tif", fill_nan=False).dtype == np.int16
    # write_bands with the product stores the same pixels (file vs file: exact)
    write_bands(
        tmp_path / "w.tif",
        x,
        GRID,
        dtype=MAGT.dtype,
        nodata=MAGT.nodata,
        descriptions=["magt"],
        units=["degC"],
        product=MAGT,
    )
    with rasterio.open(tmp_path / "w.tif") as w:
        assert w.scales == (0.01,) and w.dtypes == ("int16",)
        np.testing.assert_array_equal(w.read(1), raw)


@requires_gdal_tool(
    "gdalinfo", "the scale and offset are also checked through rasterio's src.scales/src.offsets"
)
def test_gdalinfo_shows_the_scale(tmp_path):
    _write_chunked(tmp_path / "m.tif", _field())
    out = subprocess.run(
        ["gdalinfo", str(tmp_path / "m.tif")], capture_output=True, text=True, check=True
    ).stdout
    assert "Type=Int16" in out and "NoData Value=-32768" in out
    assert "Offset: 0,   Scale:0.01" in out


def test_out_of_range_chunk_fails_and_leaves_no_file(tmp_path):
    x = _field()
    x[200, 200] = 1000.0  # e.g. a unit error; never clipped silently
    with pytest.raises(ValueError, match="magt: value 1000.0 degC outside"):
        _write_chunked(tmp_path / "m.tif", x)
    assert list(tmp_path.iterdir()) == []


def _tile_files(tmp_path, x, product, band, unit):
    """``x`` (on GRID) cut into 2 x 2 ragged tiles of 160 px, each written as a per-tile file
    of ``product`` by the chunked writer: (tiles, paths)."""
    tiles = GRID.tiles(160)
    paths = []
    for t in tiles:
        w = t.window
        p = tmp_path / f"{t.id}.tif"
        sub = x[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
        blocks.store(
            [blocks.RasterOut.of(product, p, GRID.subgrid(w), [(sub, band, unit)])],
            blocks.Options(),
        )
        paths.append(p)
    return tiles, paths


def test_mosaic_cog_keeps_scale_nodata_and_pixels(tmp_path):
    from rio_cogeo.cogeo import cog_validate

    x = _field()
    tiles, paths = _tile_files(tmp_path, x, MAGT, "s/2050", "degC")  # 2 x 2, ragged
    cog = tmp_path / "magt.tif"
    mosaic_product(GRID, tiles, paths, "s/2050", MAGT, cog, tags={"scenario": "s"})
    ok, errors, _ = cog_validate(str(cog))
    assert ok, errors
    with rasterio.open(cog) as src:
        assert src.dtypes == ("int16",) and src.nodata == INT16_NODATA
        assert src.scales == (0.01,) and src.offsets == (0.0,) and src.units == ("degC",)
        assert src.overviews(1) == [2]
        raw = src.read(1)
        half = read_physical(src, 1, out_shape=(150, 150))  # the overview (average)
    # the mosaic holds the tiles' stored values exactly (file vs file)
    for t, p in zip(tiles, paths, strict=True):
        w = t.window
        with rasterio.open(p) as tile:
            np.testing.assert_array_equal(
                raw[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width],
                tile.read(1),
            )
    # the overview is in degC: 2 x 2 means of the physical field, within one 0.01 step
    full = read_physical(cog, 1)
    means = full.reshape(150, 2, 150, 2).mean(axis=(1, 3))
    both = np.isfinite(means) & np.isfinite(half)
    assert both.mean() > 0.9
    assert np.abs(half[both] - means[both]).max() <= 0.01 + 1e-9
    assert np.isnan(half[:, -1]).all()  # nodata columns stay nodata


def test_class_cog_overview_is_the_mode_of_each_2x2_block(tmp_path):
    """Class products get mode overviews (products.Product.resampling): a 2 x 2 block with three
    pixels of one class and one of a distant class becomes the majority class, never the odd one
    out (a nearest-pixel overview picks it whenever it sits at the block's first corner: this
    test fails with ``resampling="nearest"``) nor a code in between."""
    cls = PRODUCTS["stability"]  # codes 0 (no permafrost) .. 5 (unstable)
    rng = np.random.default_rng(7)
    major = rng.choice(np.array([0, 1, 4, 5], np.uint8), size=(150, 150))
    minor = np.where(major <= 1, 5, 0).astype(np.uint8)
    x = np.repeat(np.repeat(major, 2, axis=0), 2, axis=1)
    # the odd one out at a random corner of every block
    r, c = rng.integers(0, 2, size=(2, 150, 150))
    x[2 * np.arange(150)[:, None] + r, 2 * np.arange(150)[None, :] + c] = minor
    tiles, paths = _tile_files(tmp_path, x, cls, "baseline", None)
    cog = tmp_path / "class.tif"
    mosaic_product(GRID, tiles, paths, "baseline", cls, cog, tags={})
    with rasterio.open(cog) as src:
        assert src.overviews(1) == [2]
        np.testing.assert_array_equal(src.read(1), x)
        half = src.read(1, out_shape=(150, 150))  # the overview
    np.testing.assert_array_equal(half, major)


def test_readers_return_physical_degc(tmp_path):
    from permamap.plots import read_decimated
    from permamap.styles import product_of, sample_values
    from permamap.validation import sample_raster

    x = _field()
    p = tmp_path / "magt.tif"
    _write_chunked(p, x)
    phys = read_physical(p, 1)
    # the chunked reader (dask and numpy backends)
    lazy = blocks.lazy_raster(p, 64)
    assert lazy.dtype == np.float64
    np.testing.assert_array_equal(lazy.compute()[0], phys)
    np.testing.assert_array_equal(blocks.RasterReader(p)[0, :, :], phys)
    # figures, style limits, point sampling
    data, _ = read_decimated(p, max_px=300)
    np.testing.assert_array_equal(data, phys)
    np.testing.assert_array_equal(np.sort(sample_values(p, 300)), np.sort(phys[~np.isnan(phys)]))
    lon = GRID.west + (np.array([50, 42, 120]) + 0.5) * GRID.res_deg
    lat = GRID.north - (np.array([60, 15, 299]) + 0.5) * GRID.res_deg
    got = sample_raster(p, lon, lat)
    np.testing.assert_array_equal(got[[0, 2]], phys[[60, 299], [50, 120]])
    assert np.isnan(got[1])  # a nodata hole
    assert abs(got[0] - x[60, 50]) <= HALF_STEP_C + 1e-6
    assert product_of(p) is MAGT


def test_stac_band_has_scale_and_offset(tmp_path):
    import datetime

    import pystac

    from permamap import stac

    p = tmp_path / "magt.tif"
    _write_chunked(p, _field())
    info = stac._raster_info(p)
    item = pystac.Item("x", None, None, datetime.datetime(2020, 1, 1), {})
    stac._raster_asset(item, "magt", p, info, MAGT)
    band = item.assets["magt"].to_dict()["raster:bands"][0]
    assert (band["scale"], band["offset"], band["nodata"], band["data_type"]) == (
        0.01,
        0.0,
        -32768,
        "int16",
    )


def test_encode_refuses_an_unscaled_product():
    with pytest.raises(ValueError, match="alt is not a scaled product"):
        encode(PRODUCTS["alt"], np.zeros(3))


@requires_gdal_tool(
    "gdal_translate", "read_physical is also checked against the encoded values by hand"
)
def test_gdal_unscale_gives_the_physical_values(tmp_path):
    """An independent reader of the metadata: GDAL's own ``gdal_translate -unscale``
    (stored * scale + offset) agrees with read_physical, nodata included."""
    _write_chunked(tmp_path / "m.tif", _field())
    subprocess.run(
        [
            "gdal_translate",
            "-q",
            "-unscale",
            "-ot",
            "Float64",
            "-a_nodata",
            "nan",
            str(tmp_path / "m.tif"),
            str(tmp_path / "u.tif"),
        ],
        check=True,
    )
    with rasterio.open(tmp_path / "u.tif") as u:
        unscaled = u.read(1)
    phys = read_physical(tmp_path / "m.tif", 1)
    ok = ~np.isnan(phys)
    np.testing.assert_allclose(unscaled[ok], phys[ok], rtol=0, atol=1e-12)


def test_every_code_survives_decode_then_encode():
    """Reading a file as degC and writing it again (e.g. a re-mosaic) keeps every int16 code."""
    codes = np.arange(-32767, 32768).astype(np.int16)
    np.testing.assert_array_equal(encode(MAGT, decode(codes, MAGT.nodata, MAGT.scale)), codes)
    assert encode(MAGT, decode(np.array([INT16_NODATA], np.int16), MAGT.nodata, 0.01))[0] == (
        INT16_NODATA
    )
