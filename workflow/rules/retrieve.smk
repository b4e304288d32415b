# Retrieve stage: downloads of real data (permamap.retrieve, through permamap.sources and the
# one download helper) and the inputs cropped or derived from them. Rules exist only when the
# config asks for a downloaded source, so the offline sample's DAG is unchanged. All are
# localrules: compute nodes often have no internet.
#
#   retrieve_dem        dem.source: copernicus       -> {RES}/inputs/dem_copernicus_<product>.tif
#   retrieve_climate    climate.source: worldclim/chelsa -> {RES}/inputs/climate_<source>_{tavg,elev}.tif
#   retrieve_cmip6      scenarios.<s>.cmip6          -> {RES}/inputs/cmip6_delta/<s>/<horizon>.tif
#   retrieve_reference  reference:                   -> {RES}/reference/<name>.tif (working grid)
#   retrieve_land_cover ground.surface.land_cover: worldcover -> {RES}/inputs/land_cover_worldcover.tif
#
# Raw files go to download.cache_dir (default data/, one folder per data set, with
# data/manifest.json). The stages that read the retrieved files get them as inputs through
# `use rule <stage> as <stage>_retrieved` (the stage's own inputs plus the retrieved files;
# ruleorder prefers it), which is why this file is included after the stage rule files.
from permamap import retrieve as pm_retrieve

try:
    RETRIEVE = pm_retrieve.plan(config)
except ConfigError as exc:
    sys.exit(f"permamap: {exc}")


# The SLURM profile groups the per-tile stages by rule name (tile_dem=tile, ...); the
# *_retrieved variants join the same group.
TILE_GROUP = "tile"
_GRID = Grid.from_config(config)
GRID_PIXELS = _GRID.width * _GRID.height
RETRIEVED_CLIMATE = list(RETRIEVE["climate"].values()) if RETRIEVE["climate"] else []
_RETRIEVE_LOGS = f"logs/{RUN}/retrieve"


if RETRIEVE["dem"]:

    localrules:
        retrieve_dem,

    rule retrieve_dem:
        output:
            RETRIEVE["dem"],
        log:
            f"{_RETRIEVE_LOGS}/dem.log",
        params:
            step="retrieve:dem",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            ENV
        script:
            STEP

    use rule build_dem as build_dem_retrieved with:
        input:
            **pm_retrieve.plain_inputs(rules.build_dem, retrieved=RETRIEVE["dem"]),

    ruleorder: build_dem_retrieved > build_dem

    # tile_dem names rules.build_dem.output, which would pin it to the sample's build_dem
    use rule tile_dem as tile_dem_retrieved with:
        input:
            **pm_retrieve.plain_inputs(rules.tile_dem),
        group:
            TILE_GROUP

    ruleorder: tile_dem_retrieved > tile_dem


if RETRIEVE["climate"]:

    localrules:
        retrieve_climate,

    rule retrieve_climate:
        input:
            # CHELSA's elevation grid is the region DEM averaged over each CHELSA cell
            **({"dem": f"{RES}/dem.tif"} if config["climate"]["source"] == "chelsa" else {}),
        output:
            tavg=RETRIEVE["climate"]["tavg"],
            elev=RETRIEVE["climate"]["elev"],
        log:
            f"{_RETRIEVE_LOGS}/climate.log",
        params:
            step="retrieve:climate",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            ENV
        script:
            STEP

    # 12 monthly float64 fields + their elevation per pixel more (blocks.JOB_BYTES_PER_PX).
    use rule climate as climate_retrieved with:
        input:
            **pm_retrieve.plain_inputs(rules.climate, forcing=RETRIEVED_CLIMATE),
        group:
            TILE_GROUP
        resources:
            mem_mb=tile_mem_mb("climate", gridded=True),
            runtime=20,

    ruleorder: climate_retrieved > climate

    use rule ground as ground_retrieved with:
        input:
            **pm_retrieve.plain_inputs(rules.ground, forcing=RETRIEVED_CLIMATE),
        group:
            TILE_GROUP
        resources:
            mem_mb=tile_mem_mb("ground", gridded=True),
            runtime=20,

    ruleorder: ground_retrieved > ground


if RETRIEVE["cmip6"]:

    localrules:
        retrieve_cmip6,

    rule retrieve_cmip6:
        output:
            f"{RES}/inputs/cmip6_delta/{{scenario}}/{{horizon}}.tif",
        log:
            f"{_RETRIEVE_LOGS}/cmip6_{{scenario}}_{{horizon}}.log",
        wildcard_constraints:
            scenario="|".join(pm_retrieve.cmip6_scenarios(config)),
        params:
            step="retrieve:cmip6",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            ENV
        script:
            STEP


if RETRIEVE["cmip6"] or RETRIEVE["climate"]:
    _SCENARIO_EXTRA = {}
    if RETRIEVE["climate"]:
        _SCENARIO_EXTRA["forcing"] = RETRIEVED_CLIMATE
    if RETRIEVE["cmip6"]:
        # one scenario's (horizons, 12, rows, cols) float64 delta fields at a time
        _SCENARIO_EXTRA["deltas"] = list(RETRIEVE["cmip6"].values())

    use rule scenarios as scenarios_retrieved with:
        input:
            **pm_retrieve.plain_inputs(rules.scenarios, **_SCENARIO_EXTRA),
        group:
            TILE_GROUP
        resources:
            mem_mb=tile_mem_mb(
                "scenarios", gridded=bool(RETRIEVE["climate"]), cmip6=bool(RETRIEVE["cmip6"])
            ),
            runtime=30,

    ruleorder: scenarios_retrieved > scenarios


if RETRIEVE["reference"]:

    localrules:
        retrieve_reference,

    rule retrieve_reference:
        output:
            f"{RES}/reference/{{name}}.tif",
        log:
            f"{_RETRIEVE_LOGS}/reference_{{name}}.log",
        wildcard_constraints:
            name="|".join(RETRIEVE["reference"]),
        params:
            step="retrieve:reference",
        threads: 1
        resources:
            # the map on the working grid (float32) and its resampling buffers
            mem_mb=lambda wc, attempt: int(1000 + GRID_PIXELS * 12 / 1e6 * attempt),
            runtime=60,
        conda:
            ENV
        script:
            STEP

    EXTRA_OUTPUTS.extend(spec["path"] for spec in RETRIEVE["reference"].values())


if RETRIEVE["land_cover"]:

    localrules:
        retrieve_land_cover,

    # ESA WorldCover 10 m tiles over the region, mosaicked on their own grid; the ground and
    # scenarios jobs take it as their land_cover input (workflow/rules/ground.smk).
    rule retrieve_land_cover:
        output:
            RETRIEVE["land_cover"],
        log:
            f"{_RETRIEVE_LOGS}/land_cover.log",
        params:
            step="retrieve:land_cover",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
        conda:
            ENV
        script:
            STEP
