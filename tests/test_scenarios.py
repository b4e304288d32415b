"""Scenario responses (permamap.scenario_response) and sweeps (permamap.sweep).

* No scenario gains permafrost under warming unless an override makes the ground colder:
  random landscapes, equilibrium and transient.
* Transient and equilibrium agree after a long run with a constant climate, through the whole
  integration path (lattice fit, cluster runs, tile mapping): expected MAGT from TTOP by hand.
* TopoSUB results mapped to the pixels do not depend on the tile size (bit for bit).
* The sweep generator: product of values, names, validation errors naming the scenario.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, tiny_raw_config

from permamap import climate, steps
from permamap import scenario_response as sr
from permamap import sweep as sw
from permamap.config import prepare, scenario_config
from permamap.errors import ConfigError, InputDataError
from permamap.grid import Grid
from permamap.products import CLASS_NODATA, FLOAT_NODATA
from permamap.rasterio_io import read_bands, write_bands

SNAKEMAKE = str(REPO / ".venv/bin/snakemake")


def _raw(bbox, res_arcsec=36, tile_px=64):
    raw = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg = tiny_raw_config(raw, bbox=bbox, res_arcsec=res_arcsec, tile_px=tile_px)
    cfg["validation"] = {"enabled": False}
    return cfg


def _write_tiles(cfg, d, terrain, clim=None):
    """Cut region arrays (4, ny, nx) into the config's tiles: terrain.tif (float32, -9999) and
    climate.tif (float64, NaN; computed by the climate step when ``clim`` is None)."""
    grid = Grid.from_config(cfg)
    files = {}
    for tile in grid.tiles(cfg["tiles"]["size_px"]):
        w = tile.window
        sl = np.s_[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
        td = d / tile.id
        td.mkdir(parents=True, exist_ok=True)
        t = terrain[sl]
        write_bands(
            td / "terrain.tif",
            np.where(np.isnan(t), FLOAT_NODATA, t).astype(np.float32),
            grid.subgrid(w),
            dtype="float32",
            nodata=FLOAT_NODATA,
            descriptions=["elevation", "slope", "aspect", "solar"],
        )
        if clim is None:
            steps.climate_tile(cfg, td / "terrain.tif", tile.id, td / "climate.tif")
        else:
            write_bands(
                td / "climate.tif",
                clim[sl],
                grid.subgrid(w),
                dtype="float64",
                nodata=np.nan,
                descriptions=["maat", "fdd", "tdd", "amplitude"],
            )
        files[tile.id] = td
    return files


def _assemble(cfg, files, name, physical=False):
    """Region array of a per-tile file: stored values (bits), or ``physical`` ones (MAGT in
    degC from its int16 0.01 degC steps, NaN nodata)."""
    grid = Grid.from_config(cfg)
    out = None
    for tile in grid.tiles(cfg["tiles"]["size_px"]):
        data = read_bands(files[tile.id] / name, fill_nan=physical)
        if out is None:
            out = np.zeros((data.shape[0], grid.height, grid.width), data.dtype)
        w = tile.window
        out[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = data
    return out


def _run_scenarios(cfg, files, transient=False, d=None):
    kw = {}
    if transient:
        tiles = list(files)
        fit = sr.fit_toposub(
            cfg,
            [files[t] / "terrain.tif" for t in tiles],
            [files[t] / "climate.tif" for t in tiles],
        )
        fit.save(d / "fit.json")
        sr.run_transient(cfg, sr.Fit.load(d / "fit.json")).to_csv(d / "clusters.csv", index=False)
        kw = dict(fit_path=d / "fit.json", transient_path=d / "clusters.csv")
    for tid, td in files.items():
        if not transient:
            steps.ground_tile(
                cfg,
                td / "terrain.tif",
                td / "climate.tif",
                tid,
                td / "gm.tif",
                td / "gc.tif",
                out_alt=td / "ga.tif",
            )
        steps.scenarios_tile(
            cfg,
            td / "terrain.tif",
            tid,
            td / "sm.tif",
            td / "sc.tif",
            climate_path=td / "climate.tif",
            ground_alt_path=td / "ga.tif",
            ground_class_path=td / "gc.tif",
            out_degradation=td / "sd.tif",
            **kw,
        )


def _landscape(seed, ny, nx):
    """Random smooth mountains 3,000-4,800 m (across the ~3,650 m permafrost limit), random
    slopes, aspects and solar index, a few nodata pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    z = 3900 + sum(
        rng.uniform(150, 400)
        * np.sin(x / rng.uniform(1.5, 6) + rng.uniform(0, 6))
        * np.cos(y / rng.uniform(1.5, 6) + rng.uniform(0, 6))
        for _ in range(3)
    )
    z = np.clip(z, 3000, 4800)
    slope = rng.uniform(0, 35, (ny, nx))
    aspect = rng.uniform(0, 360, (ny, nx))
    solar = rng.uniform(0.7, 1.3, (ny, nx))
    t = np.stack([z, slope, aspect, solar])
    for _ in range(3):
        t[:, rng.integers(ny), rng.integers(nx)] = np.nan
    return t, rng


# -- no gain of permafrost under warming -----------------------------------------------------


@pytest.mark.parametrize("mode", ["equilibrium", "transient"])
@pytest.mark.parametrize("seed", [1, 2])
def test_warming_never_creates_permafrost(tmp_path, mode, seed):
    terrain, rng = _landscape(seed, 12, 14)
    raw = _raw((101.0, 36.88, 101.14, 37.0))  # 14 x 12 px
    raw["horizons"] = [2010, 2040]
    scen = {f"warm{i}": {"trend_c_per_decade": float(rng.uniform(0.2, 2.0))} for i in range(2)}
    # warming that is not monotone in time, but never below the baseline
    scen["bumpy"] = {"warming_c": {2010: float(rng.uniform(1.0, 3.0)), 2040: 0.3}}
    # an override that cools the surface (lower thawing n-factor, e.g. restored vegetation)
    scen["cooler"] = {
        "warming_c": {2010: 0.0, 2040: 0.0},
        "overrides": {"ground": {"ttop": {"n_thawing": 0.6}}},
    }
    raw["scenarios"] = scen
    raw["response"] = {
        "mode": mode,
        "toposub": {"n_clusters": 8},
        "transient": {"magt_depth_m": 10.0, "grid": {"total_depth_m": 20.0}},
    }
    cfg = prepare(raw)
    sr.check_config(cfg)
    files = _write_tiles(cfg, tmp_path, terrain)
    _run_scenarios(cfg, files, transient=mode == "transient", d=tmp_path)
    deg = _assemble(cfg, files, "sd.tif")
    cls = _assemble(cfg, files, "sc.tif")
    pairs = steps.scenario_bands(cfg)
    valid = np.all(np.isfinite(terrain), axis=0)
    if mode == "equilibrium":
        base_pf = _assemble(cfg, files, "gc.tif")[0] == 1
    else:
        table = pd.read_csv(tmp_path / "clusters.csv")
        base = table[table.scenario == "baseline"].set_index("cluster")["permafrost"]
        for (s, h), grp in table[table.scenario != "baseline"].groupby(["scenario", "horizon"]):
            gained = grp["permafrost"].to_numpy() & ~base.loc[grp["cluster"]].to_numpy()
            assert gained.any() == (s == "cooler"), (s, h)
        base_pf = (deg[0] >= 1) & (deg[0] <= 4)
    assert base_pf[valid].any() and (~base_pf[valid]).any()  # both kinds of ground present
    for i, (s, h) in enumerate(pairs):
        assert np.all(deg[i][~valid] == CLASS_NODATA)
        assert np.all(deg[i][valid] != CLASS_NODATA)
        scen_pf = cls[i] == 1
        if s == "cooler":
            assert (deg[i] == 5).any(), (s, h)  # the override does make permafrost
            continue
        assert not (deg[i] == 5).any(), (s, h)
        assert not (scen_pf & ~base_pf).any(), (s, h)
        # permafrost lost (class 4) is baseline permafrost that the class map no longer has
        assert np.array_equal(deg[i] == 4, base_pf & ~scen_pf & valid), (s, h)


# -- transient == equilibrium in a steady climate, through the integration path ---------------


def _ttop_by_hand(z, warming, n_t=1.1, n_f=0.7, r_k=0.9):
    """Xining station sinusoid moved to z (lapse 5.6 C/km) + warming; analytic degree-days of a
    sinusoid; TTOP (Smith & Riseborough 2002 eq. 5) and its no-permafrost branch."""
    a = (17.3 - -7.4) / 2
    m = 6.1 + 0.0056 * (2295.0 - z) + warming
    theta = np.arccos(np.clip(-m / a, -1, 1))
    tdd = 365 / np.pi * (m * theta + a * np.sin(theta))
    fdd = tdd - 365 * m
    num = r_k * n_t * tdd - n_f * fdd
    return np.where(num < 0, num / 365, (n_t * tdd - n_f * fdd / r_k) / 365)


def test_transient_agrees_with_equilibrium_after_a_long_steady_run(tmp_path):
    """With no geothermal flux and a sharp freezing curve the annual-mean Kirchhoff potential is
    the same at every depth in a periodic steady state, so below the active layer MAGT = TTOP
    (permafrost) or the TTOP no-permafrost branch (Smith & Riseborough 2002). The step scenario
    warms the air by 1 C by 2000 and then holds it for 300 years."""
    z = np.array(
        [
            [2800, 2900, 3000, 3100],
            [3200, 3300, 3400, 3500],
            [4000, 4100, 4200, 4300],
            [4400, 4500, 4600, 4700],
        ],
        float,
    )
    ny, nx = z.shape
    terrain = np.stack([z, np.zeros_like(z), np.full_like(z, -1.0), np.ones_like(z)])
    raw = _raw((101.0, 36.96, 101.04, 37.0))  # 4 x 4 px
    raw["horizons"] = [2000, 2300]
    raw["scenarios"] = {
        "steady": {"warming_c": {2000: 0.0, 2300: 0.0}},
        "step": {"warming_c": {2000: 1.0, 2300: 1.0}},
    }
    raw["response"] = {
        "mode": "transient",
        "toposub": {"n_clusters": 16},
        "transient": {
            "magt_depth_m": 10.0,
            "grid": {"total_depth_m": 20.0},
            "soil": {
                "geothermal_flux_w_per_m2": 0.0,
                "freeze_onset_c": -0.001,
                "unfrozen_exponent": 20.0,
            },
        },
    }
    cfg = prepare(raw)
    files = _write_tiles(cfg, tmp_path, terrain)
    _run_scenarios(cfg, files, transient=True, d=tmp_path)
    fit = sr.Fit.load(tmp_path / "fit.json")
    assert fit.n_clusters == 16  # every pixel its own cluster: exact, no clustering error
    # physical degC from the file's 0.01 degC steps: the 0.05 tolerance covers the half step
    magt = _assemble(cfg, files, "sm.tif", physical=True)
    cls = _assemble(cfg, files, "sc.tif")
    bands = {p: i for i, p in enumerate(steps.scenario_bands(cfg))}
    for (s, h), w in {("steady", 2000): 0.0, ("steady", 2300): 0.0, ("step", 2300): 1.0}.items():
        want = _ttop_by_hand(z, w)
        assert np.all(np.abs(want) > 0.3)  # no pixel on the fence
        np.testing.assert_allclose(magt[bands[(s, h)]], want, atol=0.05, err_msg=f"{s} {h}")
        assert np.array_equal(cls[bands[(s, h)]] == 1, want < 0)
    # and the equilibrium response of the same config gives the same classes
    eq = copy.deepcopy(cfg)
    eq["response"]["mode"] = "equilibrium"
    for td in files.values():
        steps.scenarios_tile(eq, td / "terrain.tif", "r00c00", td / "em.tif", td / "ec.tif")
    ecls = _assemble(eq, files, "ec.tif")
    assert np.array_equal(ecls == 1, cls == 1)


# -- tile-size independence -------------------------------------------------------------------


def _fake_table(cfg, fit, path, seed=0):
    """Cluster results for the mapping test (values are arbitrary; only the mapping matters)."""
    rng = np.random.default_rng(seed)
    k = fit.n_clusters
    rows = []
    keys = [("baseline", cfg["climate"]["baseline_year"])]
    keys += [(s, h) for s, h in steps.scenario_bands(cfg)]
    base_pf = rng.random(k) < 0.6
    for s, h in keys:
        pf = base_pf & (rng.random(k) < 0.7) if s != "baseline" else base_pf
        for c in range(k):
            rows.append(
                dict(
                    cluster=c,
                    scenario=s,
                    horizon=h,
                    magt_c=rng.normal(-0.5, 1.5),
                    alt_m=rng.uniform(1, 4) if pf[c] else np.nan,
                    talik=bool(pf[c] and rng.random() < 0.3),
                    permafrost=bool(pf[c]),
                )
            )
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.mark.parametrize("mapping", ["label", "idw"])
def test_toposub_mapping_does_not_depend_on_the_tile_size(tmp_path, mapping):
    ny, nx = 36, 40
    terrain, _ = _landscape(7, ny, nx)
    terrain[:, 10:13, 15:18] = np.nan  # across a tile seam of the 16 px tiling
    raw = _raw((101.0, 36.64, 101.4, 37.0))  # 40 x 36 px of 0.01 degree
    raw["response"] = {
        "mode": "transient",
        "toposub": {"n_clusters": 12, "max_fit_samples": 300, "mapping": mapping},
    }
    grid_cfg = prepare(raw)
    grid = Grid.from_config(grid_cfg)
    assert (grid.width, grid.height) == (nx, ny)
    clim = np.stack(climate.compute_climate(terrain[0], climate.forcing_from_config(grid_cfg)))
    out = {}
    for tile_px in (16, 64):
        r = copy.deepcopy(raw)
        r["tiles"]["size_px"] = tile_px
        cfg = prepare(r)
        d = tmp_path / f"t{tile_px}"
        files = _write_tiles(cfg, d, terrain, clim)
        assert len(files) == (9 if tile_px == 16 else 1)
        tiles = list(files)
        fit = sr.fit_toposub(
            cfg,
            [files[t] / "terrain.tif" for t in tiles],
            [files[t] / "climate.tif" for t in tiles],
        )
        fit.save(d / "fit.json")
        assert fit.stride == 3 and fit.n_clusters == 12  # ceil(sqrt(1440 / 300))
        _fake_table(cfg, fit, d / "clusters.csv")
        for tid, td in files.items():
            steps.scenarios_tile(
                cfg,
                td / "terrain.tif",
                tid,
                td / "sm.tif",
                td / "sc.tif",
                climate_path=td / "climate.tif",
                out_degradation=td / "sd.tif",
                fit_path=d / "fit.json",
                transient_path=d / "clusters.csv",
            )
        out[tile_px] = {
            "fit": (d / "fit.json").read_text(),
            **{n: _assemble(cfg, files, f"{n}.tif") for n in ("sm", "sc", "sd")},
        }
    a, b = out[16], out[64]
    assert a["fit"] == b["fit"]
    for n in ("sm", "sc", "sd"):
        assert a[n].dtype == b[n].dtype
        assert np.array_equal(a[n].view(np.uint8), b[n].view(np.uint8)), n
    # not trivial: several clusters' values, nodata kept, several degradation classes
    assert len(np.unique(a["sm"][0][a["sm"][0] != FLOAT_NODATA])) >= 6
    assert np.all(a["sd"][:, 10:13, 15:18] == CLASS_NODATA)
    assert len(set(np.unique(a["sd"]).tolist()) - {CLASS_NODATA}) >= 3


def test_fit_lattice_is_the_region_lattice(tmp_path):
    """The sample is every s-th pixel of the region grid from s // 2, in region order."""
    terrain, _ = _landscape(3, 20, 22)
    raw = _raw((101.0, 36.8, 101.22, 37.0), tile_px=8)  # 22 x 20 px, 3 x 3 tiles
    raw["response"] = {"mode": "transient", "toposub": {"n_clusters": 4, "max_fit_samples": 100}}
    cfg = prepare(raw)
    files = _write_tiles(cfg, tmp_path, terrain)
    grid = Grid.from_config(cfg)
    stride = sr.lattice_stride(grid, 100)
    assert stride == 3  # ceil(sqrt(440 / 100))
    parts = [
        sr.sample_tile(cfg, t, files[t.id] / "terrain.tif", files[t.id] / "climate.tif", stride)
        for t in grid.tiles(8)
    ]
    idx = np.sort(np.concatenate([p["index"] for p in parts]))
    rows, cols = np.meshgrid(np.arange(1, 20, 3), np.arange(1, 22, 3), indexing="ij")
    assert np.array_equal(idx, np.sort((rows * 22 + cols).ravel()))
    elev = np.concatenate([p["elevation"] for p in parts])[
        np.argsort(np.concatenate([p["index"] for p in parts]))
    ]
    want = terrain[0][1::3, 1::3].ravel().astype(np.float32)
    assert np.array_equal(np.nan_to_num(elev, nan=-1), np.nan_to_num(want.astype(float), nan=-1))


# -- warming trajectories ---------------------------------------------------------------------


def test_warming_knots_reproduce_the_trend_and_cmip6_cycles():
    raw = _raw((101.0, 36.96, 101.04, 37.0))
    raw["horizons"] = [2050, 2100]
    raw["scenarios"] = {"t": {"trend_c_per_decade": 0.5}}
    cfg = prepare(raw)
    fit = sr.Fit(
        features=["elevation"],
        mean=np.zeros(1),
        std=np.ones(1),
        weights=np.ones(1),
        centroids=np.zeros((2, 1)),
        counts=np.ones(2, int),
        inputs={},
    )
    n_years = 2100 - 1995 + 1
    w = sr.scenario_warming_daily(cfg, fit, "t", n_years)
    assert w.shape == (2, n_years * 365)
    # a linear trend from the middle of 1995: annual means 0.05 C per year after 1995
    annual = w[0].reshape(n_years, 365).mean(axis=1)
    np.testing.assert_allclose(annual[1:], 0.05 * np.arange(1, n_years), atol=1e-3)
    assert annual[2050 - 1995] == pytest.approx(0.5 * 5.5, abs=1e-3)
    # CMIP6-style monthly deltas that are the same every month give the same trajectory
    fit.deltas["t"] = np.broadcast_to(np.array([2.75, 5.25])[None, :, None], (2, 2, 12)).copy()
    np.testing.assert_allclose(sr.scenario_warming_daily(cfg, fit, "t", n_years), w, atol=1e-12)
    # a seasonal delta is carried day by day at the horizon year (mid-July warmer than January)
    cyc = np.where(np.arange(12) == 6, 4.0, 2.0)
    fit.deltas["t"] = np.broadcast_to(cyc, (2, 2, 12)).copy()
    d = sr.scenario_warming_daily(cfg, fit, "t", n_years)[0].reshape(n_years, 365)
    assert d[-1, 196] > 3.9 and d[-1, 15] == pytest.approx(2.0, abs=0.01)


# -- configuration checks ---------------------------------------------------------------------


def test_response_checks_name_the_scenario_and_key():
    raw = _raw((101.0, 36.96, 101.04, 37.0))
    raw["scenarios"]["ssp245"]["overrides"] = {"response": {"mode": "transient"}}
    with pytest.raises(ConfigError, match=r"scenario 'ssp245': overrides response\.mode"):
        sr.check_config(prepare(raw))
    raw = _raw((101.0, 36.96, 101.04, 37.0))
    raw["response"] = {"toposub": {"weights": [1, 2]}}
    with pytest.raises(ConfigError, match=r"response\.toposub\.weights has 2 values for 5"):
        sr.check_config(prepare(raw))
    raw = _raw((101.0, 36.96, 101.04, 37.0))
    raw["response"] = {"mode": "transient", "transient": {"soil": {"water_content_m3_per_m3": 0.5}}}
    with pytest.raises(
        ConfigError, match=r"response\.transient: need 0 <= water_content <= porosity"
    ):
        sr.check_config(prepare(raw))
    raw = _raw((101.0, 36.96, 101.04, 37.0))
    raw["response"] = {"mode": "transient"}
    raw["scenarios"]["ssp126"]["overrides"] = {
        "response": {"transient": {"soil": {"porosity": 0.1}}}
    }
    with pytest.raises(ConfigError, match=r"in scenario 'ssp126': response\.transient"):
        sr.check_config(prepare(raw))
    raw = _raw((101.0, 36.96, 101.04, 37.0))
    raw["response"] = {"mode": "sideways"}
    with pytest.raises(ConfigError, match=r"response\.mode = 'sideways' is not allowed"):
        prepare(raw)


def test_missing_or_stale_intermediates_name_the_file(tmp_path):
    with pytest.raises(InputDataError, match=r"fit\.json does not exist; run the toposub_fit"):
        sr.Fit.load(tmp_path / "fit.json")
    (tmp_path / "fit.json").write_text("{}")
    with pytest.raises(InputDataError, match=r"fit\.json: not a permamap TopoSUB fit"):
        sr.Fit.load(tmp_path / "fit.json")
    cfg = prepare(_raw((101.0, 36.96, 101.04, 37.0)))
    pd.DataFrame(
        [
            dict(
                cluster=0,
                scenario="baseline",
                horizon=1995,
                magt_c=0.0,
                alt_m=1.0,
                talik=False,
                permafrost=True,
            )
        ]
    ).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(InputDataError, match=r"c\.csv: no complete rows for ssp126 2050"):
        sr.read_transient_table(tmp_path / "c.csv", cfg, 1)


# -- sweeps -----------------------------------------------------------------------------------


def test_sweep_is_the_product_of_values_and_validates():
    frag = sw.generate(
        {"ground.ttop.n_thawing": [1.0, 1.1, 1.2], "climate.lapse_rate_c_per_m": [0.005, 0.006]},
        trends=[0.33],
    )
    scen = frag["scenarios"]
    assert len(scen) == 6
    assert "sweep_n_thawing-1.1_lapse_rate_c_per_m-0.005" in scen
    combos = {
        (
            s["overrides"]["ground"]["ttop"]["n_thawing"],
            s["overrides"]["climate"]["lapse_rate_c_per_m"],
        )
        for s in scen.values()
    }
    assert combos == {(a, b) for a in (1.0, 1.1, 1.2) for b in (0.005, 0.006)}
    assert all(s["trend_c_per_decade"] == 0.33 for s in scen.values())
    base = sw.load_base([REPO / "config/config.yaml"])
    cfg = sw.validate(frag, base)
    assert set(scen) <= set(cfg["scenarios"]) and "ssp245" in cfg["scenarios"]
    merged = scenario_config(cfg, "sweep_n_thawing-1.2_lapse_rate_c_per_m-0.006")
    assert merged["ground"]["ttop"]["n_thawing"] == 1.2
    assert merged["climate"]["lapse_rate_c_per_m"] == 0.006
    assert merged["ground"]["ttop"]["n_freezing"] == cfg["ground"]["ttop"]["n_freezing"]
    # several trends are one more dimension; explicit warming per horizon
    frag = sw.generate(
        {"ground.ttop.n_freezing": [0.6]},
        trends=[0.1, 0.7],
        warming={2100: 5.0},
        prefix="t",
        run="sens",
    )
    assert frag["run"] == "sens"
    assert sorted(frag["scenarios"]) == ["t_trend-0.1", "t_trend-0.7"]
    assert frag["scenarios"]["t_trend-0.7"]["warming_c"] == {2100: 5.0}
    cfg = sw.validate(frag, base)
    from permamap.config import scenario_warming_c

    assert scenario_warming_c(cfg, "t_trend-0.7") == {
        2050: pytest.approx(3.85),
        2070: pytest.approx(5.25),
        2100: 5.0,
    }


@pytest.mark.parametrize(
    "params,match",
    [
        (
            {"ground.ttop.n_thawin": [1.0, 1.1]},
            r"scenario 'sweep_n_thawin-1.0': override of unknown key 'ground\.ttop\.n_thawin'",
        ),
        (
            {"ground.ttop.n_thawing": [1.0, 3.5]},
            r"scenario 'sweep_n_thawing-3.5': ground\.ttop\.n_thawing = 3\.5 is out of range",
        ),
        ({"region.bbox": [[1, 2, 3, 4]]}, r"scenario 'sweep' overrides \['region'\]"),
        ({"response.mode": ["transient"]}, r"scenario 'sweep': overrides response\.mode"),
    ],
)
def test_sweep_errors_name_the_scenario(params, match):
    frag = sw.generate(params, trends=[0.33])
    with pytest.raises(ConfigError, match=match):
        sw.validate(frag, sw.load_base([REPO / "config/config.yaml"]))


def test_sweep_cli(tmp_path):
    out = tmp_path / "sweep.yaml"
    cmd = [
        sys.executable,
        "-m",
        "permamap.sweep",
        "--param",
        "ground.ttop.n_thawing=1.0,1.1,1.2",
        "--param",
        "climate.lapse_rate_c_per_m=0.005,0.006",
        "--trend",
        "0.33",
        "-o",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    frag = yaml.safe_load(out.read_text())
    assert len(frag["scenarios"]) == 6
    assert out.read_text().startswith("# permamap scenario sweep")
    # errors: one line, no traceback, nothing written
    bad = tmp_path / "bad.yaml"
    for args, msg in [
        (
            ["--param", "ground.ttop.n_thawing=1.0,9", "--trend", "0.3"],
            "config error in scenario 'sweep_n_thawing-9'",
        ),
        (["--param", "ground.ttop.n_thawing"], "expected KEY=V1,V2"),
        (["--param", "ground.ttop.n_thawing=1.0"], "give the warming with --trend"),
        (["--trend", "fast"], "--trend 'fast': expected numbers"),
        (
            [
                "--param",
                "ground.ttop.n_thawing=1,2,3",
                "--param",
                "ground.ttop.n_freezing=1,2,3",
                "--trend",
                "0.3",
                "--max-scenarios",
                "5",
            ],
            "9 scenarios exceed --max-scenarios 5",
        ),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "permamap.sweep", *args, "-o", str(bad)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 1 and msg in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert not bad.exists()


# -- workflow ---------------------------------------------------------------------------------


def test_transient_dry_run_adds_two_region_jobs(tmp_path):
    copy_workflow(tmp_path)
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "2", "--config", "response={mode: transient}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["toposub_fit"] == 1 and counts["transient_run"] == 1
    # the per-tile step runs as scenarios_transient, outside cluster profiles' tile group
    assert counts["scenarios_transient"] == 4 and "scenarios" not in counts  # one per tile
    assert counts["mosaic_scenario"] == 9
    assert counts["degradation_table"] == 1 and counts["lower_limit_rise"] == 1
    # the SLURM profile groups a tile's stages: no cycle through a group in the transient DAG
    proc = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--workflow-profile",
            "workflow/profiles/slurm",
            "--config",
            "response={mode: transient}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # equilibrium (the default) has neither
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "toposub_fit" not in proc.stdout
    # a bad response key stops the run before any job with one line
    (tmp_path / "config" / "bad.yaml").write_text(
        "response:\n  mode: transient\n  toposub:\n    weights: [1.0]\n"
    )
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--cores", "1", "--configfile", "config/bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "response.toposub.weights has 1 values for 5 features" in proc.stderr


# -- CMIP6 monthly warming fields -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["equilibrium", "transient"])
def test_cmip6_fields_equal_to_a_uniform_warming_give_the_same_maps(tmp_path, monkeypatch, mode):
    """A CMIP6 scenario whose delta rasters hold the same warming everywhere and in every month
    gives the maps of a uniform scenario with that warming (per pixel in equilibrium; through
    the cluster means of the deltas in transient)."""
    import rasterio
    from rasterio.transform import from_origin

    from permamap import retrieve

    monkeypatch.chdir(tmp_path)
    terrain, _ = _landscape(5, 8, 10)
    raw = _raw((101.0, 36.92, 101.1, 37.0))  # 10 x 8 px
    raw["horizons"] = [2050, 2100]
    warming = {2050: 1.5, 2100: 2.75}  # exact in float32
    raw["scenarios"] = {
        "uniform": {"warming_c": dict(warming)},
        "gcm": {"trend_c_per_decade": 0.3, "cmip6": {"gcms": ["MRI-ESM2-0"], "ssp": "ssp245"}},
    }
    raw["response"] = {
        "mode": mode,
        "toposub": {"n_clusters": 6},
        "transient": {"magt_depth_m": 10.0, "grid": {"total_depth_m": 20.0}},
    }
    cfg = prepare(raw)
    for h, w in warming.items():
        path = tmp_path / retrieve.cmip6_delta_path(cfg, "gcm", h)
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=4,
            height=4,
            count=12,
            dtype="float32",
            crs="EPSG:4326",
            transform=from_origin(100.8, 37.2, 0.1, 0.1),
        ) as dst:
            dst.write(np.full((12, 4, 4), w, np.float32))
    files = _write_tiles(cfg, tmp_path / "tiles", terrain)
    _run_scenarios(cfg, files, transient=mode == "transient", d=tmp_path)
    if mode == "transient":
        fit = sr.Fit.load(tmp_path / "fit.json")
        np.testing.assert_allclose(fit.deltas["gcm"][:, 0, :], 1.5)
        np.testing.assert_allclose(fit.deltas["gcm"][:, 1, :], 2.75)
    bands = {p: i for i, p in enumerate(steps.scenario_bands(cfg))}
    for name in ("sm.tif", "sc.tif", "sd.tif"):
        a = _assemble(cfg, files, name)
        for h in warming:
            u, g = a[bands[("uniform", h)]], a[bands[("gcm", h)]]
            if name == "sm.tif":
                # MAGT within 1e-4 degC before storing in 0.01 degC steps: equal steps, or one
                # step apart where a rounding boundary falls between the two
                assert a.dtype == np.int16
                diff = np.abs(g.astype(np.int32) - u)
                assert diff.max() <= 1 and (diff == 0).mean() > 0.98, (h, diff.max())
            else:
                assert np.array_equal(g, u), (name, h)


# -- the scenario stage is chunked: any chunk size gives the bits of the whole tile -------------


@pytest.mark.parametrize("mode", ["equilibrium", "transient"])
def test_scenario_tiles_do_not_depend_on_the_chunking(tmp_path, mode):
    """blocks.scenarios_tile (dask, chunks of 5 px, ragged edges) writes the same bytes of MAGT,
    class and degradation as the whole tile in one block (backend numpy), in both responses."""
    from permamap import blocks

    terrain, _ = _landscape(3, 12, 14)
    raw = _raw((101.0, 36.88, 101.14, 37.0))  # 14 x 12 px, one tile
    raw["horizons"] = [2050, 2100]
    raw["scenarios"] = {"a": {"trend_c_per_decade": 0.4}, "b": {"trend_c_per_decade": 1.2}}
    raw["response"] = {
        "mode": mode,
        "toposub": {"n_clusters": 6},
        "transient": {"magt_depth_m": 10.0, "grid": {"total_depth_m": 20.0}},
    }
    cfg = prepare(raw)
    files = _write_tiles(cfg, tmp_path, terrain)
    _run_scenarios(cfg, files, transient=mode == "transient", d=tmp_path)
    ((tid, td),) = files.items()
    kw = dict(
        climate_path=td / "climate.tif",
        ground_alt_path=td / "ga.tif",
        ground_class_path=td / "gc.tif",
    )
    if mode == "transient":
        kw.update(fit_path=tmp_path / "fit.json", transient_path=tmp_path / "clusters.csv")
    results = {}
    for backend, chunk in (("numpy", 512), ("dask", 5)):
        out = [td / f"{backend}_{n}.tif" for n in ("m", "c", "d")]
        blocks.scenarios_tile(
            cfg,
            td / "terrain.tif",
            tid,
            *out[:2],
            out_degradation=out[2],
            backend=backend,
            chunk_px=chunk,
            **kw,
        )
        results[backend] = [read_bands(p, fill_nan=False) for p in out]
    for a, b in zip(results["numpy"], results["dask"], strict=True):
        assert a.shape == (4, 12, 14)
        np.testing.assert_array_equal(a, b)
    # the workflow's files (steps.scenarios_tile, default chunking) hold the same bits
    for name, arr in zip(("sm.tif", "sc.tif", "sd.tif"), results["numpy"], strict=True):
        np.testing.assert_array_equal(read_bands(td / name, fill_nan=False), arr)
    deg = results["dask"][2]
    codes = set(np.unique(deg).tolist()) - {CLASS_NODATA}
    assert 4 in codes and len(codes) >= 2  # thawed pixels and at least one other class


def _four_scenarios():
    """A 14 x 12 px one-tile block with 4 scenarios x 2 horizons: a and b share forcing and
    ground parameters (one fused kernel call), c has its own n_thawing, d follows c. Returns
    (terrain, raw config, config, block grid, blocks.forcings)."""
    from rasterio.windows import Window

    from permamap import blocks

    terrain, _ = _landscape(5, 12, 14)
    raw = _raw((101.0, 36.88, 101.14, 37.0))
    raw["horizons"] = [2050, 2100]
    raw["scenarios"] = {
        "a": {"trend_c_per_decade": 0.4},
        "b": {"trend_c_per_decade": 1.2},
        "c": {"trend_c_per_decade": 0.8, "overrides": {"ground": {"ttop": {"n_thawing": 1.3}}}},
        "d": {"trend_c_per_decade": 0.2},
    }
    cfg = prepare(raw)
    grid = Grid.from_config(cfg).subgrid(Window(0, 0, 14, 12))
    return terrain, raw, cfg, grid, blocks.forcings(cfg)


def test_fused_scenario_call_equals_one_call_per_scenario():
    """scenarios_block serves scenarios with the same forcing, ground parameters and uniform
    warmings from one fused kernel call (blocks.forcings shares the forcing object); without
    shared forcings every scenario gets its own call. Same bits either way, and a scenario
    with its own ground parameters is never fused into the others' call."""

    terrain, raw, cfg, grid, shared = _four_scenarios()
    runs = sr._scenario_runs(cfg, grid, {}, shared)
    assert [names for names, *_ in sr._fused_runs(runs)] == [["a", "b"], ["c"], ["d"]]
    fused = sr.scenarios_block(cfg, grid, terrain, forcing_of=shared)
    separate = sr.scenarios_block(cfg, grid, terrain, forcing_of=None)
    for k in ("magt", "class"):
        assert fused[k].shape == (8, 12, 14)
        np.testing.assert_array_equal(fused[k], separate[k])
    # the override reaches its scenario: c is warmer than a warmer-forced scenario would be
    # without it (n_thawing 1.3 > the default), so its bands differ from a plain run
    plain = copy.deepcopy(raw)
    plain["scenarios"]["c"].pop("overrides")
    c_plain = sr.scenarios_block(prepare(plain), grid, terrain, forcing_of=None)["magt"][4:6]
    ok = np.isfinite(c_plain)
    assert (fused["magt"][4:6][ok] > c_plain[ok]).any()


def test_scenarios_block_fills_given_float32_bands_with_the_same_values():
    """``out``: the kernel writes every run's scenarios (here runs [a, b], [c], [d]) straight
    into the given bands (float32, as the model stack holds them): the same values as the
    arrays scenarios_block makes itself (MAGT float32, class uint8), every band written; with
    degradation (blocks.scenarios_tile) the three bands likewise."""
    from permamap import blocks

    terrain, _, cfg, grid, shared = _four_scenarios()
    ref = sr.scenarios_block(cfg, grid, terrain, forcing_of=shared)
    bands = np.full((2, 8, 12, 14), 7.5, np.float32)  # not a value the model gives
    got = sr.scenarios_block(cfg, grid, terrain, forcing_of=shared, out=(bands[0], bands[1]))
    assert np.shares_memory(got["magt"], bands[0]) and np.shares_memory(got["class"], bands[1])
    np.testing.assert_array_equal(bands[0], ref["magt"])
    np.testing.assert_array_equal(bands[1], ref["class"].astype(np.float32))
    assert (ref["class"] != CLASS_NODATA).any() and np.isfinite(ref["magt"]).any()
    with pytest.raises(ValueError, match="out: shapes"):
        sr.scenarios_block(cfg, grid, terrain, forcing_of=shared, out=(bands[0, :4], bands[1]))
    # with degradation classes (the workflow's scenario stage): three bands, the same values
    base = blocks.model_block(terrain, cfg, grid, ("ground", "active_layer"))
    f = dict(zip(blocks.model_bands(cfg, ("ground", "active_layer")), base, strict=True))
    baseline = {
        "class": f["class"].astype(np.uint8),
        "stability": f["stability"].astype(np.uint8),
        "alt": f["alt"],
    }
    ref = sr.scenarios_block(cfg, grid, terrain, None, baseline, None, True, shared)
    bands = np.full((3, 8, 12, 14), 7.5, np.float32)
    sr.scenarios_block(cfg, grid, terrain, None, baseline, None, True, shared, out=tuple(bands))
    for band, key in zip(bands, ("magt", "class", "degradation"), strict=True):
        np.testing.assert_array_equal(band, ref[key].astype(np.float32))
    assert len(set(np.unique(ref["degradation"]).tolist()) - {CLASS_NODATA}) >= 2
    with pytest.raises(ValueError, match="3 arrays"):
        sr.scenarios_block(
            cfg, grid, terrain, None, baseline, None, True, shared, out=(bands[0], bands[1])
        )
