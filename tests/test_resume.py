"""A real export killed mid-write (SIGKILL of the whole process group) and resumed.

No output that exists after the kill may be incomplete, and after ``snakemake --unlock``
and ``--rerun-incomplete`` every output must be byte-identical to an uninterrupted run
into another folder (the processing history, which holds timestamps, aside).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import tifffile
import zarr
from conftest import snakemake_command, verify_cli

# 4 planes x 600 frames of 100 x 192 pixels: one plane job writes 23 MB, about half a second
SPEC = dict(n_frames=600, n_planes=4, roi_heights=[96, 96], width=96, fly_to_lines=4, frames_per_file=200, n_cells=8)
TIFS = [f"zplane0{z}_tp00001-00600.tif" for z in (1, 2, 3, 4)]
ZARR = "zplane01-04_tp00001-00600.zarr"
PROVENANCE = ("imexport_manifest.json", ".snakemake_timestamp")


def exported_files(out: Path) -> dict[str, Path]:
    """Files of the outputs; the history (manifest, sidecars) and the work folder aside."""
    return {
        str(p.relative_to(out)): p
        for p in out.rglob("*")
        if p.is_file()
        and ".imexport" not in p.relative_to(out).parts
        and p.name not in PROVENANCE
        and not p.name.endswith(".history.json")
    }


def without_history(zarr_json: Path) -> dict:
    meta = json.loads(zarr_json.read_text())
    meta.get("attributes", {}).pop("processing_history", None)
    return meta


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".imexport-tmp-" in p.name]


def test_a_killed_export_resumes_to_the_same_bytes(tmp_path, make_acquisition, run_snakemake):
    _, paths = make_acquisition(tmp_path, **SPEC)
    config = {"input": str(paths[0].parent), "format": ["tiff", "zarr"], "scan_phase": {"fix_phase": False}}
    reference = tmp_path / "reference"
    run_snakemake(tmp_path / "ref_work", {**config, "outdir": str(reference)})

    out = tmp_path / "out"
    work = tmp_path / "work"
    finals = [out / name for name in [*TIFS, ZARR]]
    # one job at a time, so outputs appear one after another
    job = subprocess.Popen(
        snakemake_command(work, {**config, "outdir": str(out)}, cores=1),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    first_output_at = None
    while job.poll() is None and time.monotonic() < deadline:
        if first_output_at is None and any(p.exists() for p in finals):
            first_output_at = time.monotonic()
        # kill mid-write: once an output exists and a writer has a temporary open (or soon after)
        if first_output_at is not None and (temporaries(out) or time.monotonic() - first_output_at > 2):
            os.killpg(job.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    job.wait()
    existing = [p for p in finals if p.exists()]
    assert job.returncode == -signal.SIGKILL, "the export finished before it could be killed: make SPEC larger"
    assert 1 <= len(existing) < len(finals)
    left_behind = temporaries(out)

    # no output that exists is incomplete: each reads back whole, equal to the reference
    for path in existing:
        if path.suffix == ".tif":
            np.testing.assert_array_equal(tifffile.imread(path), tifffile.imread(reference / path.name))
        else:
            np.testing.assert_array_equal(
                zarr.open_array(str(path / "0"), mode="r")[:], zarr.open_array(str(reference / ZARR / "0"), mode="r")[:]
            )

    run_snakemake(work, {**config, "outdir": str(out)}, "--unlock")
    resumed = run_snakemake(work, {**config, "outdir": str(out)}, "--rerun-incomplete")
    assert "rule write_plane" in resumed.stdout + resumed.stderr
    assert temporaries(out) == [], f"left behind by the kill: {left_behind}"

    got, want = exported_files(out), exported_files(reference)
    assert sorted(got) == sorted(want)
    for rel, path in want.items():
        if path.name == "zarr.json":
            assert without_history(got[rel]) == without_history(path), rel
        else:
            assert got[rel].read_bytes() == path.read_bytes(), rel
    verify = verify_cli(out)
    assert verify.returncode == 0, verify.stdout
