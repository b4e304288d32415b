"""The retrieve stage: what to download for a config, where it lands, and the Snakemake adapters.

All network access goes through :mod:`permamap.sources` (and so through
:func:`permamap.download.fetch`) with the ``download:`` config section as settings. This
module decides *what* a config needs and *where* it goes:

- raw downloads live in ``<download.cache_dir>/<dataset>/`` (default ``data/``, one folder per
  data set and version: ``copernicus/GLO-30``, ``worldclim/tiles``, ``worldclim/base``,
  ``worldclim_cmip6/<res>``, ``chelsa/tas_1981-2010``, ``obu2019``, ``esa_cci_permafrost``)
  with the manifest ``data/manifest.json`` (URL, size, sha256 of each file);
- cropped or derived inputs of a run live in ``resources/<run>/``:

  ==========================================  =====================================================
  file                                        content
  ==========================================  =====================================================
  ``inputs/dem_copernicus_<product>.tif``     DEM tiles mosaicked over the region + halo + margin
                                              (native grid, float32 m, nodata -9999)
  ``inputs/climate_<source>_tavg.tif``        12 bands, monthly mean air temperature (C), native
                                              grid of WorldClim / CHELSA over the region + margin
  ``inputs/climate_<source>_elev.tif``        elevation (m) the temperatures are valid at
  ``inputs/cmip6_delta/<scenario>/<h>.tif``   12 bands, monthly warming (C) of horizon ``h``
  ``reference/<name>.tif``                    a reference map on the working grid (see
                                              :func:`reference_specs`)
  ==========================================  =====================================================

Each rule of ``workflow/rules/retrieve.smk`` runs one adapter here (``retrieve:dem``,
``retrieve:climate``, ``retrieve:cmip6``, ``retrieve:reference``); the adapters map the
Snakemake object onto the plain functions ``retrieve_*`` below, which are tested without
Snakemake. Every failure is a :class:`~permamap.errors.PermamapError` with one readable line
(``permamap.smk.run`` prints it instead of a traceback).

**Elevation of the climate grids** (what the lapse-rate correction starts from):
WorldClim 2.1 ``tavg`` comes with the ``elev`` grid it was interpolated on (SRTM-derived, same
grid), which is used as it is. CHELSA V2.1 was computed on GMTED2010 orography at 30
arc-seconds, which is not distributed with the climatologies, so permamap uses the region DEM
(``resources/<run>/dem.tif``, whatever its source) averaged over each CHELSA cell (GDAL
``average`` resampling): the same "mean elevation of a 30 arc-second cell" CHELSA's
temperatures are valid at. Cells on the edge of the region are averaged over the part the
region DEM covers.

**CMIP6 horizons.** WorldClim's CMIP6 projections are 20-year means for 2021-2040,
2041-2060, 2061-2080 and 2081-2100. A horizon year takes the period that holds it
(:func:`cmip6_period`): 2030 -> 2021-2040, 2050 -> 2041-2060, 2070 -> 2061-2080,
2100 -> 2081-2100 (whose mid-point is 2090, so the 2100 delta is about one decade of warming
short of the year 2100). Horizons before 2021 or after 2100 have no CMIP6 period and are a
config error for a scenario with ``cmip6``. The deltas are against WorldClim 2.1's 1970-2000
``tavg``; they are added to whichever baseline ``climate.source`` gives.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputDataError
from .grid import HALO_PX, Grid

log = logging.getLogger(__name__)

#: Gridded climate sources (``climate.source``) that are retrieved.
GRIDDED_CLIMATE = ("worldclim", "chelsa")
#: Native pixel size (arc-seconds, north-south) of the Copernicus DEM products.
COPERNICUS_ARCSEC = {"GLO-30": 1.0, "GLO-90": 3.0}


# ------------------------------------------------------------------------------ settings, paths


def download_settings(config: dict) -> dict:
    """The ``download:`` section, defaults filled (:func:`permamap.download.resolve_settings`)."""
    from .download import resolve_settings

    return resolve_settings(config.get("download") or {})


def _res(config: dict) -> str:
    return f"resources/{config['run']}"


def dem_path(config: dict) -> str | None:
    """Path of the retrieved DEM mosaic, or None when ``dem.source`` is not downloaded."""
    dem = config["dem"]
    if dem["source"] != "copernicus":
        return None
    return f"{_res(config)}/inputs/dem_copernicus_{dem['copernicus']['product']}.tif"


def climate_paths(config: dict) -> dict[str, str] | None:
    """``{"tavg": path, "elev": path}`` of the retrieved climatology, or None for ``station``."""
    source = config["climate"]["source"]
    if source not in GRIDDED_CLIMATE:
        return None
    base = f"{_res(config)}/inputs/climate_{source}"
    return {"tavg": f"{base}_tavg.tif", "elev": f"{base}_elev.tif"}


def cmip6_period(horizon: int) -> str:
    """The WorldClim CMIP6 20-year period holding ``horizon`` (see the module docstring)."""
    from .sources.cmip6 import PERIODS

    for period in PERIODS:
        first, last = (int(y) for y in period.split("-"))
        if first <= int(horizon) <= last:
            return period
    raise ConfigError(
        f"config error: horizon {horizon} has no WorldClim CMIP6 period ({', '.join(PERIODS)}); "
        "use horizons from 2021 to 2100 with scenarios that have cmip6"
    )


def cmip6_scenarios(config: dict) -> list[str]:
    """Names of the scenarios whose warming comes from CMIP6 delta rasters."""
    return [name for name, scen in config["scenarios"].items() if scen.get("cmip6")]


def cmip6_delta_path(config: dict, scenario: str, horizon: int) -> str:
    return f"{_res(config)}/inputs/cmip6_delta/{scenario}/{int(horizon)}.tif"


def cmip6_paths(config: dict) -> dict[tuple[str, int], str]:
    """``{(scenario, horizon): delta path}`` for every scenario with ``cmip6`` (checks that
    every horizon has a CMIP6 period)."""
    out = {}
    for name in cmip6_scenarios(config):
        for h in config["horizons"]:
            cmip6_period(h)
            out[(name, int(h))] = cmip6_delta_path(config, name, h)
    return out


def reference_specs(config: dict) -> dict[str, dict[str, Any]]:
    """The reference maps a config asks for: ``{name: spec}``, each landing on the working
    grid (EPSG:4326, the region's bbox and resolution) at ``spec["path"]`` =
    ``resources/<run>/reference/<name>.tif``.

    ``spec`` keys: ``dataset`` (obu2019, esa_cci, local), ``kind`` (``continuous`` = float32,
    nodata -9999, bilinear; ``classes`` = uint8, nodata 255, nearest), ``units`` and the
    dataset's own keys. Names: ``obu2019_magt`` (C, MAGT at the top of permafrost),
    ``obu2019_perprob`` (fraction 0-1), ``esa_cci_<layer>`` (e.g. ``esa_cci_pfr``, percent;
    ``esa_cci_t2m``, C; ``esa_cci_alt``, m) and each ``reference.local`` entry's ``name``.
    """
    from .sources.reference import CCI_VARIABLES, OBU_PRODUCTS

    ref = config.get("reference") or {}
    res = _res(config)
    out: dict[str, dict[str, Any]] = {}

    def add(name, spec):
        if name in out:
            raise ConfigError(f"config error: reference map name {name!r} is used twice")
        out[name] = {"path": f"{res}/reference/{name}.tif", **spec}

    if ref.get("obu2019"):
        for product in ref["obu2019"]["products"]:
            add(f"obu2019_{product}", {"dataset": "obu2019", "product": product,
                                       "kind": "continuous",
                                       "units": OBU_PRODUCTS[product]["units"]})
    if ref.get("esa_cci"):
        cci = ref["esa_cci"]
        info = CCI_VARIABLES[cci["variable"]]
        layer = cci.get("layer") or info["layers"][0]
        add(f"esa_cci_{layer.lower()}", {"dataset": "esa_cci", "variable": cci["variable"],
                                         "layer": layer, "year": int(cci["year"]),
                                         "version": cci["version"], "kind": "continuous",
                                         "units": info["units"]})
    for item in ref.get("local") or []:
        add(item["name"], {"dataset": "local", "source_path": item["path"], "kind": item["kind"],
                           "allowed_classes": item.get("allowed_classes"),
                           "units": item.get("units", "")})
    return out


def land_cover_path(config: dict) -> str | None:
    """The retrieved land cover (``ground.surface.land_cover: worldcover``), or None."""
    from .surface import WORLDCOVER, section

    if section(config).get("land_cover") != WORLDCOVER:
        return None
    return f"{_res(config)}/inputs/land_cover_worldcover.tif"


def plan(config: dict) -> dict[str, Any]:
    """Everything the retrieve stage makes for ``config`` (empty entries when nothing is
    downloaded, as for the offline sample). Raises ConfigError for an impossible request."""
    return {
        "dem": dem_path(config),
        "climate": climate_paths(config),
        "cmip6": cmip6_paths(config),
        "reference": reference_specs(config),
        "land_cover": land_cover_path(config),
    }


def plain_inputs(rule_proxy, **extra) -> dict:
    """A Snakemake rule's named inputs as plain paths, plus ``extra``: the inputs of the
    ``use rule <stage> as <stage>_retrieved with: input:`` overrides in retrieve.smk. Plain
    strings drop the "made by rule X" link that ``rules.X.output`` carries, so the ruleorder
    there picks the ``*_retrieved`` producers."""
    plain = {k: [str(f) for f in v] if isinstance(v, list) else str(v)
             for k, v in rule_proxy.input.items()}
    return {**plain, **extra}


def _bbox(grid: Grid) -> tuple[float, float, float, float]:
    return grid.bounds


def _target(grid: Grid):
    return ("EPSG:4326", grid.transform, grid.width, grid.height)


# ------------------------------------------------------------------------------ plain steps


def copernicus_margin_px(config: dict) -> int:
    """Native DEM pixels added around the region (+ halo): at least ``dem.copernicus.margin_px``
    and enough for the resampling kernel (GDAL's cubic spline reaches 2 target pixels, which
    is 2 * target / native source pixels) plus 2."""
    cop = config["dem"]["copernicus"]
    ratio = config["region"]["resolution_arcsec"] / COPERNICUS_ARCSEC[cop["product"]]
    return max(int(cop["margin_px"]), int(math.ceil(2 * max(ratio, 1.0))) + 2)


def retrieve_dem_file(config: dict, out_path) -> Path:
    """Download the Copernicus DEM tiles over the region (+ halo + margin) and mosaic them."""
    from .sources import copernicus

    grid = Grid.from_config(config).expanded(HALO_PX)
    product = config["dem"]["copernicus"]["product"]
    return copernicus.retrieve_dem(_bbox(grid), product, out_path, download_settings(config),
                                   margin_px=copernicus_margin_px(config))


def retrieve_climate_files(config: dict, out_tavg, out_elev, dem_path_: str | None = None):
    """The 12-band monthly temperature (C) and its elevation grid (m) over the region + margin."""
    clim = config["climate"]
    source = clim["source"]
    grid = Grid.from_config(config)
    settings = download_settings(config)
    if source == "worldclim":
        from .sources import worldclim

        wc = clim["worldclim"]
        return worldclim.retrieve_worldclim(_bbox(grid), out_tavg, out_elev, settings,
                                            res=wc["res"], source=wc["source"],
                                            margin_px=wc["margin_px"])
    if source == "chelsa":
        from .sources import chelsa

        ch = clim["chelsa"]
        chelsa.retrieve_chelsa(_bbox(grid), out_tavg, settings, base_url=ch["base_url"],
                               scale=ch["scale"], offset=ch["offset"], margin_px=ch["margin_px"])
        if dem_path_ is None:
            raise InputDataError("CHELSA elevation: the region DEM path is needed")
        cell_mean_elevation(dem_path_, out_tavg, out_elev)
        return Path(out_tavg), Path(out_elev)
    raise ConfigError(f"config error: climate.source {source!r} is not downloaded")


def cell_mean_elevation(dem_path_, like_path, out_path) -> Path:
    """Mean elevation (m) of the region DEM over each cell of the grid of ``like_path`` (GDAL
    ``average`` resampling, nodata ignored): the elevation a 30 arc-second climatology cell
    stands for. Cells the DEM does not reach are nodata."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from .products import FLOAT_NODATA
    from .sources import write_geotiff

    with rasterio.open(like_path) as like:
        transform, crs, shape = like.transform, like.crs, (like.height, like.width)
    out = np.full(shape, np.nan, np.float32)
    with rasterio.open(dem_path_) as src:
        reproject(rasterio.band(src, 1), out, src_nodata=src.nodata, dst_transform=transform,
                  dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.average)
    if not np.isfinite(out).any():
        raise InputDataError(f"{dem_path_}: no valid elevation under the climate grid")
    return write_geotiff(out_path, out, transform, crs, nodata=FLOAT_NODATA,
                         descriptions=["elevation"], units="m",
                         tags={"source": f"mean of {Path(dem_path_).name} over each cell",
                               "units": "m"})


def retrieve_cmip6_file(config: dict, scenario: str, horizon: int, out_path) -> Path:
    """The 12-band monthly warming delta (C) of ``scenario`` at ``horizon`` over the region."""
    from .sources import cmip6

    spec = config["scenarios"][scenario].get("cmip6")
    if not spec:
        raise ConfigError(f"config error: scenario {scenario!r} has no cmip6 section")
    grid = Grid.from_config(config)
    return cmip6.retrieve_cmip6_delta(
        _bbox(grid), list(spec["gcms"]), spec["ssp"], cmip6_period(horizon), out_path,
        download_settings(config), res=spec["res"], margin_px=spec["margin_px"],
    )


def retrieve_reference_file(config: dict, name: str, out_path) -> Path:
    """Reference map ``name`` (see :func:`reference_specs`) on the working grid."""
    from .sources import reference

    specs = reference_specs(config)
    if name not in specs:
        raise ConfigError(f"config error: no reference map {name!r}; configured: {sorted(specs)}")
    spec = specs[name]
    target = _target(Grid.from_config(config))
    settings = download_settings(config)
    if spec["dataset"] == "obu2019":
        return reference.retrieve_obu(spec["product"], target, out_path, settings)
    if spec["dataset"] == "esa_cci":
        return reference.retrieve_cci(spec["variable"], spec["year"], target, out_path, settings,
                                      layer=spec["layer"], version=spec["version"])
    return reference.retrieve_local(spec["source_path"], target, out_path, kind=spec["kind"],
                                    allowed_classes=spec["allowed_classes"],
                                    what=f"reference.local {name}")


# ------------------------------------------------------------------------------ Snakemake adapters


def dem(smk) -> None:
    """``retrieve_dem``: Copernicus tiles -> ``resources/<run>/inputs/dem_copernicus_*.tif``."""
    retrieve_dem_file(smk.config, smk.output[0])


def climate(smk) -> None:
    """``retrieve_climate``: WorldClim / CHELSA monthly temperature and its elevation grid."""
    dem_in = getattr(smk.input, "dem", None)
    retrieve_climate_files(smk.config, smk.output.tavg, smk.output.elev,
                           str(dem_in) if dem_in else None)


def retrieve_land_cover_file(config: dict, out_path) -> Path:
    """ESA WorldCover 10 m v200 over the region (+ 2 native pixels), on its own grid (the
    ground stages sample it per pixel, :mod:`permamap.surface`)."""
    from .sources import worldcover

    grid = Grid.from_config(config).expanded(HALO_PX)
    return worldcover.retrieve_land_cover(
        _bbox(grid), out_path, download_settings(config), margin_px=2
    )


def land_cover(smk) -> None:
    """``retrieve_land_cover``: the WorldCover mosaic of the region."""
    retrieve_land_cover_file(smk.config, smk.output[0])


def cmip6(smk) -> None:
    """``retrieve_cmip6``: one scenario x horizon monthly warming delta."""
    retrieve_cmip6_file(smk.config, smk.wildcards.scenario, int(smk.wildcards.horizon),
                        smk.output[0])


def reference(smk) -> None:
    """``retrieve_reference``: one reference map on the working grid."""
    retrieve_reference_file(smk.config, smk.wildcards.name, smk.output[0])
