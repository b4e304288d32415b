"""TopoSUB clustering: determinism, nodata, strata, and convergence to the per-pixel result."""

from __future__ import annotations

import numpy as np
import pytest

from permamap import toposub as ts
from permamap import transient as tr
from permamap.errors import ConfigError

N_YEARS = 12


def _landscape(ny=12, nx=12):
    """A small synthetic mountain tile: elevation, a solar index, MAAT by lapse rate and aspect,
    annual air-temperature amplitude, FDD and TDD; four nodata pixels."""
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    elev = 3600 + 45 * x + 30 * y + 180 * np.sin(x / 2.3) * np.cos(y / 3.1)
    solar = 1.0 + 0.25 * np.sin(x / 1.7 + y / 2.9)
    maat = 2.5 - 0.0065 * (elev - 3600) + 2.0 * (solar - 1.0)
    amp = 11.0 + 0.4 * np.cos(y / 4.0)
    daily = tr.sinusoidal_annual_cycle_c(maat, amp, 1)
    fdd = np.clip(-daily, 0, None).sum(axis=-1)
    tdd = np.clip(daily, 0, None).sum(axis=-1)
    for a in (elev, maat):
        a[0, 0] = np.nan  # nodata in the DEM / climate
    elev[5, 7] = np.nan
    maat[11, 3] = np.nan
    solar[8, 1] = np.nan
    feats = {"elevation_m": elev, "solar_index": solar, "maat_c": maat, "fdd_c_day": fdd,
             "tdd_c_day": tdd}
    return feats, {"amplitude_c": amp}


def _simulate(cin):
    """The transient model for each cluster (or pixel): 2 C of warming over the run."""
    forcing = tr.surface_temperature_daily(
        N_YEARS, mean_c=cin["maat_c"], amplitude_c=cin["amplitude_c"], warming_c=2.0,
        ramp_start_year=2, ramp_end_year=N_YEARS,
    )
    res = tr.run_columns(forcing, None, tr.make_grid(30.0))
    return {"magt_c": res.magt_c[:, -1], "talik": res.talik[:, -1]}


def test_convergence_to_per_pixel_result():
    feats, inputs = _landscape()
    valid = np.all([np.isfinite(v) for v in feats.values()], axis=0)
    n_valid = int(valid.sum())
    assert n_valid == 144 - 4
    # Per-pixel reference: the model on every valid pixel's own inputs.
    ref = np.full(valid.shape, np.nan)
    ref[valid] = _simulate({"maat_c": feats["maat_c"][valid],
                            "amplitude_c": inputs["amplitude_c"][valid]})["magt_c"]
    assert np.nanmax(ref) > 0 > np.nanmin(ref)  # permafrost and seasonal frost both present
    errors = []
    for k in (2, 6, 18, 50, n_valid):
        out, res = ts.run_toposub(feats, k, _simulate, inputs=inputs)
        magt = out["magt_c"]
        assert np.all(np.isnan(magt[~valid])) and np.all(res.labels[~valid] == -1)
        assert np.all(np.isfinite(magt[valid]))
        errors.append(float(np.sqrt(np.mean((magt[valid] - ref[valid]) ** 2))))
    errors = np.array(errors)
    # Error falls as clusters are added (k-means is not strictly nested, so allow 10 % noise
    # between neighbouring levels), by an order of magnitude overall, and vanishes when every
    # pixel is its own cluster.
    assert np.all(errors[1:] <= errors[:-1] * 1.1), errors
    assert errors[3] < 0.1 * errors[0], errors
    assert errors[-1] < 1e-12, errors


def test_idw_mapping_converges_and_reproduces_centres():
    feats, inputs = _landscape()
    valid = np.all([np.isfinite(v) for v in feats.values()], axis=0)
    maat = feats["maat_c"]
    for k, tol in ((30, 0.3), (valid.sum(), 1e-9)):
        res = ts.cluster_pixels(feats, k)
        cmaat = ts.cluster_means(res.labels, maat, res.n_clusters)
        by_label = ts.map_to_pixels(res.labels, cmaat)
        idw = ts.idw_to_pixels(res, feats, cmaat, k=3)
        assert np.all(np.isnan(idw[~valid]))
        # MAAT is itself a feature: IDW of the cluster means approximates the pixel values.
        assert np.nanmax(np.abs(idw - maat)) < tol
        assert np.nanmax(np.abs(by_label - maat)) < max(tol, 2.0)
    # NaN cluster values are skipped; all-NaN neighbourhoods give NaN.
    res = ts.cluster_pixels(feats, 10)
    vals = np.arange(res.n_clusters, dtype=float)
    vals[0] = np.nan
    out = ts.idw_to_pixels(res, feats, vals, k=3)
    assert np.all(np.isfinite(out[valid]))
    out1 = ts.idw_to_pixels(res, feats, vals, k=1)
    assert np.all(np.isnan(out1[res.labels == 0]))


def test_deterministic_labels():
    feats, _ = _landscape()
    a = ts.cluster_pixels(feats, 9, random_state=0)
    b = ts.cluster_pixels(feats, 9, random_state=0)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.centroids, b.centroids, equal_nan=True)
    assert a.labels.dtype == np.int32
    # Centroids are the member means in original units.
    m = ts.cluster_means(a.labels, feats["elevation_m"], a.n_clusters)
    assert np.allclose(a.centroids[:, 0], m)
    assert a.counts.sum() == int((a.labels >= 0).sum())


def test_strata_never_mix_and_allocation():
    feats, _ = _landscape()
    strata = np.zeros(feats["maat_c"].shape, int)
    strata[:, 6:] = 1
    strata[0, 1] = -1  # nodata surface type
    res = ts.cluster_pixels(feats, 8, strata=strata)
    assert res.labels[0, 1] == -1
    ok = res.labels >= 0
    assert np.array_equal(res.cluster_stratum[res.labels[ok]], strata[ok])
    assert res.n_clusters == 8
    assert sorted(np.bincount(res.cluster_stratum).tolist()) == [4, 4]
    # More strata than clusters: one cluster per stratum.
    res1 = ts.cluster_pixels(feats, 1, strata=strata)
    assert res1.n_clusters == 2
    # IDW with strata needs the strata.
    with pytest.raises(ConfigError):
        ts.idw_to_pixels(res, feats, np.zeros(res.n_clusters))
    out = ts.idw_to_pixels(res, feats, res.cluster_stratum.astype(float), strata=strata)
    assert np.array_equal(out[ok], strata[ok].astype(float))


def test_duplicates_subsampling_and_edge_cases():
    # Duplicate feature vectors with k >= distinct vectors: exact, no warnings.
    f = {"a": np.array([[1.0, 1.0, 2.0], [2.0, 3.0, np.nan]])}
    res = ts.cluster_pixels(f, 10)
    assert res.n_clusters == 3
    assert res.labels[0, 0] == res.labels[0, 1] and res.labels[1, 2] == -1
    # Fit on a subsample, then assign every pixel.
    rng = np.random.default_rng(0)
    big = {"a": rng.normal(size=(50, 40)), "b": rng.normal(size=(50, 40))}
    r1 = ts.cluster_pixels(big, 12, max_fit_samples=300)
    r2 = ts.cluster_pixels(big, 12, max_fit_samples=300)
    assert np.array_equal(r1.labels, r2.labels) and r1.labels.min() == 0
    assert r1.n_clusters <= 12 and r1.counts.min() > 0
    # All nodata.
    empty = ts.cluster_pixels({"a": np.full((3, 3), np.nan)}, 4)
    assert empty.n_clusters == 0 and np.all(empty.labels == -1)
    # Map with extra bands: (n_clusters, n_years) -> (n_years, ny, nx).
    lab = np.array([[0, 1], [-1, 1]])
    out = ts.map_to_pixels(lab, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    assert out.shape == (3, 2, 2) and np.isnan(out[:, 1, 0]).all() and out[2, 0, 1] == 6.0
    assert ts.map_to_pixels(lab, np.array([True, False]), fill=False).dtype == bool
    with pytest.raises(ConfigError):
        ts.cluster_pixels({"a": np.zeros((2, 2)), "b": np.zeros((3, 2))}, 2)
    with pytest.raises(ConfigError):
        ts.cluster_pixels(f, 0)
