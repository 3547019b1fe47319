"""Every output format of imexport is an input: export, export the export, compare.

One dual-colour LBM acquisition (two ROIs, fly-to lines, files of a series) is exported
by a real ``snakemake`` run to tiff, bin, zarr and h5 at once; each of those outputs is
then exported again to per-plane TIFFs by a second run. Pixels must equal the generator's
ground truth bit for bit at both steps, fs/dx/dy/dz must survive, and the second run —
not a ScanImage source — must schedule no scan-phase job although the config asks for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from imexport.synthetic import expected_roi

SPEC = dict(
    n_frames=8,
    n_planes=3,
    n_colors=2,
    roi_heights=[10, 8],
    width=12,
    fly_to_lines=2,
    frames_per_file=3,
    frame_rate=6.0,
    n_cells=6,
    noise=3.0,
)
TAG = "tp00001-00008_ch01-02"  # all 8 frames, both colours
SCALE_KEYS = ("fs", "dx", "dy", "dz")


def truth(spec) -> np.ndarray:
    """(T, C, Z, Y, X): ROIs side by side, zero below the shorter one."""
    T, C, Z = spec.n_frames, spec.n_colors, spec.n_planes
    out = np.zeros((T, C, Z, max(spec.roi_heights), spec.width * spec.n_rois), np.int16)
    for c in range(C):
        for z in range(Z):
            for r, h in enumerate(spec.roi_heights):
                out[:, c, z, :h, r * spec.width : (r + 1) * spec.width] = expected_roi(spec, np.arange(T), c, z, r)
    return out


def read_tiff(path: Path) -> tuple[np.ndarray, dict]:
    with tifffile.TiffFile(path) as tf:
        return tf.asarray(), json.loads(tf.imagej_metadata["Info"])


@pytest.fixture(scope="module")
def first_export(tmp_path_factory, make_acquisition, run_snakemake):
    root = tmp_path_factory.mktemp("roundtrip")
    spec, paths = make_acquisition(root, **SPEC)
    out = root / "first"
    config = {
        "input": str(paths[0].parent),
        "outdir": str(out),
        "format": ["tiff", "bin", "zarr", "h5"],
        "scan_phase": {"fix_phase": False},
        "metadata": {"dz": 12.5},
    }
    run_snakemake(root / "run_first", config)
    return spec, root, out


def test_dual_colour_lbm_exports_to_every_format(first_export):
    spec, _, out = first_export
    want = truth(spec)
    for z in range(spec.n_planes):
        data, info = read_tiff(out / f"zplane{z + 1:02d}_{TAG}.tif")
        np.testing.assert_array_equal(data, want[:, :, z])  # (T, C, Y, X)
        assert info["dz"] == 12.5 and info["fs"] == pytest.approx(spec.frame_rate)
        folder = out / f"zplane{z + 1:02d}_{TAG}"
        for c, name in enumerate(["data_raw.bin", "data_chan2_raw.bin"]):
            binary = np.fromfile(folder / name, np.int16).reshape(spec.n_frames, *want.shape[-2:])
            np.testing.assert_array_equal(binary, want[:, c, z])
    np.testing.assert_array_equal(zarr.open_group(out / f"zplane01-03_{TAG}.zarr", mode="r")["0"][:], want)
    with h5py.File(out / f"zplane01-03_{TAG}.h5", "r") as f:
        np.testing.assert_array_equal(f["mov"][:], want)


@pytest.mark.parametrize(
    "fmt, input_path, kind",
    [
        ("tiff", ".", "tiff"),  # the output folder: its per-plane TIFFs
        ("bin", f"zplane*_{TAG[-7:]}", "suite2p"),  # a glob of the plane folders
        ("zarr", f"zplane01-03_{TAG}.zarr", "zarr"),
        ("h5", f"zplane01-03_{TAG}.h5", "hdf5"),  # the virtual-dataset master
    ],
)
def test_each_output_format_exports_again(first_export, run_snakemake, fmt, input_path, kind):
    spec, root, first = first_export
    second = root / f"again_{fmt}"
    config = {"input": str(first / input_path), "outdir": str(second), "metadata": {"dz": None}}
    result = run_snakemake(root / f"run_{fmt}", config)
    T, C, Z, Y, X = truth(spec).shape
    summary = [line for line in result.output.splitlines() if line.startswith("imexport: source:")]
    assert len(summary) == 1 and f"source: {kind} " in summary[0] and f"= {(T, C, Z, Y, X)} <i2" in summary[0]
    assert "scan_phase.fix_phase ignored" in result.output and "rule scan_phase" not in result.output
    want = truth(spec)
    for z in range(Z):
        name = f"zplane{z + 1:02d}_{TAG}.tif"
        data, info = read_tiff(second / name)
        np.testing.assert_array_equal(data, want[:, :, z])
        _, before = read_tiff(first / name)
        assert {k: info[k] for k in SCALE_KEYS} == {k: before[k] for k in SCALE_KEYS}
        assert info["source_format"] == kind and info["source_shape"] == [T, C, Z, Y, X]
        assert "scan_phase" not in info


def test_dry_run_prints_the_detected_format_and_shape(tmp_path, run_snakemake):
    (tmp_path / "in").mkdir()
    movie = np.arange(5 * 2 * 6 * 7, dtype=np.uint16).reshape(5, 2, 6, 7)
    np.save(tmp_path / "in" / "movie.npy", movie.transpose(0, 3, 2, 1))  # stored as T, X, Y, C
    out = tmp_path / "out"
    config = {
        "input": str(tmp_path / "in" / "movie.npy"),
        "outdir": str(out),
        "format": ["tiff", "zarr"],
        "input_options": {"dim_order": "TXYC"},
    }
    result = run_snakemake(tmp_path, config, "-n")
    summary = [line for line in result.output.splitlines() if line.startswith("imexport: source:")]
    assert summary == [
        "imexport: source: npy (single_plane), 1 file(s), shape (T, C, Z, Y, X) = (5, 2, 1, 6, 7) <u2, 1 ROI(s), 0 fly-to lines"
    ]
    assert "scan_phase.fix_phase ignored: the source is npy" in result.output
    assert "scan_phase " not in result.output.split("Job stats")[1]
    assert not out.exists() or not any(p for p in out.rglob("*") if ".imexport" not in p.parts)


def test_bad_dim_order_stops_the_workflow_naming_the_key(tmp_path, run_snakemake):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "movie.npy", np.zeros((3, 4, 5), np.int16))
    config = {
        "input": str(tmp_path / "in" / "movie.npy"),
        "outdir": str(tmp_path / "out"),
        "input_options": {"dim_order": "TZYX"},
    }
    result = run_snakemake(tmp_path, config, "-n", expect_ok=False)
    assert "imexport: input_options.dim_order: 'TZYX' names 4 dimensions" in result.output
    assert "Job stats" not in result.output
