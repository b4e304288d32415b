# Warming scenarios x horizons, fused into one job per tile: the tile's inputs are read once,
# chunk by chunk (permamap.blocks.scenarios_tile), and every scenario and horizon is computed
# from them, which keeps the job count at
# tiles x stages instead of tiles x scenarios x horizons. The same job classifies permafrost
# degradation against the baseline (permamap.degradation).
#
# response.mode (permamap.scenario_response): equilibrium (default; per pixel, the fused
# kernel) or transient (the 1-D model on TopoSUB clusters: toposub_fit and transient_run in
# workflow/rules/transient.smk, two jobs for the whole region, then mapped back per tile here).
from permamap import scenario_response as pm_response

try:
    pm_response.check_config(config)
except ConfigError as exc:
    sys.exit(f"permamap: {exc}")

RESPONSE = config["response"]
TRANSIENT = RESPONSE["mode"] == "transient"
TOPOSUB_FIT = f"{RES}/toposub/fit.json"
TRANSIENT_TABLE = f"{OUT}/tables/transient_clusters.csv"


rule scenarios:
    input:
        terrain=rules.terrain.output[0],
        climate=rules.climate.output[0],
        ground_alt=rules.ground.output.alt,
        ground_class=rules.ground.output.cls,
        **LAND_COVER,
        **({"fit": TOPOSUB_FIT, "transient": TRANSIENT_TABLE} if TRANSIENT else {}),
    output:
        magt=f"{RES}/tiles/{{tile}}/scenarios_magt.tif",
        cls=f"{RES}/tiles/{{tile}}/scenarios_class.tif",
        deg=f"{RES}/tiles/{{tile}}/scenarios_degradation.tif",
    log:
        f"logs/{RUN}/scenarios/{{tile}}.log",
    benchmark:
        f"benchmarks/{RUN}/scenarios/{{tile}}.tsv"
    params:
        step="blocks:smk_scenarios",
    threads: THREADS
    resources:
        mem_mb=tile_mem_mb("scenarios"),
        runtime=30,
    conda:
        ENV
    script:
        STEP


# Tables from the mosaics: area lost per scenario x horizon and the rise of the lower limit.
rule degradation_table:
    input:
        degradation=[f"{OUT}/scenarios/{s}/{h}/degradation.tif" for s, h in scenario_pairs()],
    output:
        f"{OUT}/tables/degradation.csv",
    log:
        f"logs/{RUN}/degradation_table.log",
    params:
        step="scenario_response:smk_degradation_table",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        ENV
    script:
        STEP


rule lower_limit_rise:
    input:
        f"{OUT}/tables/lower_limit_by_aspect.csv",
    output:
        f"{OUT}/tables/lower_limit_rise.csv",
    log:
        f"logs/{RUN}/lower_limit_rise.log",
    params:
        step="scenario_response:smk_lower_limit_rise",
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        ENV
    script:
        STEP


EXTRA_OUTPUTS.extend(
    f"{OUT}/scenarios/{s}/{h}/degradation.tif" for s, h in scenario_pairs()
)
EXTRA_OUTPUTS += [f"{OUT}/tables/degradation.csv", f"{OUT}/tables/lower_limit_rise.csv"]
