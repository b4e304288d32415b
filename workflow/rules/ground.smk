# Baseline MAGT (ttop or lapse model), ground class and thermal stability per tile.


rule ground:
    input:
        terrain=rules.terrain.output[0],
        climate=rules.climate.output[0],
    output:
        magt=f"{RES}/tiles/{{tile}}/ground_magt.tif",
        cls=f"{RES}/tiles/{{tile}}/ground_class.tif",
    log:
        f"logs/{RUN}/ground/{{tile}}.log",
    benchmark:
        f"benchmarks/{RUN}/ground/{{tile}}.tsv"
    params:
        step="ground",
    threads: THREADS
    resources:
        mem_mb=tile_mem_mb(80),
        runtime=20,
    conda:
        ENV
    script:
        STEP
