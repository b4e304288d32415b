# Horn slope and aspect per tile (numba kernel, true metric cell sizes).


rule terrain:
    input:
        dem=rules.tile_dem.output[0],
    output:
        f"{RES}/tiles/{{tile}}/terrain.tif",
    log:
        f"logs/{RUN}/terrain/{{tile}}.log",
    benchmark:
        f"benchmarks/{RUN}/terrain/{{tile}}.tsv"
    params:
        step="terrain",
    threads: THREADS
    resources:
        mem_mb=tile_mem_mb("terrain"),
        runtime=20,
    conda:
        ENV
    script:
        STEP
