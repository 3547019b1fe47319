"""Raw ScanImage source: header parsing, series handling, page mapping (sources/scanimage.py).

Expected values come from the ``AcquisitionSpec`` that generated the files, never from
the reader under test.
"""

from __future__ import annotations

import logging
import shutil
import struct

import numpy as np
import pytest
import tifffile
from conftest import set_next_page_offset

import imexport.synthetic as synthetic
from imexport.sources import resolve_input
from imexport.sources.info import SourceError, SourceInfo
from imexport.sources.scanimage import (
    PlaneReader,
    build_page_index,
    inspect_acquisition,
)
from imexport.synthetic import FLY_TO_VALUE, AcquisitionSpec, expected_roi


def open_reader(info):
    return PlaneReader(info, build_page_index(info))


def roi_rows(spec):
    return [slice(y0, y0 + h) for y0, h in zip(spec.roi_row_starts(), spec.roi_heights)]


def fly_to_rows(spec):
    rows = np.ones(spec.page_height, bool)
    for s in roi_rows(spec):
        rows[s] = False
    return rows


# --------------------------------------------------------------------------- header


@pytest.mark.parametrize(
    "overrides",
    [
        dict(n_planes=4, roi_heights=[10, 7, 5], fly_to_lines=3, frame_rate=7.25),
        dict(n_planes=3, n_colors=2, roi_heights=[8, 6], fly_to_lines=2),  # dual-colour LBM
        dict(n_planes=1, n_colors=2, roi_heights=[9]),  # dual-PMT, single plane, single ROI
        dict(n_planes=1, roi_heights=[9], objective_resolution=100.0, deg_per_pixel=0.02),
    ],
)
def test_header_fields(tmp_path, make_acquisition, overrides):
    spec, paths = make_acquisition(tmp_path, **overrides)
    info = inspect_acquisition(paths)
    assert info.files == [str(p.resolve()) for p in paths]
    assert info.n_saved == spec.n_planes * spec.n_colors
    assert info.n_planes == spec.n_planes
    assert info.n_colors == spec.n_colors
    assert info.stack_type == ("lbm" if spec.n_planes > 1 else "single_plane")
    assert info.fs == pytest.approx(spec.frame_rate)
    # fly-to lines exist only between ROIs
    assert info.fly_to_lines == (spec.fly_to_lines if len(spec.roi_heights) > 1 else 0)
    # µm per pixel = objectiveResolution [µm/deg] * sizeXY [deg] / pixelResolutionXY
    size_x_deg = spec.width * spec.deg_per_pixel
    assert info.dx == pytest.approx(spec.objective_resolution * size_x_deg / spec.width)
    size_y_deg = spec.roi_heights[0] * spec.deg_per_pixel
    assert info.dy == pytest.approx(spec.objective_resolution * size_y_deg / spec.roi_heights[0])
    assert info.dz is None  # LBM spacing is not in the header
    assert info.roi_heights == spec.roi_heights
    assert (info.page_height, info.page_width, info.dtype) == (
        sum(spec.roi_heights) + (len(spec.roi_heights) - 1) * info.fly_to_lines,
        spec.width,
        "<i2",
    )
    per_file = [min(spec.frames_per_file, spec.n_frames - i * spec.frames_per_file) for i in range(len(paths))]
    assert info.frames_per_file == per_file
    assert info.pages_per_file == [f * spec.n_saved for f in per_file]
    assert info.n_frames == spec.n_frames
    assert [r["pixels_xy"] for r in info.rois] == [[spec.width, h] for h in spec.roi_heights]
    assert info.shape() == (
        spec.n_frames,
        spec.n_colors,
        spec.n_planes,
        max(spec.roi_heights),
        spec.width * len(spec.roi_heights),
    )
    assert SourceInfo.from_json(info.to_json()) == info


# --------------------------------------------------------------------------- page mapping


@pytest.mark.parametrize(
    "overrides",
    [
        dict(n_frames=11, frames_per_file=4, n_planes=3, n_colors=2),  # files of 4, 4, 3 frames
        dict(n_frames=7, frames_per_file=2, n_planes=4, n_colors=1, roi_heights=[5, 3, 4]),
        dict(n_frames=5, frames_per_file=5, n_planes=1, n_colors=2, roi_heights=[6]),
    ],
)
def test_page_to_tcz_mapping_for_every_frame_colour_and_plane(tmp_path, make_acquisition, overrides):
    spec, paths = make_acquisition(tmp_path, content="index", **overrides)
    assert len(paths) == -(-spec.n_frames // spec.frames_per_file)
    info = inspect_acquisition(paths)
    frames = np.arange(spec.n_frames)
    colors = list(range(spec.n_colors))
    roi = ~fly_to_rows(spec)
    with open_reader(info) as reader:
        for z in range(spec.n_planes):
            pages = reader.read(frames, colors, z)
            assert pages.shape == (spec.n_frames, spec.n_colors, spec.page_height, spec.width)
            for t in frames:
                for c in colors:
                    saved_channel = c * spec.n_planes + z
                    page = pages[t, c]
                    assert np.all(page[roi] == t * 64 + saved_channel), (t, c, z)
                    assert np.all(page[~roi] == FLY_TO_VALUE), (t, c, z)
        # frames in any order, colours reversed: still the right pages
        rng = np.random.default_rng(1)
        some = rng.permutation(spec.n_frames)[: max(2, spec.n_frames // 2)]
        z = spec.n_planes - 1
        pages = reader.read(some, colors[::-1], z)
        for i, t in enumerate(some):
            for j, c in enumerate(colors[::-1]):
                assert np.all(pages[i, j][roi] == t * 64 + c * spec.n_planes + z)
        with pytest.raises(IndexError):
            reader.read(frames[:1], colors, spec.n_planes)


def test_scene_pixels_equal_ground_truth(tmp_path, make_acquisition):
    spec, paths = make_acquisition(
        tmp_path, n_frames=8, frames_per_file=3, n_planes=2, n_colors=2, plane_shifts=[[0, 0], [2, -3]], noise=5.0
    )
    info = inspect_acquisition(paths)
    frames = np.array([0, 2, 3, 7])
    with open_reader(info) as reader:
        for z in range(spec.n_planes):
            pages = reader.read(frames, [0, 1], z)
            for c in range(2):
                for r, rows in enumerate(roi_rows(spec)):
                    np.testing.assert_array_equal(pages[:, c, rows, :], expected_roi(spec, frames, c, z, r))


def test_trailing_partial_frame_is_dropped_with_a_warning(tmp_path, make_acquisition, caplog):
    spec, paths = make_acquisition(tmp_path, content="index", n_frames=7, frames_per_file=3, n_planes=3, trailing_pages=2)
    with caplog.at_level(logging.WARNING):
        info = inspect_acquisition(paths)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert paths[-1].name in message and "2 trailing page" in message
    assert info.n_frames == 7
    assert info.frames_per_file == [3, 3, 1]
    assert info.pages_per_file == [9, 9, 1 * 3 + 2]
    with open_reader(info) as reader:
        last = reader.read(np.array([6]), [0], 2)[0, 0]
    assert np.all(last[~fly_to_rows(spec)] == 6 * 64 + 2)


def test_fewer_pages_than_one_frame_raises(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=1, frames_per_file=1, n_planes=3)
    # keep only the first page: the IFD chain must end there
    with tifffile.TiffFile(paths[0]) as tf:
        second_ifd = tf.pages[1].offset
    set_next_page_offset(paths[0], 0, 0)
    paths[0].write_bytes(paths[0].read_bytes()[:second_ifd])
    with pytest.raises(SourceError, match="fewer pages than one frame") as err:
        inspect_acquisition(paths)
    assert paths[0].name in str(err.value)


# --------------------------------------------------------------------------- series


def test_natural_sort_of_padded_series(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, content="index", n_frames=12, frames_per_file=1, n_planes=2)
    names = [p.name for p in paths]
    assert names[:2] == ["acq_00001.tif", "acq_00002.tif"] and names[-1] == "acq_00012.tif"
    shuffled = [paths[i] for i in np.random.default_rng(3).permutation(len(paths))]
    info = inspect_acquisition(shuffled)
    assert info.files == [str(p.resolve()) for p in paths]
    assert resolve_input(paths[0].parent) == [p.resolve() for p in paths]


def test_natural_sort_of_unpadded_names_keeps_time_order(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, content="index", n_frames=12, frames_per_file=1, n_planes=2)
    renamed = []
    for i, p in enumerate(paths):
        renamed.append(p.rename(p.with_name(f"x_{i + 1}.tif")))
    (paths[0].parent / "notes.txt").write_text("not a tiff")
    (paths[0].parent / ".x_99.tif").write_bytes(b"hidden")
    files = resolve_input(paths[0].parent)
    assert [f.name for f in files] == [f"x_{i}.tif" for i in range(1, 13)]  # x_2 before x_10
    assert resolve_input(paths[0].parent / "x_*.tif") == files
    info = inspect_acquisition(list(reversed(files)))
    roi = ~fly_to_rows(spec)
    with open_reader(info) as reader:
        pages = reader.read(np.arange(12), [0], 1)
    assert [int(np.unique(pages[t, 0][roi])[0]) for t in range(12)] == [t * 64 + 1 for t in range(12)]


def test_resolve_input_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="does not exist"):
        resolve_input(tmp_path / "missing")
    with pytest.raises(SourceError, match="holds no .tif"):
        resolve_input(tmp_path / "empty")
    with pytest.raises(SourceError, match="matches no .tif"):
        resolve_input(tmp_path / "empty" / "*.tif")


def test_gap_in_the_series_raises_naming_the_missing_number(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=12, frames_per_file=3)
    paths[2].unlink()  # acq_00003.tif
    with pytest.raises(SourceError, match=r"gap.*\[3\] missing") as err:
        inspect_acquisition(resolve_input(paths[0].parent))
    assert "acq" in str(err.value)


def test_mixed_acquisitions_raise(tmp_path, make_acquisition):
    make_acquisition(tmp_path, stem="a", n_frames=6)
    make_acquisition(tmp_path, stem="b", n_frames=6)
    with pytest.raises(SourceError, match="mixes acquisitions"):
        inspect_acquisition(resolve_input(tmp_path / "raw"))


def test_files_with_different_page_sizes_raise_naming_the_file(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=6, frames_per_file=3)
    _, other = make_acquisition(tmp_path, subdir="other", n_frames=9, frames_per_file=3, width=spec.width + 4)
    intruder = paths[0].parent / other[2].name  # acq_00003.tif, 4 px wider
    shutil.copy(other[2], intruder)
    with pytest.raises(SourceError, match="not one acquisition") as err:
        inspect_acquisition(resolve_input(paths[0].parent))
    assert str(intruder.resolve()) in str(err.value)


# --------------------------------------------------------------------------- bad headers


def test_non_scanimage_tiff_raises(tmp_path):
    for bigtiff in (False, True):
        path = tmp_path / f"plain_{bigtiff}.tif"
        tifffile.imwrite(path, np.zeros((3, 8, 8), np.int16), bigtiff=bigtiff, photometric="minisblack")
        with pytest.raises(SourceError, match="not a raw ScanImage TIFF") as err:
            inspect_acquisition([path])
        assert str(path.resolve()) in str(err.value)


def test_corrupt_roi_json_raises_naming_the_file(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=3, frames_per_file=3)
    data = bytearray(paths[0].read_bytes())
    magic, version, size0, size1 = struct.unpack_from("<IIII", data, 16)
    assert magic == synthetic.SCANIMAGE_MAGIC
    json_at = 32 + size0
    assert data[json_at : json_at + 1] == b"{"
    data[json_at : json_at + 12] = b"#broken#json"
    paths[0].write_bytes(bytes(data))
    with pytest.raises(SourceError) as err:
        inspect_acquisition(paths)
    assert str(paths[0].resolve()) in str(err.value)
    assert "ROI" in str(err.value) or "corrupt" in str(err.value)


def test_header_without_channel_save_raises(tmp_path, make_acquisition, monkeypatch):
    original = synthetic.frame_data_text

    def without_channel_save(spec):
        return "".join(line for line in original(spec).splitlines(keepends=True) if "channelSave" not in line)

    monkeypatch.setattr(synthetic, "frame_data_text", without_channel_save)
    spec, paths = make_acquisition(tmp_path, n_frames=3, frames_per_file=3)
    with pytest.raises(SourceError, match="channelSave") as err:
        inspect_acquisition(paths)
    assert str(paths[0].resolve()) in str(err.value)


def test_rois_that_do_not_fit_the_page_raise(tmp_path, make_acquisition, monkeypatch):
    original = synthetic.roi_group_json

    def too_many_fly_to(spec):
        # 40 ROIs separated by 2 fly-to lines each cannot fit a page of 12 rows
        return original(AcquisitionSpec(**{**spec.to_dict(), "roi_heights": [1] * 40}))

    monkeypatch.setattr(synthetic, "roi_group_json", too_many_fly_to)
    spec, paths = make_acquisition(tmp_path, n_frames=3, frames_per_file=3, fly_to_lines=2)
    with pytest.raises(SourceError) as err:
        inspect_acquisition(paths)
    assert str(paths[0].resolve()) in str(err.value)


# --------------------------------------------------------------------------- changes after inspect


def test_page_index_equals_tifffile_when_nothing_changed(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=7, frames_per_file=3, trailing_pages=1)
    offsets = build_page_index(inspect_acquisition(paths))
    for path, got in zip(paths, offsets):
        with tifffile.TiffFile(path) as tf:
            np.testing.assert_array_equal(got, [p.dataoffsets[0] for p in tf.pages])


def test_page_index_detects_appended_pages(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=7, frames_per_file=3)
    info = inspect_acquisition(paths)
    _, longer = make_acquisition(tmp_path, subdir="longer", n_frames=8, frames_per_file=3)
    shutil.copy(longer[-1], paths[-1])  # the last file grew from 1 to 2 frames
    with pytest.raises(SourceError, match="changed") as err:
        build_page_index(info)
    message = str(err.value)
    assert str(paths[-1].resolve()) in message
    assert f"{2 * spec.n_saved} pages" in message and f"{1 * spec.n_saved} of" in message


def test_page_index_detects_truncation(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=7, frames_per_file=3)
    info = inspect_acquisition(paths)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SourceError, match="truncated") as err:
        build_page_index(info)
    assert str(paths[1].resolve()) in str(err.value)


def test_page_index_detects_a_changed_page_size(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=6, frames_per_file=3)
    info = inspect_acquisition(paths)
    _, wider = make_acquisition(tmp_path, subdir="wider", n_frames=6, frames_per_file=3, width=spec.width + 2)
    shutil.copy(wider[0], paths[0])
    with pytest.raises(SourceError, match="changed") as err:
        build_page_index(info)
    assert str(paths[0].resolve()) in str(err.value)


def test_inspect_counts_exactly_when_one_description_is_longer(tmp_path, make_acquisition, monkeypatch):
    spec, paths = make_acquisition(tmp_path, subdir="plain", n_frames=4, frames_per_file=4, n_planes=2)
    with tifffile.TiffFile(paths[0]) as tf:
        stride = tf.pages[1].offset - tf.pages[0].offset
    original, calls = synthetic._description, []

    def one_long_description(frame_number, t_seconds):
        text = original(frame_number, t_seconds)
        calls.append(frame_number)
        return text[:-1] + b" " * stride + b"\0" if len(calls) == 4 else text

    monkeypatch.setattr(synthetic, "_description", one_long_description)
    _, odd = make_acquisition(tmp_path, subdir="odd", n_frames=4, frames_per_file=4, n_planes=2)
    with tifffile.TiffFile(odd[0]) as tf:
        assert len(tf.pages) == 8
    info = inspect_acquisition(odd)
    assert info.pages_per_file == [8]
    build_page_index(info)
