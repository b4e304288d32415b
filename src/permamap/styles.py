"""QGIS layer styles (``.qml``) beside every raster, styles inside the GeoPackages, a ``.qgz``.

How a new user loads everything
-------------------------------
* Drag the results folder (or any ``.tif``) into QGIS: QGIS applies ``<name>.qml`` found beside
  ``<name>.tif`` as the layer's default style, so every raster opens styled (class palettes with
  names, MAGT on a blue-red ramp centred on 0 C, ...).
* Drag a ``vectors/*.gpkg`` into QGIS: its polygons open styled too, because the style is stored
  in the GeoPackage's ``layer_styles`` table (QGIS's own convention) as the default style.
* Or open ``results/<run>/permamap.qgz``: one project with every raster and vector layer in
  groups (baseline, scenarios x horizons, climate, terrain, vector zones) over a hillshade, the
  baseline ground class shown, the rest ready to be ticked. Paths in it are relative, so the
  results folder can be moved or zipped and sent.

Everything is driven by the product table (:data:`permamap.products.PRODUCTS`): a product with
``categories`` gets a paletted style with the category names and colours of the colour table;
any other product gets a colour ramp (:data:`RAMPS`, or by units: ``degC`` -> diverging ramp
centred on 0 C; ``percent`` -> 0-100 %; anything else -> viridis over the 2-98 % range of the
data). A product added to the table is styled without touching this module.

The XML is written with :mod:`xml.etree.ElementTree` in the QGIS 3 format (``<pipe>`` with a
``paletted`` or ``singlebandpseudocolor`` renderer; ``renderer-v2`` ``categorizedSymbol`` for
vectors); it is checked by loading the files in QGIS 3.22 (see the README).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from .products import PRODUCTS, Product
from .rasterio_io import atomic_path, file_timestamp, read_physical

QGIS_VERSION = "3.22.0-Białowieża"
DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
STATS_MAX_PX = 1024  # rasters are read at most this size (from overviews) for ramp limits


@dataclass(frozen=True)
class Ramp:
    """A continuous colour ramp: a matplotlib colormap name, its centre value (or None) and
    fixed limits (or None for limits from the data)."""

    cmap: str
    centre: float | None = None
    limits: tuple[float, float] | None = None


# Ramps for the continuous products; others follow their units (:func:`ramp_for`).
# Limits and pseudocolour thresholds are physical values (:func:`sample_values`). For a scaled
# product (MAGT: int16 in 0.01 degC) that is what QGIS renders too: its GDAL provider applies the
# band's scale and offset to every block it reads (QgsGdalProvider::block ->
# QgsRasterBlock::applyScaleOffset, QGIS PR #1252, 2014) and reports the band as Float32, so the
# .qml thresholds stay in degC, not hundredths.
RAMPS = {
    "magt": Ramp("RdBu_r", centre=0.0),
    "maat": Ramp("RdBu_r", centre=0.0),
    "elevation": Ramp("gist_earth"),
    "slope": Ramp("YlOrRd", limits=None),
    "aspect": Ramp("twilight", limits=(0.0, 360.0)),
    "solar": Ramp("PuOr_r", centre=1.0),
    "fdd": Ramp("Blues"),
    "tdd": Ramp("OrRd"),
    "alt": Ramp("YlOrBr"),
    "freeze_depth": Ramp("PuBu"),
    "probability": Ramp("Blues", limits=(0.0, 100.0)),
}


def ramp_for(product: Product) -> Ramp:
    """The ramp of a continuous product: :data:`RAMPS`, else by units."""
    if product.name in RAMPS:
        return RAMPS[product.name]
    if product.units == "degC":
        return Ramp("RdBu_r", centre=0.0)
    if product.units == "percent":
        return Ramp("viridis", limits=(0.0, 100.0))
    return Ramp("viridis")


def product_of(raster_path) -> Product | None:
    """The product of a deliverable raster: the table's entry for its ``product`` tag or file
    name; for a raster the table does not know (e.g. a validation map), a product derived from
    the file itself (a class product when it has a colour table: codes with a colour or a
    ``class_<code>`` tag, named by those tags). None if the file cannot be read."""
    import rasterio

    name = Path(raster_path).stem
    try:
        with rasterio.open(raster_path) as src:
            tags = src.tags()
            name = tags.get("product", name)
            if name in PRODUCTS:
                return PRODUCTS[name]
            return derived_product(src, name, tags)
    except rasterio.errors.RasterioIOError:
        return PRODUCTS.get(name)


def derived_product(src, name: str, tags: dict) -> Product:
    """A :class:`Product` read from an open raster (colour table -> categories)."""
    categories = {}
    try:
        cmap = src.colormap(1)
    except ValueError:
        cmap = {}
    for code, rgba in cmap.items():
        label = tags.get(f"class_{code}")
        if code != src.nodata and (label is not None or rgba[3] > 0 and any(rgba[:3])):
            categories[int(code)] = (label or str(code), tuple(int(c) for c in rgba[:3]))
    desc = (src.descriptions[0] if src.descriptions else None) or name
    unit = (src.units[0] if src.units else None) or ("class" if categories else "")
    return Product(
        name,
        src.dtypes[0],
        src.nodata,
        unit,
        desc,
        categories=categories,
        resampling="mode" if categories else "average",
        scale=float(src.scales[0]),
        offset=float(src.offsets[0]),
    )


def _label(code, name) -> str:
    return str(code) if str(name) == str(code) else f"{code} {name}"


def hex_colour(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb[:3]))


# -- ramp limits ------------------------------------------------------------------------------


def sample_values(raster_path, max_px: int = STATS_MAX_PX) -> np.ndarray:
    """Valid physical values (scale and offset applied: MAGT in degC) of a raster read at most
    ``max_px`` on the long side (uses COG overviews)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(raster_path) as src:
        f = max(1, math.ceil(max(src.width, src.height) / max_px))
        shape = (max(1, src.height // f), max(1, src.width // f))
        values = read_physical(src, 1, out_shape=shape, resampling=Resampling.nearest)
    return values[np.isfinite(values)]


def nice_number(x: float, *, up: bool = True) -> float:
    """Round |x| up (or down) to 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^n, keeping the sign."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    sign = math.copysign(1.0, x)
    a = abs(x)
    e = 10.0 ** math.floor(math.log10(a))
    steps = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
    if (sign > 0) == up:
        m = next(s for s in steps if s * e >= a * (1 - 1e-12))
    else:
        m = next(s for s in reversed(steps) if s * e <= a * (1 + 1e-12)) if a >= e else 1.0
    return sign * m * e


def ramp_limits(ramp: Ramp, values: np.ndarray) -> tuple[float, float]:
    """Limits of a ramp: fixed ones, or the 2-98 % range of ``values`` rounded outwards to nice
    numbers. A ramp with a centre (MAGT: 0 C) keeps the centre inside, each side at least a
    fifth of the other, so the neutral colour always marks the centre (see :func:`ramp_stops`)."""
    if ramp.limits is not None:
        return ramp.limits
    if values.size == 0:
        return (0.0, 1.0) if ramp.centre is None else (ramp.centre - 1.0, ramp.centre + 1.0)
    lo, hi = (float(v) for v in np.percentile(values, [2, 98]))
    if ramp.centre is not None:
        c = ramp.centre
        below, above = max(c - lo, 0.0), max(hi - c, 0.0)
        big = max(below, above, 1e-6)
        return c - nice_number(max(below, big / 5)), c + nice_number(max(above, big / 5))
    if hi <= lo:
        hi = lo + 1.0
    return nice_number(lo, up=False), nice_number(hi, up=True)


def ramp_stops(ramp: Ramp, vmin: float, vmax: float, n: int = 9) -> list[tuple[float, str]]:
    """``n`` (value, colour) stops of the ramp between ``vmin`` and ``vmax``; with a centre the
    middle stop sits on it (two-slope: each half of the colormap spans one side)."""
    from matplotlib import colormaps

    cmap = colormaps[ramp.cmap]
    if ramp.centre is not None and vmin < ramp.centre < vmax:
        half = n // 2
        left = np.linspace(vmin, ramp.centre, half + 1)
        right = np.linspace(ramp.centre, vmax, n - half)[1:]
        values = np.concatenate([left, right])
        pos = np.concatenate([np.linspace(0, 0.5, half + 1), np.linspace(0.5, 1, n - half)[1:]])
    else:
        values = np.linspace(vmin, vmax, n)
        pos = np.linspace(0, 1, n)
    return [
        (float(v), hex_colour(np.round(np.array(cmap(p)[:3]) * 255)))
        for v, p in zip(values, pos, strict=True)
    ]


# -- raster styles ----------------------------------------------------------------------------


def _sub(parent, tag, text=None, **attrs) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _minmax_origin(parent) -> None:
    mmo = _sub(parent, "minMaxOrigin")
    for tag, text in (
        ("limits", "None"),
        ("extent", "WholeRaster"),
        ("statAccuracy", "Estimated"),
        ("cumulativeCutLower", "0.02"),
        ("cumulativeCutUpper", "0.98"),
        ("stdDevFactor", "2"),
    ):
        _sub(mmo, tag, text)


def paletted_renderer(parent, categories: dict, opacity: float = 1.0) -> ET.Element:
    """``<rasterrenderer type="paletted">`` with one entry (value, colour, name) per category."""
    r = _sub(
        parent,
        "rasterrenderer",
        type="paletted",
        band=1,
        opacity=opacity,
        alphaBand=-1,
        nodataColor="",
    )
    _sub(r, "rasterTransparency")
    _minmax_origin(r)
    pal = _sub(r, "colorPalette")
    for code in sorted(categories):
        name, rgb = categories[code]
        _sub(
            pal,
            "paletteEntry",
            value=code,
            color=hex_colour(rgb),
            alpha=255,
            label=_label(code, name),
        )
    return r


def pseudocolor_renderer(
    parent, stops: list[tuple[float, str]], units: str, opacity: float = 1.0
) -> ET.Element:
    """``<rasterrenderer type="singlebandpseudocolor">`` with an interpolated ramp."""
    vmin, vmax = stops[0][0], stops[-1][0]
    r = _sub(
        parent,
        "rasterrenderer",
        type="singlebandpseudocolor",
        band=1,
        opacity=opacity,
        alphaBand=-1,
        classificationMin=repr(vmin),
        classificationMax=repr(vmax),
        nodataColor="",
    )
    _sub(r, "rasterTransparency")
    _minmax_origin(r)
    shader = _sub(r, "rastershader")
    span = abs(vmax - vmin)
    prec = 0 if span >= 20 else (1 if span >= 2 else 2)
    crs = _sub(
        shader,
        "colorrampshader",
        colorRampType="INTERPOLATED",
        classificationMode=1,
        clip=0,
        minimumValue=repr(vmin),
        maximumValue=repr(vmax),
        labelPrecision=prec,
    )
    unit = "" if units in ("1", "class", "") else f" {units}"
    for v, colour in stops:
        _sub(crs, "item", alpha=255, value=repr(v), color=colour, label=f"{v:.{prec}f}{unit}")
    return r


def hillshade_renderer(parent, opacity: float = 1.0, exaggeration: float = 3.0) -> ET.Element:
    """``<rasterrenderer type="hillshade">``: light from the north-west at 45 degrees; z factor
    = exaggeration / 111,320 m per degree (elevations in m on a grid in degrees)."""
    return _sub(
        parent,
        "rasterrenderer",
        type="hillshade",
        band=1,
        opacity=opacity,
        alphaBand=-1,
        azimuth=315,
        angle=45,
        zfactor=f"{exaggeration / 111320:.3g}",
        multidirection=0,
        nodataColor="",
    )


def dem_exaggeration(elevation_path) -> float:
    """The vertical exaggeration the PNG maps use for this DEM (:func:`plots.auto_exaggeration`),
    from a decimated read."""
    from .plots import M_PER_DEG_LAT, M_PER_DEG_LON_EQ, auto_exaggeration, read_decimated

    z, (w, e, s, n) = read_decimated(elevation_path, STATS_MAX_PX)
    if min(z.shape) < 2 or not np.isfinite(z).any():
        return 3.0
    z = np.nan_to_num(z, nan=float(np.nanmean(z)))
    dx = (e - w) / z.shape[1] * M_PER_DEG_LON_EQ * np.cos(np.radians((s + n) / 2))
    dy = (n - s) / z.shape[0] * M_PER_DEG_LAT
    gy, gx = np.gradient(z, dy, dx)
    return auto_exaggeration(np.hypot(gx, gy))


def _pipe(parent, renderer_fn, *args, resampling: str = "nearestNeighbour", **kw) -> None:
    pipe = _sub(parent, "pipe")
    prov = _sub(pipe, "provider")
    _sub(
        prov,
        "resampling",
        enabled="false" if resampling == "nearestNeighbour" else "true",
        zoomedInResamplingMethod=resampling,
        zoomedOutResamplingMethod="nearestNeighbour",
        maxOversampling=2,
    )
    renderer_fn(pipe, *args, **kw)
    _sub(pipe, "brightnesscontrast", brightness=0, contrast=0, gamma=1)
    _sub(
        pipe,
        "huesaturation",
        saturation=0,
        grayscaleMode=0,
        colorizeOn=0,
        colorizeRed=255,
        colorizeGreen=128,
        colorizeBlue=128,
        colorizeStrength=100,
        invertColors=0,
    )
    if resampling == "nearestNeighbour":
        _sub(pipe, "rasterresampler", maxOversampling=2)
    else:  # the pre-3.16 form of the same setting
        _sub(pipe, "rasterresampler", maxOversampling=2, zoomedInResampler=resampling)


def raster_style_elements(
    parent, product: Product, limits: tuple[float, float] | None = None, opacity: float = 1.0
) -> None:
    """Append a raster layer's ``<pipe>`` and blend mode to ``parent`` (a qml root or a
    project's ``<maplayer>``)."""
    if product.is_class:
        _pipe(parent, paletted_renderer, product.categories, opacity=opacity)
    else:
        ramp = ramp_for(product)
        vmin, vmax = limits if limits is not None else ramp_limits(ramp, np.empty(0))
        _pipe(
            parent,
            pseudocolor_renderer,
            ramp_stops(ramp, vmin, vmax),
            product.units,
            opacity=opacity,
        )
    _sub(parent, "blendMode", "0")


def _qgis_root(**attrs) -> ET.Element:
    return ET.Element(
        "qgis",
        {
            "version": QGIS_VERSION,
            "styleCategories": "AllStyleCategories",
            "hasScaleBasedVisibilityFlag": "0",
            "minScale": "1e+08",
            "maxScale": "0",
            **attrs,
        },
    )


def _to_text(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def raster_qml(product: Product, limits: tuple[float, float] | None = None) -> str:
    """The ``.qml`` text of a raster product (paletted for classes, a ramp otherwise)."""
    root = _qgis_root()
    raster_style_elements(root, product, limits)
    return _to_text(root)


def product_limits(paths_by_product: dict[str, tuple[Product, list]]) -> dict[str, tuple]:
    """Ramp limits per continuous product, shared by all its files (baseline and every scenario
    use one MAGT ramp, so colours compare across maps)."""
    out = {}
    for name, (product, paths) in paths_by_product.items():
        if product.is_class:
            continue
        ramp = ramp_for(product)
        values = np.concatenate([sample_values(p) for p in paths]) if paths else np.empty(0)
        out[name] = ramp_limits(ramp, values)
    return out


def write_raster_styles(raster_paths: Iterable) -> dict[str, tuple[float, float]]:
    """Write ``<name>.qml`` beside every raster; return the ramp limits per product."""
    by_product: dict[str, tuple[Product, list]] = {}
    for p in raster_paths:
        product = product_of(p)
        if product is not None:
            by_product.setdefault(product.name, (product, []))[1].append(Path(p))
    limits = product_limits(by_product)
    for name, (product, paths) in by_product.items():
        text = raster_qml(product, limits.get(name))
        for p in paths:
            with atomic_path(p.with_suffix(".qml")) as tmp:
                tmp.write_text(text, encoding="utf-8")
    return limits


# -- vector styles ----------------------------------------------------------------------------


def _option_map(parent, options: dict) -> None:
    m = _sub(parent, "Option", type="Map")
    for k, v in options.items():
        _sub(m, "Option", type="QString", name=k, value=v)


def vector_style_elements(
    parent, categories: dict, field: str = "class_code", opacity: float = 1.0
) -> None:
    """Append a ``categorizedSymbol`` renderer (one fill per category, the raster's colours and
    names) to ``parent``."""
    r = _sub(
        parent,
        "renderer-v2",
        type="categorizedSymbol",
        attr=field,
        symbollevels=0,
        enableorderby=0,
        forceraster=0,
        referencescale=-1,
    )
    cats = _sub(r, "categories")
    syms = _sub(r, "symbols")
    for i, code in enumerate(sorted(categories)):
        name, rgb = categories[code]
        _sub(
            cats,
            "category",
            render="true",
            value=code,
            label=f"{code} {name}",
            symbol=i,
            type="integer",
        )
        sym = _sub(
            syms,
            "symbol",
            type="fill",
            name=i,
            alpha=1,
            clip_to_extent=1,
            force_rhr=0,
            is_animated=0,
            frame_rate=10,
        )
        layer = _sub(sym, "layer", **{"class": "SimpleFill"}, enabled=1, locked=0, **{"pass": 0})
        props = {
            "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
            "color": "{},{},{},255".format(*rgb),
            "joinstyle": "bevel",
            "offset": "0,0",
            "offset_map_unit_scale": "3x:0,0,0,0,0,0",
            "offset_unit": "MM",
            "outline_color": "{},{},{},255".format(*(int(c * 0.6) for c in rgb)),
            "outline_style": "solid",
            "outline_width": "0.1",
            "outline_width_unit": "MM",
            "style": "solid",
        }
        _option_map(layer, props)
        for k, v in props.items():  # the pre-3.18 form, still read by every QGIS 3
            _sub(layer, "prop", k=k, v=v)
    _sub(r, "rotation")
    _sub(r, "sizescale")
    _sub(parent, "blendMode", "0")
    _sub(parent, "featureBlendMode", "0")
    _sub(parent, "layerOpacity", opacity)


def vector_qml(categories: dict, field: str = "class_code") -> str:
    """The ``.qml`` text of a class polygon layer."""
    root = _qgis_root()
    vector_style_elements(root, categories, field)
    return _to_text(root)


# -- QGIS project -----------------------------------------------------------------------------


@dataclass
class Layer:
    """One layer of the project: a raster (product known) or a GeoPackage polygon layer."""

    id: str
    name: str
    source: str  # path relative to the project file (+ "|layername=..." for vectors)
    kind: str  # "raster", "hillshade" or "vector"
    product: Product | None = None
    categories: dict | None = None
    limits: tuple[float, float] | None = None
    visible: bool = False
    opacity: float = 1.0
    exaggeration: float = 3.0  # hillshade only


def _srs(parent) -> None:
    from pyproj import CRS

    crs = CRS.from_epsg(4326)
    s = _sub(parent, "spatialrefsys", nativeFormat="Wkt")
    _sub(s, "wkt", crs.to_wkt())
    _sub(s, "proj4", "+proj=longlat +datum=WGS84 +no_defs")
    _sub(s, "srsid", 3452)
    _sub(s, "srid", 4326)
    _sub(s, "authid", "EPSG:4326")
    _sub(s, "description", "WGS 84")
    _sub(s, "projectionacronym", "longlat")
    _sub(s, "ellipsoidacronym", "EPSG:7030")
    _sub(s, "geographicflag", "true")


def _maplayer(parent, layer: Layer, extent) -> None:
    if layer.kind == "vector":
        ml = _sub(
            parent,
            "maplayer",
            type="vector",
            geometry="Polygon",
            wkbType="MultiPolygon",
            hasScaleBasedVisibilityFlag=0,
            minScale="1e+08",
            maxScale=0,
        )
    else:
        ml = _sub(
            parent,
            "maplayer",
            type="raster",
            hasScaleBasedVisibilityFlag=0,
            minScale="1e+08",
            maxScale=0,
        )
    ext = _sub(ml, "extent")
    for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), extent, strict=True):
        _sub(ext, tag, repr(float(v)))
    _sub(ml, "id", layer.id)
    _sub(ml, "datasource", layer.source)
    _sub(ml, "layername", layer.name)
    _srs(_sub(ml, "srs"))
    _sub(ml, "provider", "ogr" if layer.kind == "vector" else "gdal")
    if layer.kind == "vector":
        vector_style_elements(ml, layer.categories or {}, opacity=layer.opacity)
    elif layer.kind == "hillshade":
        _pipe(ml, hillshade_renderer, resampling="bilinear", exaggeration=layer.exaggeration)
        _sub(ml, "blendMode", "0")
    else:
        raster_style_elements(ml, layer.product, layer.limits, opacity=layer.opacity)


def _tree_layer(parent, layer: Layer) -> None:
    _sub(
        parent,
        "layer-tree-layer",
        id=layer.id,
        name=layer.name,
        source=layer.source,
        providerKey="ogr" if layer.kind == "vector" else "gdal",
        checked="Qt::Checked" if layer.visible else "Qt::Unchecked",
        expanded=0,
        legend_exp="",
    )


def _tree(parent, node) -> None:
    """``node``: a Layer or (group name, [children], expanded)."""
    if isinstance(node, Layer):
        _tree_layer(parent, node)
        return
    name, children, expanded = node
    checked = any(c.visible for c in _layers_of(node))
    g = _sub(
        parent,
        "layer-tree-group",
        name=name,
        checked="Qt::Checked" if checked else "Qt::Unchecked",
        expanded=int(expanded),
    )
    _sub(g, "customproperties")
    for child in children:
        _tree(g, child)


def _layers_of(node) -> list[Layer]:
    if isinstance(node, Layer):
        return [node]
    return [lay for child in node[1] for lay in _layers_of(child)]


def project_qgs(title: str, tree: list, extent: Sequence[float]) -> str:
    """A QGIS project (``.qgs`` XML) with the given layer tree (top of the list drawn on top)."""
    root = ET.Element("qgis", {"projectname": title, "version": QGIS_VERSION})
    _sub(root, "homePath", path="")
    _sub(root, "title", title)
    _srs(_sub(root, "projectCrs"))
    tree_root = _sub(root, "layer-tree-group")
    _sub(tree_root, "customproperties")
    for node in tree:
        _tree(tree_root, node)
    canvas = _sub(root, "mapcanvas", name="theMapCanvas", annotationsVisible=1)
    _sub(canvas, "units", "degrees")
    ext = _sub(canvas, "extent")
    for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), extent, strict=True):
        _sub(ext, tag, repr(float(v)))
    _sub(canvas, "rotation", 0)
    _srs(_sub(canvas, "destinationsrs"))
    layers = [lay for node in tree for lay in _layers_of(node)]
    order = _sub(root, "layerorder")
    for lay in layers:
        _sub(order, "layer", id=lay.id)
    pl = _sub(root, "projectlayers")
    for lay in layers:
        _maplayer(pl, lay, extent)
    props = _sub(root, "properties")
    paths = _sub(props, "Paths")
    _sub(paths, "Absolute", "false", type="bool")
    ET.indent(root, space="  ")
    return DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def write_qgz(path, qgs_text: str) -> None:
    """A ``.qgz`` is a zip holding one ``<name>.qgs``; written atomically, the entry dated
    :func:`permamap.rasterio_io.file_timestamp` (not the clock: reruns give the same bytes)."""
    path = Path(path)
    entry = zipfile.ZipInfo(path.with_suffix(".qgs").name, file_timestamp().timetuple()[:6])
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.external_attr = 0o644 << 16
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr(entry, qgs_text)


def _rel(path, start) -> str:
    return "./" + Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def _layer_id(rel: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in rel.strip("./"))


def build_project(
    config: dict,
    out_qgz,
    raster_paths: Sequence,
    vector_layers: Sequence,
    limits: dict | None = None,
) -> None:
    """Write ``permamap.qgz``: every raster (styled as its ``.qml``) and vector layer in groups.

    ``vector_layers``: (gpkg path, layer name, product name, scenario, horizon) tuples.
    """
    import rasterio

    from .config import scenario_warming_c

    out_qgz = Path(out_qgz)
    home = out_qgz.parent
    limits = limits or {}
    groups: dict[str, list] = {"baseline": [], "climate": [], "terrain": []}  # + other folders
    scen: dict[str, dict[str, list]] = {}
    elevation = None
    exaggeration = 3.0
    extent = None
    for p in raster_paths:
        product = product_of(p)
        if product is None:
            continue
        rel = _rel(p, home)
        parts = Path(rel).parts  # ('.', 'baseline', 'class.tif') after normalisation
        parts = [x for x in parts if x != "."]
        if extent is None:
            with rasterio.open(p) as src:
                b = src.bounds
                extent = (b.left, b.bottom, b.right, b.top)
        lay = Layer(
            _layer_id(rel),
            product.description.split(":")[0].split(" (")[0],
            rel,
            "raster",
            product=product,
            limits=limits.get(product.name),
        )
        if parts[0] == "scenarios" and len(parts) >= 4:
            s, h = parts[1], parts[2]
            lay.name = f"{product.name}: {lay.name}"
            scen.setdefault(s, {}).setdefault(h, []).append(lay)
        else:
            grp = parts[0] if len(parts) > 1 else "baseline"
            lay.name = f"{product.name}: {lay.name}"
            groups.setdefault(grp, []).append(lay)
            if product.name == "elevation":
                elevation = rel
                exaggeration = dem_exaggeration(p)
    if extent is None:
        w, s_, e, n = config["region"]["bbox"]
        extent = (w, s_, e, n)

    # class layers first within each group, and the baseline ground class shown
    def order(layers):
        return sorted(
            layers, key=lambda lay: (not lay.product.is_class, lay.product.name != "class")
        )

    for lay in groups["baseline"]:
        if lay.product.name == "class":
            lay.visible, lay.opacity = True, 0.75
    tree: list = []
    vec_nodes = []
    for gpkg, layer_name, product_name, s, h in vector_layers:
        product = PRODUCTS[product_name]
        cats = product.categories
        where = (
            "baseline"
            if h in (None, "")
            else (f"{config['scenarios'].get(s, {}).get('label', s)} {h}")
        )
        title = f"{product.description.split(':')[0]}, {where} (polygons)"
        vec_nodes.append(
            Layer(
                _layer_id(f"{_rel(gpkg, home)}_{layer_name}"),
                title,
                f"{_rel(gpkg, home)}|layername={layer_name}",
                "vector",
                categories=cats,
            )
        )
    if vec_nodes:
        tree.append(("Vector zones (GeoPackage)", vec_nodes, False))
    tree.append(("Baseline", order(groups["baseline"]), True))
    if scen:
        scen_nodes = []
        for s in sorted(
            scen,
            key=lambda k: list(config["scenarios"]).index(k) if k in config["scenarios"] else 99,
        ):
            label = config["scenarios"].get(s, {}).get("label", s)
            warming = scenario_warming_c(config, s) if s in config["scenarios"] else {}
            hnodes = []
            for h in sorted(scen[s]):
                w = warming.get(int(h)) if h.isdigit() else None
                hname = f"{h} (+{w:.1f} C)" if w is not None else h
                hnodes.append((hname, order(scen[s][h]), False))
            scen_nodes.append((label, hnodes, False))
        tree.append(("Scenarios", scen_nodes, False))
    for grp in ["climate", "terrain"] + sorted(set(groups) - {"baseline", "climate", "terrain"}):
        if groups[grp]:
            tree.append((grp.replace("_", " ").capitalize(), order(groups[grp]), False))
    if elevation is not None:
        tree.append(
            Layer(
                "terrain_hillshade",
                "hillshade (elevation)",
                elevation,
                "hillshade",
                visible=True,
                exaggeration=exaggeration,
            )
        )
    title = f"permamap {config['run']}: {config['region'].get('name', '')}"
    write_qgz(out_qgz, project_qgs(title, tree, extent))


def run_styles(smk) -> None:
    """Snakemake adapter (rule ``qgis_project``): .qml beside every raster, then the project."""
    from .vectors import gpkg_layers

    rasters = [str(p) for p in smk.input.rasters]
    limits = write_raster_styles(rasters)
    vector_layers = []
    for gpkg in smk.input.vectors:
        vector_layers += gpkg_layers(gpkg)
    build_project(smk.config, smk.output.project, rasters, vector_layers, limits)
