"""TopoSUB: run an expensive point model on representative pixel clusters, not on every pixel.

Running the transient ground model (:mod:`permamap.transient`) on every 30 m pixel of a tile is
too slow. TopoSUB (Fiddes & Gruber 2012, Geosci. Model Dev. 5, 1245-1257,
doi:10.5194/gmd-5-1245-2012) clusters the pixels by the variables that drive the model (here e.g.
elevation, solar index, MAAT, FDD, TDD), runs the model once per cluster with the cluster's mean
inputs, and maps the results back to the pixels: by cluster label, or by inverse-distance
weighting in feature space over the k nearest cluster centres. As the number
of clusters grows the result converges to the per-pixel one (tested).

* Features are standardised (z-scores over the valid pixels) and optionally weighted, then
  clustered with scikit-learn ``KMeans`` with a fixed ``random_state`` (same inputs -> identical
  labels). Pixels where any feature is NaN (or ``valid`` is False) are nodata: label -1, and NaN
  (or ``fill``) in every mapped output.
* Categorical inputs (e.g. surface type, whose n-factors differ) are not clustered as numbers:
  pass them as ``strata`` and clusters are allocated to each stratum in proportion to its pixel
  count (at least one each), so a cluster never mixes surface types.
* When a stratum has no more distinct feature vectors than clusters, every distinct vector is its
  own cluster (exact). For large tiles KMeans is fitted on a seeded random subsample of
  ``max_fit_samples`` pixels and every pixel is then assigned to its nearest centre.
* The cluster's model inputs are the means of its member pixels (:func:`cluster_means`), in the
  original units.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from permamap.errors import ConfigError

__all__ = [
    "TopoSubResult",
    "cluster_pixels",
    "cluster_means",
    "map_to_pixels",
    "idw_to_pixels",
    "run_toposub",
]


@dataclass
class TopoSubResult:
    """Clusters of the valid pixels of a raster."""

    labels: np.ndarray  # int32, raster shape, -1 = nodata
    n_clusters: int
    feature_names: tuple[str, ...]
    centroids: np.ndarray  # (n_clusters, n_features), member means in original units
    counts: np.ndarray  # (n_clusters,), member pixels
    feature_mean: np.ndarray  # (n_features,), standardisation over valid pixels
    feature_std: np.ndarray  # (n_features,)
    weights: np.ndarray  # (n_features,), applied after standardisation
    cluster_stratum: np.ndarray | None  # (n_clusters,), stratum code of each cluster

    @property
    def valid(self) -> np.ndarray:
        return self.labels >= 0


def _stack(features) -> tuple[np.ndarray, tuple[str, ...]]:
    if isinstance(features, Mapping):
        names = tuple(features)
        if not names:
            raise ConfigError("toposub: no features given")
        arrs = [np.asarray(features[n], dtype=np.float64) for n in names]
        shape = arrs[0].shape
        for n, a in zip(names, arrs, strict=True):
            if a.shape != shape:
                raise ConfigError(
                    f"toposub: feature {n!r} has shape {a.shape}, expected {shape} "
                    f"like {names[0]!r}"
                )
        return np.stack(arrs), names
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim < 2:
        raise ConfigError("toposub: features must be (n_features, *raster_shape) or a mapping")
    return arr, tuple(f"f{i}" for i in range(arr.shape[0]))


def _allocate(counts: np.ndarray, n_clusters: int) -> np.ndarray:
    """Clusters per stratum: proportional to pixel counts (largest remainder), at least 1."""
    n_strata = counts.size
    total = max(int(n_clusters), n_strata)
    share = counts / counts.sum() * total
    alloc = np.maximum(np.floor(share).astype(np.int64), 1)
    while alloc.sum() > total:
        i = int(np.argmax(np.where(alloc > 1, alloc - share, -np.inf)))
        alloc[i] -= 1
    while alloc.sum() < total:
        i = int(np.argmax(share - alloc))
        alloc[i] += 1
    return alloc


def _kmeans_labels(x: np.ndarray, k: int, random_state: int, n_init: int, max_fit: int):
    """Labels 0..k'-1 (k' <= k) for the rows of x."""
    uniq, inverse = np.unique(x, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    if uniq.shape[0] <= k:
        return inverse.astype(np.int64), uniq.shape[0]
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(random_state)
    fit = x if x.shape[0] <= max_fit else x[np.sort(rng.choice(x.shape[0], max_fit, replace=False))]
    km = KMeans(n_clusters=k, random_state=random_state, n_init=n_init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on near-duplicate points
        km.fit(fit)
    labels = km.predict(x) if fit is not x else km.labels_
    # Drop empty clusters (possible after predicting from a subsample) and renumber densely.
    used, labels = np.unique(labels, return_inverse=True)
    return labels.ravel().astype(np.int64), used.size


def cluster_pixels(
    features,
    n_clusters: int,
    *,
    valid=None,
    strata=None,
    weights=None,
    random_state: int = 0,
    n_init: int = 4,
    max_fit_samples: int = 200_000,
) -> TopoSubResult:
    """Cluster the valid pixels into about ``n_clusters`` representative classes (TopoSUB).

    Parameters
    ----------
    features : mapping name -> raster (all the same shape), or an array (n_features, *shape).
        Continuous drivers, e.g. ``{"elevation_m": ..., "solar_index": ..., "maat_c": ...,
        "fdd_c_day": ..., "tdd_c_day": ...}``. NaN marks nodata.
    n_clusters : total number of clusters (at least one per stratum).
    valid : optional boolean raster; False pixels are nodata.
    strata : optional integer raster of categories (e.g. surface type); negative = nodata.
    weights : optional per-feature weights applied to the standardised features (default 1).
    random_state, n_init : passed to ``sklearn.cluster.KMeans`` (fixed seed: deterministic).
    max_fit_samples : fit on at most this many pixels (seeded subsample), then assign all.
    """
    x, names = _stack(features)
    shape = x.shape[1:]
    if int(n_clusters) < 1:
        raise ConfigError(f"toposub: n_clusters must be >= 1, got {n_clusters}")
    ok = np.all(np.isfinite(x), axis=0)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != shape:
            raise ConfigError(f"toposub: valid mask shape {valid.shape} != raster shape {shape}")
        ok &= valid
    st = None
    if strata is not None:
        st = np.asarray(strata)
        if st.shape != shape:
            raise ConfigError(f"toposub: strata shape {st.shape} != raster shape {shape}")
        if not np.issubdtype(st.dtype, np.integer):
            finite = np.isfinite(st)
            ok &= finite
            st = np.where(finite, st, -1).astype(np.int64)
        ok &= st >= 0
    w = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(names),) or np.any(w < 0):
        raise ConfigError(f"toposub: weights must be {len(names)} non-negative numbers, got {w}")
    labels = np.full(shape, -1, dtype=np.int32)
    nf = len(names)
    if not ok.any():
        return TopoSubResult(labels, 0, names, np.zeros((0, nf)), np.zeros(0, np.int64),
                             np.full(nf, np.nan), np.full(nf, np.nan), w,
                             None if st is None else np.zeros(0, np.int64))
    xv = x[:, ok].T  # (n_valid, n_features)
    mean = xv.mean(axis=0)
    std = xv.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (xv - mean) / std * w
    flat_labels = np.empty(xv.shape[0], dtype=np.int64)
    cluster_stratum = None
    if st is None:
        lab, k = _kmeans_labels(z, int(n_clusters), random_state, n_init, max_fit_samples)
        flat_labels[:] = lab
        n_total = k
    else:
        sv = st[ok]
        codes, counts = np.unique(sv, return_counts=True)
        alloc = _allocate(counts, int(n_clusters))
        offset = 0
        cluster_stratum = []
        for code, k_s in zip(codes, alloc, strict=True):
            sel = sv == code
            lab, k = _kmeans_labels(z[sel], int(k_s), random_state, n_init, max_fit_samples)
            flat_labels[sel] = lab + offset
            cluster_stratum.extend([int(code)] * k)
            offset += k
        n_total = offset
        cluster_stratum = np.asarray(cluster_stratum, dtype=np.int64)
    labels[ok] = flat_labels
    counts = np.bincount(flat_labels, minlength=n_total)
    centroids = np.stack(
        [np.bincount(flat_labels, weights=xv[:, j], minlength=n_total) / counts
         for j in range(nf)], axis=1,
    )
    return TopoSubResult(labels, n_total, names, centroids, counts, mean, std, w, cluster_stratum)


def cluster_means(labels, values, n_clusters: int | None = None) -> np.ndarray:
    """Mean of ``values`` (a raster, or (n_bands, *raster)) over the member pixels of each cluster,
    ignoring NaN values; -> (n_clusters,) or (n_clusters, n_bands). NaN for a cluster with no
    finite member value."""
    labels = np.asarray(labels)
    vals = np.asarray(values, dtype=np.float64)
    k = int(labels.max()) + 1 if n_clusters is None else int(n_clusters)
    band_first = vals.ndim == labels.ndim + 1
    if not band_first and vals.shape != labels.shape:
        raise ConfigError(
            f"toposub: values shape {vals.shape} does not match labels {labels.shape}"
        )
    v = vals.reshape((-1,) + labels.shape) if band_first else vals[None]
    lab = labels.ravel()
    ok_pix = lab >= 0
    out = np.empty((k, v.shape[0]))
    for j in range(v.shape[0]):
        vj = v[j].ravel()
        good = ok_pix & np.isfinite(vj)
        s = np.bincount(lab[good], weights=vj[good], minlength=k)
        c = np.bincount(lab[good], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    return out if band_first else out[:, 0]


def map_to_pixels(labels, cluster_values, fill=np.nan) -> np.ndarray:
    """Each pixel takes its cluster's value; nodata pixels (label -1) take ``fill``.

    ``cluster_values``: (n_clusters,) or (n_clusters, *extra) -> (*extra, *raster_shape).
    """
    labels = np.asarray(labels)
    cv = np.asarray(cluster_values)
    k = int(labels.max()) + 1 if labels.size else 0
    if cv.shape[0] < k:
        raise ConfigError(
            f"toposub: {cv.shape[0]} cluster values for labels up to {k - 1}"
        )
    dtype = np.result_type(cv.dtype, np.asarray(fill).dtype)
    extra = cv.shape[1:]
    out = np.full(labels.shape + extra, fill, dtype=dtype)
    ok = labels >= 0
    out[ok] = cv[labels[ok]]
    return np.moveaxis(out, tuple(range(labels.ndim, out.ndim)), tuple(range(len(extra))))


def idw_to_pixels(
    result: TopoSubResult,
    features,
    cluster_values,
    *,
    k: int = 3,
    power: float = 2.0,
    strata=None,
    chunk_pixels: int = 200_000,
) -> np.ndarray:
    """Inverse-distance weighting in standardised feature space over the ``k`` nearest cluster
    centres: a smooth alternative to mapping by label, in the spirit of the membership-weighted
    spatial mapping of Fiddes & Gruber (2012) (here plain inverse-distance weights):

        v(p) = sum_j w_j v_j / sum_j w_j,   w_j = 1 / d(p, c_j)^power

    with d the weighted z-score distance; a pixel on a centre takes that centre's value. NaN
    cluster values are skipped (weights renormalised; all NaN -> NaN). With strata only centres of
    the pixel's stratum count. For continuous outputs (MAGT, ALT); map class or flag outputs by
    label (:func:`map_to_pixels`). ``cluster_values``: (n_clusters,) or (n_clusters, n_bands).
    """
    x, _ = _stack(features)
    labels = result.labels
    cv = np.asarray(cluster_values, dtype=np.float64)
    band_first = cv.ndim == 2
    cvb = cv if band_first else cv[:, None]
    if cvb.shape[0] != result.n_clusters:
        raise ConfigError(
            f"toposub: {cvb.shape[0]} cluster values for {result.n_clusters} clusters"
        )
    ok = labels >= 0
    out = np.full((cvb.shape[1],) + labels.shape, np.nan)
    if not ok.any():
        return out if band_first else out[0]
    centres = (result.centroids - result.feature_mean) / result.feature_std * result.weights
    zpix = ((x[:, ok].T - result.feature_mean) / result.feature_std) * result.weights
    if result.cluster_stratum is not None:
        if strata is None:
            raise ConfigError("toposub: clusters were stratified: pass the same strata to idw")
        spix = np.asarray(strata)[ok].astype(np.int64)
        groups = [(spix == s, np.flatnonzero(result.cluster_stratum == s))
                  for s in np.unique(result.cluster_stratum)]
    else:
        groups = [(np.ones(zpix.shape[0], bool), np.arange(result.n_clusters))]
    from sklearn.neighbors import NearestNeighbors

    vals = np.full((zpix.shape[0], cvb.shape[1]), np.nan)
    for sel_pix, idx in groups:
        pix = np.flatnonzero(sel_pix)
        kk = min(int(k), idx.size)
        if pix.size == 0:
            continue
        nn = NearestNeighbors(n_neighbors=kk).fit(centres[idx])
        for start in range(0, pix.size, chunk_pixels):
            p = pix[start:start + chunk_pixels]
            dn, near = nn.kneighbors(zpix[p])
            exact = dn[:, 0] <= 1e-12
            with np.errstate(divide="ignore"):
                w = np.where(exact[:, None], (np.arange(kk) == 0).astype(float),
                             1.0 / np.maximum(dn, 1e-300) ** power)
            v = cvb[idx[near]]  # (n, kk, bands)
            fin = np.isfinite(v)
            ww = w[:, :, None] * fin
            num = np.where(fin, v, 0.0) * ww
            with np.errstate(invalid="ignore", divide="ignore"):
                vals[p] = num.sum(axis=1) / ww.sum(axis=1)
    out[:, ok] = vals.T
    return out if band_first else out[0]


def run_toposub(
    features,
    n_clusters: int,
    simulate: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    *,
    inputs=None,
    valid=None,
    strata=None,
    weights=None,
    random_state: int = 0,
    idw_k: int | None = None,
    idw_power: float = 2.0,
    fill=np.nan,
) -> tuple[dict[str, np.ndarray], TopoSubResult]:
    """Cluster, run ``simulate`` once per cluster, map the outputs back to the pixels.

    ``simulate`` receives a dict of per-cluster model inputs, (n_clusters,) or
    (n_clusters, n_bands): the cluster means of every feature and of every raster in ``inputs``
    (e.g. the air-temperature amplitude or n-factors, which need not be clustering features),
    plus ``"stratum"`` if ``strata`` was given. It returns a dict of per-cluster outputs,
    (n_clusters,) or (n_clusters, n_bands), e.g. MAGT per year. Outputs are mapped back by
    label, or with ``idw_k`` by inverse-distance weighting (float outputs only; bool/int outputs
    always by label). Returns (dict of rasters (*bands, *shape), the clustering).
    """
    res = cluster_pixels(features, n_clusters, valid=valid, strata=strata, weights=weights,
                         random_state=random_state)
    x, names = _stack(features)
    cin: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        cin[name] = res.centroids[:, j].copy()
    for name, arr in (inputs or {}).items():
        cin[name] = cluster_means(res.labels, arr, res.n_clusters)
    if res.cluster_stratum is not None:
        cin["stratum"] = res.cluster_stratum.copy()
    outputs = simulate(cin)
    mapped: dict[str, np.ndarray] = {}
    for name, val in outputs.items():
        val = np.asarray(val)
        if val.shape[:1] != (res.n_clusters,):
            raise ConfigError(
                f"toposub: simulate returned {name!r} with shape {val.shape}, expected "
                f"({res.n_clusters}, ...)"
            )
        if idw_k and np.issubdtype(val.dtype, np.floating):
            mapped[name] = idw_to_pixels(res, x, val, k=idw_k, power=idw_power, strata=strata)
        else:
            mapped[name] = map_to_pixels(res.labels, val, fill=fill)
    return mapped, res
