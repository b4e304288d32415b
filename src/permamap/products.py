"""The output contract: every product's dtype, nodata, units, description, codes and colours.

README.md ("Outputs") documents the same table; tests check the files against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np

FLOAT_NODATA = -9999.0
CLASS_NODATA = 255
INT16_NODATA = -32768

# Ground classes (class.tif)
PERMAFROST = 1
SEASONALLY_FROZEN = 2
UNFROZEN = 3
GROUND_CLASSES = {
    PERMAFROST: ("perennial permafrost", (33, 102, 172)),
    SEASONALLY_FROZEN: ("seasonally frozen ground", (166, 217, 106)),
    UNFROZEN: ("unfrozen ground", (253, 174, 97)),
}

# Thermal stability of permafrost (stability.tif), Cheng (1984) scheme.
NO_PERMAFROST = 0
STABILITY_CLASSES = {
    NO_PERMAFROST: ("no permafrost", (240, 240, 240)),
    1: ("extremely stable", (8, 48, 107)),
    2: ("stable", (33, 113, 181)),
    3: ("sub-stable", (107, 174, 214)),
    4: ("transitional", (198, 219, 239)),
    5: ("unstable", (252, 146, 114)),
}

# IPA permafrost zones (zone.tif) from permafrost probability, as ESA CCI Permafrost maps them.
IPA_ZONES = {
    0: ("no permafrost", (240, 240, 240)),
    1: ("continuous (>= 90 %)", (8, 48, 107)),
    2: ("discontinuous (50-90 %)", (66, 146, 198)),
    3: ("sporadic (10-50 %)", (158, 202, 225)),
    4: ("isolated (< 10 %)", (222, 235, 247)),
}


# Permafrost degradation under a scenario (degradation.tif), relative to the baseline
# (permamap.degradation; README "Scenarios").
DEGRADATION_CLASSES = {
    0: ("no permafrost", (240, 240, 240)),
    1: ("persisting", (33, 102, 172)),
    2: ("warming (lower stability class)", (146, 197, 222)),
    3: ("thawing at depth (talik or deeper active layer)", (244, 165, 130)),
    4: ("thawed (permafrost to seasonally frozen ground)", (178, 24, 43)),
    5: ("new permafrost (scenario only)", (118, 42, 131)),
}


@dataclass(frozen=True)
class Product:
    """One product of the contract. A scaled product stores integers: physical value = stored
    value * ``scale`` + ``offset`` (GDAL's band scale/offset convention, written to every file
    holding the product so GDAL, QGIS, rasterio and rioxarray show physical units)."""

    name: str
    dtype: str
    nodata: float
    units: str
    description: str
    categories: dict = field(default_factory=dict)  # code -> (name, rgb)
    resampling: str = "average"  # overview resampling
    scale: float = 1.0
    offset: float = 0.0

    @property
    def is_class(self) -> bool:
        return bool(self.categories)

    @property
    def is_scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0


PRODUCTS = {
    "elevation": Product(
        "elevation", "float32", FLOAT_NODATA, "m", "Elevation of the working DEM (m a.s.l.)"
    ),
    "slope": Product(
        "slope", "float32", FLOAT_NODATA, "degree", "Slope (Horn 1981, true metric cell sizes)"
    ),
    "aspect": Product(
        "aspect",
        "float32",
        FLOAT_NODATA,
        "degree",
        "Aspect: direction the slope faces, clockwise from north; -1 = flat",
        resampling="nearest",
    ),
    "solar": Product(
        "solar",
        "float32",
        FLOAT_NODATA,
        "1",
        "Solar exposure index: clear-sky thaw-season beam radiation on the slope / on flat ground",
    ),
    "maat": Product("maat", "float32", FLOAT_NODATA, "degC", "Mean annual air temperature"),
    "fdd": Product(
        "fdd", "float32", FLOAT_NODATA, "degC day", "Air freezing index (freezing degree-days)"
    ),
    "tdd": Product(
        "tdd", "float32", FLOAT_NODATA, "degC day", "Air thawing index (thawing degree-days)"
    ),
    # int16 in 0.01 degC (far below the model's uncertainty): a sixth of the float32 bytes
    # compressed, and writing compressed float32 is what a tile job spends its time on
    "magt": Product(
        "magt",
        "int16",
        INT16_NODATA,
        "degC",
        "Mean annual ground temperature",
        scale=0.01,
    ),
    "alt": Product(
        "alt", "float32", FLOAT_NODATA, "m", "Active layer thickness (permafrost pixels only)"
    ),
    "freeze_depth": Product(
        "freeze_depth",
        "float32",
        FLOAT_NODATA,
        "m",
        "Maximum seasonal freezing depth (seasonally frozen ground only)",
    ),
    "probability": Product(
        "probability",
        "uint8",
        CLASS_NODATA,
        "percent",
        "Permafrost probability: share of the Monte Carlo ensemble with MAGT < 0",
    ),
    "zone": Product(
        "zone",
        "uint8",
        CLASS_NODATA,
        "class",
        "IPA permafrost zone from probability: 1 continuous, 2 discontinuous, 3 sporadic, 4 isolated, 0 none",
        categories=IPA_ZONES,
        resampling="mode",
    ),
    "class": Product(
        "class",
        "uint8",
        CLASS_NODATA,
        "class",
        "Ground class: 1 permafrost, 2 seasonally frozen, 3 unfrozen",
        categories=GROUND_CLASSES,
        resampling="mode",
    ),
    "stability": Product(
        "stability",
        "uint8",
        CLASS_NODATA,
        "class",
        "Permafrost thermal stability (Cheng 1984): 0 none, 1 extremely stable .. 5 unstable",
        categories=STABILITY_CLASSES,
        resampling="mode",
    ),
    "degradation": Product(
        "degradation",
        "uint8",
        CLASS_NODATA,
        "class",
        "Permafrost degradation vs the baseline: 0 none, 1 persisting, 2 warming, "
        "3 thawing at depth, 4 thawed, 5 new permafrost",
        categories=DEGRADATION_CLASSES,
        resampling="mode",
    ),
}


def colormap(product: Product) -> dict:
    """GeoTIFF colour table {code: (r, g, b, a)} for a class product."""
    return {code: (*rgb, 255) for code, (_, rgb) in product.categories.items()}


def stored_range(product: Product) -> tuple[float, float]:
    """(lowest, highest) physical value a scaled product can store (the nodata code excluded)."""
    info = np.iinfo(np.dtype(product.dtype))
    lo, hi = info.min, info.max
    if product.nodata == lo:
        lo += 1
    elif product.nodata == hi:
        hi -= 1
    return lo * product.scale + product.offset, hi * product.scale + product.offset


def encode(product: Product, values) -> np.ndarray:
    """Stored values of ``product`` from physical ``values`` (float, NaN = nodata).

    stored = rint((value - offset) / scale), computed in float64; ``np.rint`` rounds half to
    even, deterministically. NaN -> ``product.nodata``. A finite value outside the stored range
    (:func:`stored_range`) or an infinite one raises ValueError: it is a model or unit error
    (e.g. kelvin), never something to clip silently.
    """
    if not product.is_scaled:
        raise ValueError(f"{product.name} is not a scaled product; write its values as they are")
    dtype = np.dtype(product.dtype)
    x = np.ascontiguousarray(values)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    info = np.iinfo(dtype)
    out = np.empty(x.shape, dtype)
    n_bad, first_bad = _encode_kernel(
        x.reshape(-1),
        float(product.offset),
        float(product.scale),
        float(info.min),
        float(info.max),
        float(product.nodata),
        out.reshape(-1),
    )
    if n_bad:
        lo, hi = stored_range(product)
        v = float(x.reshape(-1)[first_bad])
        raise ValueError(
            f"{product.name}: value {v!r} {product.units} outside the {product.dtype} range of the "
            f"product ({lo:g} .. {hi:g} {product.units} in steps of {product.scale:g}); "
            f"{n_bad} pixel(s) affected"
        )
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _encode_kernel(x, offset, scale, lo, hi, nodata, out):
    """One pass of :func:`encode`: out = rint((float64(x) - offset) / scale), NaN -> nodata;
    returns (number of finite values whose code falls outside [lo, hi] or on nodata, index of
    the first, -1 if none). The same float64 operations as NumPy's in the same order (so the
    same integers), branch-free so the loop vectorises."""
    n_bad = 0
    for i in range(x.size):
        v = np.float64(x[i])
        q = np.rint((v - offset) / scale)
        ok = (q >= lo) & (q <= hi) & (q != nodata)  # False for NaN
        out[i] = q if ok else nodata
        n_bad += (not ok) & (v == v)
    first = -1
    if n_bad:
        for i in range(x.size):
            if out[i] == nodata and x[i] == x[i]:
                first = i
                break
    return n_bad, first


def decode(stored, nodata=None, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Physical float64 values of stored values: ``stored * scale + offset``, nodata -> NaN
    (also for float files; a masked array's mask -> NaN too)."""
    raw = np.ma.getdata(stored)
    out = np.array(raw, np.float64)  # a copy: the caller's array is never changed
    if scale != 1.0 or offset != 0.0:
        out = out * scale + offset
    if nodata is not None and not np.isnan(nodata):
        out[raw == nodata] = np.nan
    if np.ma.isMaskedArray(stored):
        out[np.ma.getmaskarray(stored)] = np.nan
    return out
