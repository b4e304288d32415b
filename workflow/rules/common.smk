# Config validation (JSON schema + semantic checks, one readable line on error), the static
# tile list and path helpers shared by every rule file.
import sys

from permamap import blocks as pm_blocks
from permamap import config as pm_config
from permamap.errors import ConfigError
from permamap.grid import TILE_ID_REGEX, Grid

try:
    _prepared = pm_config.prepare(
        config, source=", ".join(str(f) for f in workflow.configfiles) or None
    )
except ConfigError as exc:
    sys.exit(f"permamap: {exc}")
config.clear()
config.update(_prepared)

RUN = config["run"]
RES = f"resources/{RUN}"
OUT = f"results/{RUN}"
TILE_PX = config["tiles"]["size_px"]
TILES = [t.id for t in Grid.from_config(config).tiles(TILE_PX)]
SCENARIOS = list(config["scenarios"])
HORIZONS = [str(h) for h in config["horizons"]]
BLOCK_OPTIONS = pm_blocks.options_from_config(config)
THREADS = config["compute"]["threads"]
ENV = "../../envs/permamap.yaml"
STEP = "../scripts/run_step.py"
# Stage files append their deliverables here; rule all requests them.
EXTRA_OUTPUTS = []


wildcard_constraints:
    tile=TILE_ID_REGEX,
    scenario="|".join(SCENARIOS),
    horizon=r"\d{4}",


def tile_mem_mb(stage, **terms):
    """``mem_mb`` of a per-tile job (permamap.blocks.job_mem_mb): for the chunked stages set by
    blocks.chunk_px and compute.threads, not by the tile size; growing with the retry attempt.
    ``terms``: gridded / cmip6 (permamap.blocks.job_bytes_per_px)."""
    bytes_per_px = pm_blocks.job_bytes_per_px(
        stage, len(SCENARIOS), len(HORIZONS), **terms
    )
    opts = BLOCK_OPTIONS if stage in pm_blocks.CHUNKED_JOBS else None

    def mem(wildcards, attempt):
        return pm_blocks.job_mem_mb(bytes_per_px, attempt, tile_px=TILE_PX, opts=opts)

    return mem


def tile_files(name):
    return expand(f"{RES}/tiles/{{tile}}/{name}", tile=TILES)


def scenario_pairs():
    return [(s, h) for s in SCENARIOS for h in HORIZONS]


def all_outputs():
    out = expand(f"{OUT}/terrain/{{p}}.tif", p=["elevation", "slope", "aspect", "solar"])
    out += expand(f"{OUT}/climate/{{p}}.tif", p=["maat", "fdd", "tdd"])
    out += expand(
        f"{OUT}/baseline/{{p}}.tif",
        p=["magt", "class", "stability", "alt", "freeze_depth", "probability", "zone"],
    )
    out += [
        f"{OUT}/scenarios/{s}/{h}/{p}.tif" for s, h in scenario_pairs() for p in ("magt", "class")
    ]
    out.append(f"{OUT}/tables/areas.csv")
    out.append(f"{OUT}/tables/lower_limit_by_aspect.csv")
    if config["output"]["figures"]:
        out += expand(
            f"{OUT}/figures/{{f}}.png",
            f=["baseline_magt", "baseline_class", "baseline_stability", "scenarios_class"],
        )
    return out + EXTRA_OUTPUTS
