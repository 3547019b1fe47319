"""The history step lists every output file as its writing job left it, whatever reruns
happen: after one output is deleted and the export rerun, and when the history step
alone runs again (as after a kill just past it), the files the step rewrites to carry
the history (``ops.npy``, ``zarr.json``, the HDF5 master) are listed with the digests
of the bytes their jobs wrote, not of an earlier history's rewrite.
"""

from __future__ import annotations

import json
import shutil

import pytest
import zarr

from imexport.history import MANIFEST_NAME, read_history

SPEC = dict(n_frames=8, n_planes=3, roi_heights=[16, 12], width=16, fly_to_lines=3, frames_per_file=4, n_cells=4)
PLANES = [f"zplane0{z}_tp00001-00008" for z in (1, 2, 3)]
ZARR = "zplane01-03_tp00001-00008.zarr"


def step_files(step: dict) -> dict[str, dict]:
    return {f["path"]: f for output in step["outputs"] for f in output["files"]}


@pytest.fixture
def first_run(tmp_path, make_acquisition, run_snakemake):
    _, raw = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    config = {"input": str(raw[0].parent), "outdir": str(out), "format": ["bin", "zarr"]}
    run_snakemake(tmp_path / "work", config)
    step = json.loads((out / MANIFEST_NAME).read_text())["steps"][-1]
    return out, config, step, tmp_path


def test_a_rerun_after_deleting_one_output_lists_the_untouched_ones_as_before(first_run, run_snakemake):
    out, config, first, tmp_path = first_run
    shutil.rmtree(out / PLANES[1])
    result = run_snakemake(tmp_path / "work", config)
    assert "rule history" in result.output
    second = json.loads((out / MANIFEST_NAME).read_text())["steps"][-1]
    assert second["id"] != first["id"]
    before, after = step_files(first), step_files(second)
    assert set(before) == set(after)
    untouched = [p for p in before if not p.startswith(PLANES[1] + "/")]
    assert any(p.endswith("ops.npy") for p in untouched) and f"{ZARR}/zarr.json" in untouched
    assert {p: after[p] for p in untouched} == {p: before[p] for p in untouched}
    # and every output now carries the new step once
    assert read_history(out / PLANES[0])[-1]["id"] == second["id"] == read_history(out / ZARR)[-1]["id"]
    assert len(read_history(out / ZARR)) == 1
    zarr.open_group(str(out / ZARR), mode="r")["0"][0]


def test_the_history_step_alone_again_records_the_same_step(first_run, run_snakemake):
    out, config, first, tmp_path = first_run
    result = run_snakemake(tmp_path / "work", config, "--forcerun", "history")
    assert "rule history" in result.output
    second = json.loads((out / MANIFEST_NAME).read_text())["steps"][-1]
    assert second["id"] != first["id"]
    apart_from_id_and_time = {k: v for k, v in first.items() if k not in ("id", "timestamp")}
    assert {k: v for k, v in second.items() if k not in ("id", "timestamp")} == apart_from_id_and_time
