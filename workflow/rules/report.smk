# Area table (true ellipsoidal pixel areas) and PNG quick-look maps.


rule areas:
    input:
        baseline=f"{OUT}/baseline/class.tif",
        scenarios=[f"{OUT}/scenarios/{s}/{h}/class.tif" for s, h in scenario_pairs()],
    output:
        report(
            f"{OUT}/tables/areas.csv",
            caption="../report/areas_table.rst",
            category="3. Scenarios",
            subcategory="Tables",
        ),
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
        report(
            f"{OUT}/tables/lower_limit_by_aspect.csv",
            caption="../report/lower_limit_table.rst",
            category="3. Scenarios",
            subcategory="Tables",
        ),
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
        magt=report(
            f"{OUT}/figures/baseline_magt.png",
            caption="../report/baseline_magt.rst",
            category="1. Baseline",
            subcategory="Maps",
            labels={"map": "magt"},
        ),
        cls=report(
            f"{OUT}/figures/baseline_class.png",
            caption="../report/baseline_class.rst",
            category="1. Baseline",
            subcategory="Maps",
            labels={"map": "class"},
        ),
        stability=report(
            f"{OUT}/figures/baseline_stability.png",
            caption="../report/baseline_stability.rst",
            category="1. Baseline",
            subcategory="Maps",
            labels={"map": "stability"},
        ),
        panel=report(
            f"{OUT}/figures/scenarios_class.png",
            caption="../report/scenarios_class.rst",
            category="3. Scenarios",
            subcategory="Comparison panel",
            labels={"figure": "ground class, all scenarios"},
        ),
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
