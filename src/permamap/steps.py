"""One function per workflow rule. Each takes plain paths and a validated config, so every step
is importable and tested without Snakemake (``permamap.smk`` adapts the Snakemake object).

Per-tile intermediates (``resources/<run>/tiles/<tile>/``):

=====================  =========  ==================================================
file                   dtype      bands
=====================  =========  ==================================================
dem.tif                float32    elevation (tile + 1-pixel halo)
terrain.tif            float32    elevation, slope, aspect, solar
climate.tif            float32    maat, fdd, tdd, amplitude (NaN nodata)
ground_magt.tif        int16      magt (0.01 degC, scale 0.01: ``PRODUCTS["magt"]``)
ground_alt.tif         float32    alt, freeze_depth
ground_class.tif       uint8      class, stability, probability, zone
scenarios_magt.tif     int16      one band per ``<scenario>/<horizon>`` (MAGT, 0.01 degC)
scenarios_class.tif    uint8      one band per ``<scenario>/<horizon>``
=====================  =========  ==================================================
"""

from __future__ import annotations

import logging

import numpy as np
import rasterio

from . import climate
from . import config as cfgmod
from .grid import HALO_PX, Grid, find_tile, tile_halo_window
from .mosaic import mosaic_product
from .products import FLOAT_NODATA, PRODUCTS
from .rasterio_io import provenance_tags, read_bands, write_bands

log = logging.getLogger(__name__)


_tile = find_tile


def _f32(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), a, FLOAT_NODATA).astype(np.float32)


def _compress(config):
    return config.get("output", {}).get("compress", "deflate")


def scenario_bands(config: dict) -> list[tuple[str, int]]:
    """(scenario, horizon) pairs in band order of the scenario tile files."""
    return [(s, h) for s in config["scenarios"] for h in config["horizons"]]


def band_label(scenario: str, horizon: int) -> str:
    return f"{scenario}/{horizon}"


# -- DEM ------------------------------------------------------------------------------------


def build_dem(config: dict, out_path, threads: int = 2) -> None:
    from .dem import build_dem as _build

    _build(config, out_path, threads=threads)


def tile_dem(config: dict, dem_path, tile_id: str, out_path, threads: int = 2) -> None:
    """Cut one tile plus its halo out of the region DEM."""
    grid, tile = _tile(config, tile_id)
    win = tile_halo_window(tile)
    z = read_bands(dem_path, window=win)[0]
    sub = grid.expanded(HALO_PX).subgrid(win)
    write_bands(
        out_path,
        _f32(z),
        sub,
        dtype="float32",
        nodata=FLOAT_NODATA,
        descriptions=["elevation"],
        units=["m"],
        tags={"tile": tile_id, "halo_px": HALO_PX},
        threads=threads,
    )


# -- terrain --------------------------------------------------------------------------------


def terrain_tile(config: dict, tile_dem_path, tile_id: str, out_path, threads: int = 2) -> None:
    """``terrain.tif``: elevation, slope, aspect and solar index of a tile, computed chunk-wise
    with dask ``map_overlap`` (depth = the 1-pixel Horn halo) by :mod:`permamap.blocks`."""
    from . import blocks

    blocks.terrain_tile(config, tile_dem_path, tile_id, out_path, threads=threads)


# -- climate --------------------------------------------------------------------------------


def climate_tile(config: dict, terrain_path, tile_id: str, out_path, threads: int = 2) -> None:
    """``climate.tif``: MAAT, FDD, TDD and amplitude of a tile, chunk-wise (:mod:`permamap.blocks`)."""
    from . import blocks

    blocks.climate_tile(config, terrain_path, tile_id, out_path, threads=threads)


# -- ground ---------------------------------------------------------------------------------


def ground_tile(
    config: dict,
    terrain_path,
    climate_path,
    tile_id: str,
    out_magt,
    out_class,
    threads: int = 2,
    *,
    out_alt,
) -> None:
    """Baseline MAGT (``out_magt``), ALT and freezing depth (``out_alt``), class, stability,
    probability and zone (``out_class``) of a tile, chunk-wise (:mod:`permamap.blocks`; the
    degree-days are recomputed per chunk in float64 with the kernel that wrote
    ``climate.tif``, which is not read)."""
    from . import blocks

    blocks.ground_tile(
        config,
        terrain_path,
        climate_path,
        tile_id,
        out_magt,
        out_class,
        threads=threads,
        out_alt=out_alt,
    )


# -- scenarios ------------------------------------------------------------------------------


def scenario_delta_fields(config: dict, name: str, grid: Grid) -> np.ndarray:
    """(n_horizons, 12, ny, nx) monthly air warming (C) of scenario ``name`` on ``grid``.

    Uniform warming per horizon (``warming_c`` / ``trend_c_per_decade``) as zero-copy
    broadcast arrays; or, for a scenario with ``cmip6``, the 12-band monthly delta rasters of
    the retrieve stage (``resources/<run>/inputs/cmip6_delta/<scenario>/<horizon>.tif``, the
    WorldClim CMIP6 20-year period holding the horizon: 2050 -> 2041-2060, 2100 -> 2081-2100;
    :func:`permamap.retrieve.cmip6_period`) resampled bilinearly to ``grid``.
    """
    if config["scenarios"][name].get("cmip6"):
        from .retrieve import cmip6_delta_path

        paths = [cmip6_delta_path(config, name, h) for h in config["horizons"]]
        return climate.delta_fields_from_rasters(paths, grid, Grid.from_config(config))
    warming = cfgmod.scenario_warming_c(config, name)
    return climate.uniform_delta_fields(
        [warming[h] for h in config["horizons"]], (grid.height, grid.width)
    )


def scenarios_tile(
    config: dict,
    terrain_path,
    tile_id: str,
    out_magt,
    out_class,
    threads: int = 2,
    *,
    climate_path=None,
    ground_alt_path=None,
    ground_class_path=None,
    out_degradation=None,
    fit_path=None,
    transient_path=None,
) -> None:
    """All scenarios x horizons of one tile in one job, chunk by chunk
    (:func:`permamap.blocks.scenarios_tile`).

    ``response.mode: equilibrium`` needs only ``terrain_path``; with ``out_degradation`` it also
    reads the tile's baseline ``ground_alt.tif``/``ground_class.tif`` and writes
    ``scenarios_degradation.tif``. ``transient`` also reads ``climate.tif``, the TopoSUB fit and
    the cluster table (:mod:`permamap.scenario_response`).
    """
    from . import blocks

    blocks.scenarios_tile(
        config,
        terrain_path,
        tile_id,
        out_magt,
        out_class,
        threads,
        climate_path=climate_path,
        ground_alt_path=ground_alt_path,
        ground_class_path=ground_class_path,
        out_degradation=out_degradation,
        fit_path=fit_path,
        transient_path=transient_path,
    )


# -- mosaics --------------------------------------------------------------------------------


def mosaic(
    config: dict, tile_paths: list, band: str, product: str, out_path, threads: int = 2, **tags
) -> None:
    """One product of the whole region from a band of every tile (COG)."""
    grid = Grid.from_config(config)
    tiles = grid.tiles(config["tiles"]["size_px"])
    if len(tiles) != len(tile_paths):
        raise ValueError(f"expected {len(tiles)} tile files, got {len(tile_paths)}")
    mosaic_product(
        grid,
        tiles,
        [str(p) for p in tile_paths],
        band,
        PRODUCTS[product],
        out_path,
        tags=provenance_tags(config, **tags),
        compress=_compress(config),
        threads=threads,
    )


# -- tables ---------------------------------------------------------------------------------


def class_areas_km2(grid: Grid, class_path, codes) -> dict[int, float]:
    """Area (km^2, true ellipsoidal pixel areas) of each class code, read in row blocks."""
    row_area = grid.row_pixel_areas_km2()
    totals = dict.fromkeys(codes, 0.0)
    with rasterio.open(class_path) as src:
        if (src.width, src.height) != (grid.width, grid.height):
            raise ValueError(f"{class_path} is not on the working grid")
        step = 512
        for r0 in range(0, src.height, step):
            h = min(step, src.height - r0)
            data = src.read(1, window=rasterio.windows.Window(0, r0, src.width, h))
            for code in codes:
                counts = (data == code).sum(axis=1)
                totals[code] += float(np.dot(counts, row_area[r0 : r0 + h]))
    return totals


def areas_table(config: dict, baseline_class, scenario_classes: dict, out_csv) -> None:
    """``tables/areas.csv``: area and share of each ground class, baseline and scenarios.

    ``scenario_classes``: {(scenario, horizon): path}. Shares are of the valid (non-nodata) area.
    """
    import pandas as pd

    from .products import GROUND_CLASSES
    from .rasterio_io import atomic_path

    grid = Grid.from_config(config)
    codes = list(GROUND_CLASSES)
    rows = []
    entries = [("baseline", config["climate"]["baseline_year"], 0.0, baseline_class)]
    for (s, h), p in scenario_classes.items():
        entries.append((s, h, cfgmod.scenario_warming_c(config, s)[h], p))
    for scen, horizon, warming, path in entries:
        areas = class_areas_km2(grid, path, codes)
        total = sum(areas.values())
        label = "baseline" if scen == "baseline" else config["scenarios"][scen].get("label", scen)
        for code in codes:
            rows.append(
                dict(
                    scenario=scen,
                    label=label,
                    horizon=horizon,
                    warming_c=round(warming, 4),
                    class_code=code,
                    class_name=GROUND_CLASSES[code][0],
                    area_km2=round(areas[code], 3),
                    share=round(areas[code] / total, 6) if total else 0.0,
                )
            )
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def lower_limit_table(
    config: dict, elevation, slope, aspect, baseline_class, scenario_classes: dict, out_csv
) -> None:
    """``tables/lower_limit_by_aspect.csv`` for the baseline and every scenario x horizon."""
    import pandas as pd

    from . import lower_limit as ll
    from .rasterio_io import atomic_path

    grid = Grid.from_config(config)
    opts = config["lower_limit"]
    entries = [("baseline", config["climate"]["baseline_year"], 0.0, baseline_class)]
    for (s, h), p in scenario_classes.items():
        entries.append((s, h, cfgmod.scenario_warming_c(config, s)[h], p))
    rows = []
    for scen, horizon, warming, path in entries:
        hist = ll.Histograms(opts["band_m"])
        ll.accumulate(hist, grid, elevation, slope, aspect, path, opts["flat_slope_deg"])
        rows += ll.table_rows(hist, scen, horizon, warming)
    with atomic_path(out_csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
