# One Cloud-Optimized GeoTIFF per product for the whole region (VRT of the tiles -> COG).


rule mosaic_terrain:
    input:
        tiles=tile_files("terrain.tif"),
    output:
        f"{OUT}/terrain/elevation.tif",
        f"{OUT}/terrain/slope.tif",
        f"{OUT}/terrain/aspect.tif",
        f"{OUT}/terrain/solar.tif",
    log:
        f"logs/{RUN}/mosaic_terrain.log",
    params:
        step="mosaic",
        bands=["elevation", "slope", "aspect", "solar"],
        products=["elevation", "slope", "aspect", "solar"],
        tags={},
    threads: THREADS
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        ENV
    script:
        STEP


rule mosaic_climate:
    input:
        tiles=tile_files("climate.tif"),
    output:
        f"{OUT}/climate/maat.tif",
        f"{OUT}/climate/fdd.tif",
        f"{OUT}/climate/tdd.tif",
    log:
        f"logs/{RUN}/mosaic_climate.log",
    params:
        step="mosaic",
        bands=["maat", "fdd", "tdd"],
        products=["maat", "fdd", "tdd"],
        tags={"scenario": "baseline"},
    threads: THREADS
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        ENV
    script:
        STEP


# MAGT is int16 in 0.01 degC (permamap.products), ALT and freezing depth float32: two per-tile
# files, since the bands of a GeoTIFF share one data type.
rule mosaic_baseline_magt:
    input:
        tiles=tile_files("ground_magt.tif"),
    output:
        f"{OUT}/baseline/magt.tif",
    log:
        f"logs/{RUN}/mosaic_baseline_magt.log",
    params:
        step="mosaic",
        bands=["magt"],
        products=["magt"],
        tags={"scenario": "baseline"},
    threads: THREADS
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        ENV
    script:
        STEP


rule mosaic_baseline_alt:
    input:
        tiles=tile_files("ground_alt.tif"),
    output:
        f"{OUT}/baseline/alt.tif",
        f"{OUT}/baseline/freeze_depth.tif",
    log:
        f"logs/{RUN}/mosaic_baseline_alt.log",
    params:
        step="mosaic",
        bands=["alt", "freeze_depth"],
        products=["alt", "freeze_depth"],
        tags={"scenario": "baseline"},
    threads: THREADS
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        ENV
    script:
        STEP


rule mosaic_baseline_class:
    input:
        tiles=tile_files("ground_class.tif"),
    output:
        f"{OUT}/baseline/class.tif",
        f"{OUT}/baseline/stability.tif",
        f"{OUT}/baseline/probability.tif",
        f"{OUT}/baseline/zone.tif",
    log:
        f"logs/{RUN}/mosaic_baseline_class.log",
    params:
        step="mosaic",
        bands=["class", "stability", "probability", "zone"],
        products=["class", "stability", "probability", "zone"],
        tags={"scenario": "baseline"},
    threads: THREADS
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        ENV
    script:
        STEP


rule mosaic_scenario:
    input:
        magt=tile_files("scenarios_magt.tif"),
        cls=tile_files("scenarios_class.tif"),
        deg=tile_files("scenarios_degradation.tif"),
    output:
        magt=f"{OUT}/scenarios/{{scenario}}/{{horizon}}/magt.tif",
        cls=f"{OUT}/scenarios/{{scenario}}/{{horizon}}/class.tif",
        deg=f"{OUT}/scenarios/{{scenario}}/{{horizon}}/degradation.tif",
    log:
        f"logs/{RUN}/mosaic_scenario/{{scenario}}_{{horizon}}.log",
    params:
        step="scenario_response:smk_mosaic_scenario",
        warming_c=lambda wc: pm_config.scenario_warming_c(config, wc.scenario)[int(wc.horizon)],
    threads: THREADS
    resources:
        mem_mb=1500,
        runtime=60,
    conda:
        ENV
    script:
        STEP
