"""Validation of the baseline map against reference permafrost maps and boreholes.

Everything here compares; nothing is fitted (fitting is :mod:`permamap.calibration`).

**Reference maps** (``validation.references``). Each map is compared twice:

1. *On the working grid*: the reference is resampled onto our grid with
   :func:`permamap.sources.reference.reproject_to_grid` (nearest neighbour for class codes,
   bilinear for probability or temperature, then thresholded), block of rows by block of rows,
   so memory does not grow with the region.
2. *On the reference's own grid*: each of our pixels is assigned to the reference pixel that
   contains its centre; per reference pixel we sum the true area of each of our classes and
   take the majority class (ties go to the lower code, permafrost first) and the permafrost
   fraction. Only reference pixels whose ground area is covered by valid pixels of ours for at
   least ``min_coverage`` count. Comparing a 30 m map with a 1 km map pixel by pixel mostly
   measures the difference in resolution; this comparison does not.

Class codes: ours are 1 permafrost, 2 seasonally frozen ground, 3 unfrozen
(:mod:`permamap.products`). The reference's codes are mapped with the config
(``classes: {permafrost: [...], seasonally_frozen: [...], unfrozen: [...], not_permafrost:
[...], ignore: [...]}``); any code that is not listed is an error, so a legend is never
silently misread. When a map only says permafrost / no permafrost (codes in
``not_permafrost``, or a probability or MAGT map), the comparison is *binary*: our classes 2
and 3 both become 0 "no permafrost". A probability map is permafrost where value >=
``threshold`` (default half of ``probability_max``: 0.5 for Obu et al. 2019 PERPROB, 50 for
ESA CCI PFR), a MAGT map where value < ``threshold`` (default 0 C).

Scores, all *area-weighted* with true pixel areas on the WGS 84 ellipsoid
(:meth:`permamap.grid.Grid.row_pixel_areas_km2`; reference pixels: projected area divided by
the projection's areal scale factor, :func:`native_pixel_areas_km2`):

- confusion matrix C (rows reference, columns ours), p = C / sum(C);
- overall accuracy OA = sum_i p_ii;
- Cohen's (1960) kappa = (OA - p_e) / (1 - p_e), p_e = sum_i p_i+ p_+i, computed by
  scikit-learn's ``cohen_kappa_score``; undefined (NaN, ``null`` in JSON) when p_e = 1, e.g.
  both maps a single identical class;
- quantity and allocation disagreement (Pontius & Millones 2011, Int. J. Remote Sens. 32,
  4407-4429, doi:10.1080/01431161.2011.552923, eqs. 2-5): Q = sum_i |p_i+ - p_+i| / 2,
  A = sum_i min(p_i+ - p_ii, p_+i - p_ii), Q + A = 1 - OA. Q is disagreement in how much of
  each class there is, A in where it is.
- per class: area in both maps, producer's accuracy (share of the reference class that we map
  as that class) and user's accuracy (share of our class that the reference agrees with).

**Disagreement map** (``disagreement.tif``, uint8 with a colour table, nodata 255 where either
map has no data):

====  =====================================================
code  meaning
====  =====================================================
1     both permafrost
2     both the same non-permafrost class
3     permafrost in our map only (reference: no permafrost)
4     permafrost in the reference only
5     both without permafrost but seasonally frozen vs unfrozen
====  =====================================================

**Points** (``validation.points``): MAGT, active layer thickness and permafrost presence at
boreholes or field sites; see :func:`read_points` for the columns. The model is re-run at each
point (:func:`model_at_points`) at its own elevation when given (``use_point_elevation``), so a
borehole at 4,500 m is not compared with the MAGT of a pixel whose mean elevation is 4,100 m;
the map's pixel value is reported beside it. Scores: bias = mean(model - observed), MAE, RMSE
(MAGT in C, ALT in m), and accuracy and kappa of presence.

Published range for comparison (Tibetan Plateau maps): kappa about 0.2-0.74, MAGT RMSE about
1.3-2.0 C (DESIGN.md 4.8).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from .errors import ConfigError, InputDataError
from .grid import CRS, Grid, cell_area_m2
from .products import CLASS_NODATA, GROUND_CLASSES, PERMAFROST, SEASONALLY_FROZEN, UNFROZEN, Product
from .rasterio_io import (
    atomic_path,
    gtiff_profile,
    provenance_tags,
    read_physical,
    to_cog,
    to_physical,
)

log = logging.getLogger(__name__)

#: "No permafrost" in a binary comparison (our classes 2 and 3, a reference's not_permafrost).
NOT_PERMAFROST = 0
CLASS_NAMES = {code: name for code, (name, _) in GROUND_CLASSES.items()} | {
    NOT_PERMAFROST: "no permafrost"
}
THREE_CLASSES = [PERMAFROST, SEASONALLY_FROZEN, UNFROZEN]
BINARY_CLASSES = [PERMAFROST, NOT_PERMAFROST]
CLASS_KEYS = {
    "permafrost": PERMAFROST,
    "seasonally_frozen": SEASONALLY_FROZEN,
    "unfrozen": UNFROZEN,
    "not_permafrost": NOT_PERMAFROST,
}

#: Disagreement map codes (module docstring).
DISAGREEMENT_CODES = {
    1: ("both permafrost", (33, 102, 172)),
    2: ("both the same non-permafrost class", (224, 224, 224)),
    3: ("permafrost in our map only", (215, 48, 39)),
    4: ("permafrost in the reference only", (118, 42, 131)),
    5: ("no permafrost in either, seasonally frozen vs unfrozen", (166, 217, 106)),
}
DISAGREEMENT = Product(
    "disagreement",
    "uint8",
    CLASS_NODATA,
    "class",
    "Map vs reference: 1 both permafrost, 2 both same non-permafrost class, "
    "3 permafrost ours only, "
    "4 permafrost reference only, 5 SFG vs unfrozen",
    categories=DISAGREEMENT_CODES,
    resampling="mode",
)

#: Published range for comparison (DESIGN.md 4.8).
PUBLISHED_RANGE = {
    "kappa": [0.2, 0.74],
    "magt_rmse_c": [1.3, 2.0],
    "note": "Tibetan Plateau permafrost maps against reference maps and boreholes (DESIGN.md 4.8)",
}

#: Target size of a block of rows read at once (pixels).
BLOCK_PX = 4_000_000


# -------------------------------------------------------------------------------- metrics


def confusion(reference, ours, labels, weights=None) -> np.ndarray:
    """Confusion matrix (rows reference, columns ours) over ``labels``, optionally weighted
    (e.g. by pixel area), with scikit-learn's ``confusion_matrix``."""
    from sklearn.metrics import confusion_matrix

    reference = np.asarray(reference).ravel()
    ours = np.asarray(ours).ravel()
    if reference.size == 0:
        return np.zeros((len(labels), len(labels)))
    w = None if weights is None else np.asarray(weights, np.float64).ravel()
    return confusion_matrix(reference, ours, labels=list(labels), sample_weight=w).astype(
        np.float64
    )


def overall_accuracy(cm) -> float:
    """OA = trace(C) / sum(C); NaN for an empty matrix."""
    cm = np.asarray(cm, np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else math.nan


def kappa(cm) -> float:
    """Cohen's kappa of a (weighted) confusion matrix, by scikit-learn's ``cohen_kappa_score``.

    The matrix is passed as one weighted sample per cell (label i, label j, weight C_ij),
    which gives scikit-learn exactly the matrix C. NaN when kappa is undefined (expected
    agreement p_e = 1) or the matrix is empty.
    """
    import warnings

    from sklearn.metrics import cohen_kappa_score

    cm = np.asarray(cm, np.float64)
    if cm.sum() <= 0:
        return math.nan
    k = cm.shape[0]
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    keep = cm.ravel() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(
            ii.ravel()[keep],
            jj.ravel()[keep],
            labels=list(range(k)),
            sample_weight=cm.ravel()[keep],
            replace_undefined_by=np.nan,
        )
    return float(value)


def quantity_allocation(cm) -> tuple[float, float]:
    """(quantity, allocation) disagreement, Pontius & Millones (2011) eqs. 2-5 (proportions)."""
    cm = np.asarray(cm, np.float64)
    total = cm.sum()
    if total <= 0:
        return math.nan, math.nan
    p = cm / total
    rows, cols, diag = p.sum(axis=1), p.sum(axis=0), np.diag(p)
    q = float(np.abs(rows - cols).sum() / 2.0)
    a = float(np.minimum(rows - diag, cols - diag).sum())
    return q, a


def class_table(cm, labels) -> list[dict]:
    """Per class: reference and our area (matrix units), producer's and user's accuracy."""
    cm = np.asarray(cm, np.float64)
    total = cm.sum()
    out = []
    for i, code in enumerate(labels):
        ref, ours, hit = cm[i].sum(), cm[:, i].sum(), cm[i, i]
        out.append(
            dict(
                class_code=int(code),
                class_name=CLASS_NAMES[int(code)],
                reference=float(ref),
                ours=float(ours),
                difference=float(ours - ref),
                reference_share=float(ref / total) if total else math.nan,
                ours_share=float(ours / total) if total else math.nan,
                producer_accuracy=float(hit / ref) if ref > 0 else math.nan,
                user_accuracy=float(hit / ours) if ours > 0 else math.nan,
            )
        )
    return out


def scores_from_confusion(cm, labels) -> dict:
    """OA, kappa, quantity and allocation disagreement and per-class table of a matrix."""
    q, a = quantity_allocation(cm)
    return dict(
        overall_accuracy=overall_accuracy(cm),
        kappa=kappa(cm),
        quantity_disagreement=q,
        allocation_disagreement=a,
        total=float(np.asarray(cm).sum()),
        confusion={
            "labels": [CLASS_NAMES[int(c)] for c in labels],
            "rows_reference_columns_ours": np.asarray(cm).tolist(),
        },
    )


def error_scores(predicted, observed) -> dict:
    """n, bias = mean(predicted - observed), MAE, RMSE (scikit-learn) and Pearson r over the
    pairs where both are finite."""
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    p = np.asarray(predicted, np.float64)
    o = np.asarray(observed, np.float64)
    ok = np.isfinite(p) & np.isfinite(o)
    n = int(ok.sum())
    if n == 0:
        return dict(n=0, bias=math.nan, mae=math.nan, rmse=math.nan, r=math.nan)
    p, o = p[ok], o[ok]
    r = float(np.corrcoef(p, o)[0, 1]) if n > 2 and p.std() > 0 and o.std() > 0 else math.nan
    return dict(
        n=n,
        bias=float(np.mean(p - o)),
        mae=float(mean_absolute_error(o, p)),
        rmse=float(root_mean_squared_error(o, p)),
        r=r,
    )


def presence_scores(observed, predicted) -> dict:
    """Accuracy, kappa and the 2 x 2 matrix of permafrost presence (1) / absence (0)."""
    o = np.asarray(observed, np.float64)
    p = np.asarray(predicted, np.float64)
    ok = np.isfinite(o) & np.isfinite(p)
    cm = confusion(o[ok].astype(int), p[ok].astype(int), BINARY_CLASSES)
    return dict(
        n=int(ok.sum()),
        overall_accuracy=overall_accuracy(cm),
        kappa=kappa(cm),
        confusion={
            "labels": ["permafrost", "no permafrost"],
            "rows_observed_columns_model": cm.astype(int).tolist(),
        },
    )


# -------------------------------------------------------------------------------- helpers


def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def write_csv(path, df: pd.DataFrame, **kw) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", **kw)


def _is_gdal_path(path: str) -> bool:
    return str(path).startswith("/vsi") or ":" in str(path).split("/")[0]


# -------------------------------------------------------------------------------- reference spec


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference map entry of the config, with its code lookup table."""

    name: str
    label: str
    path: str
    native_path: str | None
    band: int
    crs: str | None
    kind: str
    lut: np.ndarray  # 256 entries: reference code -> our code (0..3) or 255 (nodata/ignored)
    listed: frozenset  # codes named in the config (mapped or ignored)
    binary: bool
    threshold: float
    probability_max: float
    min_coverage: float

    @property
    def labels(self) -> list[int]:
        return BINARY_CLASSES if self.binary else THREE_CLASSES

    def map_codes(self, values: np.ndarray) -> np.ndarray:
        """Reference values (codes or continuous, NaN / 255 nodata) -> our codes (255 nodata)."""
        if self.kind == "classes":
            return self.lut[np.asarray(values, np.uint8)]
        v = np.asarray(values, np.float64)
        pf = v >= self.threshold if self.kind == "probability" else v < self.threshold
        return np.where(
            np.isfinite(v), np.where(pf, PERMAFROST, NOT_PERMAFROST), CLASS_NODATA
        ).astype(np.uint8)

    def collapse_ours(self, cls: np.ndarray) -> np.ndarray:
        """Our class codes as compared: 2 and 3 -> 0 in a binary comparison."""
        cls = np.asarray(cls, np.uint8)
        if not self.binary:
            return cls
        return np.where(
            cls == CLASS_NODATA,
            CLASS_NODATA,
            np.where(cls == PERMAFROST, PERMAFROST, NOT_PERMAFROST),
        ).astype(np.uint8)


def reference_spec(entry: dict, where: str = "validation.references") -> ReferenceSpec:
    """Check one ``validation.references`` entry and build its lookup table (ConfigError)."""
    kind = entry.get("kind", "classes")
    key = f"{where}[{entry.get('name')}]"
    if not entry.get("path"):
        raise ConfigError(
            f"config error: {key}.path is required (it may be left out only for a "
            "map of the reference: section, which is then the retrieved file)"
        )
    lut = np.full(256, CLASS_NODATA, np.uint8)
    listed: set[int] = set()
    binary = kind != "classes"
    if kind == "classes":
        classes = entry.get("classes") or {}
        seen: dict[int, str] = {}
        for name, codes in classes.items():
            for c in codes:
                if c in seen:
                    raise ConfigError(
                        f"config error: {key}.classes: code {c} is listed under both {seen[c]} and "
                        f"{name}; each reference code maps to one class"
                    )
                seen[c] = name
                listed.add(int(c))
                if name != "ignore":
                    lut[c] = CLASS_KEYS[name]
        if not any(classes.get(k) for k in CLASS_KEYS):
            raise ConfigError(
                f"config error: {key}.classes maps no reference code to a class; give e.g. "
                "classes: {permafrost: [1], seasonally_frozen: [2]} from the map's legend"
            )
        binary = bool(classes.get("not_permafrost"))
        if binary and (classes.get("seasonally_frozen") or classes.get("unfrozen")):
            raise ConfigError(
                f"config error: {key}.classes mixes not_permafrost with "
                "seasonally_frozen/unfrozen; "
                "use either not_permafrost (binary comparison) or the two classes"
            )
    pmax = float(entry.get("probability_max", 1.0))
    threshold = entry.get("threshold")
    if threshold is None:
        threshold = 0.5 * pmax if kind == "probability" else 0.0
    return ReferenceSpec(
        name=entry["name"],
        label=entry.get("label") or entry["name"],
        path=str(entry["path"]),
        native_path=entry.get("native_path"),
        band=int(entry.get("band", 1)),
        crs=entry.get("crs"),
        kind=kind,
        lut=lut,
        listed=frozenset(listed),
        binary=binary,
        threshold=float(threshold),
        probability_max=pmax,
        min_coverage=float(entry.get("min_coverage", 0.75)),
    )


#: How the maps of the ``reference:`` section (:func:`permamap.retrieve.reference_specs`,
#: downloaded by the retrieve stage onto the working grid) are compared when
#: ``validation.retrieved`` is true and ``validation.references`` has no entry of that name.
#: ALT and ground-surface temperature maps are not permafrost maps and are not compared.
RETRIEVED_DEFAULTS = {
    "obu2019_perprob": dict(
        kind="probability",
        probability_max=1.0,
        crs="EPSG:3995",
        label="Obu et al. (2019) permafrost probability; permafrost where >= 0.5",
    ),
    "obu2019_magt": dict(
        kind="magt",
        crs="EPSG:3995",
        label="Obu et al. (2019) MAGT at the top of permafrost; permafrost where < 0 C",
    ),
    "esa_cci_pfr": dict(
        kind="probability",
        probability_max=100.0,
        label="ESA CCI Permafrost extent (PFR, %); permafrost where >= 50 %",
    ),
    **{
        f"esa_cci_{d}": dict(
            kind="magt",
            label=f"ESA CCI Permafrost ground temperature at {d[1:]}; permafrost where < 0 C",
        )
        for d in ("t1m", "t2m", "t5m", "t10m")
    },
}


def is_synthetic(path) -> bool:
    """True when a file says it is synthetic: a raster tag ``synthetic=true`` or a CSV whose
    leading ``#`` comment mentions it (the bundled sample files)."""
    p = Path(str(path))
    if _is_gdal_path(str(path)) or not p.exists():
        return False
    if p.suffix.lower() == ".csv":
        return _synthetic_csv(p)
    try:
        with rasterio.open(p) as src:
            return str(src.tags().get("synthetic", "")).lower() in ("1", "true", "yes")
    except rasterio.errors.RasterioError:
        return False


def _real_run(config: dict) -> bool:
    return config.get("dem", {}).get("source") != "pvlib_sample"


def reference_entries(config: dict) -> tuple[list[dict], list[str]]:
    """(entries, notes): the reference maps this config validates against, and why others
    are left out.

    Entries are the explicit ``validation.references`` plus, with ``validation.retrieved``,
    the retrieved maps of the ``reference:`` section that :data:`RETRIEVED_DEFAULTS` knows
    (an explicit entry of the same name wins; its path defaults to the retrieved file). A
    synthetic file (:func:`is_synthetic`) is left out of runs on real data (``dem.source``
    other than ``pvlib_sample``), so the bundled sample never validates a real map.
    """
    val = config.get("validation") or {}
    if not val.get("enabled"):
        return [], []
    notes: list[str] = []
    retrieved: dict = {}
    if val.get("retrieved", True) and config.get("reference"):
        from .retrieve import reference_specs

        retrieved = reference_specs(config)
    entries: list[dict] = []
    for r in val.get("references") or []:
        e = dict(r)
        if e["name"] in retrieved:
            e["retrieved"] = retrieved[e["name"]]
            e.setdefault("path", retrieved[e["name"]]["path"])
        entries.append(e)
    explicit = {e["name"] for e in entries}
    for name, spec in retrieved.items():
        if name in explicit:
            continue
        if name not in RETRIEVED_DEFAULTS:
            notes.append(
                f"reference map {name!r} ({spec['dataset']}, {spec['kind']}) is not compared: "
                "add a validation.references entry with its class codes or kind"
            )
            continue
        entries.append(
            dict(name=name, path=spec["path"], retrieved=spec, **RETRIEVED_DEFAULTS[name])
        )
    kept = []
    for e in entries:
        if _real_run(config) and is_synthetic(e["path"]):
            notes.append(
                f"reference {e['name']!r} ({e['path']}) is synthetic sample data and is not "
                f"used on a run with real data (dem.source {config['dem']['source']!r})"
            )
            continue
        kept.append(e)
    return kept, notes


def points_path(config: dict) -> tuple[str | None, list[str]]:
    """(path or None, notes): the points file, left out when synthetic on a real-data run."""
    val = config.get("validation") or {}
    path = (val.get("points") or {}).get("path")
    if not val.get("enabled") or not path:
        return None, []
    if _real_run(config) and is_synthetic(path):
        return None, [
            f"points file {path} is synthetic sample data and is not used on a run with "
            f"real data (dem.source {config['dem']['source']!r})"
        ]
    return str(path), []


def check_config(config: dict) -> list[str]:
    """Parse-time checks of the ``validation`` section beyond the schema (ConfigError).
    Returns the notes of :func:`reference_entries` and :func:`points_path`."""
    val = config.get("validation") or {}
    if not val.get("enabled"):
        return []
    names = [r["name"] for r in val.get("references") or []]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config error: validation.references has duplicate names {dup}")
    refs, notes = reference_entries(config)
    for r in refs:
        reference_spec(r)
    pts, more = points_path(config)
    notes += more
    if not refs and not pts and not notes:
        raise ConfigError(
            "config error: validation.enabled is true but there is nothing to validate against; "
            "give validation.references and/or validation.points.path, or set enabled: false"
        )
    cal = val.get("calibration") or {}
    if cal.get("enabled"):
        from .calibration import calibration_parameters

        calibration_parameters(config)
        if cal.get("target", "magt") == "magt" and not val.get("points", {}).get("path"):
            raise ConfigError(
                "config error: validation.calibration.target = 'magt' needs borehole MAGT in "
                "validation.points.path; give the points file or use target: presence"
            )
    return notes


def reference_files(entries: list[dict], name: str | None = None) -> list[str]:
    """Local files (``path``, ``native_path``) of reference ``name`` (default: of all), for
    Snakemake inputs; GDAL paths such as ``/vsizip/`` are left out."""
    out = []
    for e in entries:
        if name is None or e["name"] == name:
            out += [p for p in (e.get("path"), e.get("native_path")) if p and not _is_gdal_path(p)]
    return out


def reference_entry(config: dict, name: str) -> dict:
    for r in reference_entries(config)[0]:
        if r["name"] == name:
            return r
    raise ConfigError(f"config error: validation has no reference map named {name!r}")


def native_path(config: dict, entry: dict) -> str | None:
    """The reference at its own resolution, for the comparison on its own grid:
    ``native_path`` when given, else for a retrieved map its raw download (Obu et al. 2019
    zip, ESA CCI NetCDF, the local source file) when present, else None (the file at ``path``
    is used, which for a retrieved map is already on the working grid)."""
    if entry.get("native_path"):
        return str(entry["native_path"])
    spec = entry.get("retrieved")
    if not spec:
        return None
    from .retrieve import download_settings
    from .sources import reference as srcref

    cache = Path(download_settings(config)["cache_dir"])
    if spec["dataset"] == "obu2019":
        z = cache / "obu2019" / f"{srcref.OBU_PRODUCTS[spec['product']]['name']}.zip"
        return f"/vsizip/{{{z}}}/{srcref._zip_tif(z)}" if z.exists() else None
    if spec["dataset"] == "esa_cci":
        name = srcref.cci_url(spec["variable"], spec["year"], spec["version"]).rsplit("/", 1)[1]
        p = cache / "esa_cci_permafrost" / name
        return f'NETCDF:"{p}":{spec["layer"]}' if p.exists() else None
    src = spec.get("source_path")
    return str(src) if src and Path(src).exists() else None


# -------------------------------------------------------------------------------- reference grids


@dataclass
class NativeReference:
    """The reference's own grid over our region: values (window), transform, CRS."""

    values: np.ndarray | None  # native values: float64, NaN nodata (classes: uint8 codes)
    codes: np.ndarray | None  # mapped to our codes, uint8, 255 nodata
    transform: object
    crs: object
    bounds: tuple  # (left, bottom, right, top) of the whole file in its CRS
    synthetic: bool
    tags: dict


def open_reference(
    spec: ReferenceSpec, grid: Grid, path: str | None = None, read: bool = True
) -> NativeReference:
    """Read the window over ``grid`` of the reference file ``path`` (default ``spec.path``)
    at the file's own resolution, with checks. ``read=False``: only the checks that need no
    pixels (``values`` and ``codes`` are then None); class maps are always read, for the code
    check.

    Errors (one line each): file missing or unreadable, no CRS (and no ``crs`` in the config),
    no overlap with the region, class codes not named in the config, a float file given as
    classes.
    """
    from .sources import grid_window, unreadable

    path = str(path or spec.path)
    what = f"validation reference {spec.name!r} ({Path(path).name})"
    if not _is_gdal_path(path) and not Path(path).exists():
        raise InputDataError(
            f"{what}: {path} does not exist; fix validation.references [{spec.name}].path"
        )
    try:
        with rasterio.open(path) as src:
            crs = src.crs or (rasterio.crs.CRS.from_user_input(spec.crs) if spec.crs else None)
            if crs is None:
                raise InputDataError(
                    f"{what}: the raster has no CRS; set validation.references[{spec.name}].crs "
                    "(e.g. EPSG:3995 for Obu et al. 2019)"
                )
            if spec.kind == "classes" and src.dtypes[spec.band - 1].startswith("float"):
                raise InputDataError(
                    f"{what}: band {spec.band} is {src.dtypes[spec.band - 1]}; a class map must be "
                    "integer (use kind: probability or magt for continuous maps)"
                )
            sb = transform_bounds(CRS, crs, *grid.bounds, densify_pts=21)
            try:
                win = grid_window(src.transform, src.width, src.height, sb, margin_px=1)
            except InputDataError:
                wb = transform_bounds(crs, CRS, *src.bounds, densify_pts=21)
                raise InputDataError(
                    f"{what}: covers lon/lat ({wb[0]:.2f}, {wb[1]:.2f}, {wb[2]:.2f}, {wb[3]:.2f}), "
                    f"which does not overlap the region {list(grid.bounds)}"
                ) from None
            transform = src.window_transform(win)
            tags = src.tags()
            bounds = tuple(src.bounds)
            synthetic = str(tags.get("synthetic", "")).lower() in ("1", "true", "yes")
            if not read and spec.kind != "classes":
                return NativeReference(None, None, transform, crs, bounds, synthetic, tags)
            data = src.read(spec.band, window=win, masked=True)
            if spec.kind != "classes":  # physical values: a scaled reference is unscaled
                values = to_physical(src, data, spec.band)
    except rasterio.errors.RasterioError as exc:
        raise unreadable(what, exc) from None
    mask = np.ma.getmaskarray(data)
    raw = np.ma.getdata(data)
    if spec.kind == "classes":
        present = {int(v) for v in np.unique(raw[~mask])}
        bad = sorted(present - set(spec.listed))
        if bad:
            raise InputDataError(
                f"{what}: class codes {bad} occur over the region but are not mapped; add them to "
                f"validation.references[{spec.name}].classes (a class, or ignore) after checking "
                "the map's legend"
            )
    if spec.kind == "classes":
        codes = spec.lut[np.where(mask, CLASS_NODATA, raw).astype(np.uint8)]
        values = np.where(mask, 0, raw).astype(np.uint8)  # the reference's own codes (0 = nodata)
    else:
        if spec.kind == "magt":
            fin = values[np.isfinite(values)]
            if fin.size and np.nanmedian(fin) > 150:
                raise InputDataError(
                    f"{what}: median value {np.nanmedian(fin):.1f} looks like "
                    "kelvin; a MAGT reference must be in C"
                )
        codes = spec.map_codes(values)
    return NativeReference(values, codes, transform, crs, bounds, synthetic, tags)


def native_pixel_areas_km2(transform, crs, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """True ground area (km^2) of pixels of a north-up grid in any CRS.

    Geographic CRS: the ellipsoidal cell area (Snyder 1987 eq. 3-12, :func:`grid.cell_area_m2`).
    Projected CRS: projected pixel area / areal scale factor h*k at the pixel centre
    (pyproj ``Proj.get_factors``; Snyder 1987 eq. 4-3 ff.), exact to first order over a pixel.
    """
    from pyproj import Proj, Transformer

    rows = np.asarray(rows, np.float64)
    cols = np.asarray(cols, np.float64)
    crs = rasterio.crs.CRS.from_user_input(crs)
    if crs.is_geographic:
        top = transform.f + rows * transform.e
        return cell_area_m2(top + transform.e, top, abs(transform.a)) / 1e6
    x, y = transform @ (cols + 0.5, rows + 0.5)
    lon, lat = Transformer.from_crs(crs, CRS, always_xy=True).transform(x, y)
    factors = Proj(crs.to_wkt()).get_factors(lon, lat)
    return abs(transform.a * transform.e) / np.asarray(factors.areal_scale) / 1e6


class _NativeAccumulator:
    """Area of each of our (compared) classes inside each reference pixel."""

    def __init__(self, native: NativeReference, labels: list[int]):
        from pyproj import Transformer

        self.native = native
        self.labels = labels
        self.h, self.w = native.codes.shape
        self.inv = ~native.transform
        self.to_native = Transformer.from_crs(CRS, native.crs, always_xy=True)
        self.index = np.full(256, -1, np.int64)
        for i, c in enumerate(labels):
            self.index[c] = i
        self.area = np.zeros(self.h * self.w * len(labels))

    def add(self, sub: Grid, ours: np.ndarray, pixel_area: np.ndarray) -> None:
        lon, lat = np.meshgrid(sub.col_longitudes(), sub.row_latitudes())
        x, y = self.to_native.transform(lon, lat)
        col, row = self.inv @ (np.asarray(x), np.asarray(y))
        col = np.floor(col).astype(np.int64)
        row = np.floor(row).astype(np.int64)
        k = self.index[ours]
        ok = (k >= 0) & (col >= 0) & (col < self.w) & (row >= 0) & (row < self.h)
        flat = ((row * self.w + col) * len(self.labels) + k)[ok]
        w = np.broadcast_to(pixel_area[:, None], ours.shape)[ok]
        self.area += np.bincount(flat, weights=w, minlength=self.area.size)

    def result(self) -> pd.DataFrame:
        """One row per reference pixel with valid reference data and any valid pixel of ours."""
        area = self.area.reshape(self.h, self.w, len(self.labels))
        valid_area = area.sum(axis=2)
        rows, cols = np.nonzero((valid_area > 0) & (self.native.codes != CLASS_NODATA))
        true_area = native_pixel_areas_km2(self.native.transform, self.native.crs, rows, cols)
        a = area[rows, cols]
        majority = np.asarray(self.labels)[np.argmax(a, axis=1)]  # ties -> first label
        pf = a[:, self.labels.index(PERMAFROST)] / valid_area[rows, cols]
        x, y = self.native.transform @ (cols + 0.5, rows + 0.5)
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(self.native.crs, CRS, always_xy=True).transform(x, y)
        df = pd.DataFrame(
            dict(
                ref_row=rows,
                ref_col=cols,
                x=x,
                y=y,
                lon=np.round(lon, 6),
                lat=np.round(lat, 6),
                reference_value=self.native.values[rows, cols],
                reference_class=self.native.codes[rows, cols].astype(int),
                ours_majority_class=majority.astype(int),
                ours_permafrost_fraction=pf,
                coverage=np.minimum(valid_area[rows, cols] / true_area, 1.0),
                true_area_km2=true_area,
            )
        )
        for i, c in enumerate(self.labels):
            df[f"ours_{CLASS_NAMES[c].replace(' ', '_')}_km2"] = a[:, i]
        return df


# -------------------------------------------------------------------------------- comparison


def _blocks(grid: Grid):
    rows = max(1, BLOCK_PX // max(grid.width, 1))
    for r0 in range(0, grid.height, rows):
        yield Window(0, r0, grid.width, min(rows, grid.height - r0))


def _intersects(sub: Grid, native: NativeReference) -> bool:
    left, bottom, right, top = transform_bounds(CRS, native.crs, *sub.bounds, densify_pts=21)
    b = native.bounds
    return left < b[2] and right > b[0] and bottom < b[3] and top > b[1]


def disagreement_codes(reference: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """Disagreement map codes (module docstring) of two compared class arrays (255 nodata)."""
    r = np.asarray(reference)
    o = np.asarray(ours)
    out = np.full(r.shape, CLASS_NODATA, np.uint8)
    valid = (r != CLASS_NODATA) & (o != CLASS_NODATA)
    rp, op = r == PERMAFROST, o == PERMAFROST
    out[valid & rp & op] = 1
    out[valid & ~rp & ~op & (r == o)] = 2
    out[valid & op & ~rp] = 3
    out[valid & rp & ~op] = 4
    out[valid & ~rp & ~op & (r != o)] = 5
    return out


def _confusion_frame(cm, labels) -> pd.DataFrame:
    names = [CLASS_NAMES[c] for c in labels]
    df = pd.DataFrame(np.asarray(cm), index=names, columns=names)
    df["total"] = df.sum(axis=1)
    df.loc["total"] = df.sum(axis=0)
    df.index.name = "reference \\ ours (km2)"
    return df.round(4).reset_index()


def compare_reference(
    config: dict, entry: dict, class_path, outputs: dict, threads: int = 2
) -> dict:
    """Compare ``baseline/class.tif`` with one reference map; write every output; return scores.

    ``outputs``: paths for ``disagreement`` (GeoTIFF), ``confusion`` (working grid, km^2),
    ``confusion_reference_grid``, ``areas`` (per-class areas at both scales),
    ``reference_pixels`` (one row per reference pixel) and ``scores`` (JSON).
    """
    grid = Grid.from_config(config)
    spec = reference_spec(entry)
    native_file = spec.native_path or native_path(config, entry)
    # the file compared on the working grid (checked; read only when it is the native one too)
    working = open_reference(spec, grid, read=native_file is None)
    native = open_reference(spec, grid, native_file) if native_file else working
    skip_native = _not_coarser(native, grid)
    labels = spec.labels
    L = len(labels)
    index = np.full(256, -1, np.int64)
    for i, c in enumerate(labels):
        index[c] = i
    cm = np.zeros((L, L))
    n_compared = 0
    row_area = grid.row_pixel_areas_km2()
    acc = None if skip_native else _NativeAccumulator(native, labels)
    from .sources.reference import reproject_to_grid

    dis_path = Path(outputs["disagreement"])
    blocks_path = dis_path.parent / f".{dis_path.name}.blocks.tif"
    dis_path.parent.mkdir(parents=True, exist_ok=True)
    comparison = "binary (permafrost / no permafrost)" if spec.binary else "three classes"
    tags = provenance_tags(
        config,
        reference=spec.name,
        reference_label=spec.label,
        reference_file=Path(spec.path).name,
        comparison=comparison,
        codes="; ".join(f"{k} {v[0]}" for k, v in DISAGREEMENT_CODES.items()),
    )
    if working.synthetic:
        tags["reference_note"] = "the reference map is SYNTHETIC (illustrative only)"
    kind = "classes" if spec.kind == "classes" else "continuous"
    try:
        with rasterio.open(class_path) as cls_src:
            if (cls_src.width, cls_src.height) != (grid.width, grid.height):
                raise InputDataError(
                    f"{class_path} is {cls_src.width} x {cls_src.height} pixels, "
                    f"not the working grid's {grid.width} x {grid.height}"
                )
            profile = gtiff_profile(grid, 1, "uint8", CLASS_NODATA, threads=threads)
            with rasterio.open(blocks_path, "w", **profile) as dst:
                # colour table and metadata before any pixel (libtiff cannot change the
                # photometric interpretation of a file being written)
                dst.set_band_description(1, DISAGREEMENT.description)
                dst.units = (DISAGREEMENT.units,)
                dst.update_tags(**tags)
                dst.write_colormap(
                    1, {c: (*rgb, 255) for c, (_, rgb) in DISAGREEMENT_CODES.items()}
                )
                for win in _blocks(grid):
                    sub = grid.subgrid(win)
                    ours = spec.collapse_ours(cls_src.read(1, window=win))
                    if _intersects(sub, working):
                        raw = reproject_to_grid(
                            spec.path,
                            (CRS, sub.transform, sub.width, sub.height),
                            kind=kind,
                            band=spec.band,
                            src_crs=spec.crs,
                            what=f"reference {spec.name}",
                        )
                        ref = spec.map_codes(raw)
                    else:
                        ref = np.full(ours.shape, CLASS_NODATA, np.uint8)
                    area = row_area[win.row_off : win.row_off + win.height]
                    valid = (ours != CLASS_NODATA) & (ref != CLASS_NODATA)
                    flat = index[ref[valid]] * L + index[ours[valid]]
                    w = np.broadcast_to(area[:, None], ours.shape)[valid]
                    cm += np.bincount(flat, weights=w, minlength=L * L).reshape(L, L)
                    n_compared += int(valid.sum())
                    dst.write(disagreement_codes(ref, ours), 1, window=win)
                    if acc is not None:
                        acc.add(sub, ours, area)
        to_cog(
            blocks_path,
            dis_path,
            DISAGREEMENT,
            compress=config.get("output", {}).get("compress", "deflate"),
            threads=threads,
        )
    finally:
        for p in (blocks_path, Path(str(blocks_path) + ".aux.xml")):
            p.unlink(missing_ok=True)

    # -- on the reference's own grid
    if acc is None:
        return _finish_without_native(
            config, spec, entry, working, cm, n_compared, labels, comparison, outputs, skip_native
        )
    pixels = acc.result()
    pixels["used"] = pixels["coverage"] >= spec.min_coverage
    used = pixels[pixels["used"]]
    cm_native = confusion(
        used["reference_class"], used["ours_majority_class"], labels, weights=used["true_area_km2"]
    )
    if spec.kind == "probability":
        ref_fraction = np.clip(used["reference_value"] / spec.probability_max, 0.0, 1.0)
    else:
        ref_fraction = (used["reference_class"] == PERMAFROST).astype(float)
    frac = error_scores(used["ours_permafrost_fraction"], ref_fraction)
    w = used["true_area_km2"].to_numpy()
    pf_ref = (used["reference_class"] == PERMAFROST).to_numpy()
    f_ours = used["ours_permafrost_fraction"].to_numpy()
    frac["mean_ours_fraction_where_reference_permafrost"] = (
        float(np.average(f_ours[pf_ref], weights=w[pf_ref])) if pf_ref.any() else math.nan
    )
    frac["mean_ours_fraction_where_reference_not_permafrost"] = (
        float(np.average(f_ours[~pf_ref], weights=w[~pf_ref])) if (~pf_ref).any() else math.nan
    )
    frac["compared_with"] = (
        "reference probability / probability_max"
        if spec.kind == "probability"
        else "reference permafrost indicator (1/0)"
    )

    # -- tables
    write_csv(outputs["confusion"], _confusion_frame(cm, labels))
    write_csv(outputs["confusion_reference_grid"], _confusion_frame(cm_native, labels))
    rows = []
    fraction_area = {
        c: float(used[f"ours_{CLASS_NAMES[c].replace(' ', '_')}_km2"].sum()) for c in labels
    }
    for scale, matrix in (("working_grid", cm), ("reference_grid", cm_native)):
        for rec in class_table(matrix, labels):
            rec = {"scale": scale, **rec}
            rec["reference_km2"] = round(rec.pop("reference"), 4)
            rec["ours_km2"] = round(rec.pop("ours"), 4)
            rec["difference_km2"] = round(rec.pop("difference"), 4)
            rec["ours_fraction_km2"] = (
                rec["ours_km2"]
                if scale == "working_grid"
                else round(fraction_area[rec["class_code"]], 4)
            )
            rows.append(rec)
    cols = [
        "scale",
        "class_code",
        "class_name",
        "reference_km2",
        "ours_km2",
        "ours_fraction_km2",
        "difference_km2",
        "reference_share",
        "ours_share",
        "producer_accuracy",
        "user_accuracy",
    ]
    write_csv(outputs["areas"], pd.DataFrame(rows)[cols])
    write_csv(outputs["reference_pixels"], pixels)

    res = native.transform
    scores = dict(
        name=spec.name,
        label=spec.label,
        path=spec.path,
        kind=spec.kind,
        comparison=comparison,
        synthetic_reference=working.synthetic,
        reference_grid_file=str(native_file or spec.path),
        threshold=spec.threshold if spec.kind != "classes" else None,
        working_grid=dict(
            resolution_arcsec=config["region"]["resolution_arcsec"],
            n_pixels=n_compared,
            area_km2=float(cm.sum()),
            **_without_total(scores_from_confusion(cm, labels)),
            classes=class_table(cm, labels),
        ),
        reference_grid=dict(
            crs=str(native.crs),
            pixel_size=[abs(res.a), abs(res.e)],
            n_pixels=int(len(used)),
            n_dropped_low_coverage=int((~pixels["used"]).sum()),
            min_coverage=spec.min_coverage,
            area_km2=float(cm_native.sum()),
            aggregation="our classes per reference pixel: majority by area "
            "(ties to the lower code) "
            "and permafrost fraction",
            **_without_total(scores_from_confusion(cm_native, labels)),
            classes=class_table(cm_native, labels),
            permafrost_fraction=frac,
        ),
    )
    write_json(outputs["scores"], scores)
    log.info(
        "reference %s: working grid OA %.3f kappa %.3f; reference grid OA %.3f kappa %.3f",
        spec.name,
        scores["working_grid"]["overall_accuracy"],
        scores["working_grid"]["kappa"],
        scores["reference_grid"]["overall_accuracy"],
        scores["reference_grid"]["kappa"],
    )
    return scores


def _not_coarser(native: NativeReference, grid: Grid) -> str:
    """A note when the reference's pixels are not at least twice as large (in ground area) as
    ours, so that its own grid adds nothing to the working-grid comparison; else ''."""
    h, w = native.codes.shape
    ref_km2 = float(
        native_pixel_areas_km2(
            native.transform, native.crs, np.array([h // 2]), np.array([w // 2])
        )[0]
    )
    ours_km2 = float(grid.row_pixel_areas_km2()[grid.height // 2])
    if ref_km2 >= 2.0 * ours_km2:
        return ""
    return (
        f"the reference's pixels ({ref_km2:.3g} km2) are not coarser than the working "
        f"grid's ({ours_km2:.3g} km2), so the comparison on its own grid is the working-grid "
        "comparison; give native_path for the map at its own resolution"
    )


def _finish_without_native(
    config, spec, entry, working, cm, n_compared, labels, comparison, outputs, note
) -> dict:
    """Tables and scores when the reference-grid comparison is skipped (see _not_coarser)."""
    write_csv(outputs["confusion"], _confusion_frame(cm, labels))
    write_csv(outputs["confusion_reference_grid"], pd.DataFrame({"note": [note]}))
    rows = []
    for rec in class_table(cm, labels):
        rows.append(
            {
                "scale": "working_grid",
                "class_code": rec["class_code"],
                "class_name": rec["class_name"],
                "reference_km2": round(rec["reference"], 4),
                "ours_km2": round(rec["ours"], 4),
                "ours_fraction_km2": round(rec["ours"], 4),
                "difference_km2": round(rec["difference"], 4),
                "reference_share": rec["reference_share"],
                "ours_share": rec["ours_share"],
                "producer_accuracy": rec["producer_accuracy"],
                "user_accuracy": rec["user_accuracy"],
            }
        )
    write_csv(outputs["areas"], pd.DataFrame(rows))
    write_csv(outputs["reference_pixels"], pd.DataFrame({"note": [note]}))
    scores = dict(
        name=spec.name,
        label=spec.label,
        path=spec.path,
        kind=spec.kind,
        comparison=comparison,
        synthetic_reference=working.synthetic,
        reference_grid_file=spec.native_path or spec.path,
        threshold=spec.threshold if spec.kind != "classes" else None,
        working_grid=dict(
            resolution_arcsec=config["region"]["resolution_arcsec"],
            n_pixels=n_compared,
            area_km2=float(cm.sum()),
            **_without_total(scores_from_confusion(cm, labels)),
            classes=class_table(cm, labels),
        ),
        reference_grid=dict(skipped=note),
    )
    write_json(outputs["scores"], scores)
    log.info(
        "reference %s: working grid OA %.3f kappa %.3f; %s",
        spec.name,
        scores["working_grid"]["overall_accuracy"],
        scores["working_grid"]["kappa"],
        note,
    )
    return scores


def _without_total(d: dict) -> dict:
    d = dict(d)
    d.pop("total", None)
    return d


# -------------------------------------------------------------------------------- points

POINT_NUMERIC = {
    # column: (low, high, hint when out of range)
    "lon": (-180.0, 180.0, "degrees east, WGS 84"),
    "lat": (-90.0, 90.0, "degrees north, WGS 84"),
    "elevation_m": (-450.0, 9000.0, "metres a.s.l."),
    "magt_c": (-40.0, 40.0, "degrees C (a value above 200 is kelvin)"),
    "alt_m": (0.0, 30.0, "metres (a value above 30 is probably centimetres)"),
    "depth_m": (0.0, 2000.0, "metres below the surface"),
}
PRESENCE_TRUE = {"1", "1.0", "true", "yes", "y", "t", "permafrost"}
PRESENCE_FALSE = {"0", "0.0", "false", "no", "n", "f", "none"}


def _leading_comment_lines(path: Path) -> int:
    n = 0
    with path.open(encoding="utf-8-sig") as f:
        for line in f:
            if not line.lstrip().startswith("#"):
                break
            n += 1
    return n


def read_points(path, layer: str | None = None) -> pd.DataFrame:
    """Boreholes / field sites from a CSV or a vector file (GeoPackage, GeoJSON, shapefile).

    Columns (names case-insensitive): ``lon``, ``lat`` (degrees, WGS 84; a vector file may use
    its point geometry, reprojected to WGS 84), optional ``elevation_m`` (m a.s.l.), ``magt_c``
    (mean annual ground temperature, C), ``alt_m`` (active layer thickness, m), ``permafrost``
    (1/0, true/false, yes/no), ``depth_m`` (depth of the MAGT measurement, m), ``source``,
    ``id``; other columns are kept. Leading ``#`` lines of a CSV are comments. Where
    ``permafrost`` is empty and ``magt_c`` is given, presence is taken as ``magt_c < 0``
    (column ``permafrost_from`` says which). Any bad value raises one
    :class:`~permamap.errors.InputDataError` naming the row, column and fix.
    """
    path = Path(path)
    what = f"validation points {path.name}"
    if not path.exists():
        raise InputDataError(f"{what}: {path} does not exist; fix validation.points.path")
    if path.suffix.lower() in (".gpkg", ".geojson", ".json", ".shp", ".fgb"):
        import geopandas as gpd

        try:
            gdf = gpd.read_file(path, layer=layer)
        except Exception as exc:  # pyogrio raises its own types
            raise InputDataError(
                f"{what}: not a readable vector file ({str(exc).splitlines()[0]})"
            ) from None
        gdf.columns = [c if c == gdf.geometry.name else str(c).strip().lower() for c in gdf.columns]
        df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        if not {"lon", "lat"} <= set(df.columns):
            if gdf.crs is None:
                raise InputDataError(f"{what}: the layer has no CRS and no lon/lat columns")
            geom = gdf.geometry.to_crs("EPSG:4326")
            if not geom.geom_type.isin(["Point"]).all():
                raise InputDataError(
                    f"{what}: geometries must be points, found {sorted(set(geom.geom_type))}"
                )
            df["lon"], df["lat"] = geom.x.to_numpy(), geom.y.to_numpy()
    else:
        try:
            df = pd.read_csv(path, skiprows=_leading_comment_lines(path), encoding="utf-8-sig")
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise InputDataError(
                f"{what}: not a readable CSV ({str(exc).splitlines()[0]})"
            ) from None
        df.columns = [str(c).strip().lower() for c in df.columns]
    missing = {"lon", "lat"} - set(df.columns)
    if missing:
        raise InputDataError(
            f"{what}: missing column(s) {sorted(missing)}; expected lon, lat and "
            "optional elevation_m, magt_c, alt_m, permafrost, depth_m, source, id"
        )
    if df.empty:
        raise InputDataError(f"{what}: no points")
    df = df.reset_index(drop=True)
    for col, (lo, hi, hint) in POINT_NUMERIC.items():
        if col not in df.columns:
            df[col] = np.nan
            continue
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputDataError(
                f"{what}: row {i + 1}, column {col} = {raw.iloc[i]!r} is not a number"
            )
        out = (num < lo) | (num > hi)
        if out.any():
            i = int(np.flatnonzero(out.to_numpy())[0])
            raise InputDataError(
                f"{what}: row {i + 1}, column {col} = {num.iloc[i]} is outside "
                f"[{lo}, {hi}] ({hint})"
            )
        df[col] = num.astype(np.float64)
    for col in ("lon", "lat"):
        if df[col].isna().any():
            i = int(np.flatnonzero(df[col].isna().to_numpy())[0])
            raise InputDataError(f"{what}: row {i + 1} has no {col}")
    pres = np.full(len(df), np.nan)
    if "permafrost" in df.columns:
        for i, v in enumerate(df["permafrost"]):
            if v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == "":
                continue
            s = str(v).strip().lower()
            if s in PRESENCE_TRUE:
                pres[i] = 1.0
            elif s in PRESENCE_FALSE:
                pres[i] = 0.0
            else:
                raise InputDataError(
                    f"{what}: row {i + 1}, column permafrost = {v!r}; use 1/0, "
                    "true/false or yes/no (empty = unknown)"
                )
    given = np.isfinite(pres)
    derived = ~given & np.isfinite(df["magt_c"].to_numpy())
    pres[derived] = (df["magt_c"].to_numpy()[derived] < 0).astype(float)
    df["permafrost"] = pres
    df["permafrost_from"] = np.where(given, "given", np.where(derived, "magt_c < 0", ""))
    if "id" not in df.columns:
        df["id"] = [f"P{i + 1}" for i in range(len(df))]
    df["id"] = df["id"].astype(str)
    if "source" not in df.columns:
        df["source"] = ""
    df["source"] = df["source"].fillna("").astype(str)
    return df


def sample_raster(path, lon, lat) -> np.ndarray:
    """Physical values (float64, scale/offset applied, NaN for nodata or outside) of band 1 of a
    raster at lon/lat points (the raster is on the EPSG:4326 working grid)."""
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    out = np.full(lon.shape, np.nan)
    if lon.size == 0:
        return out
    with rasterio.open(path) as src:
        if src.width * src.height > 64_000_000:  # large: one small read per point
            for i, v in enumerate(src.sample(zip(lon, lat, strict=True), indexes=1, masked=True)):
                out[i] = to_physical(src, v, 1)[0]
            return out
        band = read_physical(src, 1)
        col, row = ~src.transform @ (lon, lat)
        row = np.floor(row).astype(np.int64)
        col = np.floor(col).astype(np.int64)
        ok = (row >= 0) & (row < src.height) & (col >= 0) & (col < src.width)
        out[ok] = band[row[ok], col[ok]]
    return out


class PointForcing:
    """Reference monthly air temperature at sample points, in the interface of
    :class:`permamap.climate.StationForcing` (``fields``, ``lapse``, ``method``), so that
    :func:`permamap.climate.compute_climate` runs on a (1, n) block of points."""

    def __init__(self, t_ref: np.ndarray, z_ref: np.ndarray, lapse, method: int):
        self.t_ref = np.ascontiguousarray(t_ref, np.float64)  # (12, n)
        self.z_ref = np.ascontiguousarray(z_ref, np.float64)  # (n,)
        self.lapse = lapse
        self.method = method

    def fields(self, grid=None):
        return self.t_ref[:, None, :], self.z_ref[None, :]


#: Columns of the feature matrix of :func:`point_features`.
FEATURES = (
    ["lon", "lat", "z", "slope", "aspect", "solar"]
    + [f"t_ref_{m}" for m in range(1, 13)]
    + ["z_ref", "surface"]
)


def point_features(config: dict, lon, lat, z, slope, aspect, solar) -> np.ndarray:
    """(n, 20) feature matrix: position, terrain, the forcing's reference monthly air
    temperature and its elevation, and the surface type (index of ``ground.surface.types``; 0
    without a land cover) at each point (columns :data:`FEATURES`).

    The forcing and the land cover are asked for their fields on a 1 x 1 grid centred on each
    point, so a gridded forcing gives each point its own reference climate and the surface type
    is the one the map gives a working-grid pixel there (:meth:`permamap.surface.SurfaceMap.index`).
    """
    from . import surface
    from .climate import forcing_from_config

    forcing = forcing_from_config(config)
    smap = surface.from_config(config)
    res = config["region"]["resolution_arcsec"] / 3600.0
    lon = np.asarray(lon, np.float64)
    lat = np.asarray(lat, np.float64)
    n = lon.size
    t_ref = np.empty((n, 12))
    z_ref = np.empty(n)
    surf = np.zeros(n)
    for i in range(n):
        g = Grid(west=lon[i] - res / 2, north=lat[i] + res / 2, res_deg=res, width=1, height=1)
        t, zr = forcing.fields(g)
        t_ref[i] = np.asarray(t)[:, 0, 0]
        z_ref[i] = float(np.asarray(zr)[0, 0])
        if smap is not None:
            surf[i] = smap.index(g)[0, 0]
    cols = [lon, lat, z, slope, aspect, solar]
    return np.column_stack([np.asarray(c, np.float64).ravel() for c in cols] + [t_ref, z_ref, surf])


def model_from_features(config: dict, X: np.ndarray, active_layer: bool = True) -> dict:
    """The model (climate + ground + active layer of ``config``) at the points of a feature
    matrix: dict of 1-D arrays ``maat``, ``fdd``, ``tdd``, ``magt``, ``cls`` and (with
    ``active_layer``) ``alt``. It calls the public wrappers of the map stages
    (:func:`permamap.climate.compute_climate`, :func:`permamap.ground.compute_ground`,
    :func:`permamap.ground.active_layer`) on a 1 x n block of points, with the points' surface
    types when ``ground.surface.land_cover`` is set (as the map stages do)."""
    from . import climate, ground, surface

    X = np.asarray(X, np.float64)
    z, slope, aspect, solar = (X[:, i][None, :] for i in range(2, 6))
    method = climate.METHODS[config["climate"].get("degree_days", "sinusoid")]
    forcing = PointForcing(
        X[:, 6:18].T,
        X[:, 18],
        climate.lapse_rates_c_per_m(config["climate"]["lapse_rate_c_per_m"]),
        method,
    )
    maat, fdd, tdd, amp = climate.compute_climate(z, forcing)
    z_ground, skw = z, {}
    if surface.land_cover_path(config) is not None:  # the map's surface types (masked: NaN)
        surf = X[:, 19].astype(np.uint8)[None, :]
        z_ground = np.where(surface.masked_types(config)[surf], np.nan, z)
        skw = {"surface": surf, "surface_mult": surface.multipliers(config)}
    magt, cls, _ = ground.compute_ground(
        config, z_ground, slope, aspect, fdd, tdd, solar=solar, **skw
    )
    out = dict(maat=maat[0], fdd=fdd[0], tdd=tdd[0], magt=magt[0], cls=cls[0])
    if active_layer:
        alt, _ = ground.active_layer(
            config, cls, fdd, tdd, solar=solar, maat=maat, amplitude=amp, **skw
        )
        out["alt"] = np.asarray(alt)[0]
    return out


def model_at_points(config: dict, lon, lat, z, slope, aspect, solar) -> dict:
    """Climate and ground model of ``config`` at points (see :func:`model_from_features`)."""
    return model_from_features(config, point_features(config, lon, lat, z, slope, aspect, solar))


POINT_RASTERS = ("elevation", "slope", "aspect", "solar", "magt", "class", "alt")


def point_table(config: dict, points: pd.DataFrame, rasters: dict) -> pd.DataFrame:
    """Per point: observed values beside the map's pixel and the model re-run at the point."""
    grid = Grid.from_config(config)
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    inside = (lon >= grid.west) & (lon < grid.east) & (lat > grid.south) & (lat <= grid.north)
    px = {k: np.where(inside, sample_raster(rasters[k], lon, lat), np.nan) for k in POINT_RASTERS}
    use_point = bool(config["validation"]["points"].get("use_point_elevation", True))
    z_obs = points["elevation_m"].to_numpy()
    z_used = np.where(use_point & np.isfinite(z_obs), z_obs, px["elevation"])
    model = model_at_points(config, lon, lat, z_used, px["slope"], px["aspect"], px["solar"])
    cls_model = np.where(model["cls"] == CLASS_NODATA, np.nan, model["cls"].astype(float))
    cls_model[~inside] = np.nan
    magt_model = np.where(inside, model["magt"], np.nan)
    alt_model = np.where(inside, model["alt"], np.nan)
    t = pd.DataFrame(
        {
            "id": points["id"],
            "lon": lon,
            "lat": lat,
            "source": points["source"],
            "inside_grid": inside,
            "depth_m": points["depth_m"],
            "elevation_obs_m": z_obs,
            "elevation_pixel_m": px["elevation"],
            "elevation_used_m": np.where(inside, z_used, np.nan),
            "slope_deg": px["slope"],
            "aspect_deg": px["aspect"],
            "solar_index": px["solar"],
            "magt_obs_c": points["magt_c"],
            "magt_model_c": magt_model,
            "magt_error_c": magt_model - points["magt_c"].to_numpy(),
            "magt_pixel_c": px["magt"],
            "alt_obs_m": points["alt_m"],
            "alt_model_m": alt_model,
            "alt_error_m": alt_model - points["alt_m"].to_numpy(),
            "alt_pixel_m": px["alt"],
            "permafrost_obs": points["permafrost"],
            "permafrost_from": points["permafrost_from"],
            "class_model": cls_model,
            "permafrost_model": np.where(
                np.isfinite(cls_model), (cls_model == PERMAFROST).astype(float), np.nan
            ),
            "class_pixel": px["class"],
        }
    )
    return t


def point_scores(table: pd.DataFrame, use_point_elevation: bool) -> dict:
    t = table[table["inside_grid"]]
    return dict(
        n_points=int(len(table)),
        n_inside_grid=int(len(t)),
        model_values="model re-run at each point's elevation_m where given"
        if use_point_elevation
        else "model at the elevation of the point's pixel",
        magt_c=error_scores(t["magt_model_c"], t["magt_obs_c"]),
        magt_pixel_c=error_scores(t["magt_pixel_c"], t["magt_obs_c"]),
        alt_m=error_scores(t["alt_model_m"], t["alt_obs_m"]),
        presence=presence_scores(t["permafrost_obs"], t["permafrost_model"]),
        note="bias = mean(model - observed); MAGT: the model gives the temperature at the top of "
        "permafrost (TTOP), boreholes measure at depth_m (the geothermal gradient makes "
        "deeper readings a few tenths of a degree warmer); ALT only where both the point and "
        "the model have permafrost",
    )


def scatter_plot(table: pd.DataFrame, scores: dict, path, title: str = "") -> None:
    """Model vs observed MAGT and ALT with the 1:1 line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import _save

    t = table[table["inside_grid"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    panels = [
        ("magt_obs_c", "magt_model_c", "magt_c", "MAGT (C)"),
        ("alt_obs_m", "alt_model_m", "alt_m", "active layer thickness (m)"),
    ]
    for ax, (ocol, mcol, key, label) in zip(axes, panels, strict=True):
        ok = t[ocol].notna() & t[mcol].notna()
        if ok.any():
            agree = (t["permafrost_obs"] == t["permafrost_model"])[ok]
            o, m = t.loc[ok, ocol], t.loc[ok, mcol]
            ax.scatter(o[agree], m[agree], s=28, c="#2166ac", label="presence agrees", zorder=3)
            ax.scatter(
                o[~agree],
                m[~agree],
                s=34,
                c="#d73027",
                marker="x",
                label="presence disagrees",
                zorder=3,
            )
            lo = float(min(o.min(), m.min()))
            hi = float(max(o.max(), m.max()))
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=1, label="1:1")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            s = scores[key]
            ax.text(
                0.03,
                0.97,
                f"n = {s['n']}\nbias = {s['bias']:+.2f}\nMAE = {s['mae']:.2f}\n"
                f"RMSE = {s['rmse']:.2f}",
                transform=ax.transAxes,
                va="top",
                fontsize=9,
                bbox=dict(facecolor="white", alpha=0.8, edgecolor="0.8"),
            )
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no observations", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel(f"observed {label}")
        ax.set_ylabel(f"model {label}")
        ax.set_aspect("equal", adjustable="box")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "Points: model vs observed")
    _save(fig, path)


def validate_points(
    config: dict, points_path, rasters: dict, outputs: dict, layer: str | None = None
) -> dict:
    """Per-point table (CSV), scatter plot (PNG) and scores (JSON) of the points file."""
    pts = read_points(points_path, layer=layer)
    table = point_table(config, pts, rasters)
    use_point = bool(config["validation"]["points"].get("use_point_elevation", True))
    scores = point_scores(table, use_point)
    scores["path"] = str(points_path)
    scores["synthetic_points"] = _synthetic_csv(points_path)
    write_csv(outputs["table"], table)
    title = "Points: model vs observed" + (
        " (SYNTHETIC sample points)" if scores["synthetic_points"] else ""
    )
    scatter_plot(table, scores, outputs["scatter"], title=title)
    write_json(outputs["scores"], scores)
    m = scores["magt_c"]
    log.info(
        "points: %d inside the grid; MAGT n=%d bias %.2f RMSE %.2f C; presence kappa %s",
        scores["n_inside_grid"],
        m["n"],
        m["bias"],
        m["rmse"],
        scores["presence"]["kappa"],
    )
    return scores


def _synthetic_csv(path) -> bool:
    """True when the file's leading comment says it is synthetic (the bundled sample)."""
    p = Path(path)
    if p.suffix.lower() != ".csv" or not p.exists():
        return False
    with p.open(encoding="utf-8-sig") as f:
        head = "".join(
            line for _, line in zip(range(5), f, strict=False) if line.lstrip().startswith("#")
        )
    return "synthetic" in head.lower()


# -------------------------------------------------------------------------------- summary


def summarize(
    config: dict,
    reference_scores: dict,
    points_scores,
    calibration_scores,
    out_json,
    out_csv,
    notes: list | None = None,
) -> dict:
    """``validation/scores.json`` (everything: the per-part scores files, the published range,
    notes on what was left out) and ``validation/summary.csv`` (one row per headline number:
    part, name, scale, metric, value, n, published_low, published_high)."""
    refs = {name: json.loads(Path(p).read_text()) for name, p in reference_scores.items()}
    pts = json.loads(Path(points_scores).read_text()) if points_scores else None
    cal = json.loads(Path(calibration_scores).read_text()) if calibration_scores else None
    synthetic = any(r.get("synthetic_reference") for r in refs.values()) or bool(
        pts and pts.get("synthetic_points")
    )
    out = dict(
        run=config["run"],
        synthetic_inputs=synthetic,
        published_range=PUBLISHED_RANGE,
        notes=list(notes or []),
        references=refs,
        points=pts,
        calibration=cal,
    )
    rows = []

    def add(part, name, scale, metric, value, n=None):
        lo, hi = (
            (PUBLISHED_RANGE.get(metric) or [None, None])
            if metric in ("kappa", "magt_rmse_c")
            else (None, None)
        )
        rows.append(
            dict(
                part=part,
                name=name,
                scale=scale,
                metric=metric,
                value=value,
                n=n,
                published_low=lo,
                published_high=hi,
            )
        )

    for name, r in refs.items():
        for scale in ("working_grid", "reference_grid"):
            s = r[scale]
            for metric in (
                "overall_accuracy",
                "kappa",
                "quantity_disagreement",
                "allocation_disagreement",
            ):
                add("reference", name, scale, metric, s.get(metric), s.get("n_pixels"))
    if pts:
        add("points", "points", "point", "magt_bias_c", pts["magt_c"]["bias"], pts["magt_c"]["n"])
        add("points", "points", "point", "magt_mae_c", pts["magt_c"]["mae"], pts["magt_c"]["n"])
        add("points", "points", "point", "magt_rmse_c", pts["magt_c"]["rmse"], pts["magt_c"]["n"])
        add("points", "points", "point", "alt_rmse_m", pts["alt_m"]["rmse"], pts["alt_m"]["n"])
        add(
            "points",
            "points",
            "point",
            "presence_accuracy",
            pts["presence"]["overall_accuracy"],
            pts["presence"]["n"],
        )
        add("points", "points", "point", "kappa", pts["presence"]["kappa"], pts["presence"]["n"])
    if cal and cal.get("status") == "ok":
        for scale, key in (
            ("held-out blocks, calibrated", "held_out"),
            ("held-out blocks, config parameters", "config_on_held_out"),
        ):
            for k, v in (cal.get(key) or {}).items():
                if k != "n" and (v is None or isinstance(v, (int, float))):
                    add("calibration", cal["target"], scale, k, v, cal.get("n_samples"))
    write_json(out_json, out)
    write_csv(
        out_csv,
        pd.DataFrame(
            rows,
            columns=[
                "part",
                "name",
                "scale",
                "metric",
                "value",
                "n",
                "published_low",
                "published_high",
            ],
        ),
    )
    return out


# ---------------------------------------------------------------- Snakemake adapters


def _threads(smk) -> int:
    t = max(1, int(getattr(smk, "threads", 1) or 1))
    os.environ.setdefault("GDAL_NUM_THREADS", str(t))
    return t


def reference_step(smk) -> None:
    """Rule ``validate_reference``: one reference map (wildcard ``ref``)."""
    config = smk.config
    entry = reference_entry(config, smk.wildcards.ref)
    out = smk.output
    compare_reference(
        config,
        entry,
        smk.input.cls,
        dict(
            disagreement=out.disagreement,
            confusion=out.confusion,
            confusion_reference_grid=out.confusion_reference_grid,
            areas=out.areas,
            reference_pixels=out.reference_pixels,
            scores=out.scores,
        ),
        threads=_threads(smk),
    )


def points_step(smk) -> None:
    """Rule ``validate_points``."""
    config = smk.config
    rasters = {k: getattr(smk.input, "cls" if k == "class" else k) for k in POINT_RASTERS}
    out = smk.output
    validate_points(
        config,
        smk.input.points,
        rasters,
        dict(table=out.table, scatter=out.scatter, scores=out.scores),
        layer=config["validation"]["points"].get("layer"),
    )


def summary_step(smk) -> None:
    """Rule ``validation_summary``."""
    config = smk.config
    names = [r["name"] for r in reference_entries(config)[0]]
    refs = dict(zip(names, list(smk.input.references), strict=True))
    pts = smk.input.points[0] if len(smk.input.points) else None
    cal = smk.input.calibration[0] if len(smk.input.calibration) else None
    summarize(
        config, refs, pts, cal, smk.output.scores, smk.output.summary, notes=list(smk.params.notes)
    )
