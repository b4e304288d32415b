# Warming scenarios x horizons, fused into one job per tile (equilibrium response): the tile's
# terrain is read once and every scenario and horizon is computed from it in one kernel pass,
# which keeps the job count at tiles x stages instead of tiles x scenarios x horizons.


rule scenarios:
    input:
        terrain=rules.terrain.output[0],
    output:
        magt=f"{RES}/tiles/{{tile}}/scenarios_magt.tif",
        cls=f"{RES}/tiles/{{tile}}/scenarios_class.tif",
    log:
        f"logs/{RUN}/scenarios/{{tile}}.log",
    benchmark:
        f"benchmarks/{RUN}/scenarios/{{tile}}.tsv"
    params:
        step="scenarios",
    threads: THREADS
    resources:
        mem_mb=tile_mem_mb(40 + 13 * len(SCENARIOS) * len(HORIZONS)),
        runtime=30,
    conda:
        ENV
    script:
        STEP
