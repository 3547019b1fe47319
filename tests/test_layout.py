"""The repository layout Snakemake users expect (snakemake-workflows convention).

* ``workflow/Snakefile`` is the workflow; Snakemake finds it from the repository root.
* ``.test/config/config.yaml`` is a small synthetic run: ``snakemake --directory .test``
  merges a working directory's ``config/config.yaml`` over the repository's defaults.
* ``.snakemake-workflow-catalog.yml`` describes the usage for the workflow catalog.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import yaml
import zarr
from conftest import verify_cli

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"


def test_snakemake_finds_the_workflow_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-target-rules", "--workflow-profile", "none"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all" in result.stdout.split()
    assert not (REPO / "Snakefile").exists()  # one entry point: a top-level Snakefile would shadow it


def test_the_test_config_runs_every_format_over_the_defaults(tmp_path):
    """What `snakemake --cores 2 --directory .test` does, in a copy of .test (the run writes
    demo_data/ and results/ into its working directory)."""
    (tmp_path / "config").mkdir()
    shutil.copy(TEST_CONFIG, tmp_path / "config" / "config.yaml")
    test_config = yaml.safe_load(TEST_CONFIG.read_text())
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "metadata" not in test_config["demo"]  # the plane spacing below can only come from the defaults
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path)]
    cmd += ["--cores", "2", "--workflow-profile", "none"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]

    out = tmp_path / test_config["outdir"]
    demo = test_config["demo"]
    planes = range(1, demo["n_planes"] + 1)
    frames = f"tp00001-{demo['n_frames']:05d}"
    volume = f"zplane01-{demo['n_planes']:02d}_{frames}"
    expected = {f"zplane{p:02d}_{frames}.tif" for p in planes} | {f"zplane{p:02d}_{frames}" for p in planes}
    expected |= {f"{volume}.zarr", f"{volume}.h5"}  # one self-contained HDF5 file, no plane folder
    written = {p.name for p in out.iterdir() if p.name != "imexport_manifest.json" and not p.name.endswith(".history.json")}
    assert written == expected | {".imexport"}
    frame_bytes = 2 * max(demo["roi_heights"]) * 2 * demo["width"]  # int16, two ROIs side by side
    for p in planes:
        assert (out / f"zplane{p:02d}_{frames}" / "data_raw.bin").stat().st_size == demo["n_frames"] * frame_bytes

    dz = defaults["demo"]["metadata"]["dz"]  # the demo's spacing, applied while the demo is the input
    with h5py.File(out / f"{volume}.h5") as h5:
        assert h5["mov"].shape == (demo["n_frames"], demo["n_planes"], max(demo["roi_heights"]), 2 * demo["width"])
        assert json.loads(h5.attrs["metadata"])["dz"] == dz
    ome = zarr.open_group(out / f"{volume}.zarr", mode="r").attrs["ome"]
    z_scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][1]
    assert z_scale == dz

    verify = verify_cli(out)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_catalog_finds_what_standardized_usage_needs():
    """The catalog lists a workflow under "standardized usage" when it has workflow/Snakefile,
    config/README.md and this file; it shows conda and report support from it."""
    assert (REPO / "workflow" / "Snakefile").is_file() and (REPO / "config" / "README.md").is_file()
    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert usage["software-stack-deployment"]["conda"] is True
    assert usage["report"] is True
