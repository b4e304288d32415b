"""``permamap``: the common tasks around the Snakemake workflow, with readable errors.

    permamap run             [--configfile F] [--cores N] [-- SNAKEMAKE ARGS]   run the workflow
    permamap dry-run         [--configfile F]       list the jobs a run would do, change nothing
    permamap outputs         [--configfile F]       every deliverable: its status and what it is
    permamap report          [--configfile F] [-o results/<run>/report.html]   HTML report
    permamap show-config     [--configfile F] [--key ground.ttop]   config with defaults filled in
    permamap validate-config [--configfile F]       check a config against the schema
    permamap where           [--configfile F]       list the files already in results/<run>/

As with ``snakemake --configfile``, the given file is merged over ``config/config.yaml``, so a
config only needs the keys it changes. ``run``, ``dry-run``, ``outputs`` and ``report`` call
Snakemake in the repository (the folder holding ``Snakefile``: the current one, else the one
permamap is installed from); ``run`` uses the laptop-safe profile ``workflow/profiles/default``
unless ``--profile`` names another (e.g. ``slurm``). Anything after ``--`` goes to Snakemake
unchanged, e.g. ``permamap run -- --forcerun maps``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError, PermamapError

BASE_CONFIG = Path("config/config.yaml")


# -- config -----------------------------------------------------------------------------------


def workdir() -> Path:
    """The workflow folder: the current directory if it holds a Snakefile, else the repository
    permamap is installed from."""
    from .config import REPO_ROOT

    for d in (Path.cwd(), REPO_ROOT):
        if (d / "Snakefile").exists():
            return d
    raise PermamapError(
        "no Snakefile here or in the permamap repository; run permamap from "
        "the repository folder (git clone ...; cd permamap)"
    )


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(raw).__name__}"
        )
    return raw


def load_config(configfile) -> dict:
    """The config Snakemake would use: ``config/config.yaml`` with ``configfile`` merged over it
    (recursively, as ``snakemake --configfile`` does), validated with defaults filled in."""
    from .config import deep_merge, prepare

    path = Path(configfile)
    try:
        base_path = workdir() / BASE_CONFIG
    except PermamapError:
        base_path = None
    sources = [str(path)]
    raw = _read_yaml(path)
    if base_path is not None and base_path.exists() and base_path.resolve() != path.resolve():
        raw = deep_merge(_read_yaml(base_path), raw, strict=False)
        sources.append(str(base_path))
    return prepare(raw, source=", ".join(sources))


# -- snakemake --------------------------------------------------------------------------------


def snakemake_exe() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    if exe.exists():
        return str(exe)
    found = shutil.which("snakemake")
    if not found:
        raise PermamapError("snakemake is not installed in this environment (pip install -e .)")
    return found


def snakemake_cmd(args, *extra: str) -> list[str]:
    cmd = [snakemake_exe(), "--cores", str(args.cores), "--configfile", str(args.configfile)]
    profile = getattr(args, "profile", None)
    if profile:
        prof = Path(profile)
        if not prof.exists():
            prof = Path("workflow/profiles") / profile
        cmd += ["--workflow-profile", str(prof)]
    return cmd + list(extra) + list(getattr(args, "snakemake_args", []) or [])


def _call(cmd: list[str], **kw) -> int:
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd, cwd=workdir(), **kw)


def cmd_run(args) -> int:
    load_config(args.configfile)  # fail fast with one readable line
    rc = _call(snakemake_cmd(args))
    if rc == 0:
        cmd_where(args)
    return rc


def cmd_dry_run(args) -> int:
    load_config(args.configfile)
    return _call(snakemake_cmd(args, "--dry-run"))


def cmd_report(args) -> int:
    cfg = load_config(args.configfile)
    out = args.output or f"results/{cfg['run']}/report.html"
    rc = _call(snakemake_cmd(args, "--report", out))
    if rc == 0:
        print(f"report: {(workdir() / out).resolve()}")
    return rc


# -- listing ----------------------------------------------------------------------------------


def describe(path) -> str:
    """One line on what a deliverable is, from the product table and the file type."""
    from .products import PRODUCTS

    p = Path(path)
    if p.suffix == ".tif":
        product = PRODUCTS.get(p.stem)
        if product is None:
            return "GeoTIFF"
        if product.is_class:
            codes = ", ".join(f"{c} {n}" for c, (n, _) in sorted(product.categories.items()))
            return f"{product.dtype}: {product.description.split(':')[0]}; codes {codes}"
        if product.is_scaled:  # e.g. MAGT: int16 in 0.01 degC
            return (
                f"{product.dtype} x {product.scale:g} {product.units} (scale/offset in the file): "
                f"{product.description}"
            )
        return f"{product.dtype}, {product.units}: {product.description}"
    if p.name == "catalog.json":
        return "STAC catalog of the results"
    return {
        ".qgz": "QGIS project: every layer, styled and grouped (a .qml sits beside each raster)",
        ".gpkg": "GeoPackage of class polygons (one layer per class product and horizon)",
        ".png": "map or chart",
        ".csv": "table",
        ".json": "JSON",
        ".yaml": "YAML",
        ".html": "report",
    }.get(p.suffix, "")


def planned_outputs(args) -> list[tuple[str, str]]:
    """(path, status) of every output file of the run, from ``snakemake --summary``."""
    cmd = snakemake_cmd(args, "--summary", "--quiet", "all")
    proc = subprocess.run(cmd, cwd=workdir(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise PermamapError(f"snakemake --summary failed:\n{proc.stderr.strip()[-2000:]}")
    rows = []
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) >= 5 and cols[0] != "output_file":
            rows.append((cols[0], cols[4]))
    return rows


def cmd_outputs(args) -> int:
    cfg = load_config(args.configfile)
    root = f"results/{cfg['run']}/"
    rows = [(p, s) for p, s in planned_outputs(args) if p.startswith(root)]
    if not rows:
        print(f"no deliverables planned under {root}")
        return 1
    width = max(len(p) - len(root) for p, _ in rows)
    print(
        f"deliverables of run '{cfg['run']}' in {(workdir() / root).resolve()}/ "
        "(status from snakemake --summary):"
    )
    for p, status in sorted(rows):
        print(f"  {p[len(root) :]:<{width}}  {status:<10} {describe(p)}")
    return 0


def cmd_validate(args) -> int:
    from .grid import Grid

    cfg = load_config(args.configfile)
    n_tiles = len(Grid.from_config(cfg).tiles(cfg["tiles"]["size_px"]))
    print(
        f"{args.configfile}: valid ({n_tiles} tiles, {len(cfg['scenarios'])} scenarios x "
        f"{len(cfg['horizons'])} horizons)"
    )
    return 0


def cmd_show(args) -> int:
    import yaml

    from .config import get

    cfg = load_config(args.configfile)
    if args.key:
        sentinel = object()
        value = get(cfg, args.key, sentinel)
        if value is sentinel:
            raise ConfigError(f"config has no key {args.key!r}")
        cfg = {args.key: value}
    print(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip())
    return 0


def cmd_where(args) -> int:
    cfg = load_config(args.configfile)
    root = workdir() / "results" / cfg["run"]
    files = (
        sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        if root.exists()
        else []
    )
    if not files:
        print(f"no results yet in {root}/ (run `make run` or `permamap run`)")
        return 1
    print(f"results of run '{cfg['run']}' are in {root.resolve()}/:")
    for p in files:
        print(f"  {p.relative_to(root)}  ({p.stat().st_size / 1e6:.2f} MB)")
    if (root / "permamap.qgz").exists():
        print(
            f"open {root / 'permamap.qgz'} in QGIS, or drag the folder into QGIS: "
            "every raster and GeoPackage layer comes styled"
        )
    return 0


# -- parser -----------------------------------------------------------------------------------

COMMANDS = (
    ("run", cmd_run, "run the workflow (snakemake with the default profile)", True),
    ("dry-run", cmd_dry_run, "list the jobs a run would do, without running them", True),
    ("outputs", cmd_outputs, "list every deliverable of the run with its status and meaning", True),
    ("report", cmd_report, "build the self-contained HTML report (snakemake --report)", True),
    ("show-config", cmd_show, "print the config with defaults filled in (YAML)", False),
    ("validate-config", cmd_validate, "validate a config against the schema", False),
    ("where", cmd_where, "list the files already in results/<run>/", False),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="permamap", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, fn, help_, snake in COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--configfile",
            default=str(BASE_CONFIG),
            help="config file, merged over config/config.yaml (default: %(default)s)",
        )
        if snake:
            p.add_argument(
                "--cores",
                default=os.environ.get("PERMAMAP_CORES", "2"),
                help="CPU cores for Snakemake (default: %(default)s)",
            )
            p.add_argument(
                "--profile",
                default="default" if name == "run" else None,
                help="workflow profile: a name under workflow/profiles/ or a path "
                "(default for run: %(default)s)",
            )
        if name == "report":
            p.add_argument("-o", "--output", help="HTML file (default: results/<run>/report.html)")
        if name == "show-config":
            p.add_argument("--key", help="show one key or section, dotted (e.g. ground.ttop)")
        p.set_defaults(func=fn)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    args.snakemake_args = extra
    try:
        return args.func(args)
    except PermamapError as exc:
        print(f"permamap: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
