"""bench/benchmark.py runs end to end on a small DEM (a smoke test: no speed is asserted here,
speed is measured by running the benchmark itself, README "Performance"), and its numba model
agrees with the independent plain-NumPy and xarray versions of the same formulas."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_benchmark_runs_every_stage_and_its_model_versions_agree(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "benchmark.py"),
            "--n",
            "256",
            "--no-scaling",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in (
        "memory copy",
        "ours slope+aspect, compute only",
        "ours terrain stack",
        "model: numba fused, dask 2 threads",
        "model: plain NumPy",
        "model: xarray+dask apply_ufunc",
        "END TO END (full products, zstd)",
        "END TO END, maps products only",
        "END TO END, lean products only",
        "write the same outputs alone",
        "workflow tile job: scenarios",
        "workflow tile job: scenarios (WorldClim, CMIP6)",
    ):
        assert re.search(rf"^  {re.escape(stage)}.* MP/s .* MB", out, re.M), stage
    # the fused numba kernel, the NumPy formulas and xarray give the same MAGT and classes on
    # the 64 x 64 px sample for every warming (10 with the default config)
    check = re.search(r"cross-check.*", out).group(0)
    found = re.findall(
        r"(numba|xarray) vs numpy: max \|dMAGT\| = (\S+) C, class mismatches = (\d+) of (\d+)",
        check,
    )
    assert [f[0] for f in found] == ["numba", "xarray"], check
    for _, dmagt, mismatches, total in found:
        assert float(dmagt) < 1e-5 and int(mismatches) == 0 and int(total) == 10 * 64 * 64
    assert "ratios (targets of issue 7):" in out
    # every tile job's peak is printed beside the memory its rule asks for
    requests = re.findall(r"the rule's mem_mb request \(attempt 1\): (\d+) MB", out)
    assert len(requests) == 5 and all(int(r) > 400 for r in requests), requests
    assert re.search(r"tile job peak / the rule's mem_mb request .*  MET$", out, re.M)
    assert (tmp_path / "e2e" / "scen_magt.tif").exists()
