# DEM for the region (working grid + halo), then one haloed DEM per tile.


rule build_dem:
    output:
        f"{RES}/dem.tif",
    log:
        f"logs/{RUN}/build_dem.log",
    benchmark:
        f"benchmarks/{RUN}/build_dem.tsv"
    params:
        step="build_dem",
    threads: THREADS
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=30,
    conda:
        ENV
    script:
        STEP


rule tile_dem:
    input:
        dem=rules.build_dem.output[0],
    output:
        f"{RES}/tiles/{{tile}}/dem.tif",
    log:
        f"logs/{RUN}/tile_dem/{{tile}}.log",
    params:
        step="tile_dem",
    threads: 1
    resources:
        mem_mb=tile_mem_mb("tile_dem"),
        runtime=10,
    conda:
        ENV
    script:
        STEP
