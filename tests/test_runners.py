"""The two runners, Snakemake and the in-process API, are one: the same config is refused
with the same message, and accepted, writes the same files.

Both plan through ``workflow_plan.plan_for_config`` and run the steps of
``imexport.pipeline``; these tests hold them to it from the outside: the workflow in a
Snakemake subprocess, the API through ``imexport.api.run_config``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import sha256

from imexport.api import run_config

ALL_FORMATS = ["tiff", "bin", "zarr", "h5"]


def _config(tmp_path: Path, **overrides) -> dict:
    return {"input": str(tmp_path / "raw"), "outdir": str(tmp_path / "out"), "format": ALL_FORMATS, **overrides}


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"outdir": "raw/inside"}, "is inside the input folder"),
        ({"planes": [2, 9]}, "planes: [9] out of range; this source has 3 (valid: 1..3)"),
        ({"format": ["tiff", "avi"]}, "format.1: 'avi' is not one of ['tiff', 'bin', 'zarr', 'h5', 'nwb']"),
        ({"frames": "1:4", "num_frames": 0}, "num_frames"),
    ],
    ids=["outdir-inside-input", "plane-out-of-range", "unknown-format", "bad-num-frames"],
)
def test_both_runners_refuse_the_same_bad_config_with_the_same_message(
    tmp_path, make_acquisition, run_snakemake, overrides, expected
):
    make_acquisition(tmp_path, roi_heights=[16, 14], width=20)
    config = _config(tmp_path, **overrides)
    if "outdir" in overrides:
        config["outdir"] = str(tmp_path / overrides["outdir"])
    with pytest.raises(ValueError) as refused:
        run_config(config)
    message = str(refused.value)
    assert expected in message
    result = run_snakemake(tmp_path / "wf", config, expect_ok=False)
    assert f"imexport: {message}" in result.output
    assert "Traceback" not in result.output
    # neither runner wrote anything
    assert not (tmp_path / "out").exists() and not (tmp_path / "raw" / "inside").exists()


def _without_history(path: Path) -> object:
    """What a file that carries the processing history holds besides it (the history has
    a timestamp, an id and job durations, which differ between any two runs)."""
    if path.name == "ops.npy":
        ops = np.load(path, allow_pickle=True).item()
        ops.pop("processing_history")
        return {k: repr(v) for k, v in ops.items()}
    if path.name == "zarr.json":
        meta = json.loads(path.read_text())
        meta["attributes"].pop("processing_history")
        return meta
    if path.suffix == ".h5":
        with h5py.File(path, "r") as fh:
            attrs = {k: repr(v) for k, v in fh.attrs.items() if k != "processing_history"}
            return attrs, {k: (fh[k].shape, str(fh[k].dtype), hashlib.sha256(fh[k][()].tobytes()).hexdigest()) for k in fh}
    raise AssertionError(f"{path} differs and carries no processing history")


def test_api_and_workflow_write_the_same_files_in_every_format(tmp_path, make_acquisition, run_snakemake):
    make_acquisition(tmp_path, roi_heights=[16, 14], width=20, phase_offset=1.0, texture=50.0)
    # the same config and the same outdir (ops.npy records absolute paths): the API's
    # export is moved aside first
    config = _config(
        tmp_path,
        register_z=True,
        tiff={"layout": "volume"},
        h5={"compression": "gzip", "layout": "virtual"},
        metadata={"dz": 5.0},
    )
    run_config(config)
    api_out, wf_out = (tmp_path / "out").rename(tmp_path / "api"), tmp_path / "out"
    run_snakemake(tmp_path / "wf", config)

    def files(root: Path) -> list[Path]:
        return sorted(
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and ".imexport" not in p.parts and p.name != ".snakemake_timestamp"
        )

    assert files(api_out) == files(wf_out)
    identical = history_only = 0
    for rel in files(api_out):
        if rel.name == "imexport_manifest.json" or rel.name.endswith(".history.json"):
            continue  # compared below
        a, b = api_out / rel, wf_out / rel
        if sha256(a) == sha256(b):
            identical += 1
        else:
            assert _without_history(a) == _without_history(b), rel
            history_only += 1
    # pixel files: one volume TIFF, 3 Suite2p binaries, the zarr chunks, 3 HDF5 plane files
    suffixes = {rel.suffix for rel in files(api_out)}
    assert {".tif", ".bin", ".h5"} <= suffixes
    assert identical >= 1 + 3 + 3 + 1 and history_only == 3 + 1 + 1  # ops.npy x3, zarr.json, the HDF5 master
    manifests = [json.loads((root / "imexport_manifest.json").read_text()) for root in (api_out, wf_out)]
    for key in ("path", "format", "fingerprint", "paths"):
        assert [o[key] for o in manifests[0]["outputs"]] == [o[key] for o in manifests[1]["outputs"]]
    steps = [m["steps"][-1] for m in manifests]
    assert steps[0]["parameters"] == steps[1]["parameters"]
    pixel_files = {f["path"]: f["sha256"] for f in manifests[0]["files"] if f["path"].endswith((".tif", ".bin"))}
    assert pixel_files == {f["path"]: f["sha256"] for f in manifests[1]["files"] if f["path"] in pixel_files}
