# permamap: permafrost maps around Xining and their degradation under warming.
# Thin entry point: config validation and helpers in workflow/rules/common.smk, one rule file
# per stage, all logic in src/permamap/. Run `make run` or `snakemake --cores 2`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/dem.smk"
include: "workflow/rules/terrain.smk"
include: "workflow/rules/climate.smk"
include: "workflow/rules/ground.smk"
include: "workflow/rules/scenarios.smk"
# after the stages: it adds the retrieved files to their inputs (see the file's header)
include: "workflow/rules/retrieve.smk"
# after retrieve.smk: its per-tile scenarios step leaves the tile group (see the file)
include: "workflow/rules/transient.smk"
include: "workflow/rules/mosaic.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/deliverables.smk"
include: "workflow/rules/validate.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
