"""The in-process API: the reference's signature, the workflow's files, no side effects."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import yaml
import zarr

import imexport
from imexport.synthetic import expected_roi

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds"
# The parameters of mbo_utilities.imwrite, in order (issue 5 lists them too).
REFERENCE_PARAMETERS = [
    "lazy_array",
    "outpath",
    "ext",
    "planes",
    "frames",
    "channels",
    "num_frames",
    "register_z",
    "roi_mode",
    "roi",
    "metadata",
    "overwrite",
    "order",
    "target_chunk_mb",
    "progress_callback",
    "debug",
    "show_progress",
    "output_name",
    "output_suffix",
    "dataset_name",
    "dim_order",
]


def stitched_truth(spec, frames, plane):
    height = max(spec.roi_heights)
    out = np.zeros((len(frames), height, spec.width * spec.n_rois), np.int16)
    for r, h in enumerate(spec.roi_heights):
        out[:, :h, r * spec.width : (r + 1) * spec.width] = expected_roi(spec, frames, 0, plane, r)
    return out


def test_signature_matches_the_reference():
    params = list(inspect.signature(imexport.imwrite).parameters)
    assert params[: len(REFERENCE_PARAMETERS)] == REFERENCE_PARAMETERS
    assert params[-1] == "kwargs"
    seeds = list(SEED.glob("*.txt")) if SEED.is_dir() else []
    if seeds:  # the reference's own text, where the shared folder is present
        text = seeds[0].read_text()
        body = text[text.index("def imwrite(") : text.index("):", text.index("def imwrite("))]
        names = re.findall(r"^\s*(\w+)\s*[:=,]", body.split("(", 1)[1], flags=re.M)
        assert [n for n in names if n != "kwargs"] == REFERENCE_PARAMETERS


def test_imread_is_lazy_and_indexes_like_numpy(tmp_path, make_acquisition):
    spec, _ = make_acquisition(tmp_path, n_frames=6, frames_per_file=4)
    arr = imexport.imread(tmp_path / "raw")
    assert arr.shape == (6, 1, spec.n_planes, max(spec.roi_heights), spec.width * spec.n_rois)
    assert arr.dtype == np.int16
    np.testing.assert_array_equal(arr[1:4, 0, 2], stitched_truth(spec, np.arange(1, 4), 2))
    assert arr[np.int64(2)].shape == arr.shape[1:]  # numpy ints drop the axis like ints
    assert arr[:, :, [0, 2]].shape == (6, 1, 2, *arr.shape[3:])


def test_imwrite_progress_metadata_and_no_mutation(tmp_path, make_acquisition):
    spec, _ = make_acquisition(tmp_path, n_frames=6, frames_per_file=4)
    arr = imexport.imread(tmp_path / "raw")
    before = arr.metadata
    calls = []
    out = imexport.imwrite(
        arr,
        tmp_path / "out",
        planes=[1, 3],
        metadata={"dz": 7.0, "animal": "m1"},
        fix_phase=False,
        show_progress=False,
        progress_callback=lambda fraction, plane: calls.append((fraction, plane)),
    )
    assert calls == [(0.5, 1), (1.0, 3)]
    assert arr.metadata == before  # the source is never changed by a write
    with tifffile.TiffFile(out / "zplane03_tp00001-00006.tif") as tf:
        data = tf.asarray()
        info = yaml.safe_load(tf.imagej_metadata["Info"])
    np.testing.assert_array_equal(data, stitched_truth(spec, np.arange(6), 2))
    assert info["dz"] == 14.0 and info["animal"] == "m1" and info["planes"] == [1, 3]
    assert (out / "imexport_manifest.json").is_file()


def test_show_progress_prints_one_line_per_plane_job_off_a_terminal(tmp_path, make_acquisition, capfd):
    make_acquisition(tmp_path, n_frames=6, frames_per_file=4)
    capfd.readouterr()
    imexport.imwrite(tmp_path / "raw", tmp_path / "quiet", planes=[1, 3], fix_phase=False, show_progress=False)
    assert capfd.readouterr() == ("", "")  # nothing at all
    calls = []
    imexport.imwrite(
        tmp_path / "raw",
        tmp_path / "out",
        planes=[1, 3],
        fix_phase=False,
        show_progress=True,
        progress_callback=lambda fraction, plane: calls.append((fraction, plane)),
    )
    shown = capfd.readouterr()  # pytest's captured stderr is a file, not a terminal
    assert shown.out == ""
    assert shown.err.splitlines() == ["imexport: 1/2 plane jobs done (plane 1)", "imexport: 2/2 plane jobs done (plane 3)"]
    assert calls == [(0.5, 1), (1.0, 3)]  # the caller's callback still gets every call


def test_the_progress_bar_redraws_one_line_on_a_terminal():
    from imexport.progress import WIDTH, ProgressBar

    main, terminal = os.openpty()
    with os.fdopen(terminal, "w") as stream:
        bar = ProgressBar(4, stream)
        for done, plane in enumerate([1, 2, 3, 4], start=1):
            bar(done / 4, plane)
        bar.end()  # after the last job the line is already ended: nothing more
    drawn = b""
    while True:  # everything the terminal holds; reading past the closed end raises EIO
        try:
            drawn += os.read(main, 4096)
        except OSError:
            break
    os.close(main)
    drawn = drawn.decode()
    assert drawn.endswith("\r\n")  # one newline at the end (the terminal sends it as \r\n)
    frames = drawn.removesuffix("\r\n").split("\r")
    assert frames[0] == ""  # each frame starts with a carriage return, redrawing the line
    assert WIDTH == 30
    filled = [8, 15, 22, 30]  # a quarter, half, three quarters of 30 characters, rounded
    assert frames[1:] == [f"imexport: [{'#' * n}{'-' * (WIDTH - n)}] {k}/4 plane jobs" for k, n in enumerate(filled, 1)]


def test_numpy_input_with_dim_order(tmp_path):
    movie = np.arange(5 * 3 * 8 * 9, dtype=np.uint16).reshape(5, 3, 8, 9)  # T Z Y X
    imexport.imwrite(movie.transpose(1, 0, 2, 3), tmp_path / "out", ext=".h5", dim_order="ZTYX")
    with h5py.File(tmp_path / "out" / "zplane01-03_tp00001-00005.h5") as f:
        np.testing.assert_array_equal(f["mov"][:], movie)


def test_unknown_keyword_and_bad_extension_are_errors(tmp_path, make_acquisition):
    make_acquisition(tmp_path)
    with pytest.raises(TypeError, match="colour"):
        imexport.imwrite(tmp_path / "raw", tmp_path / "out", colour=1)
    with pytest.raises(ValueError, match="ext"):
        imexport.imwrite(tmp_path / "raw", tmp_path / "out", ext=".avi")


def test_api_files_equal_the_workflow_files(tmp_path, make_acquisition, run_snakemake):
    spec, _ = make_acquisition(
        tmp_path, n_frames=8, frames_per_file=3, phase_offset=1.0, roi_heights=[24, 20], width=32, texture=100.0, n_cells=20
    )
    session = tmp_path / "session.yaml"
    imexport.imwrite(
        tmp_path / "raw",
        tmp_path / "api",
        ext=[".tiff", ".zarr", ".bin"],
        frames="1:8:2",
        register_z=True,
        roi_mode="separate",
        roi=0,
        max_reg_xy=3,
        config_out=session,
    )
    config = yaml.safe_load(session.read_text())
    config["outdir"] = str(tmp_path / "workflow")
    run_snakemake(tmp_path, config)
    api_files = sorted(
        p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*") if p.is_file() and ".imexport" not in p.parts
    )
    compared = 0
    for rel in api_files:
        if rel.name.endswith((".tif", ".bin")) or "/0/" in f"/{rel.as_posix()}":
            assert (tmp_path / "api" / rel).read_bytes() == (tmp_path / "workflow" / rel).read_bytes(), rel
            compared += 1
    # two ROIs x 3 planes: tiff files, suite2p binaries, and zarr shards
    assert compared >= 2 * 3 * 2 + 2
    api_z = zarr.open_group(tmp_path / "api" / "roi01" / "zplane01-03_tp00001-00007-2.zarr", mode="r")
    wf_z = zarr.open_group(tmp_path / "workflow" / "roi01" / "zplane01-03_tp00001-00007-2.zarr", mode="r")
    assert api_z.attrs["imexport"]["plane_shifts"] == wf_z.attrs["imexport"]["plane_shifts"]
    np.testing.assert_array_equal(api_z["0"][:], wf_z["0"][:])
