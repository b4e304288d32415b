"""Permafrost degradation classes per scenario and horizon, and the tables derived from them.

A pixel's degradation class compares its state under a scenario at a horizon with its baseline
state (``degradation.tif``, uint8 with a colour table; codes in
:data:`permamap.products.DEGRADATION_CLASSES`)::

    0 no permafrost      neither the baseline nor the scenario has permafrost
    1 persisting         permafrost in both, none of the changes below
    2 warming            permafrost in both, in a less stable thermal class (Cheng 1984 scheme:
                         stability code of the scenario > code of the baseline)
    3 thawing at depth   permafrost in both, with a talik (a layer above the permafrost table
                         that no longer refreezes; transient response only) or an active layer
                         deeper than the baseline's by more than
                         ``response.degradation.alt_increase_m``
    4 thawed             permafrost in the baseline, none under the scenario (permafrost ->
                         seasonally frozen ground; unfrozen ground where winters no longer freeze)
    5 new permafrost     permafrost under the scenario only: possible only when the scenario
                         cools the climate or a parameter override makes the ground colder
                         (e.g. a larger thawing n-factor removed); never under warming alone
    255 nodata

The first matching rule wins in the order 4, 3, 2, 1 (a pixel whose active layer deepens and
whose stability class drops is "thawing at depth"). In the equilibrium response the baseline is
the baseline map (``baseline/class.tif``, ``stability.tif``, ``alt.tif``); in the transient
response it is the 1-D model's own state in the baseline year (spun up to the baseline climate),
so the comparison never mixes two models.

Tables (:func:`degradation_table`, :func:`lower_limit_rise_table`):
``tables/degradation.csv`` and ``tables/lower_limit_rise.csv`` (columns in the functions'
docstrings and the README).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .products import CLASS_NODATA, DEGRADATION_CLASSES, NO_PERMAFROST

NO_PF = 0
PERSISTING = 1
WARMING = 2
THAWING_AT_DEPTH = 3
THAWED = 4
NEW_PERMAFROST = 5
assert set(DEGRADATION_CLASSES) == {
    NO_PF,
    PERSISTING,
    WARMING,
    THAWING_AT_DEPTH,
    THAWED,
    NEW_PERMAFROST,
}

#: Column names of the area per class in ``tables/degradation.csv``.
CLASS_COLUMNS = {
    NO_PF: "no_permafrost_km2",
    PERSISTING: "persisting_km2",
    WARMING: "warming_km2",
    THAWING_AT_DEPTH: "thawing_at_depth_km2",
    THAWED: "thawed_km2",
    NEW_PERMAFROST: "new_permafrost_km2",
}


def stability_codes(magt_c, permafrost, thresholds_c) -> np.ndarray:
    """Thermal stability code of permafrost (Cheng 1984 scheme, as ``stability.tif``).

    ``thresholds_c`` (t0 < t1 < t2 < t3, ``classes.stability_thresholds_c``): code 1 (extremely
    stable) for MAGT < t0, 2 for t0 <= MAGT < t1, 3 for t1 <= MAGT < t2, 4 for t2 <= MAGT < t3,
    5 (unstable) for MAGT >= t3; 0 where ``permafrost`` is False; 255 where MAGT is NaN.

    Where ``permafrost`` comes from MAGT < 0 this equals :func:`permamap.ground.stability_pixel`.
    The transient model judges permafrost by the whole column (a layer <= 0 C all year) and MAGT
    at one depth, so a permafrost column can have MAGT >= 0 at that depth: it is class 5.
    """
    magt, pf = np.broadcast_arrays(np.asarray(magt_c, np.float64), np.asarray(permafrost, bool))
    out = np.empty(magt.shape, np.uint8)
    _stability_kernel(
        np.ascontiguousarray(magt).reshape(-1),
        np.ascontiguousarray(pf).reshape(-1),
        np.asarray(thresholds_c, np.float64),
        out.reshape(-1),
    )
    return out


@nb.njit(cache=True, nogil=True)
def _stability_kernel(magt, pf, th, out):
    """:func:`stability_codes` pixel by pixel: 1 + the number of thresholds <= MAGT."""
    for i in range(magt.size):
        m = magt[i]
        if math.isnan(m):
            out[i] = CLASS_NODATA
        elif not pf[i]:
            out[i] = NO_PERMAFROST
        else:
            code = 1
            for t in th:
                code += t <= m
            out[i] = code


def classify(
    base_pf,
    base_stability,
    base_alt_m,
    scen_pf,
    scen_stability,
    scen_alt_m,
    scen_talik,
    alt_increase_m: float,
    valid,
) -> np.ndarray:
    """Degradation class (module docstring) of every pixel; uint8, 255 where not ``valid``.

    ``*_pf``/``scen_talik``: bool arrays; ``*_stability``: codes of :func:`stability_codes`;
    ``*_alt_m``: active layer thickness (m, NaN = unknown: then only the talik counts for
    class 3).
    """
    arrays = np.broadcast_arrays(
        np.asarray(base_pf, bool),
        np.asarray(base_stability).astype(np.int16),
        np.asarray(base_alt_m, np.float64),
        np.asarray(scen_pf, bool),
        np.asarray(scen_stability).astype(np.int16),
        np.asarray(scen_alt_m, np.float64),
        np.asarray(scen_talik, bool),
        np.asarray(valid, bool),
    )
    out = np.empty(arrays[0].shape, np.uint8)
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    _classify_kernel(*flat[:7], float(alt_increase_m), flat[7], out.reshape(-1))
    return out


@nb.njit(cache=True, nogil=True)
def _classify_kernel(bpf, bstab, balt, spf, sstab, salt, talik, alt_increase, valid, out):
    """:func:`classify` pixel by pixel; the first matching rule of the module docstring wins."""
    for i in range(out.size):
        b, s = bpf[i], spf[i]
        if not valid[i]:
            out[i] = CLASS_NODATA
        elif not b:
            out[i] = NEW_PERMAFROST if s else NO_PF
        elif not s:
            out[i] = THAWED
        elif talik[i] or salt[i] - balt[i] > alt_increase:  # False when an ALT is NaN
            out[i] = THAWING_AT_DEPTH
        elif sstab[i] > bstab[i]:
            out[i] = WARMING
        else:
            out[i] = PERSISTING


# -- tables ---------------------------------------------------------------------------------


def area_row(areas_km2: dict) -> dict:
    """Permafrost areas and losses (km2, %) from the area of each degradation class (km2).

    baseline permafrost = persisting + warming + thawing at depth + thawed; scenario permafrost
    = persisting + warming + thawing at depth + new; lost = thawed; gained = new; net change =
    scenario - baseline; lost % = lost / baseline permafrost x 100 (NaN without baseline
    permafrost).
    """
    a = {code: float(areas_km2.get(code, 0.0)) for code in DEGRADATION_CLASSES}
    kept = a[PERSISTING] + a[WARMING] + a[THAWING_AT_DEPTH]
    base = kept + a[THAWED]
    scen = kept + a[NEW_PERMAFROST]
    row = {
        "baseline_permafrost_km2": round(base, 3),
        "permafrost_km2": round(scen, 3),
        "permafrost_lost_km2": round(a[THAWED], 3),
        "permafrost_lost_pct": round(100.0 * a[THAWED] / base, 4) if base > 0 else math.nan,
        "permafrost_gained_km2": round(a[NEW_PERMAFROST], 3),
        "permafrost_net_change_km2": round(scen - base, 3),
        "permafrost_net_change_pct": round(100.0 * (scen - base) / base, 4)
        if base > 0
        else math.nan,
        "degrading_km2": round(a[WARMING] + a[THAWING_AT_DEPTH] + a[THAWED], 3),
    }
    row.update({CLASS_COLUMNS[c]: round(a[c], 3) for c in DEGRADATION_CLASSES})
    return row


def degradation_table(config: dict, degradation_paths: dict, out_csv) -> None:
    """``tables/degradation.csv``: one row per scenario x horizon.

    Columns: ``scenario``, ``label``, ``horizon``, ``warming_c`` (nominal air warming vs the
    baseline), ``response`` (equilibrium / transient), then :func:`area_row`'s columns:
    ``baseline_permafrost_km2``, ``permafrost_km2``, ``permafrost_lost_km2``,
    ``permafrost_lost_pct``, ``permafrost_gained_km2``, ``permafrost_net_change_km2``,
    ``permafrost_net_change_pct``, ``degrading_km2`` (warming + thawing at depth + thawed) and
    the area of each class (``no_permafrost_km2``, ``persisting_km2``, ``warming_km2``,
    ``thawing_at_depth_km2``, ``thawed_km2``, ``new_permafrost_km2``). Areas are true pixel
    areas on the WGS 84 ellipsoid (:func:`permamap.steps.class_areas_km2`).

    ``degradation_paths``: {(scenario, horizon): degradation.tif}.
    """
    import pandas as pd

    from .config import scenario_warming_c
    from .grid import Grid
    from .rasterio_io import atomic_path
    from .steps import class_areas_km2

    grid = Grid.from_config(config)
    mode = config.get("response", {}).get("mode", "equilibrium")
    rows = []
    for (s, h), path in degradation_paths.items():
        areas = class_areas_km2(grid, path, list(DEGRADATION_CLASSES))
        rows.append(
            {
                "scenario": s,
                "label": config["scenarios"][s].get("label", s),
                "horizon": int(h),
                "warming_c": round(scenario_warming_c(config, s)[int(h)], 4),
                "response": mode,
                **area_row(areas),
            }
        )
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def lower_limit_rise(lower_limit):
    """Rise of the lower limit of permafrost per aspect sector vs the baseline.

    From the rows of ``tables/lower_limit_by_aspect.csv`` (baseline rows: ``scenario ==
    'baseline'``): for every scenario x horizon x sector, ``baseline_lower_limit_m``,
    ``lower_limit_m``, ``rise_m`` = scenario - baseline (NaN when either is not ``ok``),
    ``baseline_lowest_permafrost_band_m``, ``lowest_permafrost_band_m``,
    ``lowest_band_rise_m``, ``baseline_permafrost_km2``, ``permafrost_km2``,
    ``permafrost_change_pct`` (of the sector's baseline permafrost), ``baseline_status``,
    ``status``.
    """
    import pandas as pd

    df = lower_limit.copy()
    base = df[df["scenario"] == "baseline"].set_index("sector")
    scen = df[df["scenario"] != "baseline"]
    rows = []
    for _, r in scen.iterrows():
        if r["sector"] not in base.index:
            continue
        b = base.loc[r["sector"]]
        ok = r["status"] == "ok" and b["status"] == "ok"
        bpf = float(b["permafrost_km2"])
        rows.append(
            {
                "scenario": r["scenario"],
                "horizon": int(r["horizon"]),
                "warming_c": r["warming_c"],
                "sector": r["sector"],
                "baseline_lower_limit_m": b["lower_limit_m"],
                "lower_limit_m": r["lower_limit_m"],
                "rise_m": round(float(r["lower_limit_m"]) - float(b["lower_limit_m"]), 1)
                if ok
                else math.nan,
                "baseline_lowest_permafrost_band_m": b["lowest_permafrost_band_m"],
                "lowest_permafrost_band_m": r["lowest_permafrost_band_m"],
                "lowest_band_rise_m": float(r["lowest_permafrost_band_m"])
                - float(b["lowest_permafrost_band_m"]),
                "baseline_permafrost_km2": bpf,
                "permafrost_km2": r["permafrost_km2"],
                "permafrost_change_pct": round(100.0 * (float(r["permafrost_km2"]) - bpf) / bpf, 4)
                if bpf > 0
                else math.nan,
                "baseline_status": b["status"],
                "status": r["status"],
            }
        )
    cols = [
        "scenario",
        "horizon",
        "warming_c",
        "sector",
        "baseline_lower_limit_m",
        "lower_limit_m",
        "rise_m",
        "baseline_lowest_permafrost_band_m",
        "lowest_permafrost_band_m",
        "lowest_band_rise_m",
        "baseline_permafrost_km2",
        "permafrost_km2",
        "permafrost_change_pct",
        "baseline_status",
        "status",
    ]
    return pd.DataFrame(rows, columns=cols)


def lower_limit_rise_table(lower_limit_csv, out_csv) -> None:
    """``tables/lower_limit_rise.csv`` from ``tables/lower_limit_by_aspect.csv``
    (:func:`lower_limit_rise`)."""
    import pandas as pd

    from .errors import InputDataError
    from .rasterio_io import atomic_path

    try:
        df = pd.read_csv(lower_limit_csv)
    except (OSError, pd.errors.ParserError) as exc:
        raise InputDataError(
            f"{lower_limit_csv}: not a readable lower-limit table ({exc})"
        ) from None
    need = {
        "scenario",
        "horizon",
        "warming_c",
        "sector",
        "lower_limit_m",
        "lowest_permafrost_band_m",
        "permafrost_km2",
        "status",
    }
    if not need <= set(df.columns):
        raise InputDataError(f"{lower_limit_csv}: missing columns {sorted(need - set(df.columns))}")
    with atomic_path(out_csv) as tmp:
        lower_limit_rise(df).to_csv(tmp, index=False)
