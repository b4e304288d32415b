"""Run one permamap step for a Snakemake rule (the step is named by params.step)."""

import sys
from pathlib import Path

try:
    import permamap  # noqa: F401
except ImportError:  # e.g. a --sdm conda environment without the package installed
    sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821

from permamap.smk import run

run(snakemake)  # noqa: F821
