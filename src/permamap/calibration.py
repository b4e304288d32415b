"""Calibration of the model parameters with spatial block cross-validation (scikit-learn).

The calibratable parameters (:data:`PARAMETERS`: air lapse rate, n-factors, conductivity
ratio and solar effect of the ``ttop`` model; the rates and anchor of the ``lapse`` model)
are fitted by running the model itself (:func:`permamap.validation.model_from_features`:
air temperature at the point's elevation, degree-days, MAGT) inside a scikit-learn
estimator, so the fit is the model of the maps, not a statistical stand-in for it.

Targets (``validation.calibration.target``):

- ``magt``: borehole MAGT y_i (C) of the points file; least squares,
  min sum_i (MAGT_model,i - y_i)^2 (``scipy.optimize.least_squares``, trust-region
  reflective with the bounds). Estimator: :class:`MAGTCalibrator` (a regressor).
- ``presence``: permafrost presence y_i in {0, 1} of the points and of reference-map pixels;
  minimum logistic deviance -2 sum_i [y_i ln P_i + (1 - y_i) ln(1 - P_i)] with
  P_i = 1 / (1 + exp(MAGT_model,i / s)) (s = ``presence_scale_c``, C): a pixel mapped as
  permafrost (MAGT < 0) is permafrost with probability > 0.5. Estimator:
  :class:`PresenceCalibrator` (a classifier; it predicts permafrost where MAGT < 0).
  Presence alone fixes only where MAGT crosses 0 C, so fit one or two parameters with it.

**Spatial block cross-validation.** Neighbouring pixels and nearby boreholes are not
independent (they share climate, relief and the errors of the inputs), so a random split
would score the model on near-copies of its training data. Samples are grouped into square
blocks of ``block_size_km`` (:func:`spatial_blocks`) and scikit-learn's ``GroupKFold`` (groups
shuffled with ``seed``) splits *blocks*: a block is either in training or in test, never both
(Roberts et al. 2017, Ecography 40, 913-929, doi:10.1111/ecog.02881). Every score reported is
computed on held-out blocks only, beside the score of the config's own (uncalibrated)
parameters on the same held-out samples. The parameters written to ``calibrated.yaml`` are
then fitted to all samples; they have no held-out score of their own: the cross-validated
scores estimate how well *the procedure* generalises to blocks it has not seen.

Outputs (``results/<run>/validation/calibration/``): ``folds.csv`` (per fold: blocks, fitted
parameters, held-out scores), ``predictions.csv`` (per sample: block, fold, observed, held-out
prediction, prediction with the config's parameters), ``calibrated.yaml`` (a config fragment:
``snakemake --configfile config/config.yaml --configfile .../calibrated.yaml``) and
``scores.json``.
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone

from .errors import ConfigError
from .grid import Grid, cell_size_m
from .rasterio_io import atomic_path

log = logging.getLogger(__name__)

#: name -> (config keys, default search bounds, hard limits of the config schema, description).
#: Default bounds are physically plausible ranges: near-surface air lapse rates on the Tibetan
#: Plateau of about 4-8 C/km; a freezing n-factor <= 1 (the winter surface is not colder than
#: the air) and a thawing n-factor up to 2 (strong summer radiation on bare ground).
PARAMETERS = {
    "lapse_rate_c_per_m": (
        ("climate", "lapse_rate_c_per_m"),
        (0.0035, 0.0085),
        (0.0, 0.0098),
        "air temperature lapse rate, C per m",
    ),
    "n_freezing": (
        ("ground", "ttop", "n_freezing"),
        (0.2, 1.0),
        (0.0, 1.5),
        "freezing n-factor (surface / air FDD)",
    ),
    "n_thawing": (
        ("ground", "ttop", "n_thawing"),
        (0.5, 2.0),
        (0.0, 2.0),
        "thawing n-factor (surface / air TDD)",
    ),
    "conductivity_ratio": (
        ("ground", "ttop", "conductivity_ratio"),
        (0.5, 1.0),
        (0.0, 1.0),
        "r_k = k_thawed / k_frozen",
    ),
    "solar_effect": (
        ("ground", "ttop", "solar_effect"),
        (0.0, 3.0),
        (0.0, 5.0),
        "aspect effect on the thawing n-factor",
    ),
    "rate_north_c_per_m": (
        ("ground", "lapse", "rate_north_c_per_m"),
        (0.001, 0.015),
        (0.0, 0.02),
        "MAGT lapse on north-facing slopes, C per m",
    ),
    "rate_south_c_per_m": (
        ("ground", "lapse", "rate_south_c_per_m"),
        (0.001, 0.015),
        (0.0, 0.02),
        "MAGT lapse on south-facing slopes, C per m",
    ),
    "reference_magt_c": (
        ("ground", "lapse", "reference_magt_c"),
        (-5.0, 5.0),
        (-20.0, 20.0),
        "MAGT at the anchor elevation, C",
    ),
}
#: Parameters that act in each ground model.
MODEL_PARAMETERS = {
    "ttop": {"lapse_rate_c_per_m", "n_freezing", "n_thawing", "conductivity_ratio", "solar_effect"},
    "lapse": {"rate_north_c_per_m", "rate_south_c_per_m", "reference_magt_c"},
}
DEFAULT_PARAMETERS = {
    ("ttop", "magt"): ["n_freezing", "n_thawing"],
    ("ttop", "presence"): ["n_thawing"],
    ("lapse", "magt"): ["rate_north_c_per_m", "rate_south_c_per_m", "reference_magt_c"],
    ("lapse", "presence"): ["reference_magt_c"],
}


# ------------------------------------------------------------------------------ parameters


def calibration_parameters(config: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, low, high) of the parameters to fit, from ``validation.calibration``
    (ConfigError for a parameter the ground model does not use or bad bounds)."""
    cal = config["validation"]["calibration"]
    model = config["ground"]["model"]
    target = cal.get("target", "magt")
    names = list(cal.get("parameters") or DEFAULT_PARAMETERS[(model, target)])
    unused = [n for n in names if n not in MODEL_PARAMETERS[model]]
    if unused:
        raise ConfigError(
            f"config error: validation.calibration.parameters {unused} have no effect with "
            f"ground.model = {model!r}; use some of {sorted(MODEL_PARAMETERS[model])}"
        )
    lo, hi = [], []
    for n in names:
        b = (cal.get("bounds") or {}).get(n) or PARAMETERS[n][1]
        hard = PARAMETERS[n][2]
        if not (hard[0] <= b[0] < b[1] <= hard[1]):
            raise ConfigError(
                f"config error: validation.calibration.bounds.{n} = {list(b)} must be [low, high] "
                f"with {hard[0]} <= low < high <= {hard[1]}"
            )
        lo.append(float(b[0]))
        hi.append(float(b[1]))
    return names, np.array(lo), np.array(hi)


def get_parameter(config: dict, name: str) -> float:
    """Current value of a parameter (the mean of twelve monthly lapse rates)."""
    cur = config
    for k in PARAMETERS[name][0]:
        cur = cur[k]
    return float(np.mean(cur))


def with_parameters(config: dict, params: dict) -> dict:
    """A copy of ``config`` with ``params`` set. Twelve monthly lapse rates are scaled so
    their mean is the new value (the seasonal shape is kept)."""
    out = copy.deepcopy(config)
    for name, value in params.items():
        keys = PARAMETERS[name][0]
        parent = out
        for k in keys[:-1]:
            parent = parent[k]
        old = parent[keys[-1]]
        if isinstance(old, (list, tuple)):
            mean = float(np.mean(old))
            parent[keys[-1]] = [
                float(v) * float(value) / mean if mean else float(value) for v in old
            ]
        else:
            parent[keys[-1]] = float(value)
    return out


# ------------------------------------------------------------------------------ estimators


class _ParameterModel(BaseEstimator):
    """The permamap model with some parameters free; ``X`` is a feature matrix of
    :func:`permamap.validation.point_features`."""

    def __init__(
        self, base_config=None, parameters=("n_thawing",), bounds=None, presence_scale_c=0.5
    ):
        self.base_config = base_config
        self.parameters = parameters
        self.bounds = bounds
        self.presence_scale_c = presence_scale_c

    def _bounds(self):
        if self.bounds is None:
            lo = np.array([PARAMETERS[n][1][0] for n in self.parameters])
            hi = np.array([PARAMETERS[n][1][1] for n in self.parameters])
            return lo, hi
        b = np.asarray(self.bounds, np.float64)
        return b[:, 0], b[:, 1]

    def config_values(self) -> dict:
        """The base config's values of the free parameters."""
        return {n: get_parameter(self.base_config, n) for n in self.parameters}

    def magt(self, X, params: dict | None = None) -> np.ndarray:
        """MAGT (C) at the samples with ``params`` (default: fitted, else the config's)."""
        from .validation import model_from_features

        if params is None:
            params = getattr(self, "params_", None) or self.config_values()
        cfg = with_parameters(self.base_config, params)
        return model_from_features(cfg, X, active_layer=False)["magt"]

    def fit(self, X, y):
        from scipy.optimize import least_squares

        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        lo, hi = self._bounds()
        x0 = np.array([self.config_values()[n] for n in self.parameters])
        eps = 1e-6 * (hi - lo)
        x0 = np.clip(x0, lo + eps, hi - eps)
        names = list(self.parameters)

        def residuals(theta):
            return self._residuals(self.magt(X, dict(zip(names, theta, strict=True))), y)

        res = least_squares(
            residuals, x0, bounds=(lo, hi), x_scale=hi - lo, diff_step=1e-4, method="trf"
        )
        self.params_ = {n: float(v) for n, v in zip(names, res.x, strict=True)}
        self.cost_ = float(res.cost)
        self.nfev_ = int(res.nfev)
        self.success_ = bool(res.success)
        self.at_bound_ = [
            n
            for n, v, a, b in zip(names, res.x, lo, hi, strict=True)
            if v <= a + 1e-6 * (b - a) or v >= b - 1e-6 * (b - a)
        ]
        return self


class MAGTCalibrator(RegressorMixin, _ParameterModel):
    """Least squares on MAGT (C): residual_i = MAGT_model,i - y_i."""

    def _residuals(self, magt, y):
        return magt - y

    def predict(self, X, params: dict | None = None):
        return self.magt(X, params)


class PresenceCalibrator(ClassifierMixin, _ParameterModel):
    """Minimum logistic deviance of presence with P = 1 / (1 + exp(MAGT / s)).

    Deviance residuals: r_i = sqrt(2 softplus(MAGT_i / s)) for y_i = 1 and
    sqrt(2 softplus(-MAGT_i / s)) for y_i = 0, so sum r_i^2 is the deviance
    (-ln P = softplus(MAGT / s) = ln(1 + exp(MAGT / s))).
    """

    def _residuals(self, magt, y):
        u = magt / self.presence_scale_c
        loss = np.where(y > 0.5, np.logaddexp(0.0, u), np.logaddexp(0.0, -u))
        return np.sqrt(2.0 * loss)

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return super().fit(X, y)

    def predict_proba(self, X, params: dict | None = None):
        from scipy.special import expit

        p = expit(-self.magt(X, params) / self.presence_scale_c)
        return np.column_stack([1.0 - p, p])

    def predict(self, X, params: dict | None = None):
        return (self.magt(X, params) < 0.0).astype(int)


def make_estimator(config: dict):
    """The estimator of ``validation.calibration`` (target, parameters, bounds)."""
    cal = config["validation"]["calibration"]
    names, lo, hi = calibration_parameters(config)
    cls = MAGTCalibrator if cal.get("target", "magt") == "magt" else PresenceCalibrator
    return cls(
        base_config=config,
        parameters=tuple(names),
        bounds=np.column_stack([lo, hi]).tolist(),
        presence_scale_c=float(cal.get("presence_scale_c", 0.5)),
    )


# ------------------------------------------------------------------------------ spatial CV


def spatial_blocks(lon, lat, block_km: float, grid: Grid) -> np.ndarray:
    """Integer id of the square block (``block_km`` on a side) holding each point.

    Blocks are laid from the region's north-west corner with the metres per degree of the
    region's mid-latitude on the WGS 84 ellipsoid (:func:`permamap.grid.cell_size_m`); away
    from that latitude their east-west size changes with cos(latitude) (about +-3 % over 4
    degrees at 37 N).
    """
    lat0 = 0.5 * (grid.north + grid.south)
    dx_m, dy_m = cell_size_m(lat0, 1.0)
    bx = np.floor((np.asarray(lon, np.float64) - grid.west) * float(dx_m) / 1000.0 / block_km)
    by = np.floor((grid.north - np.asarray(lat, np.float64)) * float(dy_m) / 1000.0 / block_km)
    return (by.astype(np.int64) * 100_000 + bx.astype(np.int64)).astype(np.int64)


def spatial_folds(blocks, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays of scikit-learn's ``GroupKFold`` over blocks (groups
    shuffled with ``seed``): every sample is in exactly one test fold and no block is ever in
    both the training and the test set of a fold. Fewer blocks than ``n_splits``: one fold per
    block. Fewer than two blocks: ValueError."""
    from sklearn.model_selection import GroupKFold

    blocks = np.asarray(blocks)
    n_blocks = len(np.unique(blocks))
    if n_blocks < 2:
        raise ValueError(f"spatial cross-validation needs at least 2 blocks, got {n_blocks}")
    k = min(int(n_splits), n_blocks)
    cv = GroupKFold(n_splits=k, shuffle=True, random_state=int(seed))
    return list(cv.split(np.zeros(len(blocks)), groups=blocks))


# ------------------------------------------------------------------------------ samples

TERRAIN = ("elevation", "slope", "aspect", "solar")


def magt_samples(config: dict, points_path, rasters: dict) -> pd.DataFrame:
    """Boreholes with MAGT inside the grid: lon, lat, z (point elevation when given and
    ``use_point_elevation``, else the pixel's), slope, aspect, solar, y = MAGT (C)."""
    from .validation import read_points

    grid = Grid.from_config(config)
    pts = read_points(points_path, layer=config["validation"]["points"].get("layer"))
    lon, lat = pts["lon"].to_numpy(), pts["lat"].to_numpy()
    inside = (lon >= grid.west) & (lon < grid.east) & (lat > grid.south) & (lat <= grid.north)
    pts = pts[inside & pts["magt_c"].notna().to_numpy()].reset_index(drop=True)
    df = _terrain_at(
        config, pts["lon"].to_numpy(), pts["lat"].to_numpy(), rasters, pts["elevation_m"].to_numpy()
    )
    df["y"] = pts["magt_c"].to_numpy()
    df["sample"] = "point " + pts["id"]
    return df[np.isfinite(df[["z", "slope", "aspect", "solar"]]).all(axis=1)].reset_index(drop=True)


def _terrain_at(config, lon, lat, rasters, z_point=None) -> pd.DataFrame:
    from .validation import sample_raster

    vals = {k: sample_raster(rasters[k], lon, lat) for k in TERRAIN}
    z = vals["elevation"]
    if z_point is not None and config["validation"]["points"].get("use_point_elevation", True):
        z = np.where(np.isfinite(z_point), z_point, z)
    return pd.DataFrame(
        dict(lon=lon, lat=lat, z=z, slope=vals["slope"], aspect=vals["aspect"], solar=vals["solar"])
    )


def presence_samples(config: dict, points_path, rasters: dict) -> pd.DataFrame:
    """Permafrost presence (y = 1/0) at the points (where known) and at up to
    ``max_samples`` reference-map pixels drawn at random (``seed``), each at the centre of a
    pixel of the reference's own grid; features as :func:`magt_samples`."""
    from pyproj import Transformer

    from .grid import CRS
    from .products import CLASS_NODATA, PERMAFROST
    from .validation import (
        native_path,
        open_reference,
        read_points,
        reference_entries,
        reference_spec,
    )

    cal = config["validation"]["calibration"]
    grid = Grid.from_config(config)
    rng = np.random.default_rng(int(cal.get("seed", 0)))
    frames = []
    if points_path:
        pts = read_points(points_path, layer=config["validation"]["points"].get("layer"))
        pts = pts[pts["permafrost"].notna()].reset_index(drop=True)
        df = _terrain_at(
            config,
            pts["lon"].to_numpy(),
            pts["lat"].to_numpy(),
            rasters,
            pts["elevation_m"].to_numpy(),
        )
        df["y"] = pts["permafrost"].to_numpy()
        df["sample"] = "point " + pts["id"]
        frames.append(df)
    refs = reference_entries(config)[0]
    per_ref = int(cal.get("max_samples", 5000)) // max(1, len(refs))
    for entry in refs:
        spec = reference_spec(entry)
        nat = open_reference(spec, grid, spec.native_path or native_path(config, entry))
        idx = np.flatnonzero(nat.codes.ravel() != CLASS_NODATA)
        if idx.size > per_ref:
            idx = np.sort(rng.choice(idx, per_ref, replace=False))
        rows, cols = np.divmod(idx, nat.codes.shape[1])
        x, y = nat.transform @ (cols + 0.5, rows + 0.5)
        lon, lat = Transformer.from_crs(nat.crs, CRS, always_xy=True).transform(x, y)
        lon, lat = np.asarray(lon), np.asarray(lat)
        inside = (lon >= grid.west) & (lon < grid.east) & (lat > grid.south) & (lat <= grid.north)
        df = _terrain_at(config, lon[inside], lat[inside], rasters)
        df["y"] = (nat.codes[rows, cols][inside] == PERMAFROST).astype(float)
        df["sample"] = [
            f"{spec.name} pixel {r},{c}" for r, c in zip(rows[inside], cols[inside], strict=True)
        ]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["lon", "lat", "z", "slope", "aspect", "solar", "y", "sample"])
    df = pd.concat(frames, ignore_index=True)
    return df[np.isfinite(df[["z", "slope", "aspect", "solar"]]).all(axis=1)].reset_index(drop=True)


# ------------------------------------------------------------------------------ calibration


def _fold_scores(target: str, y, pred, cfg_pred) -> dict:
    from .validation import error_scores, presence_scores

    if target == "magt":
        h, c = error_scores(pred, y), error_scores(cfg_pred, y)
        return {
            "heldout_bias_c": h["bias"],
            "heldout_mae_c": h["mae"],
            "heldout_rmse_c": h["rmse"],
            "config_bias_c": c["bias"],
            "config_mae_c": c["mae"],
            "config_rmse_c": c["rmse"],
        }
    h = presence_scores(y, (pred > 0.5).astype(float))
    c = presence_scores(y, (cfg_pred > 0.5).astype(float))
    return {
        "heldout_accuracy": h["overall_accuracy"],
        "heldout_kappa": h["kappa"],
        "config_accuracy": c["overall_accuracy"],
        "config_kappa": c["kappa"],
    }


def _predict_value(est, X, params=None):
    """MAGT (regressor) or probability of permafrost (classifier)."""
    if isinstance(est, PresenceCalibrator):
        return est.predict_proba(X, params)[:, 1]
    return est.predict(X, params)


def cross_validate(config: dict, samples: pd.DataFrame, estimator=None) -> dict:
    """Spatial block cross-validation and the final fit on all samples.

    Returns a dict with ``folds`` (DataFrame), ``predictions`` (DataFrame), ``held_out`` and
    ``config_on_held_out`` (pooled scores over all held-out predictions), ``params`` (final
    fit), ``config_params``, ``spread`` (of the per-fold fits) and metadata.
    """
    from .validation import error_scores, point_features, presence_scores

    cal = config["validation"]["calibration"]
    target = cal.get("target", "magt")
    est = estimator if estimator is not None else make_estimator(config)
    grid = Grid.from_config(config)
    X = point_features(
        config,
        samples["lon"],
        samples["lat"],
        samples["z"],
        samples["slope"],
        samples["aspect"],
        samples["solar"],
    )
    y = samples["y"].to_numpy(np.float64)
    blocks = spatial_blocks(samples["lon"], samples["lat"], float(cal["block_size_km"]), grid)
    folds = spatial_folds(blocks, int(cal["n_splits"]), int(cal.get("seed", 0)))
    oof = np.full(len(y), np.nan)
    cfg_pred = _predict_value(est, X, est.config_values())
    fold_id = np.full(len(y), -1)
    rows = []
    for k, (tr, te) in enumerate(folds):
        assert not set(blocks[tr]) & set(blocks[te])
        fitted = clone(est).fit(X[tr], y[tr])
        oof[te] = _predict_value(fitted, X[te])
        fold_id[te] = k
        rows.append(
            dict(
                fold=k,
                n_train=len(tr),
                n_test=len(te),
                n_blocks_train=len(set(blocks[tr])),
                n_blocks_test=len(set(blocks[te])),
                test_blocks=" ".join(str(b) for b in sorted(set(blocks[te]))),
                **{f"fitted_{n}": v for n, v in fitted.params_.items()},
                at_bound=" ".join(fitted.at_bound_),
                **_fold_scores(target, y[te], oof[te], cfg_pred[te]),
            )
        )
    final = clone(est).fit(X, y)
    fold_df = pd.DataFrame(rows)
    spread = {
        n: dict(
            mean=float(fold_df[f"fitted_{n}"].mean()),
            std=float(fold_df[f"fitted_{n}"].std(ddof=0)),
            min=float(fold_df[f"fitted_{n}"].min()),
            max=float(fold_df[f"fitted_{n}"].max()),
        )
        for n in est.parameters
    }
    pred = pd.DataFrame(
        dict(
            sample=samples["sample"],
            lon=samples["lon"],
            lat=samples["lat"],
            z=samples["z"],
            block=blocks,
            fold=fold_id,
            observed=y,
            heldout_prediction=oof,
            config_prediction=cfg_pred,
        )
    )
    if target == "magt":
        held, cfgs = error_scores(oof, y), error_scores(cfg_pred, y)
        held = {f"magt_{k}_c" if k not in ("n", "r") else k: v for k, v in held.items()}
        cfgs = {f"magt_{k}_c" if k not in ("n", "r") else k: v for k, v in cfgs.items()}
    else:
        from sklearn.metrics import brier_score_loss, log_loss

        h = presence_scores(y, (oof > 0.5).astype(float))
        c = presence_scores(y, (cfg_pred > 0.5).astype(float))
        held = dict(
            n=h["n"],
            accuracy=h["overall_accuracy"],
            kappa=h["kappa"],
            log_loss=float(log_loss(y, np.clip(oof, 1e-9, 1 - 1e-9), labels=[0, 1])),
            brier=float(brier_score_loss(y, oof)),
        )
        cfgs = dict(
            n=c["n"],
            accuracy=c["overall_accuracy"],
            kappa=c["kappa"],
            log_loss=float(log_loss(y, np.clip(cfg_pred, 1e-9, 1 - 1e-9), labels=[0, 1])),
            brier=float(brier_score_loss(y, cfg_pred)),
        )
    return dict(
        target=target,
        parameters=list(est.parameters),
        bounds={
            n: list(b) for n, b in zip(est.parameters, np.asarray(est.bounds).tolist(), strict=True)
        }
        if est.bounds is not None
        else None,
        n_samples=int(len(y)),
        n_blocks=int(len(set(blocks))),
        n_folds=len(folds),
        folds=fold_df,
        predictions=pred,
        held_out=held,
        config_on_held_out=cfgs,
        params=final.params_,
        params_at_bound=final.at_bound_,
        config_params=est.config_values(),
        spread=spread,
    )


def fragment(config: dict, params: dict) -> dict:
    """The nested config fragment that sets ``params`` (rounded to 6 significant digits)."""
    fitted = with_parameters(config, {n: float(f"{v:.6g}") for n, v in params.items()})
    out: dict = {}
    for name in params:
        keys = PARAMETERS[name][0]
        src, dst = fitted, out
        for k in keys[:-1]:
            src = src[k]
            dst = dst.setdefault(k, {})
        v = src[keys[-1]]
        dst[keys[-1]] = [float(f"{x:.6g}") for x in v] if isinstance(v, list) else v
    return out


def write_fragment(path, config: dict, result: dict | None, reason: str = "") -> None:
    """``calibrated.yaml``: the fitted parameters as a config fragment with a comment header
    (or only a comment saying why there is none). The fragment is checked to validate when
    merged over ``config``."""
    import yaml

    from .config import deep_merge, prepare

    cal = config["validation"]["calibration"]
    head = [f"# permamap calibrated parameters, run {config['run']!r}, target {cal['target']!r}"]
    if result is None:
        body = ""
        head.append(f"# No calibration: {reason}")
    else:
        frag = fragment(config, result["params"])
        prepare(deep_merge(config, frag))  # raises if the fragment would not validate
        body = yaml.safe_dump(frag, sort_keys=False, default_flow_style=False)
        h = result["held_out"]
        c = result["config_on_held_out"]
        key = "magt_rmse_c" if result["target"] == "magt" else "kappa"
        head += [
            f"# Fitted to all {result['n_samples']} samples ({result['n_blocks']} blocks of "
            f"{cal['block_size_km']} km).",
            f"# Spatial {result['n_folds']}-fold block cross-validation, held-out {key}: "
            f"{_fmt(h.get(key))} (the config's parameters on the same samples: "
            f"{_fmt(c.get(key))}).",
            "# Scores of these final parameters on their own training data are not reported.",
            "# Previous values: "
            + ", ".join(f"{n} = {v:.6g}" for n, v in result["config_params"].items()),
        ]
        if result["params_at_bound"]:
            head.append(
                f"# At a search bound (widen validation.calibration.bounds?): "
                f"{', '.join(result['params_at_bound'])}"
            )
        head.append("# Use: snakemake --configfile config/config.yaml --configfile <this file>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(head) + "\n" + body)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def calibrate(config: dict, points_path, rasters: dict, outputs: dict) -> dict:
    """Assemble the samples, cross-validate, fit, and write ``outputs`` (``folds``,
    ``predictions``, ``fragment``, ``scores``). Too few samples or blocks: the outputs say so
    (``status: skipped`` with the reason) instead of failing the run."""
    from .validation import is_synthetic, reference_entries, write_csv, write_json

    cal = config["validation"]["calibration"]
    target = cal.get("target", "magt")
    names, lo, hi = calibration_parameters(config)
    if target == "magt":
        samples = magt_samples(config, points_path, rasters) if points_path else None
    else:
        samples = presence_samples(config, points_path, rasters)
    n = 0 if samples is None else len(samples)
    grid = Grid.from_config(config)
    n_blocks = (
        0
        if not n
        else len(
            set(spatial_blocks(samples["lon"], samples["lat"], float(cal["block_size_km"]), grid))
        )
    )
    synthetic = bool(points_path and is_synthetic(points_path))
    if target == "presence":
        synthetic = synthetic or any(is_synthetic(e["path"]) for e in reference_entries(config)[0])
    base = dict(
        status="ok",
        target=target,
        parameters=names,
        block_size_km=float(cal["block_size_km"]),
        seed=int(cal.get("seed", 0)),
        synthetic_inputs=synthetic,
        note="every score is on held-out spatial blocks; config_on_held_out = the "
        "config's own parameters on the same samples; the final parameters "
        "(calibrated.yaml) are fitted to all samples",
    )
    reason = ""
    if n < int(cal.get("min_samples", 8)):
        reason = (
            f"{n} usable {'MAGT' if target == 'magt' else 'presence'} samples inside the "
            f"region, fewer than validation.calibration.min_samples = {cal.get('min_samples', 8)}"
        )
    elif n_blocks < 2:
        reason = (
            f"all {n} samples fall in one spatial block of {cal['block_size_km']} km; "
            "lower validation.calibration.block_size_km"
        )
    if reason:
        log.warning("calibration skipped: %s", reason)
        write_csv(outputs["folds"], pd.DataFrame(columns=["fold"]))
        write_csv(outputs["predictions"], pd.DataFrame(columns=["sample"]))
        write_fragment(outputs["fragment"], config, None, reason)
        scores = {
            **base,
            "status": "skipped",
            "reason": reason,
            "n_samples": n,
            "n_blocks": n_blocks,
        }
        write_json(outputs["scores"], scores)
        return scores
    res = cross_validate(config, samples)
    write_csv(outputs["folds"], res.pop("folds"))
    write_csv(outputs["predictions"], res.pop("predictions"))
    write_fragment(outputs["fragment"], config, res)
    scores = {**base, **res}
    write_json(outputs["scores"], scores)
    log.info(
        "calibration (%s): held-out %s; config %s; fitted %s",
        target,
        res["held_out"],
        res["config_on_held_out"],
        res["params"],
    )
    return scores


def calibrate_step(smk) -> None:
    """Rule ``calibrate``."""
    from .validation import points_path

    config = smk.config
    rasters = {k: getattr(smk.input, k) for k in TERRAIN}
    out = smk.output
    calibrate(
        config,
        points_path(config)[0],
        rasters,
        dict(
            folds=out.folds, predictions=out.predictions, fragment=out.fragment, scores=out.scores
        ),
    )


__all__ = [
    "PARAMETERS",
    "MAGTCalibrator",
    "PresenceCalibrator",
    "calibrate",
    "calibration_parameters",
    "cross_validate",
    "fragment",
    "spatial_blocks",
    "spatial_folds",
    "with_parameters",
]
