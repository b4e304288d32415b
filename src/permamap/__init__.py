"""permamap: permafrost maps around Xining (NE Qinghai-Tibet Plateau) and their degradation
under warming scenarios.

All logic lives in this package and is importable and tested without Snakemake; the
Snakemake workflow (``Snakefile``, ``workflow/rules``) only calls it.
"""

import hashlib
import os
from pathlib import Path

__version__ = "0.1.0"


def _set_numba_cache_dir() -> None:
    """Key numba's on-disk cache on the package sources.

    Numba invalidates a cached kernel only when the kernel's own file changes, not when a
    function it inlines from another module does (e.g. ``ground.scenario_kernel`` inlining
    ``climate.degree_days``). A cache directory named after a hash of every module of the
    package makes any source change start a fresh cache, so stale machine code never runs.
    """
    h = hashlib.sha256(__version__.encode())
    for p in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "permamap"
    )
    import numba

    numba.config.CACHE_DIR = os.path.join(base, f"numba-{h.hexdigest()[:16]}")


_set_numba_cache_dir()
