"""``overwrite``: a run that would rewrite existing outputs stops first unless it is true;
then the outputs it replaces, and those of the same format it no longer makes, go first.
Also: stale temporaries of killed jobs are removed at the start, and only they.
"""

from __future__ import annotations

import json
import os

import pytest
import tifffile
from conftest import snapshot, verify_cli

from imexport.guard import OverwriteError, check_overwrite, planned_records, remove_stale_temporaries
from imexport.history import MANIFEST_NAME, read_history
from imexport.workflow_plan import plan_for_config

SPEC = dict(n_frames=6, n_planes=3, roi_heights=[12, 8], width=12, fly_to_lines=2, frames_per_file=3)
TIFS = [f"zplane0{z}_tp00001-00006.tif" for z in (1, 2, 3)]


def test_a_changed_config_stops_unless_overwrite_then_replaces_and_prunes(tmp_path, make_acquisition, run_snakemake):
    _, paths = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    config = {"input": str(paths[0].parent), "outdir": str(out), "scan_phase": {"fix_phase": False}}
    run_snakemake(tmp_path / "work", config)
    before = snapshot(out, work_folder=False)
    # the same config from another working directory (no .snakemake metadata there) rewrites nothing
    elsewhere = run_snakemake(tmp_path / "elsewhere", config)
    assert "rule write_plane_file" not in elsewhere.output
    assert snapshot(out, work_folder=False) == before

    changed = {**config, "planes": [1, 2], "metadata": {"dz": 5.0}}
    refused = run_snakemake(tmp_path / "work", changed, expect_ok=False)
    assert "overwrite: false" in refused.output and "overwrite: true" in refused.output
    for name in TIFS[:2]:
        assert f"{out / name} (written by imexport with other parameters)" in refused.output
    assert TIFS[2] not in refused.output.split("overwrite: false")[1]  # not rewritten: not listed
    assert "rule " not in refused.output  # refused before any job
    assert "Traceback" not in refused.output and ".smk" not in refused.output  # no Snakemake location either
    assert snapshot(out, work_folder=False) == before

    replaced = run_snakemake(tmp_path / "work", {**changed, "overwrite": True})
    assert f"imexport: removed {out / TIFS[2]}" in replaced.output
    names = {p.name for p in out.iterdir()}
    assert names == {".imexport", MANIFEST_NAME, *TIFS[:2], *(f"{t}.history.json" for t in TIFS[:2])}
    for name in TIFS[:2]:
        with tifffile.TiffFile(out / name) as tf:
            assert json.loads(tf.imagej_metadata["Info"])["dz"] == 5.0
    assert [o["path"] for o in json.loads((out / MANIFEST_NAME).read_text())["outputs"]] == TIFS[:2]
    records = sorted(p.name for p in (out / ".imexport" / "records").iterdir())
    assert len(records) == 2 and all(r.startswith(tuple(TIFS[:2])) for r in records)  # the old ones are gone
    assert len(read_history(out / TIFS[0])) == 1
    verify = verify_cli(out)
    assert verify.returncode == 0, verify.stdout


def test_an_output_not_written_by_imexport_is_a_conflict(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    out.mkdir()
    (out / TIFS[0]).write_bytes(b"someone else's file")
    _, plan = plan_for_config({"input": str(paths[0].parent), "outdir": str(out), "scan_phase": {"fix_phase": False}})
    records = planned_records(plan)
    with pytest.raises(OverwriteError, match="overwrite: false") as error:
        check_overwrite(plan, records, overwrite=False)
    assert f"{out / TIFS[0]} (not written by imexport (no record))" in str(error.value)
    assert list(check_overwrite(plan, records, overwrite=True)) == [TIFS[0]]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    (out / ".imexport" / "zarr").mkdir(parents=True)
    dead = 2**22 + 12345  # above Linux's default pid_max: no such process
    stale_file = out / f".zplane01.tif.imexport-tmp-{dead}"
    stale_folder = out / f".zplane01_tp1.imexport-tmp-{dead}"
    stale_old = out / ".imexport" / "zarr" / f".a.zarr.imexport-tmp-{dead}-old"
    live = out / f".zplane02.tif.imexport-tmp-{os.getpid()}"  # a writer that is still running
    keep = [out / "zplane03.tif", out / ".hidden", out / "imexport-tmp-1", tmp_path / f".x.imexport-tmp-{dead}"]
    stale_file.write_bytes(b"x")
    (stale_folder / "sub").mkdir(parents=True)
    (stale_folder / "sub" / "data_raw.bin").write_bytes(b"x")
    stale_old.mkdir()
    for path in [live, *keep]:
        path.write_bytes(b"x")
    removed = remove_stale_temporaries(out)
    assert sorted(removed) == sorted([stale_file, stale_folder, stale_old])
    assert not any(p.exists() for p in removed)
    assert all(p.exists() for p in [live, *keep])
    # an input file is never removed, whatever its name
    raw = out / f".raw.imexport-tmp-{dead}"
    raw.write_bytes(b"x")
    assert remove_stale_temporaries(out, [str(raw)]) == [] and raw.exists()


def test_fingerprints_follow_the_settings_not_the_spelling_of_outdir(tmp_path, make_acquisition, monkeypatch):
    _, paths = make_acquisition(tmp_path, **SPEC)
    monkeypatch.chdir(tmp_path)
    config = {"input": str(paths[0].parent), "scan_phase": {"fix_phase": False}, "format": ["tiff", "zarr", "h5"]}

    def fingerprints(**settings):
        _, plan = plan_for_config({**config, **settings})
        return {key: record["fingerprint"] for key, record in planned_records(plan).items()}

    relative = fingerprints(outdir="out")
    assert fingerprints(outdir=str(tmp_path / "out")) == relative
    assert fingerprints(outdir="out/") == relative
    changed = fingerprints(outdir="out", metadata={"dz": 3.0})
    assert changed.keys() == relative.keys() and all(changed[k] != relative[k] for k in relative)
