"""Smoke test of benchmarks/bench_export.py: a tiny run measures every row kind and builds the table.

The script is long and run by hand, rarely: this keeps it from breaking silently. The
acquisition is 2 planes x 2 frames (the benchmark's page geometry), one Snakemake run on
one core, no reference, no long or demo runs; cold rows evict only its own raw files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_export.py"
PLANES, FRAMES = 2, 2
# the benchmark's geometry: 2 ROIs of 224 x 448 px side by side, int16
PIXEL_BYTES = PLANES * FRAMES * 448 * (2 * 224) * 2


def table_rows(markdown: str) -> dict[str, list[str]]:
    """The markdown table's body as {row label: its other cells}."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and cells[0] not in ("row",):
            rows[cells[0]] = cells[1:]
    return rows


def test_a_tiny_benchmark_run_measures_every_row(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--frames", str(FRAMES), "--planes", str(PLANES), "--formats", "bin", "--cores", "1"]
    cmd += ["--long-frames", "0", "--demo-runs", "0", "--cold-method", "fadvise", "--workdir", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    results = json.loads((tmp_path / "bench_results.json").read_text())
    rows = {r["label"]: r for r in results["rows"]}
    assert list(rows) == [
        "copy ceiling (cold)",
        "copy ceiling (warm)",
        "copy, direct writes (cold)",
        "bin --cores 1",
        "reference bin (mbo_utilities)",
    ]
    raw_bytes = sum(p.stat().st_size for p in (tmp_path / "acquisitions").glob("*/raw/*.tif"))
    assert raw_bytes > PIXEL_BYTES and results["raw_bytes"] == raw_bytes
    for label in ("copy ceiling (cold)", "copy ceiling (warm)", "copy, direct writes (cold)"):
        assert rows[label]["status"] == "ok" and rows[label]["bytes"] == raw_bytes and rows[label]["wall_s"] > 0
    export = rows["bin --cores 1"]
    assert export["status"] == "ok", export["status"]
    # the binary planes plus Suite2p's small ops.npy files
    assert PIXEL_BYTES <= export["bytes"] <= PIXEL_BYTES + 200_000
    assert export["wall_s"] > 0 and export["mb_s"] == export["bytes"] / 1e6 / export["wall_s"]
    assert export["extra"]["before_first_plane_job_s"] > 0 and export["extra"]["after_last_plane_job_s"] >= 0
    assert rows["reference bin (mbo_utilities)"]["status"].startswith("not run")

    # the table's ratios are the raw numbers' ratios, to the copy of the same cache state
    table = table_rows((tmp_path / "bench_table.md").read_text())
    assert list(table) == list(rows)
    mb_s, vs_ceiling, vs_direct, vs_reference = table["bin --cores 1"][:4]
    assert float(mb_s.replace(",", "")) == round(export["mb_s"], 1)
    assert vs_ceiling == f"{export['mb_s'] / rows['copy ceiling (cold)']['mb_s']:.2f}×"
    assert vs_direct == f"{export['mb_s'] / rows['copy, direct writes (cold)']['mb_s']:.2f}×"
    assert vs_reference == "—"
    assert table["copy, direct writes (cold)"][1] == (
        f"{rows['copy, direct writes (cold)']['mb_s'] / rows['copy ceiling (cold)']['mb_s']:.2f}×"
    )
