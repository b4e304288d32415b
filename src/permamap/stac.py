"""A STAC catalog of a run's results (pystac), so catalog tools and notebooks can find them.

Layout (``results/<run>/stac/``, relative links, self-contained: the results folder can be moved)::

    catalog.json                       root catalog
    permamap-<run>/collection.json     one collection: the run, with run-level assets
                                       (QGIS project, tables, overview figures)
    permamap-<run>/<item>/<item>.json  one item per product group:
                                         terrain, climate, baseline, <scenario>-<horizon>

Each item's assets are its rasters (key = product name, Cloud-Optimized GeoTIFF, with
``raster:bands``: nodata, data type, unit, resolution in m (geometric mean of the east-west
and north-south cell sizes at the centre); class products with
``classification:classes``: code, name, colour), their QGIS styles (``<product>_style``), the
GeoPackage of polygons for the group (``zones``) and its map (``map``). Items carry the
projection extension (``proj:code`` EPSG:4326, shape, transform, bbox) and ``permamap:*``
properties (scenario, label, horizon, warming_c, config_hash, version).

Time: the baseline, terrain and climate items span the 30-year climate normal centred on
``climate.baseline_year`` (1981-2010 for 1995); a scenario item is dated at the middle of its
horizon year (the warming is that of the year).

Everything is found from the files a run made (products known from
:data:`permamap.products.PRODUCTS` by the ``product`` tag or the file name), so new products and
scenarios appear without touching this module.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

MEDIA_GPKG = "application/geopackage+sqlite3"
MEDIA_QML = "text/xml"
MEDIA_QGZ = "application/zip"
MEDIA_CSV = "text/csv"


def _utc(year: int, month: int = 1, day: int = 1, end: bool = False) -> dt.datetime:
    if end:
        return dt.datetime(year, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    return dt.datetime(year, month, day, tzinfo=dt.UTC)


def normal_period(config: dict) -> tuple[dt.datetime, dt.datetime]:
    """The 30-year climate normal centred on ``climate.baseline_year`` (1995 -> 1981-2010)."""
    y = int(config["climate"]["baseline_year"])
    return _utc(y - 14), _utc(y + 15, end=True)


def item_key(results_dir, raster) -> tuple[str, str | None, str | None]:
    """(item id, scenario, horizon) of a raster from its place under ``results/<run>/``."""
    parts = Path(os.path.relpath(raster, results_dir)).parts
    if parts[0] == "scenarios" and len(parts) >= 4:
        return f"{parts[1]}-{parts[2]}", parts[1], parts[2]
    return parts[0] if len(parts) > 1 else "baseline", None, None


def _raster_info(path) -> dict:
    import rasterio
    from pyproj import Geod

    with rasterio.open(path) as src:
        b = src.bounds
        lon, lat = (b.left + b.right) / 2, (b.bottom + b.top) / 2
        dx_deg, dy_deg = abs(src.transform.a), abs(src.transform.e)
        geod = Geod(ellps="WGS84")
        dx_m = geod.inv(lon, lat, lon + dx_deg, lat)[2]
        dy_m = geod.inv(lon, lat, lon, lat + dy_deg)[2]
        return dict(
            bounds=list(b),
            shape=[src.height, src.width],
            transform=list(src.transform)[:6],
            dtype=src.dtypes[0],
            nodata=src.nodata,
            # physical = stored * scale + offset (MAGT: int16 in 0.01 degC)
            scale=float(src.scales[0]),
            offset=float(src.offsets[0]),
            unit=(src.units[0] or None) if src.units else None,
            res_m=float((dx_m * dy_m) ** 0.5),
            tags=src.tags(),
            description=src.descriptions[0] if src.descriptions else None,
        )


def _raster_asset(item, key: str, path, info: dict, product):
    """Add the raster asset ``key`` to ``item`` (raster and classification extensions)."""
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    asset = pystac.Asset(
        href=str(Path(path).resolve()),
        media_type=pystac.MediaType.COG,
        roles=["data"],
        title=product.description if product else info["description"],
    )
    item.add_asset(key, asset)
    band = RasterBand.create(
        nodata=info["nodata"],
        data_type=DataType(info["dtype"]),
        scale=info["scale"],
        offset=info["offset"],
        unit=info["unit"] or (product.units if product else None),
        spatial_resolution=round(info["res_m"], 2),
    )
    RasterExtension.ext(asset, add_if_missing=True).apply([band])
    if product is not None and product.is_class:
        classes = [
            Classification.create(
                value=int(code),
                name=_slug(name),
                description=name,
                color_hint="{:02X}{:02X}{:02X}".format(*rgb),
            )
            for code, (name, rgb) in sorted(product.categories.items())
        ]
        ClassificationExtension.ext(asset, add_if_missing=True).classes = classes


def _slug(name: str) -> str:
    """Classification names must match ``^[0-9A-Za-z-_]+$``."""
    out = "".join(c if c.isalnum() else "_" for c in name)
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_") or "class"


def build_catalog(
    config: dict, results_dir, rasters, vectors=(), figures=(), tables=(), project=None
):
    """A pystac Catalog (not yet saved) of the run's files, hrefs absolute."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    from . import __version__
    from .config import config_hash, scenario_warming_c
    from .styles import product_of

    results_dir = Path(results_dir)
    run = config["run"]
    start, end = normal_period(config)
    groups: dict[str, dict] = {}
    for r in rasters:
        key, scen, hor = item_key(results_dir, r)
        groups.setdefault(key, dict(scenario=scen, horizon=hor, rasters=[]))["rasters"].append(r)

    catalog = pystac.Catalog(
        id=f"permamap-{run}-catalog",
        title=f"permamap results: {run}",
        description=(
            f"Permafrost maps and warming scenarios by permamap {__version__} for "
            f"{config['region'].get('name', run)}."
        ),
    )
    bbox = None
    items = []
    chash = config_hash(config)
    for key, g in sorted(groups.items(), key=lambda kv: _item_order(config, kv[0])):
        infos = [(_raster_info(r), r) for r in sorted(g["rasters"])]
        b = infos[0][0]["bounds"]
        bbox = bbox or b
        geom = {
            "type": "Polygon",
            "coordinates": [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]],
        }
        props = {
            "permamap:version": __version__,
            "permamap:config_hash": chash,
            "permamap:ground_model": config["ground"]["model"],
        }
        s, h = g["scenario"], g["horizon"]
        if s is None:
            props.update(
                {
                    "permamap:scenario": "baseline",
                    "start_datetime": _iso(start),
                    "end_datetime": _iso(end),
                }
            )
            when = None
            title = {
                "terrain": "Terrain",
                "climate": "Baseline climate",
                "baseline": "Baseline permafrost",
            }.get(key, key)
        else:
            label = config["scenarios"].get(s, {}).get("label", s)
            warming = (
                scenario_warming_c(config, s).get(int(h)) if s in config["scenarios"] else None
            )
            props.update(
                {"permamap:scenario": s, "permamap:label": label, "permamap:horizon": int(h)}
            )
            if warming is not None:
                props["permamap:warming_c"] = round(float(warming), 4)
            when = _utc(int(h), 7, 1)
            title = f"{label} {h}"
        item = pystac.Item(id=key, geometry=geom, bbox=b, datetime=when, properties=props)
        item.common_metadata.title = title
        if when is None:
            item.common_metadata.start_datetime = start
            item.common_metadata.end_datetime = end
        first = infos[0][0]
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            code="EPSG:4326", shape=first["shape"], transform=first["transform"], bbox=b
        )
        for info, r in infos:
            product = product_of(r)
            name = product.name if product else Path(r).stem
            _raster_asset(item, name, r, info, product)
            qml = Path(r).with_suffix(".qml")
            if qml.exists():
                item.add_asset(
                    f"{name}_style",
                    pystac.Asset(
                        href=str(qml.resolve()),
                        media_type=MEDIA_QML,
                        roles=["metadata", "style"],
                        title=f"QGIS style of {name}.tif",
                    ),
                )
        _add_group_extras(item, key, s, h, results_dir, vectors, figures)
        items.append(item)
    b = bbox or list(config["region"]["bbox"])
    t_end = max(
        [end] + [_utc(int(g["horizon"]), end=True) for g in groups.values() if g["horizon"]]
    )
    collection = pystac.Collection(
        id=f"permamap-{run}",
        title=f"permamap {run}: {config['region'].get('name', '')}",
        description=(
            "Mean annual ground temperature, ground class, permafrost thermal stability and "
            "zones for the baseline climate and every warming scenario and horizon "
            f"(ground model: {config['ground']['model']}; DEM: {config['dem']['source']}; "
            f"climate: {config['climate']['source']}). Config hash {chash}."
        ),
        extent=pystac.Extent(pystac.SpatialExtent([b]), pystac.TemporalExtent([[start, t_end]])),
        license=config.get("deliverables", {}).get("stac", {}).get("license", "other"),
        keywords=["permafrost", "MAGT", "Qinghai-Tibet Plateau", "climate warming", "TTOP"],
        providers=[pystac.Provider(name="permamap", roles=["processor"])],
    )
    for it in items:
        collection.add_item(it)
    if project:
        collection.add_asset(
            "qgis_project",
            pystac.Asset(
                href=str(Path(project).resolve()),
                media_type=MEDIA_QGZ,
                roles=["metadata"],
                title="QGIS project with every layer styled (open in QGIS 3)",
            ),
        )
    for t in tables:
        collection.add_asset(
            f"table_{Path(t).stem}",
            pystac.Asset(
                href=str(Path(t).resolve()),
                media_type=MEDIA_CSV,
                roles=["data"],
                title=Path(t).name,
            ),
        )
    for f in figures:
        rel = Path(os.path.relpath(f, results_dir))
        if rel.parts[:2] == ("figures", "scenarios"):
            continue  # per scenario/horizon maps go to their item
        if rel.stem.startswith("baseline_"):
            continue
        collection.add_asset(
            f"figure_{rel.stem}",
            pystac.Asset(
                href=str(Path(f).resolve()),
                media_type=pystac.MediaType.PNG,
                roles=["overview"],
                title=rel.stem.replace("_", " "),
            ),
        )
    catalog.add_child(collection)
    return catalog


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _item_order(config: dict, key: str):
    fixed = {"terrain": 0, "climate": 1, "baseline": 2}
    if key in fixed:
        return (fixed[key], "", 0)
    scen, _, hor = key.rpartition("-")
    order = list(config["scenarios"])
    return (
        3,
        f"{order.index(scen):04d}" if scen in order else scen,
        int(hor) if hor.isdigit() else 0,
    )


def _add_group_extras(item, key, scenario, horizon, results_dir, vectors, figures) -> None:
    """The group's GeoPackage (``zones``) and map figures (``map``, ``map_<product>``)."""
    import pystac

    from .vectors import gpkg_layers

    for gpkg in vectors:
        stem = Path(gpkg).stem
        if (scenario is None and key == "baseline" and stem == "baseline") or stem == scenario:
            layers = [
                lay
                for _, lay, _, _, h in gpkg_layers(gpkg)
                if scenario is None or h == str(horizon)
            ]
            if layers:
                item.add_asset(
                    "zones",
                    pystac.Asset(
                        href=str(Path(gpkg).resolve()),
                        media_type=MEDIA_GPKG,
                        roles=["data"],
                        title="Class polygons (GeoPackage)",
                        description="Layers: " + ", ".join(layers),
                    ),
                )
    for f in figures:
        rel = Path(os.path.relpath(f, results_dir))
        if (
            scenario is not None
            and rel.parts[:2] == ("figures", "scenarios")
            and rel.stem == f"{scenario}_{horizon}"
        ):
            item.add_asset(
                "map",
                pystac.Asset(
                    href=str(Path(f).resolve()),
                    media_type=pystac.MediaType.PNG,
                    roles=["overview"],
                    title=f"Map {scenario} {horizon}",
                ),
            )
        elif (
            scenario is None
            and key == "baseline"
            and rel.parts[0] == "figures"
            and rel.stem.startswith("baseline_")
        ):
            item.add_asset(
                f"map_{rel.stem.removeprefix('baseline_')}",
                pystac.Asset(
                    href=str(Path(f).resolve()),
                    media_type=pystac.MediaType.PNG,
                    roles=["overview"],
                    title=rel.stem.replace("_", " "),
                ),
            )


def write_catalog(catalog, out_catalog_json) -> None:
    """Save self-contained (relative links) to ``out_catalog_json``'s folder, atomically: the
    catalog is written to a sibling temporary folder, then swapped in."""
    import pystac

    out = Path(out_catalog_json)
    final_dir = out.parent
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    # no dot in the name: pystac would take "x.y" for a file, not a folder
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"_{final_dir.name}_part_", dir=final_dir.parent))
    tmp_dir.chmod(0o755)
    try:
        catalog.normalize_hrefs(str(tmp_dir) + "/")
        catalog.make_all_asset_hrefs_relative()
        catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        if out.name != "catalog.json":
            os.replace(tmp_dir / "catalog.json", tmp_dir / out.name)
        old = None
        if final_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f"_{final_dir.name}_old_", dir=final_dir.parent))
            os.replace(final_dir, old / "stac")
        os.replace(tmp_dir, final_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)


def validate_catalog(catalog_json, *, extensions: bool = False) -> int:
    """Validate every object of a saved catalog against the STAC 1.1 JSON schemas (pystac's
    bundled copies: works offline); with ``extensions``, also against the extension schemas,
    which pystac fetches from the network. Returns the number of objects; raises
    ``pystac.errors.STACValidationError`` on the first invalid one."""
    import pystac
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    cat = pystac.read_file(str(catalog_json))
    validator = JsonSchemaSTACValidator()
    n = 0
    objs = [cat]
    for _, children, items in cat.walk():
        objs += list(children) + list(items)
    for obj in objs:
        d = obj.to_dict(include_self_link=False, transform_hrefs=False)
        validator.validate_core(d, obj.STAC_OBJECT_TYPE, d["stac_version"], obj.get_self_href())
        if extensions:
            for ext in d.get("stac_extensions", []):
                validator.validate_extension(
                    d, obj.STAC_OBJECT_TYPE, d["stac_version"], ext, obj.get_self_href()
                )
        n += 1
    return n


def run_stac(smk) -> None:
    """Snakemake adapter (rule ``stac``)."""
    out = Path(smk.output[0])
    results_dir = out.parent.parent
    catalog = build_catalog(
        smk.config,
        results_dir,
        list(smk.input.rasters),
        vectors=list(smk.input.vectors),
        figures=list(smk.input.figures),
        tables=list(smk.input.tables),
        project=smk.input.project[0] if smk.input.project else None,
    )
    write_catalog(catalog, out)
