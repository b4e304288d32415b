"""Validation and calibration: scores against hand-computed and published confusion matrices,
recovery of known parameters by calibration, spatial cross-validation that never shares a
block between training and test, and an EPSG:3995 class map that keeps its classes and areas
on the working grid."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from affine import Affine
from pyproj import Geod, Transformer

from permamap import calibration as cal
from permamap import validation as val
from permamap.config import deep_merge, prepare
from permamap.errors import ConfigError, InputDataError
from permamap.grid import Grid
from permamap.products import CLASS_NODATA

GEOD = Geod(ellps="WGS84")


# ------------------------------------------------------------------------------ metrics by hand


def test_kappa_and_accuracy_of_a_2x2_example_by_hand():
    # 50 items, rows reference, columns ours: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    # p_o = 35/50 = 0.7; p_e = (25*30 + 25*20)/50^2 = 0.5; kappa = (0.7-0.5)/(1-0.5) = 0.4
    cm = np.array([[20, 5], [10, 15]])
    assert val.overall_accuracy(cm) == pytest.approx(0.7)
    assert val.kappa(cm) == pytest.approx(0.4)


def test_kappa_of_congalton_1991_published_matrix():
    # Congalton (1991) Remote Sens. Environ. 37:35-46, Table 1: rows = classified (ours),
    # columns = reference, classes D, C, BA, SB. Published: overall accuracy 74 %
    # (321/434), kappa 0.65, producer's accuracy of D 87 % (65/75), user's 57 % (65/115).
    classified_by_reference = np.array(
        [[65, 4, 22, 24], [6, 81, 5, 8], [0, 11, 85, 19], [4, 7, 3, 90]]
    )
    cm = classified_by_reference.T  # ours: rows reference, columns ours
    assert val.overall_accuracy(cm) == pytest.approx(321 / 434)
    # by hand: p_e = (115*75 + 100*103 + 115*115 + 104*141) / 434^2
    pe = (115 * 75 + 100 * 103 + 115 * 115 + 104 * 141) / 434**2
    assert val.kappa(cm) == pytest.approx((321 / 434 - pe) / (1 - pe))
    assert round(val.kappa(cm), 2) == 0.65
    table = val.class_table(cm, [1, 2, 3, 0])
    assert round(table[0]["producer_accuracy"], 2) == 0.87
    assert round(table[0]["user_accuracy"], 2) == 0.57


@pytest.mark.parametrize(
    "cm, oa, kappa, q, a",
    [
        # one class in both maps: perfect agreement, but kappa is undefined (p_e = 1)
        ([[7, 0], [0, 0]], 1.0, math.nan, 0.0, 0.0),
        # complete disagreement: kappa -1, all of it allocation
        ([[0, 5], [5, 0]], 0.0, -1.0, 0.0, 1.0),
        # ours maps everything as the first class: p_o = 0.6 = p_e -> kappa 0; all quantity
        ([[3, 0], [2, 0]], 0.6, 0.0, 0.4, 0.0),
        # nothing compared
        ([[0, 0], [0, 0]], math.nan, math.nan, math.nan, math.nan),
    ],
)
def test_degenerate_confusion_matrices(cm, oa, kappa, q, a):
    cm = np.array(cm, float)
    for got, want in ((val.overall_accuracy(cm), oa), (val.kappa(cm), kappa)):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)
    gq, ga = val.quantity_allocation(cm)
    if math.isnan(q):
        assert math.isnan(gq) and math.isnan(ga)
    else:
        assert (gq, ga) == pytest.approx((q, a))


def test_quantity_plus_allocation_is_total_disagreement():
    # Pontius & Millones (2011): Q + A = 1 - OA for any matrix
    rng = np.random.default_rng(3)
    for _ in range(20):
        cm = rng.integers(0, 50, (3, 3)).astype(float)
        q, a = val.quantity_allocation(cm)
        assert q + a == pytest.approx(1 - val.overall_accuracy(cm))


def test_area_weighted_confusion_equals_repeated_samples():
    ref = np.array([1, 1, 2, 2, 3])
    ours = np.array([1, 2, 2, 2, 1])
    w = np.array([2.0, 1.0, 3.0, 0.5, 1.5])
    cm = val.confusion(ref, ours, [1, 2, 3], weights=w)
    # by hand: (1,1) 2.0; (1,2) 1.0; (2,2) 3.5; (3,1) 1.5
    want = np.array([[2.0, 1.0, 0], [0, 3.5, 0], [1.5, 0, 0]])
    np.testing.assert_allclose(cm, want)


def test_error_scores_by_hand():
    s = val.error_scores([1.0, 2.0, 3.0, np.nan], [1.0, 1.0, 5.0, 0.0])
    # errors 0, +1, -2 (the NaN pair is skipped)
    assert s["n"] == 3
    assert s["bias"] == pytest.approx(-1 / 3)
    assert s["mae"] == pytest.approx(1.0)
    assert s["rmse"] == pytest.approx(math.sqrt(5 / 3))


def test_disagreement_codes():
    ref = np.array([1, 1, 2, 2, 3, 2, 255, 1])
    ours = np.array([1, 2, 1, 2, 2, 3, 1, 255])
    np.testing.assert_array_equal(val.disagreement_codes(ref, ours), [1, 4, 3, 2, 5, 5, 255, 255])


# ------------------------------------------------------------------------------ EPSG:3995 map

GRID_BBOX = (100.5, 36.5, 101.5, 37.5)


def _polar_class_raster(path, res_m=2000.0, boundary_lon=101.0, code_west=11, code_east=12):
    """A class raster in EPSG:3995 covering GRID_BBOX with a margin: code_west where the pixel
    centre is west of boundary_lon, code_east east of it, nodata 0 south of 36.6 N."""
    to3995 = Transformer.from_crs("EPSG:4326", "EPSG:3995", always_xy=True)
    lon, lat = np.meshgrid(np.linspace(100.2, 101.8, 50), np.linspace(36.2, 37.8, 50))
    x, y = to3995.transform(lon, lat)
    left, top = math.floor(x.min() / res_m) * res_m, math.ceil(y.max() / res_m) * res_m
    width = int(math.ceil((x.max() - left) / res_m))
    height = int(math.ceil((top - y.min()) / res_m))
    tr = Affine(res_m, 0, left, 0, -res_m, top)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    px, py = tr @ (cols, rows)
    plon, plat = Transformer.from_crs("EPSG:3995", "EPSG:4326", always_xy=True).transform(px, py)
    codes = np.where(plon < boundary_lon, code_west, code_east).astype("uint8")
    codes[plat < 36.6] = 0
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:3995",
        transform=tr,
        nodata=0,
    ) as dst:
        dst.write(codes, 1)
    return tr, codes


def _config(raw_config, tmp_path, **validation):
    raw = copy.deepcopy(raw_config)
    raw["run"] = "t"
    raw["region"]["bbox"] = list(GRID_BBOX)
    raw["region"]["resolution_arcsec"] = 36
    raw["validation"] = {"enabled": True, **validation}
    return prepare(raw)


def test_reprojection_of_a_3995_class_raster_keeps_classes_and_areas(tmp_path):
    from permamap.sources.reference import reproject_to_grid

    path = tmp_path / "ref3995.tif"
    tr, codes = _polar_class_raster(path)
    grid = Grid.from_bbox(GRID_BBOX, 0.01)
    out = reproject_to_grid(
        str(path), ("EPSG:4326", grid.transform, grid.width, grid.height), kind="classes"
    )
    assert set(np.unique(out)) <= {11, 12, CLASS_NODATA}  # nearest: no invented codes
    # each pixel holds the code of the source pixel containing its centre
    lon, lat = np.meshgrid(grid.col_longitudes(), grid.row_latitudes())
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3995", always_xy=True).transform(lon, lat)
    c, r = ~tr @ (x, y)
    want = codes[np.floor(r).astype(int), np.floor(c).astype(int)]
    want = np.where(want == 0, CLASS_NODATA, want)
    assert np.mean(out == want) > 0.999  # GDAL may differ on exact pixel-edge ties
    # areas: class 11 is lon 100.5-101.0, 36.6-37.5 N; geodesic area of that polygon (pyproj)
    row_area = grid.row_pixel_areas_km2()
    area11 = float(((out == 11) * row_area[:, None]).sum())
    area12 = float(((out == 12) * row_area[:, None]).sum())
    for got, (w, e) in ((area11, (100.5, 101.0)), (area12, (101.0, 101.5))):
        lons = np.r_[np.linspace(w, e, 50), np.full(50, e), np.linspace(e, w, 50), np.full(50, w)]
        lats = np.r_[
            np.full(50, 36.6),
            np.linspace(36.6, 37.5, 50),
            np.full(50, 37.5),
            np.linspace(37.5, 36.6, 50),
        ]
        true_km2 = abs(GEOD.polygon_area_perimeter(lons, lats)[0]) / 1e6
        assert got == pytest.approx(true_km2, rel=0.02)


def test_native_pixel_areas_match_geodesic_polygons(tmp_path):
    tr = Affine(10000.0, 0, 5830000.0, 0, -10000.0, 1430000.0)
    rows, cols = np.array([0, 5, 20]), np.array([0, 10, 30])
    got = val.native_pixel_areas_km2(tr, "EPSG:3995", rows, cols)
    inv = Transformer.from_crs("EPSG:3995", "EPSG:4326", always_xy=True)
    for g, r, c in zip(got, rows, cols, strict=True):
        t = np.linspace(0, 1, 40)
        ring = np.r_[
            np.c_[c + t, np.full(40, r)],
            np.c_[np.full(40, c + 1), r + t],
            np.c_[c + 1 - t, np.full(40, r + 1)],
            np.c_[np.full(40, c), r + 1 - t],
        ]
        x, y = tr @ (ring[:, 0], ring[:, 1])
        lon, lat = inv.transform(x, y)
        assert g == pytest.approx(abs(GEOD.polygon_area_perimeter(lon, lat)[0]) / 1e6, rel=1e-3)


def _class_map(path, grid, boundary_lon=101.0):
    lon = np.broadcast_to(grid.col_longitudes()[None, :], (grid.height, grid.width))
    cls = np.where(lon < boundary_lon, 1, 2).astype("uint8")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=grid.transform,
        nodata=255,
    ) as d:
        d.write(cls, 1)


def test_compare_reference_end_to_end(raw_config, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    ref = tmp_path / "ref3995.tif"
    _polar_class_raster(ref, res_m=8000.0)  # about 6.6 km on the ground, 45 of our pixels
    entry = dict(name="r", path=str(ref), classes={"permafrost": [11], "seasonally_frozen": [12]})
    config = _config(raw_config, tmp_path, references=[entry])
    grid = Grid.from_config(config)
    ours = tmp_path / "class.tif"
    _class_map(ours, grid)  # the same geography: permafrost west of 101 E
    outs = {
        k: tmp_path / "out" / f"{k}.{ext}"
        for k, ext in (
            ("disagreement", "tif"),
            ("confusion", "csv"),
            ("confusion_reference_grid", "csv"),
            ("areas", "csv"),
            ("reference_pixels", "csv"),
            ("scores", "json"),
        )
    }
    s = val.compare_reference(config, config["validation"]["references"][0], ours, outs)
    wg, rg = s["working_grid"], s["reference_grid"]
    assert wg["overall_accuracy"] > 0.98 and wg["kappa"] > 0.95  # only boundary pixels differ
    assert rg["overall_accuracy"] > 0.97
    assert s["comparison"] == "three classes"
    # per-class areas on the reference's own grid (projected pixel area / areal scale, summed
    # over the reference pixels compared) agree with the area of our identical map's pixels
    # inside them (ellipsoidal cell areas), and the shares agree with the working grid's
    areas = pd.read_csv(outs["areas"]).set_index(["scale", "class_code"])
    for code in (1, 2):
        a_r = areas.loc[("reference_grid", code), "reference_km2"]
        assert areas.loc[("reference_grid", code), "ours_fraction_km2"] == pytest.approx(
            a_r, rel=0.03
        )
        share_w = areas.loc[("working_grid", code), "reference_share"]
        assert areas.loc[("reference_grid", code), "reference_share"] == pytest.approx(
            share_w, abs=0.02
        )
    ok, errors, _ = cog_validate(str(outs["disagreement"]))
    assert ok, errors
    with rasterio.open(outs["disagreement"]) as src:
        d = src.read(1)
        assert set(np.unique(d)) <= {1, 2, 3, 4, 255}
        assert src.nodata == 255 and src.colormap(1)[3][:3] == (215, 48, 39)
        assert (d[-3:] == 255).all()  # south of 36.6 N the reference has no data
    saved = json.loads(outs["scores"].read_text())
    assert saved["working_grid"]["kappa"] == pytest.approx(wg["kappa"])
    pixels = pd.read_csv(outs["reference_pixels"])
    assert {"ours_majority_class", "ours_permafrost_fraction", "coverage"} <= set(pixels.columns)
    assert pixels.loc[pixels.used, "coverage"].min() >= 0.75


def test_reference_on_the_working_grid_uses_native_path_for_its_own_grid(raw_config, tmp_path):
    # as the retrieve stage delivers them: the map resampled onto the working grid
    from permamap.sources.reference import reproject_to_grid

    polar = tmp_path / "ref3995.tif"
    _polar_class_raster(polar, res_m=8000.0)
    grid = Grid.from_bbox(GRID_BBOX, 0.01)
    on_grid = tmp_path / "ref_on_grid.tif"
    arr = reproject_to_grid(
        str(polar), ("EPSG:4326", grid.transform, grid.width, grid.height), kind="classes"
    )
    with rasterio.open(
        on_grid,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=grid.transform,
        nodata=255,
    ) as d:
        d.write(arr, 1)
    classes = {"permafrost": [11], "seasonally_frozen": [12]}
    ours = tmp_path / "class.tif"
    _class_map(ours, grid)
    for native, name in ((None, "a"), (str(polar), "b")):
        entry = dict(name=name, path=str(on_grid), native_path=native, classes=classes)
        config = _config(raw_config, tmp_path, references=[entry])
        outs = {
            k: tmp_path / name / k
            for k in (
                "disagreement",
                "confusion",
                "confusion_reference_grid",
                "areas",
                "reference_pixels",
                "scores",
            )
        }
        s = val.compare_reference(config, config["validation"]["references"][0], ours, outs)
        assert s["working_grid"]["overall_accuracy"] > 0.98
        if native is None:
            assert "not coarser" in s["reference_grid"]["skipped"]
            assert "note" in pd.read_csv(outs["confusion_reference_grid"]).columns
        else:
            assert s["reference_grid"]["crs"] == "EPSG:3995"
            assert s["reference_grid"]["overall_accuracy"] > 0.97


def test_retrieved_obu_map_is_compared_on_its_own_grid(raw_config, tmp_path, monkeypatch):
    # the retrieve stage leaves the Obu et al. 2019 zip in <cache_dir>/obu2019/ and the map on
    # the working grid in resources/<run>/reference/; validation uses both
    import zipfile

    from permamap.sources.reference import OBU_PRODUCTS, reproject_to_grid

    monkeypatch.chdir(tmp_path)
    polar = tmp_path / "perprob.tif"
    tr, codes = _polar_class_raster(polar, res_m=8000.0)
    prob = np.where(codes == 11, 0.9, np.where(codes == 12, 0.1, np.nan)).astype("float32")
    with rasterio.open(
        polar,
        "w",
        driver="GTiff",
        width=codes.shape[1],
        height=codes.shape[0],
        count=1,
        dtype="float32",
        crs="EPSG:3995",
        transform=tr,
        nodata=np.nan,
    ) as d:
        d.write(prob, 1)
    name = OBU_PRODUCTS["perprob"]["name"]
    (tmp_path / "cache" / "obu2019").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "cache" / "obu2019" / f"{name}.zip", "w") as z:
        z.write(polar, f"{name}/{name}.tif")
    raw = copy.deepcopy(raw_config)
    raw["reference"] = {"obu2019": {"products": ["perprob"]}}
    raw["download"] = {"cache_dir": "cache", "offline": True}
    config = _config(raw, tmp_path, references=[])
    (entry,) = val.reference_entries(config)[0]
    assert entry["name"] == "obu2019_perprob" and entry["kind"] == "probability"
    grid = Grid.from_config(config)
    on_grid = reproject_to_grid(
        str(polar), ("EPSG:4326", grid.transform, grid.width, grid.height), kind="continuous"
    )
    Path(entry["path"]).parent.mkdir(parents=True)
    with rasterio.open(
        entry["path"],
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=grid.transform,
        nodata=np.nan,
    ) as d:
        d.write(on_grid, 1)
    assert val.native_path(config, entry).startswith("/vsizip/")
    ours = tmp_path / "class.tif"
    _class_map(ours, grid)
    outs = {
        k: tmp_path / "v" / k
        for k in (
            "disagreement",
            "confusion",
            "confusion_reference_grid",
            "areas",
            "reference_pixels",
            "scores",
        )
    }
    s = val.compare_reference(config, entry, ours, outs)
    assert s["comparison"].startswith("binary")
    assert s["reference_grid"]["crs"] == "EPSG:3995"
    assert s["reference_grid"]["pixel_size"] == [8000.0, 8000.0]
    assert s["working_grid"]["overall_accuracy"] > 0.97
    assert s["reference_grid"]["permafrost_fraction"]["rmse"] == pytest.approx(0.1, abs=0.03)


def test_probability_reference_is_binary_with_threshold(raw_config, tmp_path):
    grid = Grid.from_bbox(GRID_BBOX, 0.05)  # a geographic reference 5 x coarser than ours
    prob = tmp_path / "prob.tif"
    lon = np.broadcast_to(grid.col_longitudes()[None, :], (grid.height, grid.width))
    values = np.where(lon < 101.0, 80.0, 20.0).astype("float32")  # percent, like ESA CCI PFR
    with rasterio.open(
        prob,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=grid.transform,
        nodata=-9999,
    ) as d:
        d.write(values, 1)
    entry = dict(name="p", path=str(prob), kind="probability", probability_max=100.0)
    config = _config(raw_config, tmp_path, references=[entry])
    spec = val.reference_spec(config["validation"]["references"][0])
    assert spec.binary and spec.threshold == 50.0
    ours = tmp_path / "class.tif"
    _class_map(ours, Grid.from_config(config))
    outs = {
        k: tmp_path / f"{k}.out"
        for k in (
            "disagreement",
            "confusion",
            "confusion_reference_grid",
            "areas",
            "reference_pixels",
            "scores",
        )
    }
    s = val.compare_reference(config, config["validation"]["references"][0], ours, outs)
    assert s["working_grid"]["confusion"]["labels"] == ["perennial permafrost", "no permafrost"]
    assert s["working_grid"]["overall_accuracy"] > 0.99
    # fraction vs probability: our permafrost fraction 1 (0) against 0.8 (0.2): bias about +-0.2
    assert s["reference_grid"]["permafrost_fraction"]["rmse"] == pytest.approx(0.2, abs=0.02)


def test_unmapped_reference_code_is_one_readable_error(raw_config, tmp_path):
    ref = tmp_path / "ref3995.tif"
    _polar_class_raster(ref, code_east=13)
    entry = dict(name="r", path=str(ref), classes={"permafrost": [11], "seasonally_frozen": [12]})
    config = _config(raw_config, tmp_path, references=[entry])
    spec = val.reference_spec(config["validation"]["references"][0])
    with pytest.raises(InputDataError, match=r"class codes \[13\].*validation.references\[r\]"):
        val.open_reference(spec, Grid.from_config(config))


def test_reference_outside_the_region_is_one_readable_error(raw_config, tmp_path):
    ref = tmp_path / "ref3995.tif"
    _polar_class_raster(ref)
    entry = dict(name="r", path=str(ref), classes={"permafrost": [11], "seasonally_frozen": [12]})
    config = _config(raw_config, tmp_path, references=[entry])
    spec = val.reference_spec(config["validation"]["references"][0])
    with pytest.raises(InputDataError, match="does not overlap the region"):
        val.open_reference(spec, Grid.from_bbox((80.0, 30.0, 81.0, 31.0), 0.01))


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            dict(name="r", path="x.tif", classes={"permafrost": [1], "seasonally_frozen": [1]}),
            "code 1 is listed under both",
        ),
        (
            dict(
                name="r",
                path="x.tif",
                classes={"permafrost": [1], "not_permafrost": [2], "unfrozen": [3]},
            ),
            "mixes not_permafrost",
        ),
        (dict(name="r", path="x.tif", classes={"ignore": [1]}), "maps no reference code"),
        (dict(name="r", classes={"permafrost": [1]}), "path is required"),
    ],
)
def test_bad_reference_config(raw_config, tmp_path, entry, message):
    config = _config(raw_config, tmp_path, references=[entry])
    with pytest.raises(ConfigError, match=message):
        val.check_config(config)


def test_schema_rejects_unknown_validation_key(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["validation"]["calibration"]["folds"] = 3
    with pytest.raises(ConfigError, match="unknown key 'folds' in validation.calibration"):
        prepare(raw)


def test_synthetic_sample_is_left_out_of_real_data_runs(config, raw_config, repo):
    refs, notes = val.reference_entries(config)
    assert [r["name"] for r in refs] == ["sample"] and not notes  # the offline sample uses it
    raw = copy.deepcopy(raw_config)
    raw["dem"] = {"source": "file", "path": "dem.tif"}
    real = prepare(raw)
    refs, notes = val.reference_entries(real)
    assert refs == [] and "synthetic" in notes[0]
    assert val.points_path(real)[0] is None
    assert val.is_synthetic(repo / "config/validation/sample_reference_3995.tif")
    assert val.is_synthetic(repo / "config/validation/sample_points.csv")


def test_retrieved_reference_maps_are_compared_by_default(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["dem"] = {"source": "file", "path": "dem.tif"}
    raw["reference"] = {
        "obu2019": {"products": ["perprob", "magt"]},
        "esa_cci": {"variable": "ALT"},
    }
    refs, notes = val.reference_entries(prepare(raw))
    kinds = {r["name"]: (r["kind"], r.get("probability_max")) for r in refs}
    assert kinds == {"obu2019_perprob": ("probability", 1.0), "obu2019_magt": ("magt", None)}
    assert all(r["path"].startswith("resources/") for r in refs)
    assert any("esa_cci_alt" in n for n in notes)  # an ALT map is not a permafrost map


# ------------------------------------------------------------------------------ points


def test_read_points_csv_and_geopackage(tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point

    csv = tmp_path / "p.csv"
    csv.write_text(
        "# comment\nLon,Lat,magt_c,permafrost,source\n101,37,-1.5,,a #1\n"
        "101.5,37.2,0.5,yes,b\n101.2,37.1,,0,c\n"
    )
    p = val.read_points(csv)
    assert list(p["permafrost"]) == [1.0, 1.0, 0.0]  # the first derived from magt_c < 0
    assert list(p["permafrost_from"]) == ["magt_c < 0", "given", "given"]
    assert p["source"][0] == "a #1" and p["id"][2] == "P3"
    gdf = gpd.GeoDataFrame({"magt_c": [-1.0]}, geometry=[Point(101.0, 37.0)], crs="EPSG:4326")
    gdf = gdf.to_crs("EPSG:32647")  # UTM 47N: read back as lon/lat
    gdf.to_file(tmp_path / "p.gpkg", layer="boreholes")
    g = val.read_points(tmp_path / "p.gpkg")
    assert g["lon"][0] == pytest.approx(101.0) and g["lat"][0] == pytest.approx(37.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("lat,magt_c\n37,1\n", r"missing column\(s\) \['lon'\]"),
        ("lon,lat,magt_c\n101,37,270.1\n", "row 1, column magt_c = 270.1 .*kelvin"),
        ("lon,lat,permafrost\n101,37,maybe\n", "row 1, column permafrost = 'maybe'"),
        ("lon,lat,alt_m\n101,37,150\n", "centimetres"),
        ("lon,lat,elevation_m\n101,37,high\n", "column elevation_m = 'high' is not a number"),
    ],
)
def test_bad_points_give_one_readable_error(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(InputDataError, match=message):
        val.read_points(path)


def test_model_at_points_is_the_station_climate_and_ttop(config):
    from permamap.climate import StationForcing, annual_mean_c
    from permamap.ground import ttop_c

    st = config["climate"]["station"]
    lapse = config["climate"]["lapse_rate_c_per_m"]
    z = np.array([st["elevation_m"], st["elevation_m"] + 1000.0])
    m = val.model_at_points(
        config, [101.0, 101.5], [37.0, 37.2], z, [0.0, 0.0], [-1.0, -1.0], [1.0, 1.0]
    )
    maat0 = annual_mean_c(StationForcing(config).t_ref)
    # MAAT at the station's elevation, and exactly lapse * 1000 m colder 1000 m above it
    assert m["maat"][0] == pytest.approx(maat0)
    assert m["maat"][0] - m["maat"][1] == pytest.approx(lapse * 1000.0)
    tt = config["ground"]["ttop"]
    want = ttop_c(m["fdd"], m["tdd"], tt["n_freezing"], tt["n_thawing"], tt["conductivity_ratio"])
    np.testing.assert_allclose(m["magt"], want)  # flat ground, solar index 1: plain TTOP


# ------------------------------------------------------------------------------ spatial CV


def test_spatial_blocks_are_block_km_on_the_ground():
    grid = Grid.from_bbox((100.0, 36.0, 104.0, 38.0), 0.01)
    # points every 1 km due east along 37 N (geodesic steps from pyproj, independent of grid)
    lon, lat = [100.0], [37.0]
    for _ in range(274):
        x, y, _ = GEOD.fwd(lon[-1], 37.0, 90.0, 1000.0)
        lon.append(x)
        lat.append(37.0)
    blocks = cal.spatial_blocks(np.array(lon), np.array(lat), 50.0, grid)
    _, counts = np.unique(blocks, return_counts=True)
    assert len(counts) == 6  # 0-274 km: five full blocks and a part
    assert all(abs(c - 50) <= 1 for c in counts[:-1])  # full blocks hold 50 one-km steps


def test_spatial_cv_never_puts_a_block_in_train_and_test():
    rng = np.random.default_rng(11)
    grid = Grid.from_bbox((100.0, 36.0, 103.0, 38.5), 0.01)
    lon, lat = rng.uniform(100, 103, 700), rng.uniform(36, 38.5, 700)
    blocks = cal.spatial_blocks(lon, lat, 40.0, grid)
    for seed in (0, 1, 2):
        folds = cal.spatial_folds(blocks, 5, seed)
        assert len(folds) == 5
        seen = np.zeros(len(lon), int)
        for train, test in folds:
            assert not set(blocks[train]) & set(blocks[test])
            assert len(train) + len(test) == len(lon)
            seen[test] += 1
        assert (seen == 1).all()  # every sample is held out exactly once
    assert len(cal.spatial_folds(np.array([1, 1, 2, 2, 2]), 5)) == 2  # fewer blocks than folds
    with pytest.raises(ValueError, match="at least 2 blocks"):
        cal.spatial_folds(np.array([4, 4, 4]), 5)


# ------------------------------------------------------------------------------ calibration


def _synthetic_samples(config, truth, n=300, noise_c=0.1, seed=1):
    from permamap.validation import model_from_features, point_features

    rng = np.random.default_rng(seed)
    s = pd.DataFrame(
        dict(
            lon=rng.uniform(100, 103, n),
            lat=rng.uniform(36, 38.5, n),
            z=rng.uniform(2800, 5000, n),
            slope=rng.uniform(0, 30, n),
            aspect=rng.uniform(0, 360, n),
            solar=rng.uniform(0.7, 1.3, n),
        )
    )
    X = point_features(config, s.lon, s.lat, s.z, s.slope, s.aspect, s.solar)
    magt = model_from_features(cal.with_parameters(config, truth), X)["magt"]
    s["sample"] = [f"s{i}" for i in range(n)]
    return s, X, magt + rng.normal(0, noise_c, n)


@pytest.mark.parametrize(
    "truth",
    [
        {"lapse_rate_c_per_m": 0.0062, "n_freezing": 0.6, "n_thawing": 1.25},
        {"n_freezing": 0.85, "n_thawing": 0.95, "solar_effect": 0.5},
    ],
)
def test_calibration_recovers_known_parameters(config, truth):
    _, X, y = _synthetic_samples(config, truth)
    est = cal.MAGTCalibrator(base_config=config, parameters=tuple(truth)).fit(X, y)
    for name, value in truth.items():
        assert est.params_[name] == pytest.approx(value, rel=0.05), name
        assert est.params_[name] != pytest.approx(cal.get_parameter(config, name), rel=0.02)


def test_cross_validation_scores_held_out_blocks_only(config):
    truth = {"n_freezing": 0.55, "n_thawing": 1.3}
    samples, _, y = _synthetic_samples(config, truth, n=200, noise_c=0.2)
    samples["y"] = y
    cfg = copy.deepcopy(config)
    cfg["validation"]["calibration"].update(parameters=list(truth), n_splits=4, block_size_km=60.0)
    res = cal.cross_validate(cfg, samples)
    folds, pred = res["folds"], res["predictions"]
    assert len(folds) == 4 and (pred["fold"] >= 0).all()
    for k in range(4):  # a fold's held-out blocks are not among its training samples' blocks
        test_blocks = set(pred.loc[pred.fold == k, "block"])
        assert not test_blocks & set(pred.loc[pred.fold != k, "block"])
    # held-out error is the noise (0.2 C); the uncalibrated config is far off
    assert res["held_out"]["magt_rmse_c"] == pytest.approx(0.2, abs=0.05)
    assert res["config_on_held_out"]["magt_rmse_c"] > 0.6
    assert res["params"]["n_thawing"] == pytest.approx(1.3, rel=0.03)


def test_presence_calibration_moves_towards_the_truth(config):
    truth = {"n_thawing": 1.4}
    samples, X, magt = _synthetic_samples(config, truth, n=400, noise_c=0.0)
    y = (magt < 0).astype(float)
    est = cal.PresenceCalibrator(base_config=config, parameters=("n_thawing",)).fit(X, y)
    # presence only fixes where MAGT crosses 0 C: the fit reproduces the true presence
    assert np.mean(est.predict(X) == y) > 0.97
    assert est.params_["n_thawing"] == pytest.approx(1.4, abs=0.1)
    assert np.mean(cal.PresenceCalibrator(base_config=config).predict(X) == y) < 0.95


def test_fragment_is_a_valid_config_override(config, tmp_path):
    frag = cal.fragment(config, {"lapse_rate_c_per_m": 0.0061234567, "n_thawing": 1.2})
    assert frag == {
        "climate": {"lapse_rate_c_per_m": 0.00612346},
        "ground": {"ttop": {"n_thawing": 1.2}},
    }
    res = dict(
        params={"n_thawing": 1.2},
        target="magt",
        n_samples=10,
        n_blocks=3,
        n_folds=3,
        held_out={"magt_rmse_c": 1.0},
        config_on_held_out={"magt_rmse_c": 1.5},
        config_params={"n_thawing": 1.1},
        params_at_bound=[],
    )
    path = tmp_path / "calibrated.yaml"
    cal.write_fragment(path, config, res)
    text = path.read_text()
    assert "held-out magt_rmse_c: 1.000" in text
    merged = prepare(deep_merge(config, yaml.safe_load(text)))
    assert merged["ground"]["ttop"]["n_thawing"] == 1.2


def test_calibration_parameter_must_act_in_the_model(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["validation"]["calibration"]["parameters"] = ["reference_magt_c"]
    with pytest.raises(ConfigError, match="no effect with ground.model = 'ttop'"):
        val.check_config(prepare(raw))
    raw["validation"]["calibration"]["parameters"] = ["n_thawing"]
    raw["validation"]["calibration"]["bounds"] = {"n_thawing": [1.5, 1.0]}
    with pytest.raises(ConfigError, match=r"bounds.n_thawing = \[1.5, 1.0\]"):
        val.check_config(prepare(raw))


def test_calibration_with_too_few_points_is_skipped_with_a_reason(config, tmp_path):
    pts = tmp_path / "p.csv"
    pts.write_text("lon,lat,magt_c\n101,37,1\n101.5,37.5,-1\n")
    outs = {k: tmp_path / k for k in ("folds", "predictions", "fragment", "scores")}
    grid = Grid.from_config(config)
    rasters = {}
    for k, v in (("elevation", 3000.0), ("slope", 0.0), ("aspect", -1.0), ("solar", 1.0)):
        rasters[k] = tmp_path / f"{k}.tif"
        with rasterio.open(
            rasters[k],
            "w",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=1,
            dtype="float32",
            crs="EPSG:4326",
            transform=grid.transform,
            nodata=-9999,
        ) as d:
            d.write(np.full((grid.height, grid.width), v, "float32"), 1)
    s = cal.calibrate(config, pts, rasters, outs)
    assert (
        s["status"] == "skipped" and "fewer than validation.calibration.min_samples" in s["reason"]
    )
    assert "No calibration" in outs["fragment"].read_text()
    assert json.loads(outs["scores"].read_text())["status"] == "skipped"


def _flat_rasters(tmp_path, grid, values):
    paths = {}
    for k, v in values.items():
        paths[k] = tmp_path / f"{k}.tif"
        dtype, nodata = ("uint8", 255) if k == "class" else ("float32", -9999)
        with rasterio.open(
            paths[k],
            "w",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=1,
            dtype=dtype,
            crs="EPSG:4326",
            transform=grid.transform,
            nodata=nodata,
        ) as d:
            d.write(np.full((grid.height, grid.width), v, dtype), 1)
    return paths


def test_validate_points_table_plot_and_summary(raw_config, tmp_path):
    config = _config(raw_config, tmp_path, points={"path": "p.csv", "use_point_elevation": False})
    grid = Grid.from_config(config)
    rasters = _flat_rasters(
        tmp_path,
        grid,
        dict(
            elevation=4200.0, slope=0.0, aspect=-1.0, solar=1.0, magt=-1.0, alt=1.5, **{"class": 1}
        ),
    )
    pts = tmp_path / "p.csv"
    pts.write_text(
        "id,lon,lat,magt_c,alt_m,permafrost\nA,101.0,37.0,-2.0,1.0,1\n"
        "B,101.2,37.2,0.5,,0\nC,110.0,37.0,-1.0,,1\n"
    )
    outs = {
        k: tmp_path / "pts" / f"{k}.{e}"
        for k, e in (("table", "csv"), ("scatter", "png"), ("scores", "json"))
    }
    s = val.validate_points(config, pts, rasters, outs)
    t = pd.read_csv(outs["table"])
    assert list(t["inside_grid"]) == [True, True, False]  # C lies outside the region
    assert s["n_points"] == 3 and s["n_inside_grid"] == 2
    # the model at 4,200 m (the pixel's elevation) is one value for A and B: errors by hand
    m = t["magt_model_c"][0]
    assert t["magt_model_c"][1] == pytest.approx(m) and np.isnan(t["magt_model_c"][2])
    assert s["magt_c"]["bias"] == pytest.approx(((m + 2.0) + (m - 0.5)) / 2)
    assert s["magt_pixel_c"]["bias"] == pytest.approx(((-1 + 2.0) + (-1 - 0.5)) / 2)
    assert s["alt_m"]["n"] == (1 if m < 0 else 0)
    assert outs["scatter"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = val.summarize(
        config, {}, outs["scores"], None, tmp_path / "s.json", tmp_path / "s.csv", notes=["x"]
    )
    rows = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    assert rows.loc["magt_rmse_c", "published_low"] == 1.3
    assert rows.loc["magt_rmse_c", "published_high"] == 2.0
    assert summary["notes"] == ["x"] and summary["points"]["n_points"] == 3
