"""Configuration: load, validate against the JSON schema, fill defaults, resolve scenarios.

The schema lives in ``workflow/schemas/config.schema.yaml`` (the repository is installed in
editable mode, so the package finds it beside itself; ``PERMAMAP_SCHEMA`` overrides the path).
Every failure raises :class:`~permamap.errors.ConfigError` with one readable line naming the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def schema_path() -> Path:
    return Path(
        os.environ.get("PERMAMAP_SCHEMA", REPO_ROOT / "workflow/schemas/config.schema.yaml")
    )


def load_schema() -> dict:
    """The main schema plus one section per file in ``sections/`` beside it.

    ``sections/<key>.schema.yaml`` is the schema of the optional top-level key ``<key>``
    (e.g. ``download``, ``validation``), so each stage owns its section;
    ``sections/<key>.<subkey>.schema.yaml`` is the schema of ``<key>.<subkey>`` inside an
    object section of the main schema (e.g. ``ground.surface``).
    """
    path = schema_path()
    if not path.exists():
        raise ConfigError(
            f"config schema not found at {path}; run permamap from its repository "
            "(pip install -e .) or set PERMAMAP_SCHEMA"
        )
    schema = yaml.safe_load(path.read_text())
    for section in sorted((path.parent / "sections").glob("*.schema.yaml")):
        *parents, key = section.name.removesuffix(".schema.yaml").split(".")
        props = schema["properties"]
        for parent in parents:
            if parent not in props or "properties" not in props[parent]:
                raise ConfigError(
                    f"schema section {section}: {parent!r} is not an object of {path}"
                )
            props = props[parent]["properties"]
        if key in props:
            raise ConfigError(f"schema section {section} duplicates key {key!r} of {path}")
        props[key] = yaml.safe_load(section.read_text())
    return schema


def _extend_with_default(validator_class):
    """A validator that fills ``default`` values into the instance while validating.

    Recipe from the jsonschema FAQ ("Why doesn't my schema's default property set the default
    on my instance?").
    """
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_default(Draft202012Validator)


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error, where: str) -> str:
    """One readable line for a jsonschema ValidationError."""
    key = _key_path(error.absolute_path)
    v = error.validator
    s = error.schema
    if v == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(allowed))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {', '.join(repr(e) for e in extra)} in {key}{hint}{where}"
    if v == "required":
        return f"{key}: {error.message}{where}"
    if v == "enum":
        allowed = ", ".join(repr(a) for a in error.validator_value)
        return f"{key} = {error.instance!r} is not allowed; allowed: {allowed}{where}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        rel = {
            "minimum": ">=",
            "maximum": "<=",
            "exclusiveMinimum": ">",
            "exclusiveMaximum": "<",
        }[v]
        return f"{key} = {error.instance!r} is out of range; must be {rel} {error.validator_value}{where}"
    if v == "type":
        return f"{key} = {error.instance!r} has the wrong type; expected {s.get('type')}{where}"
    if v == "oneOf":
        desc = s.get("description", "").strip()
        return f"{key} = {error.instance!r} is not valid{': ' + desc if desc else ''}{where}"
    return f"{key}: {error.message}{where}"


def validate(config: dict, *, source: str | None = None) -> dict:
    """Validate ``config`` in place against the schema, filling defaults; return it."""
    where = f" (in {source})" if source else ""
    validator = _DefaultFillingValidator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # The shallowest error is the most useful one (a missing section before its keys).
        raise ConfigError("config error: " + _describe(errors[0], where))
    return config


def _normalise(config: dict) -> dict:
    """YAML gives integer keys for ``2050:``; JSON schema objects need string keys."""
    for scen in (config.get("scenarios") or {}).values():
        if isinstance(scen, dict) and isinstance(scen.get("warming_c"), dict):
            scen["warming_c"] = {str(k): v for k, v in scen["warming_c"].items()}
    surface = (config.get("ground") or {}).get("surface")
    if isinstance(surface, dict) and isinstance(surface.get("land_cover_classes"), dict):
        surface["land_cover_classes"] = {
            str(k): v for k, v in surface["land_cover_classes"].items()
        }
    return config


def deep_merge(base: dict, override: dict, *, path: str = "", strict: bool = True) -> dict:
    """Return ``base`` with ``override`` merged in; with ``strict``, unknown keys are errors."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        here = f"{path}.{k}" if path else k
        if strict and k not in out:
            raise ConfigError(
                f"override of unknown key {here!r}; it does not exist in the base config"
            )
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v, path=here, strict=strict)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_semantics(config: dict, where: str) -> None:
    west, south, east, north = config["region"]["bbox"]
    if not (-180 <= west < east <= 180):
        raise ConfigError(
            f"config error: region.bbox = {config['region']['bbox']}: need -180 <= west < east <= 180{where}"
        )
    if not (-90 <= south < north <= 90):
        raise ConfigError(
            f"config error: region.bbox = {config['region']['bbox']}: need -90 <= south < north <= 90{where}"
        )
    res = config["region"]["resolution_arcsec"] / 3600.0
    if (east - west) < res or (north - south) < res:
        raise ConfigError(
            f"config error: region.bbox is smaller than one pixel of "
            f"{config['region']['resolution_arcsec']} arcsec{where}"
        )
    clim = config["climate"]
    if clim["source"] == "station":
        st = clim.get("station")
        if not st:
            raise ConfigError(
                f"config error: climate.station is required when climate.source is 'station'{where}"
            )
        if st.get("monthly_c") is None and (
            st.get("january_c") is None or st.get("july_c") is None
        ):
            raise ConfigError(
                "config error: climate.station needs monthly_c (12 values) or both january_c and "
                f"july_c for the annual cycle{where}"
            )
        if st.get("monthly_c") is None and st["july_c"] <= st["january_c"]:
            raise ConfigError(
                f"config error: climate.station.july_c ({st['july_c']}) must exceed january_c "
                f"({st['january_c']}) on the northern hemisphere sinusoid{where}"
            )
    if config["dem"]["source"] == "file" and not config["dem"].get("path"):
        raise ConfigError(f"config error: dem.path is required when dem.source is 'file'{where}")
    base_year = clim["baseline_year"]
    for h in config["horizons"]:
        if h <= base_year:
            raise ConfigError(
                f"config error: horizons contains {h}, which is not after climate.baseline_year "
                f"= {base_year}{where}"
            )
    from .surface import check_config as check_surface

    check_surface(config, where)
    th = config["classes"]["stability_thresholds_c"]
    if any(b <= a for a, b in zip(th, th[1:], strict=False)):
        raise ConfigError(
            f"config error: classes.stability_thresholds_c = {th} must be strictly increasing{where}"
        )


def scenario_warming_c(config: dict, name: str) -> dict[int, float]:
    """Air warming (C) per horizon year for scenario ``name``.

    Explicit ``warming_c`` values win; otherwise ``trend_c_per_decade * (year - baseline) / 10``.
    """
    scen = config["scenarios"][name]
    explicit = {int(k): float(v) for k, v in (scen.get("warming_c") or {}).items()}
    trend = scen.get("trend_c_per_decade")
    base = config["climate"]["baseline_year"]
    out = {}
    for h in config["horizons"]:
        if h in explicit:
            out[h] = explicit[h]
        elif trend is not None:
            out[h] = float(trend) * (h - base) / 10.0
        else:
            raise ConfigError(
                f"config error: scenario {name!r} has no warming for horizon {h}; give "
                f"scenarios.{name}.warming_c.{h} or scenarios.{name}.trend_c_per_decade"
            )
    return out


def scenario_config(config: dict, name: str) -> dict:
    """The base config with scenario ``name``'s ``overrides`` merged in (already validated)."""
    overrides = config["scenarios"][name].get("overrides") or {}
    return deep_merge(config, overrides) if overrides else config


def prepare(config: dict, *, source: str | None = None) -> dict:
    """Validate a raw config (as loaded from YAML), fill defaults and check every scenario.

    Returns a new dict. Raises ConfigError with one readable line on the first problem.
    """
    where = f" (in {source})" if source else ""
    cfg = _normalise(copy.deepcopy(dict(config)))
    validate(cfg, source=source)
    _check_semantics(cfg, where)
    for name, scen in cfg["scenarios"].items():
        scenario_warming_c(cfg, name)
        if scen.get("cmip6"):
            from .retrieve import cmip6_period

            for h in cfg["horizons"]:
                try:
                    cmip6_period(h)
                except ConfigError as exc:
                    msg = str(exc).removeprefix("config error: ")
                    raise ConfigError(f"config error in scenario {name!r}: {msg}{where}") from None
        overrides = scen.get("overrides") or {}
        if overrides:
            forbidden = {"run", "region", "tiles", "dem", "horizons", "scenarios"} & set(overrides)
            if forbidden:
                raise ConfigError(
                    f"config error: scenario {name!r} overrides {sorted(forbidden)}, which must be "
                    f"the same for every scenario{where}"
                )
            from .surface import PER_RUN_KEYS

            surf = ((overrides.get("ground") or {}).get("surface")) or {}
            for key in PER_RUN_KEYS:
                if key in surf:
                    raise ConfigError(
                        f"config error: scenario {name!r} overrides ground.surface.{key}, which "
                        f"is the same for every scenario (a scenario may change the types' "
                        f"parameters){where}"
                    )
            try:
                merged = deep_merge(cfg, overrides)
                validate(merged, source=source)
                _check_semantics(merged, where)
            except ConfigError as exc:
                msg = str(exc).removeprefix("config error: ")
                raise ConfigError(f"config error in scenario {name!r}: {msg}") from None
    return cfg


def load(path: str | os.PathLike) -> dict:
    """Read a YAML config file and :func:`prepare` it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(raw).__name__}"
        )
    return prepare(raw, source=str(path))


def config_hash(config: dict) -> str:
    """Short sha256 of the canonical JSON of a config (provenance tag on every output)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def get(config: dict, dotted: str, default: Any = None) -> Any:
    cur: Any = config
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur
