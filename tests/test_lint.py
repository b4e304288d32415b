"""The code stays lint-clean (ruff; the same check as `make lint`)."""

import subprocess
import sys
from pathlib import Path

RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_is_clean(repo):
    proc = subprocess.run(
        [RUFF, "check", "src", "tests", "bench", "workflow/scripts"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
