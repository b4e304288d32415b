# Deliverables for GIS users: QGIS styles (.qml beside every raster) and project (.qgz), class
# polygons (GeoPackage), maps and charts (PNG, marked for `snakemake --report`) and a STAC
# catalog. The rasters are found lazily from all_outputs() (input functions are evaluated after
# every rule file is read), so a product another stage adds is styled, traced and catalogued
# without touching this file; class products are those with categories in permamap.products.
from pathlib import Path as _Path

from permamap.products import PRODUCTS as _PRODUCTS

DELIV = config["deliverables"]
VECTOR_SETS = ["baseline"] + SCENARIOS


report: "../report/workflow.rst"


# Input functions as lambdas (snakemake --lint wants named functions in common.smk, which
# belongs to the foundation); all evaluated lazily, when the DAG is built.
_is_class_raster = lambda path: getattr(_PRODUCTS.get(_Path(path).stem), "is_class", False)
# every raster the run delivers (sees every stage's outputs)
deliverable_rasters = lambda wildcards=None: sorted(
    {f for f in all_outputs() if f.endswith(".tif") and f.startswith(f"{OUT}/")}
)
# every deliverable with a suffix, e.g. ".png"
deliverable_files = lambda suffix: lambda wildcards=None: sorted(
    {f for f in all_outputs() if f.endswith(suffix) and f.startswith(f"{OUT}/")}
)
# class rasters of the baseline or of one scenario (all horizons)
class_rasters = lambda wildcards: [
    f
    for f in deliverable_rasters()
    if _is_class_raster(f)
    and f.startswith(
        f"{OUT}/baseline/"
        if wildcards.vector_set == "baseline"
        else f"{OUT}/scenarios/{wildcards.vector_set}/"
    )
]


VECTOR_FILES = (
    expand(f"{OUT}/vectors/{{vs}}.gpkg", vs=VECTOR_SETS) if DELIV["vectors"]["enabled"] else []
)
QGZ = [f"{OUT}/permamap.qgz"] if DELIV["qgis"] else []


if DELIV["vectors"]["enabled"]:

    rule vectors:
        input:
            rasters=class_rasters,
        output:
            f"{OUT}/vectors/{{vector_set}}.gpkg",
        wildcard_constraints:
            vector_set="|".join(VECTOR_SETS),
        log:
            f"logs/{RUN}/vectors/{{vector_set}}.log",
        benchmark:
            f"benchmarks/{RUN}/vectors/{{vector_set}}.tsv"
        params:
            step="vectors:run_vectors",
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: int(
                (600 + DELIV["vectors"]["max_px"] ** 2 * 40 / 1e6) * attempt
            ),
            runtime=60,
        conda:
            ENV
        script:
            STEP

    EXTRA_OUTPUTS.extend(VECTOR_FILES)


if DELIV["qgis"]:

    rule qgis_project:
        input:
            rasters=deliverable_rasters,
            vectors=VECTOR_FILES,
        output:
            project=f"{OUT}/permamap.qgz",
        log:
            f"logs/{RUN}/qgis_project.log",
        params:
            step="styles:run_styles",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        conda:
            ENV
        script:
            STEP

    EXTRA_OUTPUTS.extend(QGZ)


if config["output"]["figures"]:
    # Baseline class products other than the two mapped by the `figures` rule (e.g. zones).
    _BASELINE_MAPS = [
        p
        for p, prod in _PRODUCTS.items()
        if prod.is_class
        and p not in ("class", "stability")
        and f"{OUT}/baseline/{p}.tif" in all_outputs()
    ]
    MAP_PLAN = {
        "areas_chart": f"{OUT}/figures/areas_vs_warming.png",
        "baseline": {p: f"{OUT}/figures/baseline_{p}.png" for p in _BASELINE_MAPS},
        "scenarios": [
            [s, h, f"{OUT}/figures/scenarios/{s}_{h}.png"] for s, h in scenario_pairs()
        ],
    }

    rule maps:
        input:
            rasters=lambda wc: [f for f in deliverable_rasters() if _is_class_raster(f)],
            elevation=f"{OUT}/terrain/elevation.tif",
            areas=f"{OUT}/tables/areas.csv",
        output:
            report(
                MAP_PLAN["areas_chart"],
                caption="../report/areas_chart.rst",
                category="3. Scenarios",
                subcategory="Permafrost area",
                labels={"figure": "area against warming"},
            ),
            [
                report(
                    path,
                    caption="../report/map_baseline.rst",
                    category="1. Baseline",
                    subcategory="Maps",
                    labels={"map": p},
                )
                for p, path in MAP_PLAN["baseline"].items()
            ],
            [
                report(
                    path,
                    caption="../report/map_scenario.rst",
                    category="3. Scenarios",
                    subcategory="Maps per scenario and horizon",
                    labels={"scenario": s, "horizon": h},
                )
                for s, h, path in MAP_PLAN["scenarios"]
            ],
        log:
            f"logs/{RUN}/maps.log",
        params:
            step="plots:run_maps",
            plan=MAP_PLAN,
        threads: 1
        resources:
            mem_mb=1500,
            runtime=30,
        conda:
            ENV
        script:
            STEP

    EXTRA_OUTPUTS.append(MAP_PLAN["areas_chart"])
    EXTRA_OUTPUTS.extend(MAP_PLAN["baseline"].values())
    EXTRA_OUTPUTS.extend(path for _, _, path in MAP_PLAN["scenarios"])


if DELIV["stac"]["enabled"]:

    rule stac:
        input:
            rasters=deliverable_rasters,
            vectors=VECTOR_FILES,
            figures=deliverable_files(".png"),
            tables=deliverable_files(".csv"),
            project=QGZ,
        output:
            f"{OUT}/stac/catalog.json",
        log:
            f"logs/{RUN}/stac.log",
        params:
            step="stac:run_stac",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=30,
        conda:
            ENV
        script:
            STEP

    EXTRA_OUTPUTS.append(f"{OUT}/stac/catalog.json")
