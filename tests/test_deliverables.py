"""Deliverables for GIS users: QGIS styles and project, class polygons, maps, report, STAC, CLI.

Unit tests use synthetic rasters with analytic answers; the end-to-end tests read the tiny run
of the whole workflow that test_workflow shares (conftest.tiny_run: four tiles, two scenarios x
two horizons) in a temporary directory.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from conftest import snakemake
from rasterio.transform import from_origin

PERMAMAP = str(Path(sys.executable).parent / "permamap")

# WGS 84 (NIMA TR8350.2): semi-major axis and flattening
A_M = 6378137.0
F = 1 / 298.257223563


def band_area_km2(lat1_deg, lat2_deg, dlon_deg):
    """Area of a latitude-longitude box on the WGS 84 ellipsoid, written out here independently
    of permamap.grid: A = a^2 dlon / 2 (q2 - q1) with
    q = (1 - e^2) [sin / (1 - e^2 sin^2) - 1/(2e) ln((1 - e sin) / (1 + e sin))]
    (Snyder 1987, Map Projections - A Working Manual, eq. 3-12); on a sphere (e -> 0)
    q -> 2 sin(lat) and A -> a^2 dlon (sin lat2 - sin lat1)."""
    e2 = F * (2 - F)
    e = math.sqrt(e2)

    def q(lat):
        s = math.sin(math.radians(lat))
        return (1 - e2) * (s / (1 - e2 * s * s) - 1 / (2 * e) * math.log((1 - e * s) / (1 + e * s)))

    return A_M**2 * math.radians(dlon_deg) / 2 * abs(q(lat2_deg) - q(lat1_deg)) / 1e6


def write_class_raster(path, data, west, north, res, product="class", tags=None, nodata=255):
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_origin(west, north, res, res),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype("uint8"), 1)
        dst.update_tags(product=product, **(tags or {}))
    return path


# -- vectors ----------------------------------------------------------------------------------


def test_polygon_areas_equal_the_ellipsoidal_box_areas(tmp_path):
    """Unsimplified polygons of a block of class 1 (with a hole of class 2) inside class 2:
    geodesic polygon areas equal the analytic areas of the lat-lon boxes (Snyder eq. 3-12)."""
    from permamap import vectors
    from permamap.products import PRODUCTS

    res = 0.01
    data = np.full((100, 120), 2, np.uint8)
    data[10:60, 20:100] = 1  # 50 rows x 80 cols
    data[30:40, 50:60] = 2  # hole
    data[90:, :] = 255  # nodata strip: not a polygon
    path = write_class_raster(tmp_path / "class.tif", data, 101.0, 38.0, res)
    df, desc = vectors.class_polygons(path, PRODUCTS["class"], simplify_px=0)
    north = 38.0
    box = band_area_km2(north - 0.60, north - 0.10, 0.80)
    hole = band_area_km2(north - 0.40, north - 0.30, 0.10)
    total = band_area_km2(north - 0.90, north, 1.20)
    got = df.groupby("class_code")["area_km2"].sum()
    assert got[1] == pytest.approx(box - hole, rel=1e-6)
    assert got[2] == pytest.approx(total - box + hole, rel=1e-6)
    assert df.geometry.is_valid.all()
    assert set(df["class_name"]) == {"perennial permafrost", "seasonally frozen ground"}
    assert "full resolution" in desc


def test_coverage_simplification_keeps_a_gapless_coverage(tmp_path):
    """A staircase boundary: simplification removes the stairs but no gap or overlap appears,
    the total area is kept and each class moves by well under 1 %."""
    import shapely

    from permamap import vectors
    from permamap.products import PRODUCTS

    n = 80
    rows, cols = np.indices((n, n))
    data = np.where(cols > rows + 3 * np.sin(rows / 5.0), 1, 2).astype(np.uint8)
    path = write_class_raster(tmp_path / "class.tif", data, 100.0, 37.0, 0.01)
    exact, _ = vectors.class_polygons(path, PRODUCTS["class"], simplify_px=0)
    simple, _ = vectors.class_polygons(path, PRODUCTS["class"], simplify_px=1.0)
    assert (
        shapely.get_num_coordinates(simple.geometry.values).sum()
        < 0.5 * shapely.get_num_coordinates(exact.geometry.values).sum()
    )
    assert simple.geometry.is_valid.all()
    union = shapely.union_all(simple.geometry.values)
    assert union.area == pytest.approx(sum(g.area for g in simple.geometry), rel=1e-9)  # no overlap
    assert union.area == pytest.approx(shapely.union_all(exact.geometry.values).area, rel=1e-9)
    a0 = exact.groupby("class_code")["area_km2"].sum()
    a1 = simple.groupby("class_code")["area_km2"].sum()
    assert ((a1 - a0).abs() / a0 < 0.01).all()
    assert a1.sum() == pytest.approx(a0.sum(), rel=1e-6)


def test_large_rasters_are_traced_from_a_decimated_read(tmp_path):
    from permamap import vectors
    from permamap.products import PRODUCTS

    data = np.full((300, 600), 2, np.uint8)
    data[:, :300] = 1
    path = write_class_raster(tmp_path / "class.tif", data, 100.0, 38.0, 0.005)
    codes, transform, nodata, factor = vectors.read_class_raster(path, max_px=256)
    assert factor == 3 and codes.shape == (100, 200)
    assert transform.a == pytest.approx(0.015) and transform.c == 100.0 and transform.f == 38.0
    df, desc = vectors.class_polygons(path, PRODUCTS["class"], max_px=256)
    got = df.groupby("class_code")["area_km2"].sum()
    half = band_area_km2(36.5, 38.0, 1.5)
    assert got[1] == pytest.approx(half, rel=1e-6) and got[2] == pytest.approx(half, rel=1e-6)
    assert "decimated x3" in desc


# -- styles -----------------------------------------------------------------------------------


def _ramp_items(qml_text):
    root = ET.fromstring(qml_text.split("\n", 1)[1])
    return root, [(float(i.get("value")), i.get("color")) for i in root.iter("item")]


def test_magt_ramp_is_centred_on_zero_with_colorbrewer_white():
    """The MAGT ramp has a stop at exactly 0 C in RdBu's neutral colour (ColorBrewer RdBu centre
    #f7f7f7), blue below and red above, from asymmetric data limits."""
    from permamap.products import PRODUCTS
    from permamap.styles import RAMPS, ramp_limits, raster_qml

    values = np.concatenate([np.linspace(-2.4, 0, 50), np.linspace(0, 11.0, 200)])
    lo, hi = ramp_limits(RAMPS["magt"], values)
    assert lo < -2.3 and hi > 10.9 and lo > -4 and hi < 16
    root, items = _ramp_items(raster_qml(PRODUCTS["magt"], (lo, hi)))
    assert root.find(".//rasterrenderer").get("type") == "singlebandpseudocolor"
    values = [v for v, _ in items]
    assert values == sorted(values) and values[0] == lo and values[-1] == hi
    zero = [c for v, c in items if v == 0.0]
    assert len(zero) == 1
    rgb = [int(zero[0][i : i + 2], 16) for i in (1, 3, 5)]
    assert all(abs(c - 0xF7) <= 3 for c in rgb)
    first, last = items[0][1], items[-1][1]
    assert int(first[5:7], 16) > int(first[1:3], 16)  # blue end is cold
    assert int(last[1:3], 16) > int(last[5:7], 16)  # red end is warm


def test_a_new_class_product_is_styled_traced_and_catalogued(tmp_path, monkeypatch, config):
    """A class product added to the product table (here a stand-in for degradation maps) gets a
    paletted .qml, a GeoPackage layer with its names, and STAC classification classes."""
    import pyogrio

    from permamap import products, stac, styles, vectors

    cats = {1: ("persisting", (33, 102, 172)), 2: ("thawed", (215, 48, 39))}
    monkeypatch.setitem(
        products.PRODUCTS,
        "degradation_test",
        products.Product(
            "degradation_test",
            "uint8",
            255,
            "class",
            "Degradation (test)",
            categories=cats,
            resampling="mode",
        ),
    )
    scen = next(iter(config["scenarios"]))
    h = config["horizons"][0]
    d = tmp_path / "results" / config["run"] / "scenarios" / scen / str(h)
    d.mkdir(parents=True)
    data = np.ones((40, 40), np.uint8)
    data[:, 25:] = 2
    tif = write_class_raster(
        d / "degradation_test.tif",
        data,
        101.0,
        37.0,
        0.01,
        product="degradation_test",
        tags={"scenario": scen, "horizon": str(h), "warming_c": "1.5"},
    )
    styles.write_raster_styles([tif])
    root = ET.fromstring(tif.with_suffix(".qml").read_text().split("\n", 1)[1])
    entries = {
        int(e.get("value")): (e.get("label"), e.get("color")) for e in root.iter("paletteEntry")
    }
    assert entries == {1: ("1 persisting", "#2166ac"), 2: ("2 thawed", "#d73027")}

    gpkg = tmp_path / "results" / config["run"] / "vectors" / f"{scen}.gpkg"
    vectors.vectors_for(config, [tif], gpkg)
    layer = f"degradation_test_{h}"
    df = pyogrio.read_dataframe(gpkg, layer=layer)
    assert set(df["class_name"]) == {"persisting", "thawed"}
    assert set(df["scenario"]) == {scen} and set(df["horizon"]) == {h}
    assert set(df["warming_c"]) == {1.5}

    results = tmp_path / "results" / config["run"]
    cat = stac.build_catalog(config, results, [tif], vectors=[gpkg])
    item = next(iter(cat.get_items(recursive=True)))
    assert item.id == f"{scen}-{h}"
    classes = item.assets["degradation_test"].extra_fields["classification:classes"]
    assert [(c["value"], c["description"], c["color_hint"]) for c in classes] == [
        (1, "persisting", "2166AC"),
        (2, "thawed", "D73027"),
    ]
    assert layer in item.assets["zones"].description


# -- maps -------------------------------------------------------------------------------------


def test_hillshade_of_planes_matches_the_lambert_formula():
    """A plane facing the light (NW) of slope s is lit cos(45 - s); one facing away (SE)
    cos(45 + s) (sun 45 degrees high)."""
    from permamap.plots import hillshade

    s = math.radians(20)
    n = 50
    # extent of 0.5 degrees at 37 N; build z in metres so the slope is exact in metres
    ext = [101.0, 101.5, 36.75, 37.25]
    dx = 0.5 / n * 111_320.0 * math.cos(math.radians(37.0))
    dy = 0.5 / n * 110_574.0
    rows, cols = np.indices((n, n))
    # descent towards the NW: z rises to the east (cols) and to the south (rows)
    k = math.tan(s) / math.sqrt(2)
    z_nw = 3000 + k * (cols * dx + rows * dy)
    lit = hillshade(z_nw, ext, exaggeration=1.0)[5:-5, 5:-5]
    assert lit == pytest.approx(math.cos(math.radians(45) - s), abs=1e-6)
    dark = hillshade(-z_nw, ext, exaggeration=1.0)[5:-5, 5:-5]
    assert dark == pytest.approx(math.cos(math.radians(45) + s), abs=1e-6)


def test_scale_bar_length_matches_the_geodesic_distance():
    """The bar drawn for L km spans L km along the map's centre parallel (pyproj geodesic)
    within 0.5 %."""
    import matplotlib.pyplot as plt
    from pyproj import Geod

    from permamap.plots import add_scale_bar, setup_map_axes

    ext = [99.5, 103.5, 35.0, 39.0]
    fig, ax = plt.subplots()
    setup_map_axes(ax, ext)
    km = add_scale_bar(ax, ext)
    bars = [
        p
        for p in ax.patches
        if p.get_height() < 0.1
        and p.get_facecolor()[:3] in ((0, 0, 0), (1, 1, 1))
        and p.get_edgecolor()[:3] == (0, 0, 0)
    ]
    x0 = min(p.get_x() for p in bars)
    x1 = max(p.get_x() + p.get_width() for p in bars)
    plt.close(fig)
    _, _, dist = Geod(ellps="WGS84").inv(x0, 37.0, x1, 37.0)
    assert km in (50, 100, 20) and dist / 1000 == pytest.approx(km, rel=5e-3)


# -- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tiny_run):
    """The shared tiny run of the whole workflow (conftest.tiny_run: four tiles, 2 scenarios x
    2 horizons)."""
    return tiny_run


@pytest.fixture(scope="module")
def report(tiny_run):
    """``snakemake --report`` of the shared tiny run (writes report.html beside it)."""
    return snakemake(tiny_run["work"], "--cores", "1", "--report", "report.html", timeout=600)


def _rasters(out: Path):
    return sorted(out.rglob("*.tif"))


def test_every_raster_is_a_cog_with_style_tags_and_colours(run):
    from rio_cogeo.cogeo import cog_validate

    from permamap.products import PRODUCTS
    from permamap.styles import product_of

    rasters = _rasters(run["out"])
    assert len(rasters) >= 9 + 2 * 2 * 2
    for path in rasters:
        ok, errors, _ = cog_validate(str(path))
        assert ok, (path, errors)
        with rasterio.open(path) as src:
            tags = src.tags()
            assert tags["permamap_version"] and tags["config_hash"], path
            assert src.nodata is not None and src.descriptions[0] and src.units[0], path
            assert src.overviews(1) or max(src.width, src.height) <= 512, path
            product = product_of(path)  # the table's entry, or derived from the file
            qml = path.with_suffix(".qml")
            assert qml.exists(), f"no style beside {path}"
            root = ET.fromstring(qml.read_text().split("\n", 1)[1])
            renderer = root.find(".//rasterrenderer")
            if product.is_class:
                # the style's palette is the GeoTIFF's own colour table (read back by GDAL)
                cmap = src.colormap(1)
                assert renderer.get("type") == "paletted"
                entries = list(root.iter("paletteEntry"))
                assert {int(e.get("value")) for e in entries} == set(product.categories)
                for e in entries:
                    r, g, b, _ = cmap[int(e.get("value"))]
                    assert e.get("color") == f"#{r:02x}{g:02x}{b:02x}", (path, e.attrib)
                    if path.stem in PRODUCTS:  # mosaics tag every class name
                        assert tags[f"class_{e.get('value')}"] in e.get("label")
            else:
                assert renderer.get("type") == "singlebandpseudocolor", path


def test_qgis_project_references_every_layer_relatively(run):
    out = run["out"]
    qgz = out / "permamap.qgz"
    with zipfile.ZipFile(qgz) as z:
        names = z.namelist()
        assert names == ["permamap.qgs"]
        text = z.read("permamap.qgs").decode()
    root = ET.fromstring(text.split("\n", 1)[1])
    sources = [m.findtext("datasource") for m in root.iter("maplayer")]
    ids = [m.findtext("id") for m in root.iter("maplayer")]
    assert len(ids) == len(set(ids))
    tree_ids = {n.get("id") for n in root.iter("layer-tree-layer")}
    assert tree_ids == set(ids)
    rasters = {p.relative_to(out).as_posix() for p in _rasters(out)}
    in_project = set()
    for src in sources:
        assert src.startswith("./"), src
        path = src.split("|")[0]
        assert (out / path).exists(), src
        in_project.add(path[2:])
    assert rasters <= in_project
    assert root.find(".//properties/Paths/Absolute").text == "false"


def test_geopackages_open_with_areas_matching_the_area_table(run):
    import pyogrio

    out, cfg = run["out"], run["cfg"]
    areas = pd.read_csv(out / "tables" / "areas.csv")
    if "product" in areas.columns:  # should the table grow rows of other class products
        areas = areas[areas["product"] == "class"]
    sets = {"baseline": [("class", None)]}
    for s in cfg["scenarios"]:
        sets[s] = [("class", h) for h in cfg["horizons"]]
    for name, layers in sets.items():
        gpkg = out / "vectors" / f"{name}.gpkg"
        listed = {str(n) for n, _ in pyogrio.list_layers(gpkg)}
        assert "layer_styles" in listed
        styles = pyogrio.read_dataframe(gpkg, layer="layer_styles")
        assert styles["useAsDefault"].all()
        for product, h in layers:
            layer = product if h is None else f"{product}_{h}"
            assert layer in listed
            df = pyogrio.read_dataframe(gpkg, layer=layer)
            assert df.crs.to_epsg() == 4326
            assert df.geometry.is_valid.all() and not df.geometry.is_empty.any()
            for col in (
                "class_code",
                "class_name",
                "scenario",
                "label",
                "horizon",
                "warming_c",
                "area_km2",
            ):
                assert col in df.columns
            table = areas[
                (areas.scenario == name)
                & (areas.horizon == (h if h else cfg["climate"]["baseline_year"]))
            ]
            total = table["area_km2"].sum()
            got = df.groupby("class_code")["area_km2"].sum()
            for code, expected in zip(table["class_code"], table["area_km2"], strict=True):
                # simplification at one cell moves a class by well under 1 % of the region
                assert got.get(code, 0.0) == pytest.approx(expected, abs=0.01 * total), (
                    layer,
                    code,
                )
            assert got.sum() == pytest.approx(total, rel=1e-4), layer
    # the baseline GeoPackage also holds the other class products (stability, zones, ...)
    base_layers = {str(n) for n, _ in pyogrio.list_layers(out / "vectors" / "baseline.gpkg")}
    assert {"class", "stability"} <= base_layers


def _png_size(path: Path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_every_png_is_rendered(run):
    import matplotlib.image as mpimg

    out, cfg = run["out"], run["cfg"]
    expected = [
        "baseline_magt",
        "baseline_class",
        "baseline_stability",
        "scenarios_class",
        "areas_vs_warming",
    ]
    expected += [f"scenarios/{s}_{h}" for s in cfg["scenarios"] for h in cfg["horizons"]]
    for name in expected:
        png = out / "figures" / f"{name}.png"
        w, h = _png_size(png)
        assert 700 <= w <= 2500 and 600 <= h <= 2500, (name, w, h)
        img = mpimg.imread(png)[..., :3]
        rgb = (img.reshape(-1, 3) * 255).astype(np.uint32)
        colours = np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2])  # distinct RGB triples
        assert len(colours) > 50, name  # more than a blank canvas and some text
        assert img.std() > 0.05, name
    # a map: the class colours of the colour table are there (shaded, so hue-wise near them)
    img = (mpimg.imread(out / "figures" / "baseline_class.png")[..., :3] * 255).astype(int)
    blue = (img[..., 2] > img[..., 0] + 60) & (img[..., 2] > 100)
    green = (img[..., 1] > img[..., 0] + 25) & (img[..., 1] > img[..., 2] + 25)
    assert blue.sum() > 1000 and green.sum() > 1000


def test_report_is_built_and_self_contained(run, report):
    rep = report
    assert rep.returncode == 0, rep.stderr[-3000:]
    html = (run["work"] / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    # figures are embedded, not linked
    assert not re.search(r"""<(?:script|link|img)[^>]+(?:src|href)=["']https?://""", html)
    for caption in (
        "lower limit of perennial",
        "Area of perennial permafrost against air warming",
        "Ground class for every warming scenario",
    ):
        assert caption in html, caption


def test_stac_catalog_validates(run):
    """Every object validates against the STAC 1.1 core schemas (pystac's bundled copies,
    offline); the extension fields are checked against the rules of the extension specs
    (projection v2, raster v1.1, classification v2), whose JSON schemas need the network."""
    import pystac

    from permamap import stac

    out = run["out"]
    catalog_json = out / "stac" / "catalog.json"
    n_objects = stac.validate_catalog(catalog_json)
    cat = pystac.read_file(str(catalog_json))
    items = {it.id: it for it in cat.get_items(recursive=True)}
    assert n_objects == 1 + 1 + len(items)  # catalog, collection, items
    # one item per folder of rasters (other stages may add folders, e.g. validation)
    folders = {p.relative_to(out).parts[0] for p in _rasters(out)} - {"scenarios"}
    scenario_items = {"ssp245-2050", "ssp245-2100", "ssp585-2050", "ssp585-2100"}
    assert set(items) == folders | scenario_items
    assert {"terrain", "climate", "baseline"} <= folders
    dtypes = {
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "cint16",
        "cint32",
        "cfloat32",
        "cfloat64",
        "other",
    }
    for it in items.values():
        p = it.properties
        assert re.fullmatch(r"EPSG:\d+", p["proj:code"])
        assert len(p["proj:shape"]) == 2 and all(isinstance(v, int) for v in p["proj:shape"])
        assert len(p["proj:transform"]) in (6, 9)
        for key, asset in it.assets.items():
            href = Path(asset.get_absolute_href())
            assert href.exists(), (it.id, key, href)
            if asset.media_type == pystac.MediaType.COG:
                (band,) = asset.extra_fields["raster:bands"]
                assert band["data_type"] in dtypes and band["spatial_resolution"] > 0
                for c in asset.extra_fields.get("classification:classes", []):
                    assert isinstance(c["value"], int)
                    assert re.fullmatch(r"[0-9A-Za-z_-]+", c["name"])
                    assert re.fullmatch(r"[0-9A-Fa-f]{6}", c["color_hint"])
    scen = items["ssp585-2100"]
    assert scen.properties["permamap:warming_c"] == pytest.approx(0.74 * (2100 - 1995) / 10)
    assert scen.assets["map"].href.endswith("ssp585_2100.png")
    assert items["baseline"].properties["start_datetime"].startswith("1981")
    assert {"class", "class_style", "magt", "zones"} <= set(items["baseline"].assets)


# -- command line -----------------------------------------------------------------------------


def test_cli_help_lists_the_common_tasks():
    proc = subprocess.run([PERMAMAP, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for cmd in ("run", "dry-run", "outputs", "report", "show-config", "validate-config", "where"):
        assert re.search(rf"^\s+{cmd}\s", proc.stdout, re.M), cmd


def test_cli_config_commands_merge_over_the_default(repo, tmp_path):
    part = tmp_path / "my.yaml"
    part.write_text("ground:\n  ttop:\n    n_thawing: 1.2\n")
    proc = subprocess.run(
        [PERMAMAP, "show-config", "--configfile", str(part), "--key", "ground.ttop"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)["ground.ttop"]
    assert shown["n_thawing"] == 1.2 and shown["n_freezing"] == 0.7  # merged, not replaced
    proc = subprocess.run(
        [PERMAMAP, "validate-config", "--configfile", str(part)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "valid (4 tiles" in proc.stdout
    part.write_text("deliverables:\n  vectors:\n    simplify_px: -1\n")
    proc = subprocess.run(
        [PERMAMAP, "validate-config", "--configfile", str(part)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "deliverables.vectors.simplify_px = -1 is out of range; must be >= 0" in proc.stderr


def test_cli_outputs_lists_every_deliverable_with_its_status(run):
    proc = subprocess.run(
        [PERMAMAP, "outputs"], cwd=run["work"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for rel in (
        "baseline/class.tif",
        "permamap.qgz",
        "vectors/baseline.gpkg",
        "stac/catalog.json",
        "figures/areas_vs_warming.png",
        "tables/areas.csv",
    ):
        line = next((ln for ln in lines if ln.split()[:1] == [rel]), None)
        assert line is not None and " ok " in line, rel
    assert "1 perennial permafrost" in next(
        ln for ln in lines if ln.split()[:1] == ["baseline/class.tif"]
    )


def test_stac_and_styles_json_is_parseable(run):
    data = json.loads((run["out"] / "stac" / "catalog.json").read_text())
    assert data["type"] == "Catalog" and data["stac_version"] == "1.1.0"


def test_geopackage_and_qgz_are_byte_identical_when_rewritten(tmp_path, monkeypatch):
    """The formats' own timestamps (gpkg_contents.last_change, the zip entry's date) are
    rasterio_io.file_timestamp, not the clock: written again later, the same bytes. With
    SOURCE_DATE_EPOCH the stamp is that date; a malformed value is one readable error."""
    import sqlite3
    import time
    import zipfile

    from permamap import vectors
    from permamap.errors import InputDataError
    from permamap.products import PRODUCTS
    from permamap.styles import write_qgz

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    data = np.full((20, 30), 2, np.uint8)
    data[5:12, 4:20] = 1
    path = write_class_raster(tmp_path / "class.tif", data, 101.0, 38.0, 0.01)
    layers = {"class": vectors.class_polygons(path, PRODUCTS["class"], simplify_px=0)}

    def write_both(tag):
        d = tmp_path / tag  # the same file names (the qgz entry is named after its file)
        d.mkdir()
        vectors.write_gpkg(d / "x.gpkg", layers)
        write_qgz(d / "x.qgz", "<qgis/>\n")
        time.sleep(1.1)  # the zip clock has 2-second steps, GDAL's milliseconds
        return [(d / f"x.{ext}").read_bytes() for ext in ("gpkg", "qgz")]

    assert write_both("a") == write_both("b") == write_both("c")
    with sqlite3.connect(tmp_path / "a" / "x.gpkg") as db:
        stamps = {r[0] for r in db.execute("select last_change from gpkg_contents")}
    assert stamps == {"1980-01-01T00:00:00.000Z"}

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14T22:13:20Z
    vectors.write_gpkg(tmp_path / "d.gpkg", layers)
    write_qgz(tmp_path / "d.qgz", "<qgis/>\n")
    with sqlite3.connect(tmp_path / "d.gpkg") as db:
        stamps = {r[0] for r in db.execute("select last_change from gpkg_contents")}
    assert stamps == {"2023-11-14T22:13:20.000Z"}
    with zipfile.ZipFile(tmp_path / "d.qgz") as z:
        assert z.infolist()[0].date_time == (2023, 11, 14, 22, 13, 20)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InputDataError, match="SOURCE_DATE_EPOCH='yesterday'"):
        write_qgz(tmp_path / "e.qgz", "<qgis/>\n")
    assert not (tmp_path / "e.qgz").exists()
