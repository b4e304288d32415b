# Monthly air temperature at the DEM (station normals + lapse rate): MAAT, FDD, TDD per tile.


rule climate:
    input:
        terrain=rules.terrain.output[0],
    output:
        f"{RES}/tiles/{{tile}}/climate.tif",
    log:
        f"logs/{RUN}/climate/{{tile}}.log",
    benchmark:
        f"benchmarks/{RUN}/climate/{{tile}}.tsv"
    params:
        step="climate",
    threads: THREADS
    resources:
        mem_mb=tile_mem_mb("climate"),
        runtime=20,
    conda:
        ENV
    script:
        STEP
