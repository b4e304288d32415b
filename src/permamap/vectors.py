"""Class polygons (ground class, stability, zones, degradation, ...) as GeoPackage layers.

Every class raster of a run (a product with ``categories`` in :data:`permamap.products.PRODUCTS`)
becomes one polygon layer:

* ``vectors/baseline.gpkg``: one layer per baseline class product (``class``, ``stability``,
  ``zone``, ...);
* ``vectors/<scenario>.gpkg``: one layer per class product and horizon (``class_2050``,
  ``degradation_2050``, ...).

Fields: ``class_code`` (int), ``class_name``, ``product``, ``scenario`` (``baseline`` or the
scenario key), ``label`` (e.g. ``SSP2-4.5``), ``horizon`` (year; the baseline's is
``climate.baseline_year``), ``warming_c`` (air warming vs the baseline, C), ``area_km2``.
CRS EPSG:4326 like the rasters.

How the polygons are made
-------------------------
1. **Read** the class raster, decimated when it is larger than ``deliverables.vectors.max_px``
   (default 4096) on its long side: the read then comes from the COG's overviews (mode
   resampling for class products), so memory (at most max_px^2 bytes plus the polygons) and the
   polygon count are bounded whatever the region size. A block-wise trace was rejected because
   polygons cut at block edges would have to be dissolved again across blocks, which needs the
   whole coverage in memory anyway. At the default, a 30 m run of the whole plateau margin
   (about 30,000 px) is traced at about 8 x 30 m = 240 m; the effective cell size is written
   in each layer's description.
2. **Trace** connected pixels of one code (4-connectivity) with GDAL's polygonize
   (``rasterio.features.shapes``).
3. **Simplify** the pixel staircase with GEOS coverage simplification
   (``shapely.coverage_simplify``, Visvalingam-Whyatt on shared edges): neighbouring polygons
   keep a common boundary, so no gaps or overlaps appear. Tolerance
   ``deliverables.vectors.simplify_px`` cells (default 1.0): triangles with an area below about
   one cell are removed, i.e. one-pixel stair steps become straight or diagonal edges; a polygon
   is never removed (at most reduced to a triangle). 0 keeps the exact pixel outlines.
4. **Repair**: ``shapely.make_valid`` (a no-op on valid coverages, a guard otherwise).
5. **Area** on the WGS 84 ellipsoid: pyproj ``Geod.geometry_area_perimeter`` after densifying
   edges to one cell (pixel edges follow parallels, not geodesics; densified, the difference is
   negligible). Unsimplified polygons reproduce the raster's class areas (``tables/areas.csv``,
   Snyder 1987 eq. 3-12 per pixel row) to about 1e-6; simplification moves a class's area by
   well under 1 % (checked in the tests).

Each GeoPackage also holds a ``layer_styles`` table (QGIS's convention) with a categorized style
per layer as the default, so QGIS opens the layers with the raster's colours and class names.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import numpy as np

from .products import PRODUCTS, Product
from .rasterio_io import atomic_path, file_timestamp

log = logging.getLogger(__name__)

DEFAULT_MAX_PX = 4096
DEFAULT_SIMPLIFY_PX = 1.0
GEOMETRY_COLUMN = "geom"
GPKG_VERSION = "1.2"  # GeoPackage 1.2: read without warnings by older GDAL/QGIS (e.g. QGIS 3.22)
FIELDS = [
    "class_code",
    "class_name",
    "product",
    "scenario",
    "label",
    "horizon",
    "warming_c",
    "area_km2",
]


def read_class_raster(path, max_px: int = DEFAULT_MAX_PX):
    """(codes uint8 array, affine transform, nodata, decimation factor) of a class raster.

    Read at full resolution when it fits in ``max_px`` on the long side, else decimated with
    mode resampling (GDAL takes the COG's mode overviews).
    """
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        f = max(1, math.ceil(max(src.width, src.height) / max_px))
        if f == 1:
            data = src.read(1)
            transform = src.transform
        else:
            shape = (max(1, math.ceil(src.height / f)), max(1, math.ceil(src.width / f)))
            data = src.read(1, out_shape=shape, resampling=Resampling.mode)
            transform = src.transform @ src.transform.scale(
                src.width / shape[1], src.height / shape[0]
            )
        return data, transform, src.nodata, f


def trace_polygons(data: np.ndarray, transform, nodata) -> tuple[np.ndarray, np.ndarray]:
    """(shapely polygons, class codes) of the connected regions of ``data`` (4-connectivity)."""
    import shapely
    from rasterio.features import shapes

    mask = np.ones(data.shape, bool) if nodata is None else data != nodata
    geoms, codes = [], []
    for geom, value in shapes(data, mask=mask, transform=transform, connectivity=4):
        geoms.append(shapely.geometry.shape(geom))
        codes.append(int(value))
    return np.array(geoms, dtype=object), np.array(codes, dtype=np.int64)


def simplify_coverage(geoms: np.ndarray, tolerance_deg: float) -> np.ndarray:
    """Coverage-preserving Visvalingam-Whyatt simplification, then ``make_valid``."""
    import shapely

    if len(geoms) == 0:
        return geoms
    out = shapely.coverage_simplify(geoms, tolerance_deg) if tolerance_deg > 0 else geoms
    out = shapely.make_valid(out)
    # make_valid may return a GeometryCollection around a polygon; keep the polygonal part
    bad = ~np.isin(shapely.get_type_id(out), (3, 6))
    if bad.any():
        out[bad] = [
            shapely.union_all([g for g in shapely.get_parts(x) if shapely.get_type_id(g) in (3, 6)])
            for x in out[bad]
        ]
    return out


def geodesic_area_km2(geoms, max_segment_deg: float) -> np.ndarray:
    """Area (km^2) of each lon/lat polygon on the WGS 84 ellipsoid (pyproj Geod, Karney 2013),
    edges densified to ``max_segment_deg`` first so parallels are followed."""
    import shapely
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    dense = shapely.segmentize(
        shapely.orient_polygons(np.asarray(geoms, dtype=object)), max_segment_deg
    )
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in dense])


def class_polygons(
    path,
    product: Product,
    *,
    max_px: int = DEFAULT_MAX_PX,
    simplify_px: float = DEFAULT_SIMPLIFY_PX,
    attrs: dict | None = None,
):
    """GeoDataFrame of the class polygons of one raster, and a one-line layer description."""
    import geopandas as gpd

    data, transform, nodata, factor = read_class_raster(path, max_px)
    cell = abs(transform.a)
    geoms, codes = trace_polygons(data, transform, nodata)
    del data
    geoms = simplify_coverage(geoms, simplify_px * cell)
    areas = geodesic_area_km2(geoms, cell) if len(geoms) else np.empty(0)
    names = [product.categories.get(c, (f"code {c}",))[0] for c in codes]
    attrs = attrs or {}
    df = gpd.GeoDataFrame(
        {
            "class_code": codes.astype("int32"),
            "class_name": names,
            "product": product.name,
            "scenario": attrs.get("scenario", "baseline"),
            "label": attrs.get("label", "baseline"),
            "horizon": np.full(len(codes), attrs.get("horizon", 0), dtype="int32"),
            "warming_c": np.full(len(codes), float(attrs.get("warming_c", 0.0))),
            "area_km2": np.round(areas, 6),
        },
        geometry=list(geoms),
        crs="EPSG:4326",
    )
    desc = (
        f"{product.description}. Polygons traced from {Path(path).name} at "
        f"{cell:.6g} deg ({'full resolution' if factor == 1 else f'decimated x{factor} by mode'}),"
        f" coverage-simplified at {simplify_px:g} cell(s) = {simplify_px * cell:.3g} deg; "
        "area_km2 on the WGS 84 ellipsoid."
    )
    return df, desc


def layer_name(product: str, horizon=None) -> str:
    return product if horizon in (None, "") else f"{product}_{horizon}"


def parse_layer_name(name: str) -> tuple[str, str | None]:
    """Inverse of :func:`layer_name`: (product, horizon or None)."""
    head, _, tail = name.rpartition("_")
    if head and tail.isdigit() and head in PRODUCTS:
        return head, tail
    return name, None


def write_gpkg(out_path, layers: dict) -> None:
    """Write ``{layer name: (GeoDataFrame, description)}`` to one GeoPackage, atomically, with a
    QGIS default style per layer in ``layer_styles``."""
    import pandas as pd
    import pyogrio

    from .errors import InputDataError
    from .styles import vector_qml

    if not layers:
        raise InputDataError(
            f"{out_path}: no class raster to trace (class products are those with categories "
            "in permamap.products.PRODUCTS)"
        )
    with atomic_path(out_path, suffix=".part.gpkg") as tmp, _fixed_gpkg_date():
        tmp.unlink()
        styles = []
        for name, (df, desc) in layers.items():
            pyogrio.write_dataframe(
                df,
                tmp,
                layer=name,
                driver="GPKG",
                append=tmp.exists(),
                promote_to_multi=True,
                geometry_type="MultiPolygon",
                dataset_options={"VERSION": GPKG_VERSION},
                layer_options={"DESCRIPTION": desc, "GEOMETRY_NAME": GEOMETRY_COLUMN},
            )
            product = (
                PRODUCTS[df["product"].iloc[0]] if len(df) else PRODUCTS[parse_layer_name(name)[0]]
            )
            styles.append(
                dict(
                    f_table_catalog="",
                    f_table_schema="",
                    f_table_name=name,
                    f_geometry_column=GEOMETRY_COLUMN,
                    styleName=name,
                    styleQML=vector_qml(product.categories),
                    styleSLD="",
                    useAsDefault=True,
                    description=f"permamap style of {name}",
                    owner="",
                    ui="",
                    update_time="",
                )
            )
        if styles:
            pyogrio.write_dataframe(
                pd.DataFrame(styles), tmp, layer="layer_styles", driver="GPKG", append=True
            )


@contextlib.contextmanager
def _fixed_gpkg_date():
    """GDAL's ``OGR_CURRENT_DATE`` (the ``gpkg_contents.last_change`` it writes) set to
    :func:`permamap.rasterio_io.file_timestamp` while a GeoPackage is written, so reruns give
    the same bytes; the previous value is restored."""
    import pyogrio

    key = "OGR_CURRENT_DATE"
    before = pyogrio.get_gdal_config_option(key)
    pyogrio.set_gdal_config_options({key: file_timestamp().strftime("%Y-%m-%dT%H:%M:%S.000Z")})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({key: before})


def gpkg_layers(gpkg) -> list[tuple[str, str, str, str, str | None]]:
    """(gpkg path, layer, product, scenario, horizon) of every class layer of a GeoPackage."""
    import pyogrio

    out = []
    for name, geom_type in pyogrio.list_layers(gpkg):
        if geom_type is None or name == "layer_styles":
            continue
        product, horizon = parse_layer_name(str(name))
        if product in PRODUCTS:
            out.append((str(gpkg), str(name), product, Path(gpkg).stem, horizon))
    return out


def raster_attrs(config: dict, path) -> dict:
    """scenario/label/horizon/warming_c of a deliverable raster from its tags (config fallback)."""
    import rasterio

    with rasterio.open(path) as src:
        tags = src.tags()
    scen = tags.get("scenario", "baseline")
    if scen == "baseline":
        return dict(
            scenario="baseline",
            label="baseline",
            horizon=int(config["climate"]["baseline_year"]),
            warming_c=0.0,
        )
    horizon = int(tags.get("horizon", Path(path).parent.name))
    if "warming_c" in tags:
        warming = float(tags["warming_c"])
    else:
        from .config import scenario_warming_c

        warming = scenario_warming_c(config, scen)[horizon]
    label = config["scenarios"].get(scen, {}).get("label", scen)
    return dict(scenario=scen, label=label, horizon=horizon, warming_c=warming)


def vectors_for(config: dict, rasters, out_gpkg) -> None:
    """One GeoPackage from class rasters (all of one group: the baseline or one scenario)."""
    from .styles import product_of

    opts = config.get("deliverables", {}).get("vectors", {})
    max_px = int(opts.get("max_px", DEFAULT_MAX_PX))
    simplify_px = float(opts.get("simplify_px", DEFAULT_SIMPLIFY_PX))
    layers = {}
    for path in rasters:
        product = product_of(path)
        if product is None or not product.is_class:
            continue
        attrs = raster_attrs(config, path)
        name = layer_name(
            product.name, None if attrs["scenario"] == "baseline" else attrs["horizon"]
        )
        df, desc = class_polygons(
            path, product, max_px=max_px, simplify_px=simplify_px, attrs=attrs
        )
        log.info("%s: %d polygons from %s", name, len(df), path)
        layers[name] = (df, desc)
    write_gpkg(out_gpkg, layers)


def run_vectors(smk) -> None:
    """Snakemake adapter (rule ``vectors``)."""
    vectors_for(smk.config, [str(p) for p in smk.input.rasters], smk.output[0])
