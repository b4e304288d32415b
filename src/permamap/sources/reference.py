"""Reference permafrost layers for validation, reprojected to the working grid.

**Obu et al. 2019** (open, CC BY 4.0): Northern Hemisphere permafrost 2000-2016 at 1 km in the
Arctic polar stereographic projection EPSG:3995. PANGAEA doi:10.1594/PANGAEA.888600; files at
``https://store.pangaea.de/Publications/ObuJ-etal_2018/{name}.zip``, each zip holding
``{name}.tif`` (possibly inside a folder of that name):

- ``magt``: ``UiO_PEX_MAGTM_5.0_20181127_2000_2016_NH`` mean annual ground temperature at the
  top of permafrost (C), float -> bilinear;
- ``perprob``: ``UiO_PEX_PERPROB_5.0_20181128_2000_2016_NH`` permafrost probability (fraction
  0-1) -> bilinear. (The zones product ``PERZONES`` is a shapefile and is not used here.)

Citation: Obu, J. et al. (2019) Northern Hemisphere permafrost map based on TTOP modelling for
2000-2016 at 1 km2 scale. Earth-Science Reviews 193, 299-316, doi:10.1016/j.earscirev.2019.04.023.

**ESA CCI Permafrost** (open, ESA CCI data policy; cite Obu et al. 2021 / the product DOI):
yearly NetCDF files on CEDA, ``https://dap.ceda.ac.uk/neodc/esacci/permafrost/data/{folder}/L4/
area4/pp/{version}/ESACCI-PERMAFROST-L4-{VAR}-{SRC}-AREA4_PP-{year}-fv{n}.nc`` with
``VAR`` = PFR (permafrost_extent, percent), GTD (ground_temperature, variables GST, T1m, T2m,
T5m, T10m in C) or ALT (active_layer_thickness, m); ``SRC`` = MODISLST_CRYOGRID from 2003,
ERA5_MODISLST_BIASCORRECTED for 1997-2002. Version v05.0 adds ``northern_hemisphere/{year}/``
to the folder. The grid is read from the file (polar stereographic per the product guide).

**NCDC / TPDC products** (Zou et al. 2017 map of the Qinghai-Tibet Plateau, Ran et al. 2022
MAGT/ALT, the 1:4M frozen-ground map, ...) need a free login at https://data.tpdc.ac.cn or
https://www.ncdc.ac.cn, so the config takes a local path; :func:`check_local_reference` checks
its CRS, extent and class codes before use.

Resampling: nearest for classes, bilinear for temperatures and fractions. Nodata stays nodata.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from permamap.download import fetch, resolve_settings
from permamap.errors import InputDataError
from permamap.products import CLASS_NODATA
from permamap.sources import FLOAT_NODATA, check_bbox, grid_window, unreadable, write_geotiff

log = logging.getLogger(__name__)

OBU_BASE_URL = "https://store.pangaea.de/Publications/ObuJ-etal_2018"
OBU_CRS = "EPSG:3995"
OBU_PRODUCTS: dict[str, dict[str, str]] = {
    "magt": {"name": "UiO_PEX_MAGTM_5.0_20181127_2000_2016_NH", "units": "C",
             "description": "mean annual ground temperature at the top of permafrost"},
    "perprob": {"name": "UiO_PEX_PERPROB_5.0_20181128_2000_2016_NH", "units": "1",
                "description": "permafrost probability (fraction)"},
}
OBU_CITATION = (
    "Obu, J. et al. (2019) Northern Hemisphere permafrost map based on TTOP modelling for "
    "2000-2016 at 1 km2 scale. Earth-Science Reviews 193, 299-316, "
    "doi:10.1016/j.earscirev.2019.04.023; data doi:10.1594/PANGAEA.888600"
)
CCI_BASE_URL = "https://dap.ceda.ac.uk/neodc/esacci/permafrost/data"
CCI_VARIABLES: dict[str, dict[str, Any]] = {
    "PFR": {"folder": "permafrost_extent", "layers": ("PFR",), "units": "%"},
    "GTD": {"folder": "ground_temperature", "layers": ("T1m", "T2m", "T5m", "T10m", "GST"),
            "units": "C"},
    "ALT": {"folder": "active_layer_thickness", "layers": ("ALT",), "units": "m"},
}
TPDC_HINT = (
    "NCDC/TPDC products need a free login: download the GeoTIFF from https://data.tpdc.ac.cn "
    "(or https://www.ncdc.ac.cn) and set its path in the config (reference.local.path)"
)

Target = tuple  # (crs, transform, width, height) or an object with those attributes


def _target(target: Any) -> tuple[CRS, Affine, int, int]:
    if isinstance(target, (tuple, list)):
        crs, transform, width, height = target
    else:
        crs, transform, width, height = target.crs, target.transform, target.width, target.height
    return CRS.from_user_input(crs), transform, int(width), int(height)


def _target_bbox(target) -> tuple[float, float, float, float]:
    crs, tr, w, h = _target(target)
    left, top = tr @ (0, 0)
    right, bottom = tr @ (w, h)
    return transform_bounds(crs, "EPSG:4326", min(left, right), min(top, bottom),
                            max(left, right), max(top, bottom), densify_pts=21)


# ------------------------------------------------------------------------------ reprojection


def reproject_to_grid(
    src_path: str,
    target: Any,
    *,
    kind: str = "continuous",
    band: int = 1,
    src_crs: Any = None,
    what: str | None = None,
) -> np.ndarray:
    """Resample band ``band`` of ``src_path`` onto ``target`` = (crs, transform, width, height).

    ``kind="classes"``: nearest neighbour, uint8 with nodata 255; ``"continuous"``: bilinear,
    float32 with NaN nodata. Only the source window around the target is read. ``src_crs``
    is used when the file has no CRS (e.g. a GeoTIFF shipped with a world file only)."""
    if kind not in ("classes", "continuous"):
        raise ValueError(f"kind must be 'classes' or 'continuous', not {kind!r}")
    name = what or Path(str(src_path).split("/")[-1]).name
    dst_crs, dst_tr, dst_w, dst_h = _target(target)
    try:
        with rasterio.open(src_path) as src:
            crs = src.crs or (CRS.from_user_input(src_crs) if src_crs else None)
            if crs is None:
                raise InputDataError(f"{name}: raster has no CRS; its provider's CRS is needed")
            left, top = dst_tr @ (0, 0)
            right, bottom = dst_tr @ (dst_w, dst_h)
            sb = transform_bounds(dst_crs, crs, min(left, right), min(top, bottom),
                                  max(left, right), max(top, bottom), densify_pts=21)
            try:
                win = grid_window(src.transform, src.width, src.height,
                                  (sb[0], sb[1], sb[2], sb[3]), margin_px=2)
            except InputDataError:
                lon_lat = ", ".join(f"{v:.3f}" for v in _target_bbox(target))
                raise InputDataError(
                    f"{name}: the working grid ({lon_lat} lon/lat) lies outside the raster's "
                    "extent"
                ) from None
            data = src.read(band, window=win, masked=True)
            src_tr = src.window_transform(win)
    except rasterio.errors.RasterioError as exc:
        raise unreadable(name, exc) from None
    mask = np.ma.getmaskarray(data)
    values = np.ma.getdata(data)
    if values.dtype.kind == "f":
        mask = mask | ~np.isfinite(values)
    if kind == "classes":
        valid = values[~mask]
        if valid.size and (valid.min() < 0 or valid.max() >= CLASS_NODATA):
            raise InputDataError(
                f"{name}: class codes must be 0..{CLASS_NODATA - 1}, found "
                f"{valid.min()}..{valid.max()}"
            )
        src_c = np.where(mask, CLASS_NODATA, values).astype("uint8")
        out = np.full((dst_h, dst_w), CLASS_NODATA, dtype="uint8")
        reproject(src_c, out, src_transform=src_tr, src_crs=crs, dst_transform=dst_tr,
                  dst_crs=dst_crs, src_nodata=CLASS_NODATA, dst_nodata=CLASS_NODATA,
                  resampling=Resampling.nearest, tolerance=0)
        return out
    src_f = np.where(mask, np.nan, values).astype("float32")
    out = np.full((dst_h, dst_w), np.nan, dtype="float32")
    reproject(src_f, out, src_transform=src_tr, src_crs=crs, dst_transform=dst_tr,
              dst_crs=dst_crs, src_nodata=np.nan, dst_nodata=np.nan,
              resampling=Resampling.bilinear, tolerance=0)
    return out


def _write(out_path, arr: np.ndarray, target, kind: str, **meta) -> Path:
    crs, tr, _, _ = _target(target)
    if kind == "classes":
        return write_geotiff(out_path, arr, tr, crs, nodata=CLASS_NODATA, tags=meta)
    return write_geotiff(out_path, arr, tr, crs, nodata=FLOAT_NODATA,
                         units=meta.get("units"), descriptions=[meta.get("description", "")],
                         tags=meta)


# ------------------------------------------------------------------------------ Obu et al. 2019


def obu_url(product: str) -> str:
    if product not in OBU_PRODUCTS:
        raise InputDataError(
            f"Obu et al. 2019 product {product!r} is unknown; use {list(OBU_PRODUCTS)}"
        )
    return f"{OBU_BASE_URL}/{OBU_PRODUCTS[product]['name']}.zip"


def _zip_tif(zpath: Path) -> str:
    with zipfile.ZipFile(zpath) as zf:
        tifs = [n for n in zf.namelist() if n.lower().endswith((".tif", ".tiff"))]
    if not tifs:
        raise InputDataError(f"{zpath.name}: the zip holds no GeoTIFF")
    return tifs[0]


def _validate_obu(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise InputDataError(f"{path.name}: not a zip archive")
    member = _zip_tif(path)
    try:
        with rasterio.open(f"/vsizip/{{{path}}}/{member}") as src:
            if src.crs is not None and src.crs != CRS.from_user_input(OBU_CRS):
                raise InputDataError(f"{member}: CRS {src.crs}, expected {OBU_CRS}")
    except rasterio.errors.RasterioError as exc:
        raise unreadable(member, exc) from None


def fetch_obu(product: str, settings: Mapping[str, Any]) -> str:
    """Download the Obu et al. 2019 zip of ``product``; return a GDAL path to its GeoTIFF."""
    settings = resolve_settings(settings)
    zpath = fetch(
        obu_url(product),
        Path(settings["cache_dir"]) / "obu2019" / f"{OBU_PRODUCTS[product]['name']}.zip",
        dataset=f"Obu et al. 2019 {product} (PANGAEA)", settings=settings,
        validate=_validate_obu,
        hint="download it from https://doi.pangaea.de/10.1594/PANGAEA.888600 with internet",
    )
    return f"/vsizip/{{{zpath}}}/{_zip_tif(zpath)}"


def retrieve_obu(product: str, target: Any, out_path: str | Path,
                 settings: Mapping[str, Any] | None) -> Path:
    """Obu et al. 2019 ``product`` (``magt`` or ``perprob``) on the target grid (bilinear)."""
    gpath = fetch_obu(product, settings)
    arr = reproject_to_grid(gpath, target, kind="continuous", src_crs=OBU_CRS,
                            what=f"Obu 2019 {product}")
    if not np.isfinite(arr).any():
        raise InputDataError(f"Obu et al. 2019 {product}: no valid pixel on the working grid")
    info = OBU_PRODUCTS[product]
    return _write(out_path, arr, target, "continuous", units=info["units"],
                  description=info["description"], source=obu_url(product), citation=OBU_CITATION)


# ------------------------------------------------------------------------------ ESA CCI


def cci_url(variable: str, year: int, version: str = "v04.0") -> str:
    """URL of the ESA CCI Permafrost NetCDF of ``variable`` (PFR, GTD, ALT) and ``year``."""
    if variable not in CCI_VARIABLES:
        raise InputDataError(
            f"ESA CCI Permafrost variable {variable!r} is unknown; use {list(CCI_VARIABLES)}"
        )
    if not 1997 <= int(year) <= 2023:
        raise InputDataError(f"ESA CCI Permafrost covers 1997-2023, not {year}")
    src = "MODISLST_CRYOGRID" if year >= 2003 else "ERA5_MODISLST_BIASCORRECTED"
    folder = f"{CCI_BASE_URL}/{CCI_VARIABLES[variable]['folder']}/L4/area4/pp/{version}"
    if version >= "v05":
        folder += f"/northern_hemisphere/{year}"
    return (f"{folder}/ESACCI-PERMAFROST-L4-{variable}-{src}-AREA4_PP-{year}-f"
            f"{version}.nc")


def retrieve_cci(variable: str, year: int, target: Any, out_path: str | Path,
                 settings: Mapping[str, Any] | None, *, layer: str | None = None,
                 version: str = "v04.0") -> Path:
    """One ESA CCI Permafrost layer (e.g. PFR, GTD T2m, ALT) of ``year`` on the target grid."""
    settings = resolve_settings(settings)
    info = CCI_VARIABLES.get(variable)
    url = cci_url(variable, year, version)
    layer = layer or info["layers"][0]
    name = url.rsplit("/", 1)[1]
    path = fetch(url, Path(settings["cache_dir"]) / "esa_cci_permafrost" / name,
                 dataset=f"ESA CCI Permafrost {variable} {year}", settings=settings,
                 validate=lambda p: _validate_nc(p, layer),
                 hint="download it from https://catalogue.ceda.ac.uk (ESA CCI Permafrost)")
    arr = reproject_to_grid(f'NETCDF:"{path}":{layer}', target, kind="continuous",
                            what=f"ESA CCI {variable} {layer} {year}")
    return _write(out_path, arr, target, "continuous", units=info["units"],
                  description=f"ESA CCI Permafrost {layer} {year}", source=url)


def _validate_nc(path: Path, layer: str) -> None:
    try:
        with rasterio.open(f'NETCDF:"{path}":{layer}') as src:
            if src.crs is None:
                raise InputDataError(f"{path.name}: variable {layer} has no grid mapping (CRS)")
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(
            f"{path.name}: no readable variable {layer} ({str(exc).splitlines()[0]})"
        ) from None


# ------------------------------------------------------------------------------ local NCDC/TPDC


def check_local_reference(
    path: str | Path,
    bbox: Sequence[float],
    *,
    kind: str = "classes",
    allowed_classes: Iterable[int] | None = None,
    what: str = "reference map",
) -> None:
    """Check a user's local reference raster (e.g. a TPDC download): it exists, opens, has a
    CRS, overlaps ``bbox`` and, for ``kind="classes"``, holds only ``allowed_classes`` (besides
    nodata) inside the bbox. One readable :class:`~permamap.errors.InputDataError` each."""
    bbox = check_bbox(bbox)
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what}: {path} does not exist. {TPDC_HINT}")
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(
                    f"{what}: {path.name} has no CRS; re-export it with its projection "
                    "(e.g. a .prj beside it or gdal_translate -a_srs)"
                )
            sb = transform_bounds("EPSG:4326", src.crs, *bbox, densify_pts=21)
            b = src.bounds
            if not (sb[0] < b.right and sb[2] > b.left and sb[1] < b.top and sb[3] > b.bottom):
                wb = transform_bounds(src.crs, "EPSG:4326", *b, densify_pts=21)
                raise InputDataError(
                    f"{what}: {path.name} covers lon/lat "
                    f"({wb[0]:.2f}, {wb[1]:.2f}, {wb[2]:.2f}, {wb[3]:.2f}), which does not "
                    f"overlap the bbox {list(bbox)}"
                )
            if kind == "classes":
                if src.dtypes[0].startswith("float"):
                    raise InputDataError(
                        f"{what}: {path.name} is {src.dtypes[0]}; a class map must be integer"
                    )
                win = grid_window(src.transform, src.width, src.height, sb)
                data = src.read(1, window=win, masked=True)
                codes = {int(v) for v in np.unique(data.compressed())}
                if allowed_classes is not None:
                    bad = sorted(codes - {int(c) for c in allowed_classes})
                    if bad:
                        raise InputDataError(
                            f"{what}: {path.name} has class codes {bad} in the bbox that are not "
                            f"in the allowed set {sorted(int(c) for c in allowed_classes)}; "
                            "map them in the config or set the file's nodata"
                        )
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(
            f"{what}: {path.name} is not a readable raster ({str(exc).splitlines()[0]})"
        ) from None


def retrieve_local(path: str | Path, target: Any, out_path: str | Path, *,
                   kind: str = "classes", allowed_classes: Iterable[int] | None = None,
                   what: str = "reference map") -> Path:
    """Check a local reference raster and resample it onto the target grid."""
    check_local_reference(path, _target_bbox(target), kind=kind,
                          allowed_classes=allowed_classes, what=what)
    arr = reproject_to_grid(str(path), target, kind=kind, what=what)
    return _write(out_path, arr, target, kind, source=str(Path(path).name),
                  description=what)
