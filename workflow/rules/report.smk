# Area table (true ellipsoidal pixel areas) and PNG quick-look maps.


rule areas:
    input:
        baseline=f"{OUT}/baseline/class.tif",
        scenarios=[f"{OUT}/scenarios/{s}/{h}/class.tif" for s, h in scenario_pairs()],
    output:
        f"{OUT}/tables/areas.csv",
    log:
        f"logs/{RUN}/areas.log",
    params:
        step="areas",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        ENV
    script:
        STEP


rule lower_limit:
    input:
        elevation=f"{OUT}/terrain/elevation.tif",
        slope=f"{OUT}/terrain/slope.tif",
        aspect=f"{OUT}/terrain/aspect.tif",
        baseline=f"{OUT}/baseline/class.tif",
        scenarios=[f"{OUT}/scenarios/{s}/{h}/class.tif" for s, h in scenario_pairs()],
    output:
        f"{OUT}/tables/lower_limit_by_aspect.csv",
    log:
        f"logs/{RUN}/lower_limit.log",
    params:
        step="lower_limit",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        ENV
    script:
        STEP


rule figures:
    input:
        elevation=f"{OUT}/terrain/elevation.tif",
        magt=f"{OUT}/baseline/magt.tif",
        cls=f"{OUT}/baseline/class.tif",
        stability=f"{OUT}/baseline/stability.tif",
        scenarios=[f"{OUT}/scenarios/{s}/{h}/class.tif" for s, h in scenario_pairs()],
    output:
        magt=f"{OUT}/figures/baseline_magt.png",
        cls=f"{OUT}/figures/baseline_class.png",
        stability=f"{OUT}/figures/baseline_stability.png",
        panel=f"{OUT}/figures/scenarios_class.png",
    log:
        f"logs/{RUN}/figures.log",
    params:
        step="figures",
    threads: 1
    resources:
        mem_mb=1500,
        runtime=30,
    conda:
        ENV
    script:
        STEP
