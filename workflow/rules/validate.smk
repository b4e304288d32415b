# Validation of the baseline map against reference permafrost maps and boreholes, and
# calibration with spatial block cross-validation (permamap.validation, permamap.calibration).
# Rules exist only when validation.enabled; outputs in results/<run>/validation/:
#
#   validate_reference [ref]  reference_<ref>/{disagreement.tif, confusion.csv,
#                             confusion_reference_grid.csv, areas.csv, reference_pixels.csv,
#                             scores.json}
#   validate_points           points/{points.csv, scatter.png, scores.json}
#   calibrate                 calibration/{folds.csv, predictions.csv, calibrated.yaml, scores.json}
#   validation_summary        scores.json (everything), summary.csv (headline numbers)
#
# References: validation.references plus the retrieved maps of the reference: section
# (retrieve.smk). Synthetic sample files are left out of runs on real data (a note is printed).
from permamap import validation as pm_validation
from permamap.errors import PermamapError

try:
    VAL_NOTES = pm_validation.check_config(config)
    VAL_REFS = pm_validation.reference_entries(config)[0]
    VAL_POINTS = pm_validation.points_path(config)[0]
except PermamapError as exc:
    sys.exit(f"permamap: {exc}")
for _note in VAL_NOTES:
    print(f"permamap: validation: {_note}", file=sys.stderr)

VAL_ENABLED = bool(config["validation"]["enabled"])
VAL_CALIBRATE = VAL_ENABLED and bool(config["validation"]["calibration"]["enabled"])
VAL = f"{OUT}/validation"
VAL_REF_NAMES = [r["name"] for r in VAL_REFS]
VAL_TERRAIN = {k: f"{OUT}/terrain/{k}.tif" for k in ("elevation", "slope", "aspect", "solar")}


if VAL_REFS:

    rule validate_reference:
        input:
            cls=f"{OUT}/baseline/class.tif",
            ref=lambda wc: pm_validation.reference_files(VAL_REFS, wc.ref),
        output:
            disagreement=f"{VAL}/reference_{{ref}}/disagreement.tif",
            confusion=f"{VAL}/reference_{{ref}}/confusion.csv",
            confusion_reference_grid=f"{VAL}/reference_{{ref}}/confusion_reference_grid.csv",
            areas=f"{VAL}/reference_{{ref}}/areas.csv",
            reference_pixels=f"{VAL}/reference_{{ref}}/reference_pixels.csv",
            scores=f"{VAL}/reference_{{ref}}/scores.json",
        log:
            f"logs/{RUN}/validation/reference_{{ref}}.log",
        benchmark:
            f"benchmarks/{RUN}/validation/reference_{{ref}}.tsv"
        wildcard_constraints:
            ref="|".join(VAL_REF_NAMES),
        params:
            step="validation:reference_step",
        threads: THREADS
        resources:
            mem_mb=lambda wc, attempt: 1500 * attempt,
            runtime=60,
        conda:
            ENV
        script:
            STEP


if VAL_POINTS:

    rule validate_points:
        input:
            points=VAL_POINTS,
            magt=f"{OUT}/baseline/magt.tif",
            cls=f"{OUT}/baseline/class.tif",
            alt=f"{OUT}/baseline/alt.tif",
            **VAL_TERRAIN,
        output:
            table=f"{VAL}/points/points.csv",
            scatter=f"{VAL}/points/scatter.png",
            scores=f"{VAL}/points/scores.json",
        log:
            f"logs/{RUN}/validation/points.log",
        params:
            step="validation:points_step",
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 1000 * attempt,
            runtime=30,
        conda:
            ENV
        script:
            STEP


if VAL_CALIBRATE:

    rule calibrate:
        input:
            points=[VAL_POINTS] if VAL_POINTS else [],
            # presence samples come from the reference maps too
            references=(
                pm_validation.reference_files(VAL_REFS)
                if config["validation"]["calibration"]["target"] == "presence"
                else []
            ),
            **VAL_TERRAIN,
        output:
            folds=f"{VAL}/calibration/folds.csv",
            predictions=f"{VAL}/calibration/predictions.csv",
            fragment=f"{VAL}/calibration/calibrated.yaml",
            scores=f"{VAL}/calibration/scores.json",
        log:
            f"logs/{RUN}/validation/calibrate.log",
        benchmark:
            f"benchmarks/{RUN}/validation/calibrate.tsv"
        params:
            step="calibration:calibrate_step",
        threads: 1
        resources:
            mem_mb=lambda wc, attempt: 2000 * attempt,
            runtime=60,
        conda:
            ENV
        script:
            STEP


if VAL_ENABLED:

    rule validation_summary:
        input:
            references=expand(f"{VAL}/reference_{{ref}}/scores.json", ref=VAL_REF_NAMES),
            points=[f"{VAL}/points/scores.json"] if VAL_POINTS else [],
            calibration=[f"{VAL}/calibration/scores.json"] if VAL_CALIBRATE else [],
        output:
            scores=f"{VAL}/scores.json",
            summary=f"{VAL}/summary.csv",
        log:
            f"logs/{RUN}/validation/summary.log",
        params:
            step="validation:summary_step",
            notes=VAL_NOTES,
        threads: 1
        resources:
            mem_mb=500,
            runtime=10,
        conda:
            ENV
        script:
            STEP

    EXTRA_OUTPUTS.extend(rules.validation_summary.output)
    for _ref in VAL_REF_NAMES:
        EXTRA_OUTPUTS.extend(
            f"{VAL}/reference_{_ref}/{f}"
            for f in (
                "disagreement.tif",
                "confusion.csv",
                "confusion_reference_grid.csv",
                "areas.csv",
                "reference_pixels.csv",
            )
        )
    if VAL_POINTS:
        EXTRA_OUTPUTS.extend(rules.validate_points.output)
    if VAL_CALIBRATE:
        EXTRA_OUTPUTS.extend(rules.calibrate.output)
