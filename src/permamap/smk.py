"""Adapter between Snakemake rules and :mod:`permamap.steps`.

Every rule runs ``workflow/scripts/run_step.py`` with ``params.step`` naming the step. This
module maps the Snakemake object (input, output, wildcards, threads, log, config) onto the
plain-argument step functions, sends logging to the rule's log file, sets the thread count for
numba and GDAL, and turns a :class:`~permamap.errors.PermamapError` into one readable line on
stderr (no traceback) and exit status 1.
"""

from __future__ import annotations

import logging
import os
import sys

from .errors import PermamapError


def _setup(smk) -> None:
    threads = max(1, int(getattr(smk, "threads", 1) or 1))
    os.environ.setdefault("GDAL_NUM_THREADS", str(threads))
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if smk.log:
        handlers.append(logging.FileHandler(str(smk.log[0]), mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _scenario_class_inputs(smk, config) -> dict:
    from .steps import scenario_bands

    pairs = scenario_bands(config)
    return {pair: path for pair, path in zip(pairs, smk.input.scenarios, strict=True)}


def dispatch(smk) -> None:
    """Run the step named by ``params.step``.

    A name of the form ``module:function`` calls ``permamap.<module>.<function>(smk)``, so a
    stage can ship its own Snakemake adapter without touching this file; the plain names
    below are the foundation's steps.
    """
    from . import steps  # plots (matplotlib) only for the figures step: ~0.4 s per job

    config = smk.config
    step = smk.params.step
    if ":" in step:
        import importlib

        module, func = step.split(":", 1)
        getattr(importlib.import_module(f"permamap.{module}"), func)(smk)
        return
    th = int(smk.threads)
    wc = smk.wildcards
    inp, out = smk.input, smk.output
    if step == "build_dem":
        steps.build_dem(config, out[0], threads=th)
    elif step == "tile_dem":
        steps.tile_dem(config, inp.dem, wc.tile, out[0], threads=th)
    elif step == "terrain":
        steps.terrain_tile(config, inp.dem, wc.tile, out[0], threads=th)
    elif step == "climate":
        steps.climate_tile(config, inp.terrain, wc.tile, out[0], threads=th)
    elif step == "ground":
        steps.ground_tile(
            config,
            inp.terrain,
            inp.climate,
            wc.tile,
            out.magt,
            out.cls,
            threads=th,
            out_alt=out.alt,
        )
    elif step == "mosaic":
        for band, product, path in zip(smk.params.bands, smk.params.products, out, strict=True):
            steps.mosaic(
                config, list(inp.tiles), band, product, path, threads=th, **smk.params.tags
            )
    elif step == "areas":
        steps.areas_table(config, inp.baseline, _scenario_class_inputs(smk, config), out[0])
    elif step == "lower_limit":
        steps.lower_limit_table(
            config,
            inp.elevation,
            inp.slope,
            inp.aspect,
            inp.baseline,
            _scenario_class_inputs(smk, config),
            out[0],
        )
    elif step == "figures":
        from . import plots

        plots.quicklooks(config, inp, out)
    else:
        raise ValueError(f"unknown step {step!r}")


def run(smk) -> None:
    """Entry point used by ``workflow/scripts/run_step.py``."""
    _setup(smk)
    log = logging.getLogger("permamap")
    try:
        dispatch(smk)
    except PermamapError as exc:
        log.error("%s", exc)
        print(f"permamap error: {exc}", file=sys.stderr)
        sys.exit(1)
