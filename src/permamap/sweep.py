"""Scenario sweeps for sensitivity studies: the product of parameter values as named scenarios.

::

    python -m permamap.sweep --param ground.ttop.n_thawing=1.0,1.1,1.2 \\
        --param climate.lapse_rate_c_per_m=0.005,0.006 --trend 0.33 -o config/sweep.yaml
    snakemake --cores 2 --configfile config/sweep.yaml

writes a config fragment whose ``scenarios:`` hold one scenario per combination (3 x 2 = 6
here), each a partial override of the config (``overrides``) with the given warming, to pass
as a further ``--configfile`` (Snakemake merges it over ``config/config.yaml``, so the sweep runs
beside the configured scenarios). Every generated scenario is merged and validated exactly as
the workflow will (:func:`permamap.config.prepare`, :func:`permamap.scenario_response.
check_config`) before anything is written; an error names the scenario and the key.

* ``--param KEY=V1,V2,...`` (repeatable): a dotted config key and its values (each read as YAML:
  numbers, true/false, strings; a list value in brackets, e.g. ``[0.005, 0.006]``).
* ``--trend C1,C2,...`` (C per decade from ``climate.baseline_year``) and/or ``--warming
  2050=1.0,2100=2.5`` (C per horizon, explicit values win over the trend, as in a scenario);
  several trends are one more dimension of the product.
* Scenario names: ``<prefix>_<key>-<value>_...`` over the dimensions with more than one value
  (the last part of each key; ``trend`` for the trend), so result folders say what they hold;
  the label lists every value. ``--run NAME`` also sets ``run:``, so the sweep's results go to
  ``results/NAME/`` instead of mixing with the base run.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import re
import sys
from pathlib import Path

import yaml

from .errors import ConfigError

NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")
DEFAULT_BASE = "config/config.yaml"


def split_values(text: str) -> list[str]:
    """Split ``text`` on commas outside brackets: ``1,[2,3],x`` -> ``['1', '[2,3]', 'x']``."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_value(text: str):
    """A value as YAML reads it (``1.1`` -> float, ``true`` -> bool, ``ttop`` -> str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep: value {text!r} is not valid YAML ({exc})") from None


def parse_param(spec: str) -> tuple[str, list]:
    """``'ground.ttop.n_thawing=1.0,1.1'`` -> ``('ground.ttop.n_thawing', [1.0, 1.1])``."""
    key, sep, values = spec.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ConfigError(f"sweep: --param {spec!r}: expected KEY=V1,V2,... (e.g. "
                          "ground.ttop.n_thawing=1.0,1.1)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"sweep: --param {spec!r}: {key!r} is not a dotted config key")
    vals = [parse_value(v) for v in split_values(values)]
    if any(v is None for v in vals):
        raise ConfigError(f"sweep: --param {spec!r} has an empty value")
    if len({repr(v) for v in vals}) != len(vals):
        raise ConfigError(f"sweep: --param {spec!r} repeats a value")
    return key, vals


def parse_warming(spec: str) -> dict[int, float]:
    """``'2050=1.0,2100=2.5'`` -> ``{2050: 1.0, 2100: 2.5}``."""
    out = {}
    for item in split_values(spec):
        year, sep, value = item.partition("=")
        try:
            out[int(year)] = float(value)
        except ValueError:
            raise ConfigError(f"sweep: --warming {spec!r}: expected YEAR=C,... (e.g. "
                              "2050=1.0,2100=2.5)") from None
        if not sep:
            raise ConfigError(f"sweep: --warming {spec!r}: expected YEAR=C,...")
    return out


def _nested(key: str, value) -> dict:
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = copy.deepcopy(value)
    return out


def _merge(a: dict, b: dict) -> dict:
    """Recursive dict update, as Snakemake merges --configfile files
    (``snakemake.utils.update_config``)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _fmt(v) -> str:
    """A value as a piece of a scenario name (``1.1`` -> ``1.1``, ``[1, 2]`` -> ``1-2``)."""
    text = str(v).lower() if isinstance(v, bool) else str(v)
    return NAME_OK.sub("-", text).strip("-") or "x"


def generate(params: dict[str, list], *, trends: list[float] | None = None,
             warming: dict[int, float] | None = None, prefix: str = "sweep",
             run: str | None = None, max_scenarios: int = 200) -> dict:
    """The config fragment of a sweep (module docstring): ``{"scenarios": {...}}`` (+ ``run``).

    ``params``: dotted key -> values (the product is taken in the given key order, the last
    key varying fastest). At least one of ``trends``/``warming`` sets the air warming.
    """
    if not trends and not warming:
        raise ConfigError("sweep: give the warming with --trend (C per decade) and/or --warming "
                          "(YEAR=C,...)")
    if not NAME_OK.sub("", prefix) == prefix or not prefix:
        raise ConfigError(f"sweep: --prefix {prefix!r} may only use letters, digits, _ . -")
    dims = [(k, list(v)) for k, v in params.items()]
    trend_values = list(trends) if trends else [None]
    combos = list(itertools.product(trend_values, *[v for _, v in dims]))
    if len(combos) > max_scenarios:
        raise ConfigError(f"sweep: {len(combos)} scenarios exceed --max-scenarios {max_scenarios}; "
                          "use fewer values or raise the limit")
    short = [k.rsplit(".", 1)[-1] for k, _ in dims]
    if len(set(short)) != len(short):
        short = [k.replace(".", "-") for k, _ in dims]
    scenarios: dict = {}
    for combo in combos:
        trend, values = combo[0], combo[1:]
        name_parts = [prefix]
        if len(trend_values) > 1:
            name_parts.append(f"trend-{_fmt(trend)}")
        name_parts += [f"{s}-{_fmt(v)}" for s, (_, vals), v in zip(short, dims, values, strict=True)
                       if len(vals) > 1]
        name = "_".join(name_parts)
        if name in scenarios:
            raise ConfigError(f"sweep: two combinations give the scenario name {name!r}")
        label = ", ".join(
            ([f"trend {trend} C/decade"] if trend is not None else [])
            + ([f"warming {warming}"] if warming else [])
            + [f"{k}={v}" for (k, _), v in zip(dims, values, strict=True)]
        )
        overrides: dict = {}
        for (k, _), v in zip(dims, values, strict=True):
            overrides = _merge(overrides, _nested(k, v))
        scen: dict = {"label": f"{prefix}: {label}"}
        if trend is not None:
            scen["trend_c_per_decade"] = float(trend)
        if warming:
            scen["warming_c"] = {int(y): float(w) for y, w in sorted(warming.items())}
        if overrides:
            scen["overrides"] = overrides
        scenarios[name] = scen
    fragment: dict = {}
    if run:
        fragment["run"] = run
    fragment["scenarios"] = scenarios
    return fragment


def load_base(paths) -> dict:
    """The merged raw config of ``paths`` (as Snakemake merges ``configfile`` and each
    ``--configfile``)."""
    raw: dict = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise ConfigError(f"sweep: base config {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"sweep: base config {p} is not valid YAML ({exc})") from None
        raw = _merge(raw, data)
    return raw


def validate(fragment: dict, base: dict, source: str | None = None) -> dict:
    """Merge ``fragment`` over the raw ``base`` config and validate it as the workflow will;
    returns the prepared config. Errors name the scenario (``config error in scenario 'x'``)."""
    from .config import prepare
    from .scenario_response import check_config

    merged = _merge(base, fragment)
    cfg = prepare(merged, source=source)
    check_config(cfg)
    return cfg


def to_yaml(fragment: dict, command: str | None = None) -> str:
    head = "# permamap scenario sweep (permamap.sweep): pass with a second --configfile\n"
    if command:
        head += f"# {command}\n"
    return head + yaml.safe_dump(fragment, sort_keys=False, default_flow_style=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m permamap.sweep",
        description="Write a scenario sweep (product of parameter values) as a config fragment.",
    )
    parser.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="dotted config key and its values (repeatable)")
    parser.add_argument("--trend", metavar="C1,C2,...",
                        help="warming trend(s), C per decade from climate.baseline_year")
    parser.add_argument("--warming", metavar="YEAR=C,...", help="warming per horizon, C")
    parser.add_argument("--prefix", default="sweep", help="scenario name prefix (default sweep)")
    parser.add_argument("--run", default=None, help="also set run: (results/<run>/)")
    parser.add_argument("--base", action="append", default=None, metavar="CONFIG",
                        help=f"config(s) the fragment is merged over for validation (default "
                             f"{DEFAULT_BASE}; repeat as for snakemake --configfile)")
    parser.add_argument("--max-scenarios", type=int, default=200)
    parser.add_argument("-o", "--output", default=None, help="output YAML (default: stdout)")
    args = parser.parse_args(argv)
    try:
        params: dict = {}
        for spec in args.param:
            key, vals = parse_param(spec)
            if key in params:
                raise ConfigError(f"sweep: --param {key} given twice")
            params[key] = vals
        trends = None
        if args.trend:
            trends = []
            for t in split_values(args.trend):
                v = parse_value(t)
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ConfigError(f"sweep: --trend {args.trend!r}: expected numbers (C per "
                                      "decade), e.g. 0.12,0.33")
                trends.append(float(v))
        warming = parse_warming(args.warming) if args.warming else None
        fragment = generate(params, trends=trends, warming=warming, prefix=args.prefix,
                            run=args.run, max_scenarios=args.max_scenarios)
        bases = args.base or [DEFAULT_BASE]
        validate(fragment, load_base(bases), source=", ".join([*bases, args.output or "sweep"]))
    except (ConfigError, ValueError) as exc:
        print(f"permamap: {exc}", file=sys.stderr)
        return 1
    text = to_yaml(fragment, "python -m permamap.sweep " + " ".join(
        a if " " not in a else repr(a) for a in (argv if argv is not None else sys.argv[1:])))
    if args.output:
        from .rasterio_io import atomic_path

        with atomic_path(args.output) as tmp:
            tmp.write_text(text)
        n = len(fragment["scenarios"])
        print(f"{args.output}: {n} scenario{'s' if n != 1 else ''} "
              f"({', '.join(fragment['scenarios'])})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
