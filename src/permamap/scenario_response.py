"""Ground response of the warming scenarios, equilibrium or transient, and the scenario stage's
Snakemake adapters.

``response.mode: equilibrium`` (default): MAGT and classes are recomputed per pixel from the
warmed climate (:func:`permamap.ground.compute_scenarios`), and the active layer with the
configured method (:func:`permamap.ground.active_layer`): the ground is assumed to have caught
up with the climate of each horizon.

``response.mode: transient``: the 1-D heat-conduction model with phase change
(:mod:`permamap.transient`) runs from the baseline year to the last horizon, so warm and ice-rich
permafrost lags the warming. It runs on TopoSUB clusters (Fiddes & Gruber 2012,
doi:10.5194/gmd-5-1245-2012; :mod:`permamap.toposub`), never per pixel, in three steps whose
results do not depend on the tiling:

1. ``toposub_fit`` (one job): pixels on a regular lattice of the *region* grid (stride s in
   rows and columns, s = ceil(sqrt(n_pixels / max_fit_samples)), offset s // 2) are read row by
   row from every tile's ``terrain.tif`` and ``climate.tif`` (bounded memory), sorted by their
   region pixel index (so the sample is the same for any tile size) and clustered with k-means
   on standardised features (:func:`permamap.toposub.cluster_pixels`; the features' means and
   standard deviations are those of the sample). Per cluster it keeps the member means of the
   model inputs (MAAT, annual amplitude, solar index, ...), for every scenario whose overrides
   change the air climate its own means, and for CMIP6 scenarios the mean monthly warming per
   horizon. -> ``resources/<run>/toposub/fit.json``.
2. ``transient_run`` (one job): per cluster the daily air temperature is the sinusoid of the
   cluster's MAAT and amplitude (the cycle the equilibrium degree-days assume) plus the
   scenario's warming, ramped linearly between knots at the middle of the baseline year (0 C)
   and of each horizon (:func:`scenario_warming_knots`,
   :func:`permamap.transient.piecewise_warming_c`); the surface temperature applies the TTOP
   n-factors (n_f, and n_t adjusted by the cluster's solar index,
   :func:`permamap.ground.thawing_n_factor`). The column is spun up to the baseline climate
   (:func:`permamap.transient.spin_up`: the ground is assumed in equilibrium with the normal at
   the baseline year), the baseline year is run once for the baseline state, then every
   scenario runs from that state to the last horizon with its own parameters (overrides take
   effect at the baseline year). -> ``results/<run>/tables/transient_clusters.csv``.
3. ``scenarios`` (per tile): each pixel gets the label of the nearest cluster centre in the
   standardised feature space (:func:`nearest_centre_labels`: the same arithmetic on the same
   pixel values gives the same label in any tile) and the cluster's results
   (:func:`permamap.toposub.map_to_pixels`); with ``toposub.mapping: idw`` MAGT is interpolated
   over the nearest centres (:func:`permamap.toposub.idw_to_pixels`), flags stay by label
   (:class:`TransientMap`).

In the transient response a pixel is permafrost when its cluster's column holds a layer that
stays <= 0 C all year; otherwise it is seasonally frozen ground when the pixel's warmed air
freezes in winter (FDD > 0), unfrozen ground otherwise. MAGT is the mean annual temperature at
``response.transient.magt_depth_m`` (default 15 m, about the depth of zero annual amplitude, so a
few tenths of a degree warmer than TTOP, the temperature at the top of permafrost, because of the
geothermal gradient). The soil conductivities default to k_f = ``ground.active_layer.
k_frozen_w_per_m_k`` and k_t = r_k k_f (``ground.ttop.conductivity_ratio``), so that with a
steady climate the 1-D model reproduces the TTOP equilibrium (tested).

Degradation classes (:mod:`permamap.degradation`) are computed in the same tile job.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numba as nb
import numpy as np

from . import climate, ground
from . import config as cfgmod
from .errors import ConfigError, InputDataError
from .grid import Grid
from .products import CLASS_NODATA, PERMAFROST, SEASONALLY_FROZEN, UNFROZEN

log = logging.getLogger(__name__)

MODES = ("equilibrium", "transient")

#: Per-pixel drivers: name -> (per-tile file, 1-based band).
FEATURE_BANDS = {
    "elevation": ("terrain", 1),
    "slope": ("terrain", 2),
    "solar": ("terrain", 4),
    "maat": ("climate", 1),
    "fdd": ("climate", 2),
    "tdd": ("climate", 3),
    "amplitude": ("climate", 4),
}
#: Cluster means kept for the 1-D model and the tables, whatever the clustering features.
INPUTS = ("elevation", "solar", "maat", "amplitude", "fdd", "tdd")

#: Overrides a scenario may not make: the response is one for the whole run.
FIXED_RESPONSE_KEYS = (
    ("mode",),
    ("toposub",),
    ("transient", "grid"),
    ("transient", "magt_depth_m"),
)

FIT_VERSION = 1


# -- configuration --------------------------------------------------------------------------


def response(config: dict) -> dict:
    """The ``response`` section (defaults filled by :func:`permamap.config.prepare`)."""
    return config.get("response") or {"mode": "equilibrium", "degradation": {"alt_increase_m": 0.5}}


def mode(config: dict) -> str:
    return response(config).get("mode", "equilibrium")


def check_config(config: dict) -> None:
    """Checks the schema cannot express; one :class:`ConfigError` line naming the key (and the
    scenario). Called at parse time from ``workflow/rules/scenarios.smk``."""
    r = response(config)
    tsub = r.get("toposub") or {}
    w = tsub.get("weights")
    if w is not None and len(w) != len(tsub["features"]):
        raise ConfigError(
            f"config error: response.toposub.weights has {len(w)} values for "
            f"{len(tsub['features'])} features {tsub['features']}; give one weight per "
            "feature or null"
        )
    for name, scen in config["scenarios"].items():
        ov = (scen.get("overrides") or {}).get("response") or {}
        for path in FIXED_RESPONSE_KEYS:
            cur = ov
            for part in path:
                cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is not None:
                raise ConfigError(
                    f"config error in scenario {name!r}: overrides response.{'.'.join(path)}, "
                    "which must be the same for every scenario; set it at the top level"
                )
    if mode(config) == "transient":
        for name in ["<base>", *config["scenarios"]]:
            scfg = config if name == "<base>" else cfgmod.scenario_config(config, name)
            where = "" if name == "<base>" else f" in scenario {name!r}"
            try:
                params = column_params(scfg)
                params.cell_arrays(transient_grid(scfg), 1)
            except ConfigError as exc:
                raise ConfigError(
                    f"config error{where}: response.transient: "
                    f"{str(exc).removeprefix('transient: ')}"
                ) from None
        tcfg = r["transient"]
        if tcfg["magt_depth_m"] > tcfg["grid"]["total_depth_m"]:
            raise ConfigError(
                f"config error: response.transient.magt_depth_m = {tcfg['magt_depth_m']} is below "
                f"the column (grid.total_depth_m = {tcfg['grid']['total_depth_m']})"
            )


def column_params(config: dict):
    """:class:`permamap.transient.ColumnParams` of a (scenario-merged) config.

    Unset (null) soil values come from the equilibrium model's parameters: water content from
    ``ground.active_layer.water_content_m3_per_m3``, k_f from ``ground.active_layer.
    k_frozen_w_per_m_k`` and k_t = r_k k_f with r_k = ``ground.ttop.conductivity_ratio`` (the
    TTOP conductivity ratio), so the two responses agree in a steady climate.
    """
    from .transient import ColumnParams

    soil = response(config)["transient"]["soil"]
    al = config["ground"]["active_layer"]
    kf = soil["k_frozen_w_per_m_k"] or al["k_frozen_w_per_m_k"]
    kt = soil["k_thawed_w_per_m_k"] or config["ground"]["ttop"]["conductivity_ratio"] * kf
    theta = soil["water_content_m3_per_m3"]
    if theta is None:
        theta = al["water_content_m3_per_m3"]
    bedrock = soil.get("bedrock_depth_m")
    return ColumnParams(
        porosity=soil["porosity"],
        water_content=theta,
        k_frozen_w_per_m_k=kf,
        k_thawed_w_per_m_k=kt,
        c_frozen_j_per_m3_k=soil["c_frozen_j_per_m3_k"],
        c_thawed_j_per_m3_k=soil["c_thawed_j_per_m3_k"],
        freeze_onset_c=soil["freeze_onset_c"],
        unfrozen_exponent=soil["unfrozen_exponent"],
        geothermal_flux_w_per_m2=soil["geothermal_flux_w_per_m2"],
        bedrock_depth_m=np.inf if bedrock is None else float(bedrock),
    )


def transient_grid(config: dict):
    from .transient import make_grid

    g = response(config)["transient"]["grid"]
    return make_grid(g["total_depth_m"], g["dz_top_m"], g["growth"], g["dz_max_m"])


def scenario_warming_knots(config: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(knot years, knot warming C) of a scenario's air-warming trajectory for the 1-D model.

    Years count from 1 January of ``climate.baseline_year`` (the first simulated year); the
    knots sit at the middle of the baseline year (0 C) and of each horizon (its warming from
    :func:`permamap.config.scenario_warming_c`), and the last segment runs on to the end of the
    last horizon year. A linear trend is thus reproduced exactly, with the annual mean warming
    of every horizon year equal to its nominal warming; between horizons with different rates
    the annual mean of a horizon year differs from it by 1/8 of the change of rate (C/yr).
    """
    base = config["climate"]["baseline_year"]
    warming = cfgmod.scenario_warming_c(config, name)
    hs = sorted(warming)
    years = [0.5] + [h - base + 0.5 for h in hs]
    knots = [0.0] + [warming[h] for h in hs]
    # the last segment continues to the end of the last horizon year (the end of the run)
    slope = (knots[-1] - knots[-2]) / (years[-1] - years[-2])
    years.append(years[-1] + 0.5)
    knots.append(knots[-1] + 0.5 * slope)
    return np.array(years), np.array(knots)


# -- scenario climate per pixel ---------------------------------------------------------------


@nb.njit(cache=True, nogil=True, error_model="numpy")
def scenario_climate_kernel(z, t_ref, z_ref, lapse, delta, method, maat, fdd, tdd, amplitude):
    """MAAT, FDD, TDD and amplitude under a monthly warming field ``delta`` (12, ny, nx):
    T_m = T_m,ref + lapse_m (z_ref - z) + delta_m, with the same arithmetic as
    :func:`permamap.ground.scenario_kernel` (undisturbed (M, a, b) of
    :func:`permamap.climate.base_harmonics_row` plus the warming's
    :func:`permamap.climate.delta_harmonics`, then :func:`permamap.climate.pixel_climate`), so
    its degree-days are those behind the scenario's MAGT and class; NaN where any input is NaN.
    """
    ny, nx = z.shape
    ref_h, lapse_h, uniform = climate.reference_harmonics(t_ref, lapse)
    m0 = np.empty(nx)
    a0 = np.empty(nx)
    b0 = np.empty(nx)
    t = np.empty(12)
    d = np.empty(12)
    if (
        method != climate.METHOD_MONTHLY
        and ny > 0
        and nx > 0
        and climate.is_spatially_uniform(delta)
    ):
        # a uniform warming (zero-stride field): its harmonics once per block, then a
        # branch-free sinusoid loop per row (vectorises); the same numbers as per pixel
        for m in range(12):
            d[m] = delta[m, 0, 0]
        dm, da, db = climate.delta_harmonics(d)
        for r in range(ny):
            climate.base_harmonics_row(r, z, t_ref, z_ref, ref_h, lapse_h, uniform, m0, a0, b0)
            for c in range(nx):
                amp = climate.annual_amplitude_c(a0[c] + da, b0[c] + db)
                mm, f, th, amp = climate.pixel_climate(m0[c] + dm, amp, climate.METHOD_SINUSOID, t)
                maat[r, c] = mm
                fdd[r, c] = f
                tdd[r, c] = th
                amplitude[r, c] = amp
        return
    for r in range(ny):
        climate.base_harmonics_row(r, z, t_ref, z_ref, ref_h, lapse_h, uniform, m0, a0, b0)
        for c in range(nx):
            for m in range(12):
                d[m] = delta[m, r, c]
            if method == climate.METHOD_MONTHLY:
                climate.air_monthly_at(t_ref[:, r, c], z_ref[r, c], z[r, c], lapse, d, t)
            dm, da, db = climate.delta_harmonics(d)
            amp = climate.annual_amplitude_c(a0[c] + da, b0[c] + db)
            mm, f, th, amp = climate.pixel_climate(m0[c] + dm, amp, method, t)
            maat[r, c] = mm
            fdd[r, c] = f
            tdd[r, c] = th
            amplitude[r, c] = amp


def scenario_climate(forcing, z, delta, grid):
    """(maat, fdd, tdd, amplitude) float64 of an elevation block under one horizon's monthly
    warming ``delta`` (12, ny, nx) with ``forcing`` (a scenario's climate forcing)."""
    z = np.ascontiguousarray(z, np.float64)
    t_ref, z_ref = forcing.fields(grid)
    out = [np.empty_like(z) for _ in range(4)]
    scenario_climate_kernel(
        z, t_ref, z_ref, forcing.lapse, np.asarray(delta, np.float64), forcing.method, *out
    )
    return tuple(out)


# -- TopoSUB fit over the region --------------------------------------------------------------


@dataclass
class Fit:
    """Region-wide TopoSUB clusters (``resources/<run>/toposub/fit.json``)."""

    features: list
    mean: np.ndarray  # (n_features,) standardisation of the fit sample
    std: np.ndarray
    weights: np.ndarray
    centroids: np.ndarray  # (k, n_features) member means, original units
    counts: np.ndarray  # (k,) sample pixels per cluster
    inputs: dict  # name -> (k,) member means of INPUTS
    scenario_inputs: dict = field(
        default_factory=dict
    )  # scenario -> {"maat": (k,), "amplitude": (k,)}
    deltas: dict = field(default_factory=dict)  # scenario -> (k, n_horizons, 12) monthly warming
    n_samples: int = 0
    stride: int = 1

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def centres_z(self) -> np.ndarray:
        """Cluster centres in the standardised, weighted feature space."""
        return (self.centroids - self.mean) / self.std * self.weights

    def to_json(self) -> str:
        def arr(a):
            return np.asarray(a, np.float64).tolist()

        return json.dumps(
            {
                "version": FIT_VERSION,
                "features": list(self.features),
                "mean": arr(self.mean),
                "std": arr(self.std),
                "weights": arr(self.weights),
                "centroids": arr(self.centroids),
                "counts": [int(c) for c in self.counts],
                "inputs": {k: arr(v) for k, v in self.inputs.items()},
                "scenario_inputs": {
                    s: {k: arr(v) for k, v in d.items()} for s, d in self.scenario_inputs.items()
                },
                "deltas": {s: arr(v) for s, v in self.deltas.items()},
                "n_samples": int(self.n_samples),
                "stride": int(self.stride),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "toposub fit") -> Fit:
        try:
            d = json.loads(text)
            if d.get("version") != FIT_VERSION:
                raise ValueError(f"version {d.get('version')} != {FIT_VERSION}")
            nf = len(d["features"])
            return cls(
                features=list(d["features"]),
                mean=np.array(d["mean"]),
                std=np.array(d["std"]),
                weights=np.array(d["weights"]),
                centroids=np.array(d["centroids"], np.float64).reshape(-1, nf),
                counts=np.array(d["counts"], np.int64),
                inputs={k: np.array(v, np.float64) for k, v in d["inputs"].items()},
                scenario_inputs={
                    s: {k: np.array(v, np.float64) for k, v in dd.items()}
                    for s, dd in d["scenario_inputs"].items()
                },
                deltas={s: np.array(v, np.float64) for s, v in d["deltas"].items()},
                n_samples=int(d["n_samples"]),
                stride=int(d["stride"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InputDataError(
                f"{source}: not a permamap TopoSUB fit ({exc}); delete it and rerun"
            ) from None

    @classmethod
    def load(cls, path) -> Fit:
        path = Path(path)
        if not path.exists():
            raise InputDataError(f"{path} does not exist; run the toposub_fit rule first")
        return cls.from_json(path.read_text(), str(path))

    def save(self, path) -> None:
        from .rasterio_io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json())


def lattice_stride(grid: Grid, max_samples: int) -> int:
    """Stride s of the fit lattice: at most about ``max_samples`` pixels of the region."""
    return max(1, math.ceil(math.sqrt(grid.width * grid.height / max(1, int(max_samples)))))


def _climate_override_scenarios(config: dict) -> list:
    """Scenarios whose overrides change the air climate (lapse rate, station, ...)."""
    return [
        s
        for s in config["scenarios"]
        if cfgmod.scenario_config(config, s)["climate"] != config["climate"]
    ]


def sample_tile(config: dict, tile, terrain_path, climate_path, stride: int) -> dict:
    """Lattice pixels of one tile: ``index`` (region pixel index row * width + col), every
    :data:`FEATURE_BANDS` value, per climate-override scenario ``maat:<s>``/``amplitude:<s>``
    and per CMIP6 scenario ``delta:<s>`` (n, n_horizons, 12). Read one lattice row at a time."""
    import rasterio
    from rasterio.windows import Window

    from .steps import scenario_delta_fields

    grid = Grid.from_config(config)
    w = tile.window
    off = stride // 2
    rows = [r for r in range(off, w.row_off + w.height, stride) if r >= w.row_off]
    cols = np.array(
        [c for c in range(off, w.col_off + w.width, stride) if c >= w.col_off], np.int64
    )
    out: dict = {"index": []}
    for name in FEATURE_BANDS:
        out[name] = []
    overrides = _climate_override_scenarios(config)
    cmip6 = [s for s in config["scenarios"] if config["scenarios"][s].get("cmip6")]
    for s in overrides:
        out[f"maat:{s}"], out[f"amplitude:{s}"] = [], []
    for s in cmip6:
        out[f"delta:{s}"] = []
    if not rows or cols.size == 0:
        n_h = len(config["horizons"])
        return {
            k: np.zeros((0, n_h, 12))
            if k.startswith("delta:")
            else np.zeros(0, np.int64 if k == "index" else np.float64)
            for k in out
        }
    local = cols - w.col_off
    forcings = {
        s: climate.forcing_from_config(cfgmod.scenario_config(config, s)) for s in overrides
    }
    with rasterio.open(terrain_path) as ter, rasterio.open(climate_path) as cli:
        for src, what in ((ter, "terrain"), (cli, "climate")):
            if (src.width, src.height) != (w.width, w.height):
                raise InputDataError(
                    f"{src.name}: {what} file is {src.width} x {src.height}, "
                    f"tile {tile.id} is {w.width} x {w.height}"
                )
        for r in rows:
            win = Window(0, r - w.row_off, w.width, 1)
            t = ter.read(window=win)[:, 0, :].astype(np.float64)
            c = cli.read(window=win)[:, 0, :].astype(np.float64)
            for arr, src in ((t, ter), (c, cli)):
                if src.nodata is not None and not np.isnan(src.nodata):
                    arr[arr == src.nodata] = np.nan
            files = {"terrain": t, "climate": c}
            for name, (f, band) in FEATURE_BANDS.items():
                out[name].append(files[f][band - 1, local])
            out["index"].append(r * grid.width + cols)
            if overrides or cmip6:
                rowgrid = grid.subgrid(Window(w.col_off, r, w.width, 1))
                z = t[0][None, :]
                for s in overrides:
                    maat, _, _, amp = climate.compute_climate(z, forcings[s], grid=rowgrid)
                    out[f"maat:{s}"].append(maat[0, local])
                    out[f"amplitude:{s}"].append(amp[0, local])
                for s in cmip6:
                    d = scenario_delta_fields(config, s, rowgrid)  # (n_h, 12, 1, w)
                    out[f"delta:{s}"].append(np.moveaxis(d[:, :, 0, local], 2, 0))
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_toposub(config: dict, terrain_paths, climate_paths) -> Fit:
    """Cluster the lattice sample of the whole region (module docstring, step 1).

    ``terrain_paths``/``climate_paths``: per-tile files in the order of ``Grid.tiles``.
    """
    from threadpoolctl import threadpool_limits

    from .toposub import cluster_means, cluster_pixels

    grid = Grid.from_config(config)
    tiles = grid.tiles(config["tiles"]["size_px"])
    if len(tiles) != len(terrain_paths) or len(tiles) != len(climate_paths):
        raise InputDataError(
            f"toposub fit: expected {len(tiles)} terrain and climate tile files, "
            f"got {len(terrain_paths)} and {len(climate_paths)}"
        )
    ts = response(config)["toposub"]
    stride = lattice_stride(grid, ts["max_fit_samples"])
    parts = [
        sample_tile(config, t, tp, cp, stride)
        for t, tp, cp in zip(tiles, terrain_paths, climate_paths, strict=True)
    ]
    sample = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(sample["index"], kind="stable")
    sample = {k: v[order] for k, v in sample.items()}
    feats = list(ts["features"])
    valid = np.all([np.isfinite(sample[n]) for n in {*feats, *INPUTS}], axis=0)
    if not valid.any():
        raise InputDataError("toposub fit: no valid pixel in the region (all nodata)")
    weights = ts.get("weights")
    # One thread: k-means then gives the same clusters whatever the machine's core count.
    with threadpool_limits(limits=1):
        res = cluster_pixels(
            {n: sample[n] for n in feats},
            int(ts["n_clusters"]),
            valid=valid,
            weights=weights,
            random_state=int(ts["random_state"]),
            n_init=int(ts["n_init"]),
            max_fit_samples=int(valid.sum()) + 1,
        )
    k = res.n_clusters
    lab = res.labels
    inputs = {n: cluster_means(lab, sample[n], k) for n in INPUTS}
    scen_inputs = {}
    for s in _climate_override_scenarios(config):
        scen_inputs[s] = {
            "maat": cluster_means(lab, sample[f"maat:{s}"], k),
            "amplitude": cluster_means(lab, sample[f"amplitude:{s}"], k),
        }
    deltas = {}
    for key in sample:
        if key.startswith("delta:"):
            d = sample[key]  # (n, n_h, 12)
            flat = d.reshape(d.shape[0], -1).T  # (n_h * 12, n)
            deltas[key.removeprefix("delta:")] = cluster_means(lab, flat, k).reshape(
                k, *d.shape[1:]
            )
    log.info(
        "toposub fit: %d lattice pixels (stride %d), %d valid, %d clusters",
        lab.size,
        stride,
        int(valid.sum()),
        k,
    )
    return Fit(
        features=feats,
        mean=res.feature_mean,
        std=res.feature_std,
        weights=res.weights,
        centroids=res.centroids,
        counts=res.counts,
        inputs=inputs,
        scenario_inputs=scen_inputs,
        deltas=deltas,
        n_samples=int(valid.sum()),
        stride=stride,
    )


# -- the 1-D model per cluster ---------------------------------------------------------------


def _cluster_surface(config: dict, fit: Fit, n_years: int, maat, amp, warming_daily=None):
    from .transient import surface_temperature_daily

    tt = config["ground"]["ttop"]
    n_t = ground.thawing_n_factor(
        float(tt["n_thawing"]),
        float(tt["solar_effect"]),
        np.asarray(fit.inputs["solar"], np.float64),
    )
    return surface_temperature_daily(
        n_years,
        mean_c=maat,
        amplitude_c=amp,
        warming_daily_c=warming_daily,
        n_thaw=n_t,
        n_freeze=float(tt["n_freezing"]),
    )


def scenario_warming_daily(config: dict, fit: Fit, name: str, n_years: int) -> np.ndarray:
    """(k, n_years * 365) daily air warming (C) of scenario ``name`` per cluster.

    Uniform scenarios: :func:`permamap.transient.piecewise_warming_c` through the knots of
    :func:`scenario_warming_knots`. CMIP6 scenarios: the same linear interpolation in time, of
    each horizon's monthly warming cycle (cluster means of the delta rasters, interpolated to
    days with :func:`permamap.transient.monthly_to_daily_c`).
    """
    from .transient import DAYS_PER_YEAR, monthly_to_daily_c, piecewise_warming_c

    years, knots = scenario_warming_knots(config, name)
    k = fit.n_clusters
    if name not in fit.deltas:
        return np.broadcast_to(
            piecewise_warming_c(n_years, years, knots), (k, n_years * DAYS_PER_YEAR)
        )
    order = np.argsort([int(h) for h in config["horizons"]])
    d = fit.deltas[name][:, order, :]  # (k, n_h, 12) in time order
    # monthly warming at every knot: 0 at the baseline, each horizon's, and the last segment
    # continued to the end of the run as in scenario_warming_knots
    at = [np.zeros_like(d[:, 0, :])] + [d[:, j, :] for j in range(d.shape[1])]
    at.append(at[-1] + (at[-1] - at[-2]) * (years[-1] - years[-2]) / (years[-2] - years[-3]))
    basis = piecewise_warming_c(n_years, years, np.eye(years.size))  # (n_knots, n_days)
    doy = np.arange(n_years * DAYS_PER_YEAR) % DAYS_PER_YEAR
    out = np.zeros((k, n_years * DAYS_PER_YEAR))
    for j in range(1, years.size):  # knot 0 is the baseline: no warming
        cycle = monthly_to_daily_c(at[j], 1)  # (k, 365)
        out += basis[j][None, :] * cycle[:, doy]
    return out


def run_transient(config: dict, fit: Fit):
    """Baseline and every scenario x horizon of every cluster (module docstring, step 2).

    Returns a DataFrame with one row per cluster x (baseline | scenario x horizon): ``cluster``,
    ``scenario``, ``horizon``, ``warming_c``, ``magt_c``, ``alt_m``, ``talik``, ``permafrost``,
    ``seasonal_frost_depth_m``, and the cluster's ``n_samples``, ``elevation_m``, ``solar``,
    ``maat_c``, ``amplitude_c``, ``fdd``, ``tdd``, ``spin_up_converged``.
    """
    import pandas as pd

    from .transient import run_columns, spin_up

    r = response(config)["transient"]
    base_year = int(config["climate"]["baseline_year"])
    horizons = sorted(int(h) for h in config["horizons"])
    n_years = horizons[-1] - base_year + 1
    grid = transient_grid(config)
    depth = float(r["magt_depth_m"])
    tol = float(r["solver_tol_c"])
    k = fit.n_clusters
    ok = (
        np.isfinite(fit.inputs["maat"])
        & np.isfinite(fit.inputs["amplitude"])
        & np.isfinite(fit.inputs["solar"])
    )
    if not ok.all():
        raise InputDataError(
            f"toposub fit: clusters {np.flatnonzero(~ok).tolist()} have no valid inputs"
        )
    ts0 = _cluster_surface(config, fit, 1, fit.inputs["maat"], fit.inputs["amplitude"])
    params0 = column_params(config)
    spin = spin_up(
        ts0,
        params0,
        grid,
        tol_c=r["spin_up"]["tol_c"],
        max_cycles=int(r["spin_up"]["max_cycles"]),
        solver_tol_c=tol,
    )
    if not spin.converged.all():
        log.warning(
            "transient spin-up: %d of %d clusters not converged after %d cycles (largest "
            "remaining drift %.3g C)",
            int((~spin.converged).sum()),
            k,
            int(r["spin_up"]["max_cycles"]),
            float(np.max(spin.estimated_error_c)),
        )
    t0 = spin.temperature_c
    attrs = {
        "n_samples": fit.counts,
        "elevation_m": fit.inputs["elevation"],
        "solar": fit.inputs["solar"],
        "maat_c": fit.inputs["maat"],
        "amplitude_c": fit.inputs["amplitude"],
        "fdd": fit.inputs["fdd"],
        "tdd": fit.inputs["tdd"],
        "spin_up_converged": spin.converged,
    }
    rows = []

    def add(res, year_index, scenario, horizon, warming):
        for c in range(k):
            rows.append(
                {
                    "cluster": c,
                    "scenario": scenario,
                    "horizon": horizon,
                    "warming_c": warming,
                    "magt_c": float(res.magt_c[c, year_index]),
                    "alt_m": float(res.alt_m[c, year_index]),
                    "talik": bool(res.talik[c, year_index]),
                    "permafrost": bool(res.permafrost[c, year_index]),
                    "seasonal_frost_depth_m": float(res.seasonal_frost_depth_m[c, year_index]),
                    **{
                        a: (v[c].item() if hasattr(v[c], "item") else v[c])
                        for a, v in attrs.items()
                    },
                }
            )

    base = run_columns(ts0, params0, grid, initial_temperature_c=t0, magt_depth_m=depth, tol_c=tol)
    add(base, 0, "baseline", base_year, 0.0)
    for name in config["scenarios"]:
        scfg = cfgmod.scenario_config(config, name)
        si = fit.scenario_inputs.get(name, {})
        maat = si.get("maat", fit.inputs["maat"])
        amp = si.get("amplitude", fit.inputs["amplitude"])
        warm = scenario_warming_daily(config, fit, name, n_years)
        ts = _cluster_surface(scfg, fit, n_years, maat, amp, warming_daily=warm)
        res = run_columns(
            ts, column_params(scfg), grid, initial_temperature_c=t0, magt_depth_m=depth, tol_c=tol
        )
        w = cfgmod.scenario_warming_c(config, name)
        for h in horizons:
            add(res, h - base_year, name, h, float(w[h]))
        log.info("transient: scenario %s done (%d clusters x %d years)", name, k, n_years)
    return pd.DataFrame(rows)


def read_transient_table(path, config: dict, n_clusters: int) -> dict:
    """{(scenario, horizon) or ('baseline', year): {column: (k,) array}} from the cluster table."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path} does not exist; run the transient_run rule first")
    df = pd.read_csv(path)
    need = {"cluster", "scenario", "horizon", "magt_c", "alt_m", "talik", "permafrost"}
    if not need <= set(df.columns):
        raise InputDataError(f"{path}: missing columns {sorted(need - set(df.columns))}")
    out = {}
    keys = [("baseline", int(config["climate"]["baseline_year"]))]
    keys += [(s, int(h)) for s in config["scenarios"] for h in config["horizons"]]
    for s, h in keys:
        sub = df[(df["scenario"] == s) & (df["horizon"] == h)].sort_values("cluster")
        if len(sub) != n_clusters or not np.array_equal(
            sub["cluster"].to_numpy(), np.arange(n_clusters)
        ):
            raise InputDataError(
                f"{path}: no complete rows for {s} {h} ({len(sub)} of {n_clusters} "
                "clusters); it is stale: rerun transient_run"
            )
        out[(s, h)] = {c: sub[c].to_numpy() for c in ("magt_c", "alt_m", "talik", "permafrost")}
    return out


# -- mapping to the pixels of a tile ----------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def nearest_centre_kernel(x, mean, std, weights, centres, labels):
    """Label of the nearest centre: argmin_j sum_f ((x_f - mean_f) / std_f w_f - c_jf)^2 (lowest
    j on ties); -1 where a feature is NaN. ``x``: (n_features, ny, nx)."""
    nf, ny, nx = x.shape
    k = centres.shape[0]
    z = np.empty(nf)
    for r in range(ny):
        for c in range(nx):
            bad = False
            for f in range(nf):
                z[f] = (x[f, r, c] - mean[f]) / std[f] * weights[f]
                if math.isnan(z[f]):
                    bad = True
            if bad:
                labels[r, c] = -1
                continue
            best = -1
            best_d = np.inf
            for j in range(k):
                d = 0.0
                for f in range(nf):
                    e = z[f] - centres[j, f]
                    d += e * e
                if d < best_d:
                    best_d = d
                    best = j
            labels[r, c] = best


def nearest_centre_labels(fit: Fit, features: np.ndarray) -> np.ndarray:
    """int32 cluster label of every pixel (-1 nodata) from (n_features, ny, nx) values in the
    fit's feature order. Pixel by pixel, so a label depends only on the pixel's own values."""
    x = np.ascontiguousarray(features, np.float64)
    labels = np.empty(x.shape[1:], np.int32)
    nearest_centre_kernel(
        x,
        np.asarray(fit.mean, np.float64),
        np.asarray(fit.std, np.float64),
        np.asarray(fit.weights, np.float64),
        np.ascontiguousarray(fit.centres_z, np.float64),
        labels,
    )
    return labels


def tile_features(fit: Fit, terrain: np.ndarray, clim: np.ndarray) -> np.ndarray:
    """(n_features, ny, nx) of a tile from its terrain (4 bands) and climate (4 bands) arrays."""
    files = {"terrain": terrain, "climate": clim}
    return np.stack([files[FEATURE_BANDS[n][0]][FEATURE_BANDS[n][1] - 1] for n in fit.features])


class TransientMap:
    """Transient results on the pixels of a tile (module docstring, step 3).

    ``labels``: the nearest cluster centre of every pixel (-1 nodata). ``self[key]`` for a key
    of ``table`` (``('baseline', year)`` or ``(scenario, horizon)``): a dict of ``magt_c``
    (delivered MAGT: by label, or inverse-distance weighted with ``toposub.mapping: idw``),
    ``magt_label_c``, ``alt_m``, ``talik`` and ``permafrost`` (by label); NaN / False on nodata
    pixels. Mapped one key at a time (memory of one scenario x horizon); the IDW weights of all
    keys come from one nearest-centre search.
    """

    def __init__(self, config: dict, fit: Fit, table: dict, features: np.ndarray):
        from .toposub import TopoSubResult, idw_to_pixels

        self.labels = nearest_centre_labels(fit, features)
        self.table = table
        self.keys = list(table)
        self.idw = None
        ts = response(config)["toposub"]
        if ts["mapping"] == "idw":
            res = TopoSubResult(
                labels=self.labels,
                n_clusters=fit.n_clusters,
                feature_names=tuple(fit.features),
                centroids=fit.centroids,
                counts=fit.counts,
                feature_mean=fit.mean,
                feature_std=fit.std,
                weights=fit.weights,
                cluster_stratum=None,
            )
            vals = np.stack([np.asarray(table[k]["magt_c"], np.float64) for k in self.keys], 1)
            self.idw = idw_to_pixels(
                res, features, vals, k=int(ts["idw_k"]), power=float(ts["idw_power"])
            ).astype(np.float32)

    def __getitem__(self, key) -> dict:
        from .toposub import map_to_pixels

        vals = self.table[key]
        lab = self.labels
        m = map_to_pixels(lab, np.asarray(vals["magt_c"], np.float64))
        return {
            "magt_label_c": m,
            "magt_c": m if self.idw is None else self.idw[self.keys.index(key)],
            "alt_m": map_to_pixels(lab, np.asarray(vals["alt_m"], np.float64)),
            "talik": map_to_pixels(lab, np.asarray(vals["talik"], bool), fill=False),
            "permafrost": map_to_pixels(lab, np.asarray(vals["permafrost"], bool), fill=False),
        }


# -- the per-tile scenario step -----------------------------------------------------------------


def scenario_band_labels(config: dict) -> list:
    return [f"{s}/{h}" for s in config["scenarios"] for h in config["horizons"]]


@dataclass
class TransientInputs:
    """What the transient response of a tile job needs besides the pixels: the region's TopoSUB
    fit and cluster table, loaded once per job (:meth:`load`) and shared by every chunk."""

    fit: Fit
    table: dict

    @classmethod
    def load(cls, config: dict, fit_path, transient_path) -> TransientInputs:
        fit = Fit.load(fit_path)
        return cls(fit, read_transient_table(transient_path, config, fit.n_clusters))


def scenarios_block(
    config: dict,
    grid: Grid,
    terrain: np.ndarray,
    clim: np.ndarray | None = None,
    baseline: dict | None = None,
    transient: TransientInputs | None = None,
    degradation: bool = False,
    forcing_of: dict | None = None,
    out: tuple | None = None,
) -> dict:
    """Every scenario x horizon of a block of pixels: ``magt`` (float32), ``class`` (uint8) and,
    with ``degradation``, ``degradation`` (uint8), each (n_scenarios x n_horizons, ny, nx) in the
    band order of :func:`scenario_band_labels`. Pixel by pixel, so a tile gives the same bits in
    one block or in any chunking (:func:`permamap.blocks.scenarios_tile`).

    ``grid``: the block's grid (gridded forcing and CMIP6 delta fields are resampled to it);
    ``terrain``: (4, ny, nx) elevation, slope, aspect, solar; ``clim``: (4, ny, nx) maat, fdd, tdd,
    amplitude (needed by the transient response's cluster features); ``baseline``: the baseline
    ``class``, ``stability`` and ``alt`` bands (needed for ``degradation`` in equilibrium);
    ``transient``: :class:`TransientInputs` when ``response.mode`` is ``transient``;
    ``forcing_of``: :func:`permamap.blocks.forcings` (built here when None); ``out``: (magt,
    class) arrays, or with ``degradation`` (magt, class, degradation), of shape (n_scenarios x
    n_horizons, ny, nx) to fill instead of new ones (e.g. float32 bands of a chunk's stack;
    without degradation the equilibrium kernel writes into them directly).

    Equilibrium: MAGT and class from :func:`permamap.ground.compute_scenarios` (the fused
    kernel); the scenario active layer from the warmed climate with
    :func:`permamap.ground.active_layer`. Transient: from the cluster table (module docstring).
    Degradation against the baseline (equilibrium) or the transient baseline.
    """
    from . import degradation as dg
    from . import surface

    z, slope, aspect, solar = (np.asarray(terrain[i], np.float64) for i in range(4))
    # surface types (permamap.surface): equilibrium only; the transient columns are per cluster
    z_ground, surf_kw = surface.block_args(config, grid, z, forcing_of)
    is_transient = mode(config) == "transient"
    if is_transient and (transient is None or clim is None):
        raise ValueError("scenarios_block: the transient response needs clim and transient")
    if degradation and not is_transient and baseline is None:
        raise ValueError("scenarios_block: degradation needs the baseline bands")
    thresholds = config["classes"]["stability_thresholds_c"]
    alt_increase = response(config)["degradation"]["alt_increase_m"]
    mapped = None
    if is_transient:
        mapped = TransientMap(
            config, transient.fit, transient.table, tile_features(transient.fit, terrain, clim)
        )
        b = mapped[("baseline", int(config["climate"]["baseline_year"]))]
        base_valid = mapped.labels >= 0
        base_pf = b["permafrost"]
        base_stab = dg.stability_codes(b["magt_label_c"], base_pf, thresholds)
        base_alt = b["alt_m"]
    elif degradation:
        base_valid = baseline["class"] != CLASS_NODATA
        base_pf = baseline["class"] == PERMAFROST
        base_stab = baseline["stability"]
        base_alt = baseline["alt"]
    nh = len(config["horizons"])
    n = len(config["scenarios"]) * nh
    shape = z.shape
    if out is None:
        magts, classes = np.empty((n, *shape), np.float32), np.empty((n, *shape), np.uint8)
        degs = np.empty((n, *shape), np.uint8) if degradation else None
    else:
        if len(out) != 2 + degradation:
            raise ValueError(f"out: {2 + degradation} arrays (magt, class[, degradation])")
        magts, classes, degs = (*out, None)[:3]
        if any(a.shape != (n, *shape) for a in out):
            raise ValueError(f"out: shapes {[a.shape for a in out]}; need {(n, *shape)}")
    i = 0
    runs = _scenario_runs(config, grid, surf_kw, forcing_of)
    if not is_transient:
        # equilibrium: one fused kernel call per run of scenarios that share forcing and ground
        # parameters (all of them with uniform warmings), pixel by pixel the same numbers;
        # without degradation straight into the output bands of the run's scenarios
        order = list(config["scenarios"])
        for names, scfg, forcing, deltas, skw in _fused_runs(runs):
            if deltas is None:
                if degradation:
                    continue  # CMIP6 fields: made beside the scenario's degradation below
                deltas = runs[names[0]]["fields"]()
            first = order.index(names[0]) * nh
            bands = slice(first, first + len(names) * nh)
            m_all, c_all = ground.compute_scenarios(
                scfg,
                forcing,
                z_ground,
                slope,
                aspect,
                deltas,
                grid=grid,
                solar=solar,
                **skw,
                out=None if degradation else (magts[bands], classes[bands]),
            )
            for j, name in enumerate(names):
                runs[name]["magt"] = m_all[j * nh : (j + 1) * nh]
                runs[name]["class"] = c_all[j * nh : (j + 1) * nh]
        if not degradation:
            return {"magt": magts, "class": classes}
    for name in config["scenarios"]:
        r = runs.pop(name)  # released with the scenario: one scenario's CMIP6 fields at a time
        scfg, forcing, deltas, skw = (r[k] for k in ("config", "forcing", "deltas", "skw"))
        if deltas is None:
            deltas = r["fields"]()
        if not is_transient:
            if "magt" not in r:  # CMIP6 fields: its kernel call here, as in the fused loop
                r["magt"], r["class"] = ground.compute_scenarios(
                    scfg, forcing, z_ground, slope, aspect, deltas, grid=grid, solar=solar, **skw
                )
            m_all, c_all = r["magt"], r["class"]
        for k, h in enumerate(config["horizons"]):
            maat_s, fdd_s, tdd_s, amp_s = scenario_climate(forcing, z, deltas[k], grid)
            if is_transient:
                s = mapped[(name, int(h))]
                valid = base_valid & np.isfinite(fdd_s)
                cls = np.where(
                    s["permafrost"], PERMAFROST, np.where(fdd_s > 0, SEASONALLY_FROZEN, UNFROZEN)
                ).astype(np.uint8)
                cls = np.where(valid, cls, CLASS_NODATA).astype(np.uint8)
                magt = np.where(valid, s["magt_c"], np.nan)
                scen_pf = s["permafrost"]
                scen_stab = dg.stability_codes(s["magt_label_c"], scen_pf, thresholds)
                scen_alt = s["alt_m"]
                talik = s["talik"]
            else:
                magt, cls = m_all[k], c_all[k]
                valid = base_valid & (cls != CLASS_NODATA)
                scen_pf = cls == PERMAFROST
                scen_stab = dg.stability_codes(magt, scen_pf, thresholds)
                scen_alt = ground.active_layer(
                    scfg, cls, fdd_s, tdd_s, solar=solar, maat=maat_s, amplitude=amp_s, **skw
                )[0]
                talik = np.zeros(shape, bool)
            magts[i] = magt
            classes[i] = cls
            if degradation:
                degs[i] = dg.classify(
                    base_pf,
                    base_stab,
                    base_alt,
                    scen_pf,
                    scen_stab,
                    scen_alt,
                    talik,
                    alt_increase,
                    valid,
                )
            i += 1
        r = deltas = None  # before the next scenario's fields are made
    out = {"magt": magts, "class": classes}
    if degradation:
        out["degradation"] = degs
    return out


def _scenario_runs(config: dict, grid: Grid, surf_kw: dict, forcing_of: dict | None) -> dict:
    """Per scenario: its merged config, forcing, monthly warming fields on ``grid`` and the
    surface keyword arguments of the ground wrappers. ``deltas`` is None for a scenario with
    CMIP6 fields ((horizons, 12, rows, cols) float64, resampled per chunk): ``fields()``
    makes them when that scenario is computed, so a chunk holds one scenario's at a time."""
    from . import surface
    from .steps import scenario_delta_fields

    runs = {}
    for name in config["scenarios"]:
        scfg = cfgmod.scenario_config(config, name)
        cmip6 = bool(config["scenarios"][name].get("cmip6"))
        runs[name] = {
            "config": scfg,
            "forcing": (
                forcing_of[name] if forcing_of is not None else climate.forcing_from_config(scfg)
            ),
            "deltas": None if cmip6 else scenario_delta_fields(config, name, grid),
            "fields": partial(scenario_delta_fields, config, name, grid),
            "skw": surface.scenario_args(surf_kw, scfg),
        }
    return runs


def _fused_runs(runs: dict):
    """(scenario names, config, forcing, concatenated warming fields, surface kwargs) of the
    consecutive scenarios one :func:`permamap.ground.compute_scenarios` call can serve: the
    same forcing object, the same packed ground parameters and surface multipliers, and
    spatially uniform warmings (zero-stride fields, concatenated without copying the grid).
    A scenario with CMIP6 fields (``deltas`` None: the caller makes them) or its own parameters
    gets a call of its own."""

    groups: list[list[str]] = []
    for name, r in runs.items():
        if groups:
            prev = runs[groups[-1][-1]]
            if _fusable(prev, r) and _uniform(r):
                groups[-1].append(name)
                continue
        groups.append([name])
    for names in groups:
        first = runs[names[0]]
        if len(names) == 1:
            yield names, first["config"], first["forcing"], first["deltas"], first["skw"]
            continue
        d = np.concatenate([runs[n]["deltas"][:, :, 0, 0] for n in names])
        deltas = np.broadcast_to(d[:, :, None, None], (len(d), *first["deltas"].shape[1:]))
        yield names, first["config"], first["forcing"], deltas, first["skw"]


def _uniform(run: dict) -> bool:
    """A run whose warming is the same everywhere (zero-stride fields, made already)."""
    from .climate import is_spatially_uniform

    return run["deltas"] is not None and is_spatially_uniform(run["deltas"])


def _fusable(a: dict, b: dict) -> bool:
    if a["forcing"] is not b["forcing"] or not _uniform(a):
        return False
    if not np.array_equal(ground.pack_params(a["config"]), ground.pack_params(b["config"])):
        return False
    ma, mb = a["skw"].get("surface_mult"), b["skw"].get("surface_mult")
    return (ma is None and mb is None) or (
        ma is not None and mb is not None and np.array_equal(ma, mb)
    )


# -- Snakemake adapters (params: step="scenario_response:smk_<name>") ---------------------------


def smk_mosaic_scenario(smk) -> None:
    from . import steps

    s, h = smk.wildcards.scenario, int(smk.wildcards.horizon)
    label = steps.band_label(s, h)
    tags = dict(scenario=s, horizon=h, warming_c=smk.params.warming_c, response=mode(smk.config))
    for key, product in (("magt", "magt"), ("cls", "class"), ("deg", "degradation")):
        steps.mosaic(
            smk.config,
            list(getattr(smk.input, key)),
            label,
            product,
            getattr(smk.output, key),
            threads=int(smk.threads),
            **tags,
        )


def smk_toposub_fit(smk) -> None:
    fit = fit_toposub(smk.config, list(smk.input.terrain), list(smk.input.climate))
    fit.save(smk.output[0])


def smk_transient_run(smk) -> None:
    from .rasterio_io import atomic_path

    df = run_transient(smk.config, Fit.load(smk.input.fit))
    with atomic_path(smk.output[0]) as tmp:
        df.to_csv(tmp, index=False)


def smk_degradation_table(smk) -> None:
    from .degradation import degradation_table
    from .steps import scenario_bands

    pairs = scenario_bands(smk.config)
    degradation_table(
        smk.config, dict(zip(pairs, smk.input.degradation, strict=True)), smk.output[0]
    )


def smk_lower_limit_rise(smk) -> None:
    from .degradation import lower_limit_rise_table

    lower_limit_rise_table(smk.input[0], smk.output[0])
