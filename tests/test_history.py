"""Processing history and manifest: recorded inside every output, checked by ``imexport verify``.

One export in every format (with scan-phase and axial records, so every kind of
parameter is there) is shared by the tests that only read it; tests that damage outputs
work on a copy.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from conftest import sha256, verify_cli

from imexport.formats import output_format
from imexport.hdf5_attrs import read_attrs
from imexport.history import HISTORY_KEY, MANIFEST_NAME, inherited_history, read_history

SPEC = dict(n_frames=10, n_planes=3, roi_heights=[24, 18], width=24, fly_to_lines=3, frames_per_file=4, n_cells=8)
FORMATS = ["tiff", "bin", "zarr", "h5"]
PLANES = [f"zplane0{z}_tp00001-00010" for z in (1, 2, 3)]
ZARR = "zplane01-03_tp00001-00010.zarr"
H5 = "zplane01-03_tp00001-00010.h5"


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def export(tmp_path_factory, make_acquisition, run_snakemake):
    root = tmp_path_factory.mktemp("history")
    spec, raw = make_acquisition(root, **SPEC)
    out = root / "out"
    config = {"input": str(raw[0].parent), "outdir": str(out), "format": FORMATS, "register_z": True}
    result = run_snakemake(root / "work", config)
    return raw, out, config, result, root


def test_every_output_carries_the_same_one_step_history(export):
    raw, out, config, _, _ = export
    histories = {
        "tiff sidecar": json.loads(output_format("tiff").history_sidecars(out / f"{PLANES[0]}.tif")[0].read_text())[HISTORY_KEY],
        "ops.npy": np.load(out / PLANES[1] / "ops.npy", allow_pickle=True).item()[HISTORY_KEY],
        "zarr attribute": zarr.open_group(str(out / ZARR), mode="r").attrs[HISTORY_KEY],
        "h5 attribute": read_attrs(h5py.File(out / H5, "r"))[HISTORY_KEY],
    }
    first = histories["tiff sidecar"]
    assert len(first) == 1
    for where, history in histories.items():
        assert history == first, where
    for name in PLANES:  # every TIFF has its sidecar
        assert read_history(out / f"{name}.tif") == first
    assert read_history(out / PLANES[0]) == read_history(out / ZARR) == read_history(out / H5) == first


def test_the_step_records_software_files_durations_and_parameters(export):
    raw, out, config, _, _ = export
    step = read_history(out / ZARR)[-1]
    assert step["step"] == "imexport" and len(step["id"]) == 32
    assert datetime.fromisoformat(step["timestamp"]).tzinfo is not None
    for package in ("numpy", "tifffile", "zarr", "h5py", "snakemake"):
        assert step["software"][package] == importlib.metadata.version(package)
    assert "imexport" in step["software"]
    # inputs: every raw file, hashed
    assert [i["path"] for i in step["inputs"]] == [str(p.resolve()) for p in raw]
    for entry, path in zip(step["inputs"], raw):
        assert entry == {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": sha256(path)}
    # outputs: every file of every output as its job wrote it (pixel files never change)
    outputs = {o["path"]: o for o in step["outputs"]}
    assert set(outputs) == {f"{n}.tif" for n in PLANES} | set(PLANES) | {ZARR, H5}
    tif = outputs[f"{PLANES[0]}.tif"]["files"]
    assert tif == [
        {
            "path": f"{PLANES[0]}.tif",
            "size": (out / f"{PLANES[0]}.tif").stat().st_size,
            "sha256": sha256(out / f"{PLANES[0]}.tif"),
        }
    ]
    binary = {f["path"]: f for f in outputs[PLANES[0]]["files"]}
    # timestamps.npy: the ScanImage frames' acquisition times
    names = ("data_raw.bin", "ops.npy", "db.npy", "settings.npy", "timestamps.npy")
    assert set(binary) == {f"{PLANES[0]}/{name}" for name in names}
    assert binary[f"{PLANES[0]}/data_raw.bin"]["sha256"] == sha256(out / PLANES[0] / "data_raw.bin")
    h5_files = {f["path"] for f in outputs[H5]["files"]}
    assert h5_files == {H5}  # one self-contained file (h5.layout: single)
    store_files = {f["path"] for f in outputs[ZARR]["files"]}
    assert f"{ZARR}/zarr.json" in store_files and not any(".snakemake_timestamp" in f for f in store_files)
    # durations: every rule that ran, from its jobs' benchmark files
    rules = step["durations"]["rules"]
    expected_jobs = {
        "index_source": 1,
        "scan_phase": 1,
        "axial_shifts": 1,
        "write_plane_file": 3,
        "write_plane_folder": 3,
        "write_plane_slab": 6,
        "assemble_file": 1,
        "assemble_folder": 1,
    }
    assert {rule: r["jobs"] for rule, r in rules.items()} == expected_jobs
    assert all(job["s"] is not None and job["s"] >= 0 for job in step["durations"]["jobs"])
    # parameters that shaped the pixels, and the full config
    parameters = step["parameters"]
    assert parameters["planes"] == [1, 2, 3] and parameters["frames"] == [[0, 10, 1]] and parameters["channels"] == [1]
    assert parameters["roi_mode"] == "concat_y" and parameters["target_chunk_mb"] == 100
    records = parameters["scan_phase"]["records"]
    assert sorted(records) == [f"scan_phase/stitched/zplane0{z}.json" for z in (1, 2, 3)]
    assert all("applied" in r for r in records.values())
    shifts = parameters["axial"]["records"]["axial/stitched.json"]["shifts"]
    assert len(shifts) == 3
    assert parameters["format_options"]["zarr"]["sharded"] is True
    assert step["config"]["format"] == FORMATS and step["config"]["outdir"] == config["outdir"]
    assert step["config"]["register_z"] is True and "scan_phase" in step["config"]


def test_manifest_lists_every_file_after_the_history_went_in(export):
    _, out, _, _, _ = export
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["steps"] == read_history(out / H5)
    files = {f["path"]: f for f in manifest["files"]}
    on_disk = {
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and ".imexport" not in p.relative_to(out).parts and p.name not in (MANIFEST_NAME, ".snakemake_timestamp")
    }
    assert set(files) == on_disk
    for rel, entry in files.items():
        assert entry["size"] == (out / rel).stat().st_size and entry["sha256"] == sha256(out / rel), rel
    # the rewritten ones differ from what the step saw before the history went in
    step_files = {f["path"]: f for o in manifest["steps"][-1]["outputs"] for f in o.get("files", [])}
    assert files[f"{PLANES[0]}/ops.npy"]["sha256"] != step_files[f"{PLANES[0]}/ops.npy"]["sha256"]
    assert files[f"{PLANES[0]}/data_raw.bin"] == step_files[f"{PLANES[0]}/data_raw.bin"]


def test_planning_and_the_writers_left_the_digests_the_history_job_looked_up(export):
    raw, out, _, _, _ = export
    cache = out / ".imexport" / "checksums"
    entries = {e["path"]: e for e in (json.loads(p.read_text()) for p in cache.glob("*.json"))}
    pixel_files = [
        *(out / f"{n}.tif" for n in PLANES),
        *(out / n / "data_raw.bin" for n in PLANES),
        *(p for p in (out / ZARR / "0").rglob("*") if p.is_file() and p.name != "zarr.json"),  # the shards
    ]
    assert len(pixel_files) >= 9  # a shard per plane at least (the HDF5 file carries the history: rewritten)
    for path in [*pixel_files, *raw]:
        entry = entries[str(path.resolve())]
        stat = path.stat()
        assert entry == {
            "path": str(path.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "ino": stat.st_ino,
            "ctime_ns": stat.st_ctime_ns,
            "sha256": sha256(path),
        }, path
    # the history job read no file the writers had hashed: it hashed only what it rewrote
    log = (out / ".imexport" / "logs" / "history.log").read_text()
    looked_up, rewritten = re.findall(r"(\d+) file\(s\): (\d+) digest\(s\) from the cache, (\d+) hashed", log)
    assert looked_up[0] == looked_up[1] and looked_up[2] == "0", log
    assert rewritten[1] == "0" and int(rewritten[2]) == len(PLANES) * 2 + 2, log  # ops.npy, sidecars, zarr.json, master
    # every digest of the manifest is the file's on disk
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    step = manifest["steps"][-1]
    for entry in step["inputs"]:
        assert entry["sha256"] == sha256(Path(entry["path"]))
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256(out / entry["path"]), entry["path"]
    for output in step["outputs"]:  # as the writers left them: the pixel files are still those bytes
        for entry in output["files"]:
            if (out / entry["path"]) in pixel_files:
                assert entry["sha256"] == sha256(out / entry["path"]), entry["path"]


def test_a_second_run_has_nothing_to_do(export, run_snakemake):
    _, out, config, _, root = export
    before = mtimes(out)
    result = run_snakemake(root / "work", config)
    assert "Nothing to be done" in result.output
    assert mtimes(out) == before


def test_verify_passes_an_intact_export_and_names_every_damaged_file(export, tmp_path):
    _, out, _, _, _ = export
    intact = verify_cli(out)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    tif = copy / f"{PLANES[1]}.tif"
    data = bytearray(tif.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the pixels: same size, still readable
    tif.write_bytes(bytes(data))
    shutil.rmtree(copy / PLANES[2])  # a Suite2p plane folder
    damaged = verify_cli(copy)
    assert damaged.returncode == 1
    named = {line.split()[1].rstrip(":") for line in damaged.stdout.splitlines() if line.startswith("DIFFERS")}
    plane_files = ("data_raw.bin", "ops.npy", "db.npy", "settings.npy", "timestamps.npy")
    assert named == {f"{PLANES[1]}.tif"} | {f"{PLANES[2]}/{name}" for name in plane_files}
    assert "sha256" in damaged.stdout and "missing" in damaged.stdout


def test_verify_catches_an_unreadable_output_and_a_stray_file(export, tmp_path):
    from imexport.verify import verify

    _, out, _, _, _ = export
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / ZARR / "zarr.json").write_text("{")  # checksum and library both notice
    (copy / PLANES[0] / "notes.txt").write_text("x")
    problems = verify(copy)
    assert any(p.startswith(f"{ZARR}: unreadable by its library") for p in problems)
    assert f"{PLANES[0]}/notes.txt: not in the manifest" in problems


def test_history_accumulates_over_a_reexport_and_a_rerun_replaces_this_step(export, tmp_path, run_snakemake):
    _, out, _, _, _ = export
    earlier = read_history(out / ZARR)
    second = tmp_path / "out"
    config = {"input": str(out / ZARR), "outdir": str(second), "planes": [2]}
    run_snakemake(tmp_path / "work", config)
    tif = second / "zplane02_tp00001-00010.tif"
    history = read_history(tif)
    assert len(history) == 2 and history[0] == earlier[0]
    assert history[1]["inputs"][0]["path"].startswith(str((out / ZARR).resolve()))
    # rewriting an output reruns the history: this export's step is replaced, not added
    result = run_snakemake(tmp_path / "work", config, "--forcerun", str(tif))
    assert "rule history" in result.output
    again = read_history(tif)
    assert len(again) == 2 and again[0] == earlier[0] and again[1]["id"] != history[1]["id"]
    assert json.loads((second / MANIFEST_NAME).read_text())["steps"] == again


# --------------------------------------------------------------------------- units


def test_inherited_history_keeps_order_and_counts_shared_steps_once(tmp_path):
    first, second = tmp_path / "a_00001.tif", tmp_path / "a_00002.tif"
    acquire = {"step": "acquire", "id": "1"}
    for path, steps in ((first, [acquire, {"step": "denoise", "id": "2"}]), (second, [acquire])):
        path.write_bytes(b"")
        output_format("tiff").embed_history(path, steps)
    assert [s["id"] for s in inherited_history([first, second])] == ["1", "2"]
    assert inherited_history([tmp_path / "plain.tif"]) == []
