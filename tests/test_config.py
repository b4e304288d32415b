"""Config validation: the shipped configs are valid; each bad value gives one readable line."""

import copy

import pytest
import yaml

from permamap.config import deep_merge, load, prepare, scenario_config, scenario_warming_c
from permamap.errors import ConfigError


def test_default_config_is_valid_and_filled(config):
    assert config["ground"]["ttop"]["period_days"] == 365.0
    assert config["climate"]["degree_days"] == "sinusoid"
    assert len(config["scenarios"]) >= 3 and len(config["horizons"]) >= 3


#: Shipped overlays: the config each is given after (``--configfile base overlay``).
OVERLAYS = {"plateau_margin.yaml": "xining.yaml"}


def test_every_shipped_config_is_valid(repo):
    for path in sorted((repo / "config").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if path.name in OVERLAYS:
            base = yaml.safe_load((repo / "config" / OVERLAYS[path.name]).read_text())
            prepare(deep_merge(base, raw), source=f"{OVERLAYS[path.name]} + {path.name}")
        elif "region" in raw:  # not a partial override file (e.g. scenarios only)
            load(path)


def test_trend_scenario_warming(config):
    # 0.33 C/decade from 1995 to 2050 = 55 years -> 1.815 C
    assert scenario_warming_c(config, "ssp245")[2050] == pytest.approx(0.33 * 5.5)


def test_explicit_warming_wins_over_trend(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["scenarios"]["ssp245"]["warming_c"] = {2050: 1.0}
    cfg = prepare(raw)
    w = scenario_warming_c(cfg, "ssp245")
    assert w[2050] == 1.0 and w[2100] == pytest.approx(0.33 * 10.5)


def test_scenario_override_is_merged(raw_config):
    raw = copy.deepcopy(raw_config)
    raw["scenarios"]["ssp245"]["overrides"] = {"ground": {"ttop": {"n_thawing": 1.3}}}
    cfg = prepare(raw)
    assert scenario_config(cfg, "ssp245")["ground"]["ttop"]["n_thawing"] == 1.3
    assert cfg["ground"]["ttop"]["n_thawing"] == 1.1


def _set(path, value):
    def mod(d):
        keys = path.split(".")
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return mod


def _del(path):
    def mod(d):
        keys = path.split(".")
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return mod


BAD = [
    (
        _set("ground.model", "magic"),
        "ground.model = 'magic' is not allowed; allowed: 'ttop', 'lapse'",
    ),
    (_set("ground.ttop.nfactor", 1), "unknown key 'nfactor' in ground.ttop"),
    (_set("bogus", 1), "unknown key 'bogus' in <top level>"),
    (
        _set("region.resolution_arcsec", -30),
        "region.resolution_arcsec = -30 is out of range; must be > 0",
    ),
    (
        _set("region.resolution_arcsec", "30m"),
        "region.resolution_arcsec = '30m' has the wrong type",
    ),
    (_set("region.bbox", [103.5, 35, 99.5, 39]), "need -180 <= west < east <= 180"),
    (_set("region.bbox", [99.5, 35, 103.5, 95]), "need -90 <= south < north <= 90"),
    (_set("region.bbox", [99.5, 35, 103.5]), "region.bbox"),
    (
        _set("horizons", [1990, 2050]),
        "horizons contains 1990, which is not after climate.baseline_year = 1995",
    ),
    (_set("climate.lapse_rate_c_per_m", 5.6), "climate.lapse_rate_c_per_m = 5.6 is not valid"),
    (_set("climate.station.lat", 95), "climate.station.lat = 95 is out of range; must be <= 90"),
    (_del("climate.station.july_c"), "needs monthly_c (12 values) or both january_c and july_c"),
    (_set("classes.stability_thresholds_c", [-1, -3, -1.5, -0.5]), "must be strictly increasing"),
    (_set("tiles.size_px", 2), "tiles.size_px = 2 is out of range; must be >= 8"),
    (_del("region"), "'region' is a required property"),
    (_set("dem.source", "file"), "dem.path is required when dem.source is 'file'"),
    (_set("scenarios.ssp126", {"label": "x"}), "scenario 'ssp126' has no warming for horizon 2050"),
    (
        _set("scenarios.ssp126.overrides", {"ground": {"ttop": {"n_thawing": 9}}}),
        "config error in scenario 'ssp126': ground.ttop.n_thawing = 9 is out of range",
    ),
    (
        _set("scenarios.ssp126.overrides", {"ground": {"nonexistent": 1}}),
        "config error in scenario 'ssp126': override of unknown key 'ground.nonexistent'",
    ),
    (
        _set("scenarios.ssp126.overrides", {"region": {"bbox": [0, 0, 1, 1]}}),
        "which must be the same for every scenario",
    ),
]


@pytest.mark.parametrize(("mod", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_config_gives_one_readable_line(raw_config, mod, message):
    raw = copy.deepcopy(raw_config)
    mod(raw)
    with pytest.raises(ConfigError) as exc:
        prepare(raw, source="my.yaml")
    text = str(exc.value)
    assert message in text
    assert "\n" not in text
    assert "(in my.yaml)" in text or "scenario" in text


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)
