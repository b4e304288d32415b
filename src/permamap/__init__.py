"""permamap: permafrost maps around Xining (NE Qinghai-Tibet Plateau) and their degradation
under warming scenarios.

All logic lives in this package and is importable and tested without Snakemake; the
Snakemake workflow (``Snakefile``, ``workflow/rules``) only calls it.
"""

__version__ = "0.1.0"
