"""Raw ScanImage variants through the common protocol: piezo stacks, dual-PMT single plane,
dual-colour LBM (sources/scanimage.py via inspect_input + open_plane_reader).

Synthetic files use ``content="index"``: every ROI pixel of logged frame ``f``, saved
channel ``ch`` is ``f * 64 + ch``. Expected values follow ScanImage's documented order —
volume ``v``, slice ``s``, repeat ``r`` is logged frame ``v*S*R + s*R + r``, or ``v*S + s``
when ``logAverageFactor > 1`` — computed here, never by the reader under test.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import imexport.synthetic as synthetic
from imexport.sources import build_index, inspect_input, open_plane_reader
from imexport.sources.info import SourceInfo
from imexport.synthetic import expected_roi

PIEZO = dict(
    content="index",
    n_planes=1,
    n_colors=2,
    roi_heights=[5, 4],
    width=6,
    fly_to_lines=2,
    n_frames=4,
    frames_per_file=5,
    piezo_slices=3,
    frame_rate=12.0,
    z_step=2.5,
)


def roi_rows(spec):
    return np.concatenate([np.arange(y0, y0 + h) for y0, h in zip(spec.roi_row_starts(), spec.roi_heights)])


def read_all(info: SourceInfo, index) -> np.ndarray:
    """(T, C, Z, page_height, page_width) through the protocol."""
    with open_plane_reader(info, index) as reader:
        return np.stack(
            [reader.read(np.arange(info.n_frames), list(range(info.n_colors)), z) for z in range(info.n_planes)], axis=2
        )


def piezo_values(spec, logged_frames) -> np.ndarray:
    """(T, C, Z) value of the ROI pixels: the mean of each plane's logged frames, per colour."""
    channels = np.arange(spec.n_colors)  # one bead per colour: saved channel = colour
    mean = np.asarray(logged_frames, dtype=np.float64).mean(axis=-1) * 64
    return np.rint(mean[:, None, :] + channels[None, :, None])


@pytest.mark.parametrize(
    "per_slice, log_average, average, n_planes, plane_frames",
    [
        # averaged repeats: plane s = frames v*S*R + s*R + r, r = 0..R-1
        (2, 1, True, 3, lambda v, z, S, R: [v * S * R + z * R + r for r in range(R)]),
        # repeats as planes: plane z = s*R + r is frame v*S*R + z
        (2, 1, False, 6, lambda v, z, S, R: [v * S * R + z]),
        # ScanImage averaged already: one logged frame per slice, v*S + s
        (3, 3, True, 3, lambda v, z, S, R: [v * S + z]),
        (3, 3, False, 3, lambda v, z, S, R: [v * S + z]),
        (1, 1, True, 3, lambda v, z, S, R: [v * S + z]),
    ],
    ids=["averaged", "repeats-as-planes", "logAverageFactor-averaged", "logAverageFactor-raw", "one-frame-per-slice"],
)
def test_piezo_stack(tmp_path, make_acquisition, per_slice, log_average, average, n_planes, plane_frames):
    spec, paths = make_acquisition(tmp_path, **PIEZO, frames_per_slice=per_slice, log_average_factor=log_average)
    S, R = spec.piezo_slices, per_slice
    info = inspect_input(paths[0].parent, piezo_average=average)
    assert info.kind == "scanimage" and info.stack_type == "piezo"
    assert info.shape() == (spec.n_frames, 2, n_planes, max(spec.roi_heights), 2 * spec.width)
    assert info.fs == pytest.approx(spec.frame_rate / (S * R))  # a volume takes S x R acquired frames
    assert info.dz == (pytest.approx(spec.z_step) if n_planes == S else None)
    assert info.scanimage["SI.hStackManager.enable"] is True
    info = SourceInfo.from_json(info.to_json())  # what the plane jobs get
    pages = read_all(info, build_index(info))
    frames = np.array([[plane_frames(v, z, S, R) for z in range(n_planes)] for v in range(spec.n_frames)])
    expected = piezo_values(spec, frames)
    rows = roi_rows(spec)
    for t, c, z in np.ndindex(expected.shape):
        assert np.all(pages[t, c, z][rows] == expected[t, c, z]), (t, c, z)
        assert np.all(np.delete(pages[t, c, z], rows, axis=0) == synthetic.FLY_TO_VALUE)


def test_piezo_unfinished_volume_is_dropped_with_a_warning(tmp_path, make_acquisition, caplog):
    spec, paths = make_acquisition(tmp_path, **{**PIEZO, "frames_per_file": 5})  # 12 logged frames: 5, 5, 2
    paths[-1].unlink()  # 10 logged frames: 3 volumes of 3 and one frame
    with caplog.at_level(logging.WARNING):
        info = inspect_input(paths[0].parent)
    assert info.n_frames == 3
    assert any("unfinished volume" in r.getMessage() and "1 trailing frame" in r.getMessage() for r in caplog.records)
    with open_plane_reader(info, build_index(info)) as reader:
        last = reader.read(np.array([2]), [1], 2)[0, 0]
    assert np.all(last[roi_rows(spec)] == (2 * 3 + 2) * 64 + 1)


def test_stack_enabled_with_one_slice_is_planar_lbm(tmp_path, make_acquisition, monkeypatch):
    """Some planar files have SI.hStackManager.enable = true with numSlices = 1: not a stack."""
    original = synthetic.frame_data_text
    monkeypatch.setattr(
        synthetic,
        "frame_data_text",
        lambda spec: original(spec).replace("hStackManager.enable = false", "hStackManager.enable = true"),
    )
    spec, paths = make_acquisition(tmp_path, content="index", n_planes=3, n_frames=2, frames_per_file=2)
    info = inspect_input(paths[0].parent)
    assert info.stack_type == "lbm" and info.shape()[:3] == (2, 1, 3)
    pages = read_all(info, build_index(info))
    for t, z in np.ndindex(2, 3):
        assert np.all(pages[t, 0, z][roi_rows(spec)] == t * 64 + z)


def test_dual_pmt_single_plane(tmp_path, make_acquisition):
    spec, paths = make_acquisition(
        tmp_path, n_planes=1, n_colors=2, roi_heights=[9], fly_to_lines=0, width=10, n_frames=5, frames_per_file=2, noise=4.0
    )
    info = inspect_input(paths[0].parent)
    assert info.stack_type == "single_plane" and info.shape() == (5, 2, 1, 9, 10)
    pages = read_all(info, build_index(info))
    for c in range(2):
        np.testing.assert_array_equal(pages[:, c, 0], expected_roi(spec, np.arange(5), c, 0, 0))
    assert not np.array_equal(pages[:, 0], pages[:, 1])  # two PMTs, two images


def test_dual_colour_lbm(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, content="index", n_planes=3, n_colors=2, n_frames=5, frames_per_file=2)
    info = inspect_input(paths[0].parent)
    assert info.stack_type == "lbm" and info.shape()[:3] == (5, 2, 3)
    pages = read_all(info, build_index(info))
    rows = roi_rows(spec)
    for t, c, z in np.ndindex(5, 2, 3):
        assert np.all(pages[t, c, z][rows] == t * 64 + c * 3 + z)  # saved channel c * n_planes + z
