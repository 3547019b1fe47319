"""HDF5 layouts: the default self-contained file and the virtual-dataset master.

Pixels are checked against what tifffile reads from the TIFF export of the same run, or
against arrays built in the test; files are read with h5py, as users read them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from conftest import sha256, verify_cli

from imexport.api import imread, run_config
from imexport.hdf5_attrs import read_attrs
from imexport.sinks.base import PlaneTarget
from imexport.sinks.hdf5_single import H5SlabSink, create_file, finalize_file
from imexport.sources.info import SourceError

SPEC = dict(n_frames=7, n_planes=3, roi_heights=[16, 14], width=20, fly_to_lines=2, frames_per_file=3)
STEM = "zplane01-03_tp00001-00007"


def _config(tmp_path: Path, out: str = "out", **h5) -> dict:
    return {"input": str(tmp_path / "raw"), "outdir": str(tmp_path / out), "format": ["tiff", "h5"], "h5": h5}


def _tiff_volume(out: Path) -> np.ndarray:
    """(T, Z, Y, X) from the per-plane TIFFs, read with tifffile."""
    return np.stack([tifffile.imread(out / f"zplane0{z}_tp00001-00007.tif") for z in (1, 2, 3)], axis=1)


def _content(path: Path) -> tuple:
    """The file's datasets (bytes) and root attributes, the processing history aside (it
    holds a timestamp and job durations)."""
    with h5py.File(path, "r") as fh:
        attrs = {k: v for k, v in read_attrs(fh).items() if k != "processing_history"}
        return attrs, {k: (fh[k].shape, str(fh[k].dtype), hashlib.sha256(fh[k][()].tobytes()).hexdigest()) for k in fh}


def test_default_h5_copied_alone_reads_the_tiff_pixels(tmp_path, make_acquisition, run_snakemake):
    make_acquisition(tmp_path, **SPEC)
    run_snakemake(tmp_path / "wf", _config(tmp_path))
    out = tmp_path / "out"
    assert not (out / f"{STEM}_planes").exists()
    alone = tmp_path / "elsewhere" / "copy.h5"
    alone.parent.mkdir()
    shutil.copyfile(out / f"{STEM}.h5", alone)
    with h5py.File(alone, "r") as fh:
        mov = fh["mov"]
        assert not mov.is_virtual and mov.chunks is None and mov.compression is None
        assert mov.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
        assert mov.shape == (7, 3, 16, 40)
        np.testing.assert_array_equal(mov[()], _tiff_volume(out))
        attrs = read_attrs(fh)
        assert attrs["metadata"]["planes"] == [1, 2, 3] and [p["plane"] for p in attrs["planes"]] == [1, 2, 3]
        assert attrs["processing_history"][-1]["step"] == "imexport"
    # imexport reads it back as the same volume
    np.testing.assert_array_equal(imread(alone)[:, 0], _tiff_volume(out))
    assert verify_cli(out).returncode == 0


def test_plane_jobs_depend_on_the_ready_marker_not_on_the_store_they_write(tmp_path, make_acquisition, run_snakemake):
    # Snakemake checks right after each job that its outputs are newer than its inputs; a
    # plane job that took the shared store file as an input failed that check whenever
    # another plane job wrote into the store at that moment (a 1000-volume NWB export,
    # 2026-12-02: "Output ....done has older modification time than input ....nwb").
    # Every store (the single HDF5 file, the Zarr folder) goes by its marker.
    make_acquisition(tmp_path, **SPEC)
    dry = run_snakemake(tmp_path / "wf", {**_config(tmp_path), "format": ["h5", "zarr"]}, "-n")
    work = tmp_path / "out" / ".imexport"
    stores = {str(work / "h5" / f"{STEM}.h5"), str(work / "zarr" / f"{STEM}.zarr")}
    lines = dry.output.splitlines()

    def store_inputs(rule: str) -> list[list[str]]:
        """The store paths (or markers) among each ``rule`` job's inputs in the dry run (the
        line after its rule line)."""
        found = [lines[i + 1].split("input:", 1)[1] for i, line in enumerate(lines) if line.strip() == f"rule {rule}:"]
        named = stores | {f"{store}.ready" for store in stores}
        return [sorted(p.strip() for p in listed.split(",") if p.strip() in named) for listed in found]

    plane_jobs = store_inputs("write_plane_slab")
    assert len(plane_jobs) == 2 * SPEC["n_planes"], dry.output
    assert sorted(plane_jobs) == sorted([f"{store}.ready"] for store in stores for _ in range(SPEC["n_planes"]))
    # the assemble steps, after every plane job, read the stores themselves
    assert sorted(store_inputs("assemble_file") + store_inputs("assemble_folder")) == sorted([store] for store in stores)


@pytest.mark.parametrize("layout", ["single", "virtual"])
def test_api_and_workflow_write_the_same_h5(tmp_path, make_acquisition, run_snakemake, layout):
    make_acquisition(tmp_path, **SPEC)
    # the same outdir for both (records hold absolute paths): the API's export moves aside
    run_config(_config(tmp_path, layout=layout))
    api_out = (tmp_path / "out").rename(tmp_path / "api")
    run_snakemake(tmp_path / "wf", _config(tmp_path, layout=layout))
    wf_out = tmp_path / "out"
    h5_files = sorted(p.relative_to(wf_out) for p in wf_out.rglob("*.h5") if ".imexport" not in p.parts)
    expected = [Path(f"{STEM}.h5")]
    if layout == "virtual":
        expected += [Path(f"{STEM}_planes/zplane0{z}.h5") for z in (1, 2, 3)]
    assert h5_files == expected
    assert sorted(p.relative_to(api_out) for p in api_out.rglob("*.h5") if ".imexport" not in p.parts) == expected
    for rel in expected[1:]:  # plane files: never rewritten, byte for byte the same
        assert sha256(api_out / rel) == sha256(wf_out / rel), rel
    assert _content(api_out / expected[0]) == _content(wf_out / expected[0])
    with h5py.File(wf_out / expected[0], "r") as fh:
        assert fh["mov"].is_virtual == (layout == "virtual")
        np.testing.assert_array_equal(fh["mov"][()], _tiff_volume(wf_out))


KILLED_RUN = """
import json, os, signal, sys
from imexport.api import run_config
def kill_after_first_plane(fraction, plane):  # called once a plane job is done: two are left
    os.kill(os.getpid(), signal.SIGKILL)
run_config(json.loads(sys.argv[1]), progress=kill_after_first_plane)
"""


def test_a_killed_plane_job_leaves_no_file_under_the_final_name(tmp_path, make_acquisition):
    make_acquisition(tmp_path, **SPEC)
    config = {**_config(tmp_path), "format": "h5"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(config)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    out = tmp_path / "out"
    # the file being filled lives in the work folder; nothing under the final name
    assert not (out / f"{STEM}.h5").exists()
    assert [p for p in out.rglob("*.h5") if ".imexport" not in p.relative_to(out).parts] == []
    assert len(list((out / ".imexport" / "h5").glob("*.h5"))) == 1
    # the next run completes it
    run_config({**config, "format": ["tiff", "h5"]})
    with h5py.File(out / f"{STEM}.h5", "r") as fh:
        np.testing.assert_array_equal(fh["mov"][()], _tiff_volume(out))


def _target(path: Path, z: int, n_colors: int, shape=(5, 6)) -> PlaneTarget:
    return PlaneTarget(
        path=path,
        plane=z,
        z_index=z,
        n_planes_out=4,
        n_frames=9,
        n_channels=n_colors,
        frame_shape=shape,
        dtype=np.dtype("uint16"),
        metadata={},
        options={"dataset_name": "mov"},
    )


@pytest.mark.parametrize("n_colors", [1, 2])
def test_plane_sinks_fill_their_strided_frames_in_any_order(tmp_path, n_colors):
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 60000, size=(9, n_colors, 4, 5, 6), dtype=np.uint16)  # (T, C, Z, Y, X)
    shape = (9, n_colors, 4, 5, 6) if n_colors > 1 else (9, 4, 5, 6)
    store = tmp_path / "work" / "mov.h5"
    create_file(store, shape=shape, dtype="uint16", dataset_name="mov")
    sinks = {z: H5SlabSink(store, _target(tmp_path / "mov.h5", z, n_colors)) for z in (2, 0, 3, 1)}
    for start, stop in ((0, 4), (4, 5), (5, 9)):  # interleaved, as parallel jobs write
        for z, sink in sinks.items():
            sink.write(np.ascontiguousarray(truth[start:stop, :, z]))
    for sink in sinks.values():
        sink.commit()
    final = tmp_path / "final" / "mov.h5"
    stamps = np.arange(9, dtype=np.float64) / 30
    finalize_file(
        store, final, metadata={"fs": 30.0}, plane_metadata=[{"plane": z + 1} for z in range(4)], datasets={"timestamps": stamps}
    )
    assert not store.exists()
    with h5py.File(final, "r") as fh:
        np.testing.assert_array_equal(fh["mov"][()], truth if n_colors > 1 else truth[:, 0])
        np.testing.assert_array_equal(fh["timestamps"][()], stamps)
        assert read_attrs(fh)["metadata"] == {"fs": 30.0}


def test_a_slab_sink_refuses_a_plane_that_does_not_fit(tmp_path):
    store = tmp_path / "mov.h5"
    create_file(store, shape=(9, 4, 5, 6), dtype="uint16", dataset_name="mov")
    with pytest.raises(ValueError, match="no room for plane z=1"):
        H5SlabSink(store, _target(tmp_path / "x.h5", 1, 1, shape=(5, 7)))
    sink = H5SlabSink(store, _target(tmp_path / "x.h5", 1, 1))
    sink.write(np.zeros((4, 1, 5, 6), np.uint16))
    with pytest.raises(ValueError, match="4 frames written, 9 announced"):
        sink.commit()


def test_a_virtual_master_without_a_plane_file_fails_loudly(tmp_path, make_acquisition):
    make_acquisition(tmp_path, **SPEC)
    run_config(_config(tmp_path, layout="virtual"))
    out = tmp_path / "out"
    (out / f"{STEM}_planes" / "zplane02.h5").unlink()
    (out / f"{STEM}_planes" / "zplane03.h5").unlink()
    with h5py.File(out / f"{STEM}.h5", "r") as fh:  # what h5py alone gives: zeros, no error
        assert fh["mov"].is_virtual and not fh["mov"][:, 1].any()
    with pytest.raises(SourceError, match=r"2 missing file\(s\) \(.*zplane02\.h5, .*zplane03\.h5\)"):
        imread(out / f"{STEM}.h5")
    verify = verify_cli(out)
    assert verify.returncode != 0
    assert f"{STEM}.h5: unreadable by its library (SourceError" in verify.stdout + verify.stderr
    assert "zplane02.h5, " in verify.stdout + verify.stderr


def test_compression_needs_the_virtual_layout(tmp_path, make_acquisition):
    make_acquisition(tmp_path, **SPEC)
    with pytest.raises(ValueError, match="h5.compression: 'gzip' needs h5.layout: virtual"):
        run_config(_config(tmp_path, compression="gzip"))
    run_config(_config(tmp_path, compression="gzip", layout="virtual"))
    with h5py.File(tmp_path / "out" / f"{STEM}_planes" / "zplane01.h5", "r") as fh:
        assert fh["mov"].compression == "gzip"
