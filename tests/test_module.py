"""imexport used as a Snakemake ``module`` from a second workflow (docs/module.md).

The host workflow below is the one the docs show: it imports every rule under an
``imexport_`` prefix, gives the module its config, and calls the module's start,
success and error handlers, which Snakemake runs only when the host calls them; a second import
exports a second session. Expected pixels are
the generator's ground truth (``expected_roi``), ROIs side by side; the module's pixel
files must also be byte for byte those of the same config run as the main workflow.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import sha256

from imexport.synthetic import expected_roi

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_SNAKEFILE = REPO / "workflow" / "Snakefile"

HOST_SNAKEFILE = """\
module imexport:
    snakefile:
        {snakefile!r}
    config:
        {config!r}


use rule * from imexport as imexport_*


module second_session:
    snakefile:
        {snakefile!r}
    config:
        {second_config!r}


use rule * from second_session as second_session_*


rule all:
    default_target: True
    input:
        rules.imexport_all.input,
        rules.second_session_all.input,


onstart:
    imexport.onstart()
    second_session.onstart()


onsuccess:
    imexport.onsuccess()
    second_session.onsuccess()


onerror:
    imexport.onerror()
    second_session.onerror()
"""


def stitched_truth(spec, z: int) -> np.ndarray:
    """Every frame of plane ``z`` (0-based): ROIs side by side, top-aligned, zero below."""
    frames = np.arange(spec.n_frames)
    out = np.zeros((spec.n_frames, max(spec.roi_heights), spec.width * spec.n_rois), np.int16)
    for r, h in enumerate(spec.roi_heights):
        out[:, :h, r * spec.width : (r + 1) * spec.width] = expected_roi(spec, frames, 0, z, r)
    return out


def pixel_digests(outdir: Path) -> dict[str, str]:
    """sha256 of the pixel files (TIFF planes, Zarr shards): the history and the metadata
    documents carry run-specific times and paths, the pixels must not differ."""
    files = [*outdir.glob("*.tif"), *(p for p in outdir.glob("*.zarr/0/c/**/*") if p.is_file())]
    return {str(p.relative_to(outdir)): sha256(p) for p in files}


@pytest.fixture(scope="module")
def module_run(tmp_path_factory, make_acquisition):
    root = tmp_path_factory.mktemp("module")
    spec, _ = make_acquisition(root)
    # a module reads no config file: what config/config.yaml sets beyond the schema's
    # defaults (the demo's plane spacing) is given here, as the main workflow run gets it
    config = {
        "input": str(root / "raw"),
        "outdir": "export",
        "format": ["tiff", "zarr"],
        "scan_phase": {"fix_phase": False},
        "metadata": {"dz": 16.0},
    }
    second_config = {**config, "outdir": "export_bin", "format": "bin"}
    host = HOST_SNAKEFILE.format(snakefile=str(WORKFLOW_SNAKEFILE), config=config, second_config=second_config)
    (root / "Snakefile").write_text(host)
    # a temporary a killed writer left behind (its process is gone): the module's start
    # handler, called by the host, must remove it
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    stale = root / "export" / f".zplane01_tp00001-00007.tif.imexport-tmp-{dead_pid.pid}"
    stale.parent.mkdir()
    stale.write_bytes(b"half a plane")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "--directory", str(root)]
    cmd += ["--cores", "2", "--workflow-profile", "none"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return spec, root, config, stale, output


def test_module_writes_the_ground_truth(module_run):
    spec, root, _, _, output = module_run
    out = root / "export"
    assert "imexport_write_plane_file" in output  # the host runs the module's rules, prefixed
    for z in range(spec.n_planes):
        assert np.array_equal(tifffile.imread(out / f"zplane{z + 1:02d}_tp00001-00007.tif"), stitched_truth(spec, z))
    store = zarr.open_group(out / "zplane01-03_tp00001-00007.zarr", mode="r")
    expected = np.stack([stitched_truth(spec, z) for z in range(spec.n_planes)], axis=1)
    assert np.array_equal(store["0"][:], expected)
    assert (out / "imexport_manifest.json").is_file()


def test_a_second_module_exports_a_second_session(module_run):
    """Two imports of the workflow, each with its own config, plan and outputs."""
    spec, root, _, _, output = module_run
    height, width = max(spec.roi_heights), spec.width * spec.n_rois
    for z in range(spec.n_planes):
        binary = root / "export_bin" / f"zplane{z + 1:02d}_tp00001-00007" / "data_raw.bin"
        frames = np.fromfile(binary, dtype=np.int16).reshape(spec.n_frames, height, width)
        assert np.array_equal(frames, stitched_truth(spec, z))
    assert "second_session_write_plane_folder" in output


def test_module_runs_the_start_and_success_handlers(module_run):
    _, root, _, stale, output = module_run
    assert not stale.exists()
    assert f"imexport: removed export/{stale.name}" in output
    assert f"imexport: 4 output(s) in {(root / 'export').resolve()}" in output
    # each session's output folder lock, taken by onstart, is released by onsuccess
    assert not (root / "export" / ".imexport" / "run.lock").exists()
    assert not (root / "export_bin" / ".imexport" / "run.lock").exists()


# The host's start handler makes another live process (this test's) hold the folder after
# the DAG was built, as a second run starting just then would: the module's start
# handler must refuse with imexport's message, and no job runs.
HOST_RACED = """\
import json, os, socket
from pathlib import Path

module imexport:
    snakefile:
        {snakefile!r}
    config:
        {config!r}


use rule * from imexport as imexport_*


rule all:
    default_target: True
    input:
        rules.imexport_all.input,


onstart:
    Path("export/.imexport").mkdir(parents=True, exist_ok=True)
    other = {{"host": socket.gethostname(), "pid": os.getppid(), "cwd": os.getcwd(), "started": "now"}}
    Path("export/.imexport/run.lock").write_text(json.dumps(other))
    imexport.onstart()
"""


def test_module_start_handler_refuses_a_held_folder(tmp_path, make_acquisition):
    make_acquisition(tmp_path)
    config = {"input": str(tmp_path / "raw"), "outdir": "export", "scan_phase": {"fix_phase": False}}
    (tmp_path / "Snakefile").write_text(HOST_RACED.format(snakefile=str(WORKFLOW_SNAKEFILE), config=config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"), "--directory", str(tmp_path)]
    result = subprocess.run(
        [*cmd, "--cores", "1", "--workflow-profile", "none"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-6000:]
    holder = f"(host {socket.gethostname()}, pid {os.getpid()},"
    assert f"imexport: export: another imexport run exports into this folder {holder}" in output
    assert "Traceback" not in output and "rule " not in output
    assert [p.name for p in (tmp_path / "export").iterdir()] == [".imexport"]


def test_module_pixels_equal_the_main_workflow(module_run, run_snakemake, tmp_path):
    _, root, config, _, _ = module_run
    run_snakemake(tmp_path, config)
    assert pixel_digests(tmp_path / "export") == pixel_digests(root / "export")
    assert len(pixel_digests(root / "export")) == 3 + 3  # three TIFF planes, one shard per plane


def test_module_keeps_the_local_rules_local(module_run):
    assert "localrules directive specifies rules that are not present" not in module_run[4]
