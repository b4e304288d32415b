# Baseline MAGT (ttop or lapse model), ground class and thermal stability per tile.
#
# ground.surface.land_cover (permamap.surface): an optional categorical raster mapping pixels to
# surface types (n-factors, r_k); when given it is an input of the ground and scenarios jobs, so
# a new land cover reruns them. null (the sample) adds nothing; `worldcover` makes it the output
# of the retrieve_land_cover rule (workflow/rules/retrieve.smk).
from permamap import surface as pm_surface

_LAND_COVER_PATH = pm_surface.land_cover_path(config)
LAND_COVER = {"land_cover": _LAND_COVER_PATH} if _LAND_COVER_PATH else {}


rule ground:
    input:
        terrain=rules.terrain.output[0],
        climate=rules.climate.output[0],
        **LAND_COVER,
    output:
        magt=f"{RES}/tiles/{{tile}}/ground_magt.tif",
        alt=f"{RES}/tiles/{{tile}}/ground_alt.tif",
        cls=f"{RES}/tiles/{{tile}}/ground_class.tif",
    log:
        f"logs/{RUN}/ground/{{tile}}.log",
    benchmark:
        f"benchmarks/{RUN}/ground/{{tile}}.tsv"
    params:
        step="ground",
    threads: THREADS
    resources:
        mem_mb=tile_mem_mb("ground"),
        runtime=20,
    conda:
        ENV
    script:
        STEP
