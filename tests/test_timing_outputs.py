"""Each exported frame's acquisition time, in every output format, after a frame selection.

Expected times come from the facts the synthetic writer follows, written out here: volume
``v`` of a fast-Z stack with ``S`` slices and ``F`` flyback frames starts at logged frame
``v·(S+F)``; ScanImage numbers logged frames from 1 and skips one number after each
dropped frame; a page's ``frameTimestamps_sec`` is ``(frameNumbers - 1) / frame rate``
(6 decimals). A frame's time is its volume's first page's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ONE_ROI, PIEZO_STACK

from imexport.metadata import TIMING_INLINE_FRAMES
from imexport.verify import verify

S, F = PIEZO_STACK["piezo_slices"], PIEZO_STACK["flyback_frames"]
(DROPPED_AFTER,) = PIEZO_STACK["dropped_after"]
SELECTED = [1, 3, 5]  # 0-based volumes of the selection "2:6:2" (1-based, inclusive)


def expected_numbers(volumes):
    first_logged = np.asarray(volumes) * (S + F)
    return first_logged + 1 + (first_logged > DROPPED_AFTER)


def expected_times(volumes, frame_rate=ONE_ROI["frame_rate"]):
    return np.round((expected_numbers(volumes) - 1) / frame_rate, 6)


def expected_frames_per_file(volumes, logged_per_file=7):
    """A volume belongs to the file holding its first logged frame."""
    files = np.asarray(volumes) * (S + F) // logged_per_file
    n_files = -(-(6 * (S + F)) // logged_per_file)
    return np.bincount(files, minlength=n_files).tolist()


def products(out, pattern):
    return sorted(p for p in out.rglob(pattern) if ".imexport" not in p.parts)


def check_timing_metadata(timing, volumes):
    assert timing["timestamps_sec"] == expected_times(volumes).tolist()
    assert timing["frame_numbers"] == expected_numbers(volumes).tolist()
    assert timing["acquisition_start"] == "2021-11-05T09:50:13.560000"
    assert timing["dropped_frames"] == [{"after_frame_number": DROPPED_AFTER + 1, "missing": 1}]
    assert timing["acq_trigger_timestamps_sec"] == [0.0]


def check_all_formats(out, volumes):
    import h5py
    import tifffile
    import zarr

    want = expected_times(volumes)
    plane_tiffs = products(out, "zplane0?_*.tif")
    assert len(plane_tiffs) == S
    for path in plane_tiffs:
        with tifffile.TiffFile(path) as tif:
            check_timing_metadata(json.loads(tif.imagej_metadata["Info"])["timing"], volumes)
    folders = [p.parent for p in products(out, "data_raw.bin")]
    assert len(folders) == S
    for folder in folders:
        times = np.load(folder / "timestamps.npy")
        assert times.dtype == np.float64
        np.testing.assert_array_equal(times, want)
        ops = np.load(folder / "ops.npy", allow_pickle=True).item()
        assert ops["frames_per_file"] == expected_frames_per_file(volumes)
        assert sum(ops["frames_per_file"]) == ops["nframes"] == len(volumes)
    (store,) = products(out, "*.zarr")
    attrs = zarr.open_group(store, mode="r").attrs.asdict()
    check_timing_metadata(attrs["imexport"]["timing"], volumes)
    assert all("timing" not in plane for plane in attrs["imexport_planes"])  # kept once
    (master,) = [p for p in products(out, "*.h5") if "_planes" not in str(p)]
    with h5py.File(master) as fh:
        assert fh["timestamps"].dtype == np.float64
        np.testing.assert_array_equal(fh["timestamps"][()], want)
        np.testing.assert_array_equal(fh["frame_numbers"][()], expected_numbers(volumes))
        assert fh["mov"].shape[0] == len(volumes)


def test_workflow_writes_the_selected_frames_times_in_every_format(tmp_path, make_acquisition, run_snakemake):
    spec, paths = make_acquisition(tmp_path, **PIEZO_STACK)
    out = tmp_path / "out"
    run_snakemake(
        tmp_path,
        {
            "input": str(paths[0].parent),
            "outdir": str(out),
            "channels": 1,
            "frames": "2:6:2",
            "format": ["tiff", "bin", "zarr", "h5"],
            "scan_phase": {"fix_phase": False},
            "qc": {"enabled": True},
        },
    )
    check_all_formats(out, SELECTED)
    # the dropped frame: in the processing history's step, and the QC report's frame-interval plot
    step = json.loads((out / "imexport_manifest.json").read_text())["steps"][-1]
    assert step["source_timing"] == {
        "acquisition_start": "2021-11-05T09:50:13.560000",
        "dropped_frames": [{"after_frame_number": DROPPED_AFTER + 1, "missing": 1}],
    }
    figure = out / ".imexport" / "qc" / "frame_intervals.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the pixels are those of the selected volumes (slice 0, channel 1): the selection is what the times say
    page = np.asarray(SELECTED) * (S + F) * 2
    data = np.load(products(out, "data_raw.bin")[0].parent / "timestamps.npy")
    assert len(data) == len(page)
    movie = np.fromfile(products(out, "data_raw.bin")[0], dtype=np.int16).reshape(len(SELECTED), 5, 6)
    np.testing.assert_array_equal(movie[:, 0, 0], (page // 2) * 64)


@pytest.mark.parametrize("ext, options", [(".tiff", {"layout": "volume"}), (".h5", {})])
def test_api_writes_the_selected_frames_times(tmp_path, make_acquisition, ext, options):
    import h5py
    import tifffile

    import imexport

    spec, paths = make_acquisition(tmp_path, **PIEZO_STACK)
    out = imexport.imwrite(
        imexport.imread(paths[0].parent),
        tmp_path / "api",
        ext=ext,
        channels=1,
        frames="2:6:2",
        fix_phase=False,
        show_progress=False,
        **options,
    )
    if ext == ".tiff":
        (volume,) = products(out, "*.tif")
        with tifffile.TiffFile(volume) as tif:
            check_timing_metadata(json.loads(tif.imagej_metadata["Info"])["timing"], SELECTED)
    else:
        (master,) = [p for p in products(out, "*.h5") if "_planes" not in str(p)]
        with h5py.File(master) as fh:
            np.testing.assert_array_equal(fh["timestamps"][()], expected_times(SELECTED))


def test_long_exports_keep_the_per_frame_times_in_a_sidecar(tmp_path, make_acquisition):
    import tifffile
    import zarr

    import imexport

    n = TIMING_INLINE_FRAMES + 5
    spec, paths = make_acquisition(tmp_path, **{**ONE_ROI, "roi_heights": [2], "width": 2}, n_frames=n, frames_per_file=n)
    times = np.round(np.arange(n) / spec.frame_rate, 6)  # planar: frame t is logged frame t, number t + 1
    tif_out = imexport.imwrite(paths[0].parent, tmp_path / "tif", ext=".tiff", fix_phase=False, show_progress=False)
    (tif,) = products(tif_out, "*.tif")
    with tifffile.TiffFile(tif) as handle:
        inline = json.loads(handle.imagej_metadata["Info"])["timing"]
    assert "timestamps_sec" not in inline and inline["per_frame_sidecar"] == tif.name + ".timing.json"
    sidecar = json.loads((tif.parent / inline["per_frame_sidecar"]).read_text())
    np.testing.assert_array_equal(sidecar["timestamps_sec"], times)
    assert sidecar["frame_numbers"] == list(range(1, n + 1))
    # the sidecar belongs to the TIFF: listed and hashed in the manifest, so verify checks it
    manifest = json.loads((tif_out / "imexport_manifest.json").read_text())
    assert tif.name + ".timing.json" in {f["path"] for f in manifest["files"]}
    assert verify(tif_out) == []
    (tif.parent / inline["per_frame_sidecar"]).write_text("{}")
    assert any(tif.name + ".timing.json" in problem for problem in verify(tif_out))
    zarr_out = imexport.imwrite(paths[0].parent, tmp_path / "zarr", ext=".zarr", fix_phase=False, show_progress=False)
    (store,) = products(zarr_out, "*.zarr")
    inline = zarr.open_group(store, mode="r").attrs["imexport"]["timing"]
    assert "timestamps_sec" not in inline
    np.testing.assert_array_equal(json.loads((store / inline["per_frame_sidecar"]).read_text())["timestamps_sec"], times)


def test_the_plan_summary_lists_what_inspection_set_aside(tmp_path, make_acquisition):
    from imexport.steps import plan_summary
    from imexport.workflow_plan import plan_for_config

    spec, paths = make_acquisition(
        tmp_path, **ONE_ROI, piezo_slices=4, flyback_frames=2, n_frames=3, partial_volume_frames=4, frames_per_file=5
    )
    _, plan = plan_for_config(
        {"input": str(paths[0].parent), "outdir": str(tmp_path / "out"), "scan_phase": {"fix_phase": False}}
    )
    assert len(plan.frames) == 3
    notes = [line for line in plan_summary(plan).splitlines() if line.startswith("note: ")]
    assert any("incomplete volume" in line and "4 logged frame" in line for line in notes)


def test_sources_without_timing_write_none(tmp_path):
    import imexport

    movie = np.arange(4 * 3 * 5 * 6, dtype=np.int16).reshape(4, 3, 5, 6)
    (tmp_path / "raw").mkdir()
    np.save(tmp_path / "raw" / "movie.npy", movie)
    out = imexport.imwrite(tmp_path / "raw" / "movie.npy", tmp_path / "out", ext=".bin", show_progress=False)
    folders = [p.parent for p in products(out, "data_raw.bin")]
    assert folders and not any((f / "timestamps.npy").exists() for f in folders)
    assert all("timing" not in np.load(f / "ops.npy", allow_pickle=True).item()["imexport"] for f in folders)
    # one file of 4 frames: suite2p's frames_per_file still holds it
    assert all(np.load(f / "ops.npy", allow_pickle=True).item()["frames_per_file"] == [4] for f in folders)
