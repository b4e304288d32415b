"""``permamap`` command line: helpers around the Snakemake workflow.

    permamap validate-config [--configfile config/config.yaml]
    permamap show-config     [--configfile ...]
    permamap where           [--configfile ...]   # list the deliverables of a run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import PermamapError


def _load(path):
    from .config import load

    return load(path)


def cmd_validate(args) -> int:
    cfg = _load(args.configfile)
    n_tiles = len(__import__("permamap.grid", fromlist=["Grid"]).Grid.from_config(cfg).tiles(cfg["tiles"]["size_px"]))
    print(f"{args.configfile}: valid ({n_tiles} tiles, {len(cfg['scenarios'])} scenarios x {len(cfg['horizons'])} horizons)")
    return 0


def cmd_show(args) -> int:
    print(json.dumps(_load(args.configfile), indent=2, default=str))
    return 0


def cmd_where(args) -> int:
    cfg = _load(args.configfile)
    root = Path("results") / cfg["run"]
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
    if not files:
        print(f"no results yet in {root}/ (run `make run`)")
        return 1
    print(f"results of run '{cfg['run']}' are in {root.resolve()}/:")
    for p in files:
        print(f"  {p.relative_to(root)}  ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="permamap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("validate-config", cmd_validate, "validate a config file against the schema"),
        ("show-config", cmd_show, "print the config with defaults filled in"),
        ("where", cmd_where, "list the deliverables of a run"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--configfile", default="config/config.yaml")
        p.set_defaults(func=fn)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PermamapError as exc:
        print(f"permamap error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
