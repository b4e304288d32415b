# Transient ground response (response.mode: transient; permamap.scenario_response): two jobs
# for the whole region, whatever the number of tiles, clusters or scenarios.
#
#   toposub_fit     reads every tile's terrain.tif and climate.tif on a lattice of the region
#                   grid (row by row), clusters the pixels (k-means)  -> {RES}/toposub/fit.json
#   transient_run   1-D heat conduction with phase change per cluster, baseline + every
#                   scenario to the last horizon                      -> tables/transient_clusters.csv
#
# The per-tile `scenarios` step (scenarios.smk; here as `scenarios_transient`) then maps the
# cluster results to the pixels. Nothing here exists in the equilibrium response.
if TRANSIENT:
    # Gridded climate is read again for scenarios whose overrides change the climate, and CMIP6
    # deltas for the scenarios that use them.
    _FIT_EXTRA = {}
    if config["climate"]["source"] in ("worldclim", "chelsa"):
        _FIT_EXTRA["forcing"] = RETRIEVED_CLIMATE
    if RETRIEVE["cmip6"]:
        _FIT_EXTRA["deltas"] = list(RETRIEVE["cmip6"].values())

    rule toposub_fit:
        input:
            terrain=tile_files("terrain.tif"),
            climate=tile_files("climate.tif"),
            **_FIT_EXTRA,
        output:
            TOPOSUB_FIT,
        log:
            f"logs/{RUN}/toposub_fit.log",
        benchmark:
            f"benchmarks/{RUN}/toposub_fit.tsv"
        params:
            step="scenario_response:smk_toposub_fit",
        threads: 1
        resources:
            # the lattice sample (~15 float64 per pixel + scenario climates and deltas) and
            # one tile row at a time
            mem_mb=lambda wc, attempt: int(
                (800 + RESPONSE["toposub"]["max_fit_samples"] * (200 + 100 * len(SCENARIOS)) / 1e6)
                * attempt
            ),
            runtime=30,
        conda:
            ENV
        script:
            STEP

    rule transient_run:
        input:
            fit=TOPOSUB_FIT,
        output:
            TRANSIENT_TABLE,
        log:
            f"logs/{RUN}/transient_run.log",
        benchmark:
            f"benchmarks/{RUN}/transient_run.tsv"
        params:
            step="scenario_response:smk_transient_run",
        threads: THREADS
        resources:
            # daily forcing per cluster and year (8 B x 365) for one scenario at a time
            mem_mb=lambda wc, attempt: int(
                (800 + RESPONSE["toposub"]["n_clusters"] * (max(int(h) for h in HORIZONS)
                 - config["climate"]["baseline_year"] + 1) * 365 * 8 * 3 / 1e6) * attempt
            ),
            runtime=120,
        conda:
            ENV
        script:
            STEP

    # Cluster profiles group a tile's stages into one job (workflow/profiles/slurm: climate=tile,
    # scenarios=tile, ...; retrieve.smk puts the *_retrieved variants in that group too). Here a
    # tile's scenarios wait for transient_run, which waits for every tile's climate, so they
    # cannot share that group: the step runs as scenarios_transient, a rule of its own outside
    # the tile group (this file is included after retrieve.smk for that reason).
    if RETRIEVE["cmip6"] or RETRIEVE["climate"]:

        use rule scenarios_retrieved as scenarios_transient with:
            group:
                "scenarios_transient"

        ruleorder: scenarios_transient > scenarios_retrieved > scenarios

    else:

        use rule scenarios as scenarios_transient

        ruleorder: scenarios_transient > scenarios

    EXTRA_OUTPUTS.append(TRANSIENT_TABLE)
