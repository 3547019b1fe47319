"""Every kind of ScanImage acquisition, read through the common protocol, page for page.

Expected values come from the facts file (shared/reference/scanimage_acquisition_kinds.md),
written out here, never from the reader: one acquisition cycle (a volume) is logged as,
for each slice ``s``, each repeat ``r`` of it, one page per saved channel ``c``; then the
flyback frames. So page ``v·P + (s·R + r)·C + c`` with ``P = (S·R + F)·C``. The synthetic
files use ``content="index"``: every pixel of page ``p`` is ``(p // C) * 64 + p % C``.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
from conftest import ONE_ROI, PIEZO_STACK, set_next_page_offset

import imexport.synthetic as synthetic
from imexport.metadata import export_metadata, frame_timing, plane_timestamps, source_header
from imexport.sources import build_index, inspect_input, open_plane_reader
from imexport.sources.info import SourceError, SourceInfo
from imexport.sources.scanimage import save_page_index


def page_value(page, n_saved):
    return (np.asarray(page) // n_saved) * 64 + np.asarray(page) % n_saved


def stack_page(v, s, r, c, *, S, R, F, C):
    return v * (S * R + F) * C + (s * R + r) * C + c


def read_all(info: SourceInfo, index) -> np.ndarray:
    """(T, C, Z) value of each page read through the protocol (each page must be uniform)."""
    with open_plane_reader(info, index) as reader:
        pages = np.stack(
            [reader.read(np.arange(info.n_frames), list(range(info.n_colors)), z) for z in range(info.n_planes)], axis=2
        )
    assert np.all(pages == pages[..., :1, :1])
    return pages[..., 0, 0].astype(np.int64)


def inspect(paths, **options) -> SourceInfo:
    info = inspect_input(paths[0].parent, **options)
    return SourceInfo.from_json(info.to_json())  # what the plane jobs get


# --------------------------------------------------------------------------- volumetric


def test_fast_z_with_flyback_two_saved_channels_split_mid_volume(tmp_path, make_acquisition):
    # 5 slices + 3 flyback frames, channels [1 4], files of 13 logged frames: every file ends mid-volume
    spec, paths = make_acquisition(
        tmp_path, **ONE_ROI, n_colors=2, channel_save=[1, 4], piezo_slices=5, flyback_frames=3, n_frames=6, frames_per_file=13
    )
    assert len(paths) == 4 and "SI.hChannels.channelSave = [1 4]" in synthetic.frame_data_text(spec)
    info = inspect(paths)
    S, F, C = 5, 3, 2
    assert info.stack_type == "piezo" and info.shape()[:3] == (6, 2, 5)
    assert info.fs == pytest.approx(30.0 / 8)  # scanVolumeRate: 8 frames per volume with flyback
    assert info.dz == pytest.approx(spec.z_step)
    got = read_all(info, build_index(info))
    for v, c, s in np.ndindex(got.shape):
        assert got[v, c, s] == page_value(stack_page(v, s, 0, c, S=S, R=1, F=F, C=C), C), (v, c, s)
    md = export_metadata(
        info, planes=np.arange(5), frames=np.arange(6), colors=np.array([1]), roi=None, roi_mode="concat_y", user={}
    )
    assert md["source_channels"] == [4] and md["z_layout"]["flyback_frames"] == 3


@pytest.mark.parametrize("mode, n_planes", [("average", 3), ("first", 3), ("planes", 6)])
def test_frames_per_slice_repeats(tmp_path, make_acquisition, mode, n_planes):
    S, R, F, C = 3, 2, 1, 1
    spec, paths = make_acquisition(
        tmp_path, **ONE_ROI, piezo_slices=S, frames_per_slice=R, flyback_frames=F, n_frames=4, frames_per_file=5
    )
    info = inspect(paths, slice_repeats=mode)
    assert info.shape()[:3] == (4, 1, n_planes)
    assert info.fs == pytest.approx(30.0 / (S * R + F))
    got = read_all(info, build_index(info))
    for v, z in np.ndindex(4, n_planes):
        if mode == "planes":
            s, r = divmod(z, R)
            want = page_value(stack_page(v, s, r, 0, S=S, R=R, F=F, C=C), C)
        else:
            repeats = [page_value(stack_page(v, z, r, 0, S=S, R=R, F=F, C=C), C) for r in range(R)]
            want = np.rint(np.mean(repeats)) if mode == "average" else repeats[0]
        assert got[v, 0, z] == want, (v, z)


def test_piezo_average_false_still_means_repeats_as_planes_and_both_keys_conflict(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **ONE_ROI, piezo_slices=3, frames_per_slice=2, n_frames=2, frames_per_file=6)
    assert inspect(paths, piezo_average=False).n_planes == 6
    assert inspect(paths, piezo_average=True).n_planes == 3
    with pytest.raises(SourceError, match="piezo_average and slice_repeats"):
        inspect(paths, piezo_average=False, slice_repeats="first")
    with pytest.raises(SourceError, match="slice_repeats = 'bogus'"):
        inspect(paths, slice_repeats="bogus")


def test_an_older_header_without_the_volume_fields_reads_a_stack_without_flyback(tmp_path, make_acquisition, monkeypatch):
    original = synthetic.frame_data_text
    dropped = ("numFramesPerVolume", "actualNumSlices", "scanVolumeRate")
    monkeypatch.setattr(
        synthetic,
        "frame_data_text",
        lambda spec: "".join(line for line in original(spec).splitlines(keepends=True) if not any(k in line for k in dropped)),
    )
    spec, paths = make_acquisition(tmp_path, **ONE_ROI, piezo_slices=3, frames_per_slice=2, n_frames=2, frames_per_file=5)
    assert "numFramesPerVolume" not in synthetic.frame_data_text(spec)
    info = inspect(paths, slice_repeats="first")
    assert info.shape()[:3] == (2, 1, 3) and info.fs == pytest.approx(30.0 / 6)
    got = read_all(info, build_index(info))
    for v, s in np.ndindex(2, 3):
        assert got[v, 0, s] == page_value(stack_page(v, s, 0, 0, S=3, R=2, F=0, C=1), 1)


def test_slice_repeats_is_a_checked_config_key():
    from imexport.config import ConfigError, validate

    assert validate({"input_options": {"slice_repeats": "first"}})["input_options"]["slice_repeats"] == "first"
    with pytest.raises(ConfigError, match="input_options.slice_repeats"):
        validate({"input_options": {"slice_repeats": "median"}})


def test_one_saved_channel_written_as_a_scalar(tmp_path, make_acquisition):
    spec, paths = make_acquisition(
        tmp_path, **ONE_ROI, channel_save=[2], piezo_slices=4, flyback_frames=2, n_frames=3, frames_per_file=7
    )
    assert "SI.hChannels.channelSave = 2\n" in synthetic.frame_data_text(spec)
    info = inspect(paths)
    assert info.shape()[:3] == (3, 1, 4) and info.options["channel_numbers"] == [2]
    got = read_all(info, build_index(info))
    for v, s in np.ndindex(3, 4):
        assert got[v, 0, s] == page_value(stack_page(v, s, 0, 0, S=4, R=1, F=2, C=1), 1)


def test_lbm_beads_with_a_piezo_stack(tmp_path, make_acquisition):
    B, S, F = 3, 2, 1  # three beads = three saved channels, two piezo slices, one flyback frame
    spec, paths = make_acquisition(
        tmp_path, **{**ONE_ROI, "n_planes": B}, piezo_slices=S, flyback_frames=F, n_frames=3, frames_per_file=4, z_step=1.5
    )
    info = inspect(paths)
    assert info.stack_type == "lbm_piezo" and info.shape()[:3] == (3, 1, B * S)
    assert info.dz is None  # beads (user metadata.dz) and slices (1.5 µm) are spaced differently
    assert info.options["stack"]["slice_step_um"] == pytest.approx(1.5)
    got = read_all(info, build_index(info))
    for v, b, s in np.ndindex(3, B, S):
        # depth order: bead-major, each bead's piezo sweep inside the bead spacing
        assert got[v, 0, b * S + s] == page_value(stack_page(v, s, 0, b, S=S, R=1, F=F, C=B), B), (v, b, s)


def test_incomplete_last_volume_is_dropped_with_a_note(tmp_path, make_acquisition, caplog):
    spec, paths = make_acquisition(
        tmp_path, **ONE_ROI, piezo_slices=4, flyback_frames=2, n_frames=3, partial_volume_frames=4, frames_per_file=5
    )
    with caplog.at_level(logging.WARNING):
        info = inspect(paths)
    assert info.n_frames == 3
    assert len(info.notes) == 1 and "incomplete volume" in info.notes[0] and "4 logged frame" in info.notes[0]
    assert any("unfinished volume" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- refused


def test_rois_at_different_depths_are_refused(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, roi_zs=[0, 40], n_frames=2, frames_per_file=2)
    with pytest.raises(SourceError) as err:
        inspect(paths)
    message = str(err.value)
    assert paths[0].name in message and "zs" in message and "ROI 1: 0" in message and "ROI 2: 40" in message


def test_roi_height_larger_than_its_page_region_is_refused(tmp_path, make_acquisition, monkeypatch):
    original = synthetic.roi_group_json
    monkeypatch.setattr(
        synthetic, "roi_group_json", lambda spec: original(synthetic.AcquisitionSpec(**{**spec.to_dict(), "roi_heights": [9, 4]}))
    )
    _, paths = make_acquisition(tmp_path, roi_heights=[6, 4], fly_to_lines=2, n_frames=2, frames_per_file=2)
    with pytest.raises(SourceError) as err:
        inspect(paths)
    assert paths[0].name in str(err.value) and "[9, 4]" in str(err.value) and "12" in str(err.value)


@pytest.mark.parametrize(
    "replace, fields",
    [
        (("actualNumSlices = 4", "actualNumSlices = 3"), ["numSlices = 4", "actualNumSlices = 3"]),
        (("numFramesPerVolume = 4", "numFramesPerVolume = 5"), ["numFramesPerVolume = 5", "4 x 1"]),
        (("logAverageFactor = 1", "logAverageFactor = 2"), ["logAverageFactor = 2", "framesPerSlice = 1"]),
        (("actualNumVolumes = 3", "actualNumVolumes = 2"), ["3 volumes", "actualNumVolumes = 2"]),
    ],
    ids=["actualNumSlices", "numFramesPerVolume", "logAverageFactor", "actualNumVolumes"],
)
def test_a_header_that_contradicts_itself_or_the_pages_is_refused(tmp_path, make_acquisition, monkeypatch, replace, fields):
    original = synthetic.frame_data_text
    monkeypatch.setattr(synthetic, "frame_data_text", lambda spec: original(spec).replace(*replace))
    _, paths = make_acquisition(tmp_path, **ONE_ROI, piezo_slices=4, flyback_frames=2, n_frames=3, frames_per_file=6)
    with pytest.raises(SourceError) as err:
        inspect(paths)
    assert paths[0].name in str(err.value)
    for field in fields:
        assert field in str(err.value)


def test_fly_to_lines_follow_the_page_when_the_header_time_rounds_differently(tmp_path, make_acquisition, monkeypatch):
    original = synthetic.frame_data_text
    # flytoTimePerScanfield / linePeriod rounds to 2 lines, the pages hold 3
    monkeypatch.setattr(
        synthetic,
        "frame_data_text",
        lambda spec: original(spec).replace(
            f"flytoTimePerScanfield = {3 * spec.line_period!r}", f"flytoTimePerScanfield = {2.2 * spec.line_period!r}"
        ),
    )
    spec, paths = make_acquisition(tmp_path, content="index", roi_heights=[6, 4], fly_to_lines=3, n_frames=2, frames_per_file=2)
    info = inspect(paths)
    assert info.fly_to_lines == 3
    with open_plane_reader(info, build_index(info)) as reader:
        page = reader.read(np.array([1]), [0], 2)[0, 0]
    assert np.all(page[:6] == 64 + 2) and np.all(page[6:9] == synthetic.FLY_TO_VALUE) and np.all(page[9:] == 64 + 2)


def test_a_page_chain_cut_short_is_refused_naming_the_file(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **ONE_ROI, n_frames=9, frames_per_file=3)
    set_next_page_offset(paths[1], 0, 0)  # the chain ends after page 0; the file keeps its length
    with pytest.raises(SourceError) as err:
        inspect(paths)
    assert paths[1].name in str(err.value) and re.search(r"ends after 1 pages", str(err.value))


def test_a_damaged_magic_in_one_file_of_a_series_is_refused(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **ONE_ROI, n_frames=9, frames_per_file=3)
    data = bytearray(paths[2].read_bytes())
    data[16] ^= 0xFF
    paths[2].write_bytes(bytes(data))
    with pytest.raises(SourceError) as err:
        inspect(paths)
    assert paths[2].name in str(err.value) and "magic" in str(err.value)


def test_a_short_file_inside_a_series_is_refused(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, **ONE_ROI, n_frames=9, frames_per_file=3)
    spec_short = synthetic.AcquisitionSpec(**{**spec.to_dict(), "n_frames": 2, "frames_per_file": 3})
    synthetic.write_acquisition(spec_short, tmp_path / "short")  # a file of 2 frames where 3 are logged
    paths[1].write_bytes((tmp_path / "short" / paths[0].name).read_bytes())
    with pytest.raises(SourceError) as err:
        inspect(paths)
    assert paths[1].name in str(err.value) and "logFramesPerFile = 3" in str(err.value)


# --------------------------------------------------------------------------- header and timing


def test_the_whole_header_is_kept_as_json(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, **ONE_ROI, piezo_slices=3, flyback_frames=1, n_frames=2, frames_per_file=8)
    header = source_header(inspect(paths))
    text = json.dumps(header, allow_nan=False)  # strict JSON
    for line in synthetic.frame_data_text(spec).splitlines():
        assert line.split(" = ")[0] in header["FrameData"]
    assert header["FrameData"]["SI.hStackManager.arbitraryZs"] == []
    assert header["FrameData"]["SI.hFastZ.discardFlybackFrames"] is False
    assert header["FrameData"]["SI.hChannels.channelName"][:2] == ["Channel 1", "Channel 2"]
    assert isinstance(header["RoiGroups"]["RoiGroups"]["imagingRoiGroup"]["rois"], dict)  # one ROI: an object
    assert len(text) > 1000


def test_timestamps_of_a_frame_selection_and_dropped_frames(tmp_path, make_acquisition, caplog):
    S, F = 3, 2
    spec, paths = make_acquisition(tmp_path, **PIEZO_STACK, aux_events={4: 0.125})
    info = inspect(paths)
    with caplog.at_level(logging.WARNING):
        index = build_index(info)
    assert any("1 frame(s) dropped after frameNumbers = 12" in r.getMessage() for r in caplog.records)
    path = tmp_path / "index.npz"
    save_page_index(path, info, index)
    frames = np.array([1, 3, 4])  # 0-based volumes
    # a volume's time is its first page's: logged frame v*(S+F); one frame number skipped after logged frame 11
    numbers = np.array([v * (S + F) + 1 + (v * (S + F) > 11) for v in frames])
    # the descriptions hold frameTimestamps_sec = (frameNumbers - 1) / frame rate, to 6 decimals
    np.testing.assert_array_equal(plane_timestamps(info, path, frames), np.round((numbers - 1) / spec.frame_rate, 6))
    # plane 2 of volume v: logged frame v*(S+F) + 2
    plane_numbers = np.array([v * (S + F) + 2 + 1 + (v * (S + F) + 2 > 11) for v in frames])
    np.testing.assert_array_equal(
        plane_timestamps(info, path, frames, plane=2), np.round((plane_numbers - 1) / spec.frame_rate, 6)
    )
    timing = frame_timing(info, str(path), frames)
    assert timing["frame_numbers"] == numbers.tolist()
    assert timing["acquisition_start"] == "2021-11-05T09:50:13.560000"
    assert timing["dropped_frames"] == [{"after_frame_number": 12, "missing": 1}]
    assert timing["acq_trigger_timestamps_sec"] == [0.0]
    assert timing["aux_triggers_sec"] == {"auxTrigger0": [0.125]}  # one event, though on both channels' pages


# --------------------------------------------------------------------------- through the workflow and the API

FLYBACK_TWO_CHANNELS = dict(
    **ONE_ROI, n_colors=2, channel_save=[1, 4], piezo_slices=3, flyback_frames=2, n_frames=4, frames_per_file=7
)


def tiff_outputs(outdir):
    """{plane (1-based): (pixels, ImageJ Info)} of every exported TIFF."""
    import tifffile

    found = {}
    for path in sorted(outdir.rglob("*.tif")):
        if ".imexport" in path.parts:
            continue
        with tifffile.TiffFile(path) as tf:
            info = json.loads(tf.imagej_metadata["Info"])
            found[info["plane"]] = (tf.asarray(), info, tf.imagej_metadata)
    return found


@pytest.mark.parametrize("channel, formats", [(1, ["tiff"]), (2, ["tiff", "bin", "zarr", "h5"])])
def test_workflow_exports_a_flyback_stack_one_saved_channel_at_a_time(
    tmp_path, make_acquisition, run_snakemake, channel, formats
):
    import h5py
    import zarr

    spec, paths = make_acquisition(tmp_path, **FLYBACK_TWO_CHANNELS)
    out = tmp_path / "out"
    run_snakemake(
        tmp_path,
        {
            "input": str(paths[0].parent),
            "outdir": str(out),
            "channels": channel,
            "format": formats,
            "scan_phase": {"fix_phase": False},
        },
    )
    S, F, C = 3, 2, 2
    # (T, Z) value of every exported pixel: slice s of volume v, saved channel `channel`
    want = np.array([[page_value(stack_page(v, s, 0, channel - 1, S=S, R=1, F=F, C=C), C) for s in range(S)] for v in range(4)])
    volume = np.broadcast_to(want[:, :, None, None], (4, S, 5, 6))
    found = tiff_outputs(out)
    assert sorted(found) == [1, 2, 3]
    for s in range(S):
        data, info, ij = found[s + 1]
        np.testing.assert_array_equal(data, volume[:, s])
        assert info["source_channels"] == [[1, 4][channel - 1]]
        assert ij["finterval"] == pytest.approx((S + F) / spec.frame_rate)  # the volume period
    if "bin" in formats:
        binaries = sorted(out.rglob("data_raw.bin"))
        assert len(binaries) == S
        for s, path in enumerate(binaries):  # plane folders sort as zplane01, 02, 03
            np.testing.assert_array_equal(np.fromfile(path, dtype=np.int16).reshape(4, 5, 6), volume[:, s])
    if "zarr" in formats:
        (store,) = out.glob("*.zarr")
        np.testing.assert_array_equal(np.asarray(zarr.open_group(store, mode="r")["0"][:]).reshape(4, S, 5, 6), volume)
    if "h5" in formats:
        (master,) = out.glob("*.h5")
        with h5py.File(master) as f:
            np.testing.assert_array_equal(np.asarray(f["mov"][:]).reshape(4, S, 5, 6), volume)


def test_api_exports_a_flyback_stack_split_mid_volume(tmp_path, make_acquisition):
    import h5py

    import imexport

    spec, paths = make_acquisition(tmp_path, **FLYBACK_TWO_CHANNELS)
    out = imexport.imwrite(
        imexport.imread(paths[0].parent),
        tmp_path / "api",
        ext=".h5",
        channels=2,
        frames="2:4",
        fix_phase=False,
        show_progress=False,
    )
    (h5,) = [p for p in out.rglob("*.h5") if ".imexport" not in p.parts and "zplane01-03" in p.name]
    with h5py.File(h5) as f:
        movie = np.asarray(f["mov"][:]).reshape(3, 3, 5, 6)  # T, Z, Y, X of the one exported colour
    for t, v in enumerate([1, 2, 3]):
        for s in range(3):
            assert np.all(movie[t, s] == page_value(stack_page(v, s, 0, 1, S=3, R=1, F=2, C=2), 2)), (v, s)


def test_api_exports_lbm_with_a_piezo_stack_in_depth_order(tmp_path, make_acquisition):
    import tifffile

    import imexport

    B, S, F = 2, 3, 1
    spec, paths = make_acquisition(
        tmp_path, **{**ONE_ROI, "n_planes": B}, piezo_slices=S, flyback_frames=F, n_frames=3, frames_per_file=5
    )
    out = imexport.imwrite(paths[0].parent, tmp_path / "api", ext=".tiff", fix_phase=False, show_progress=False)
    files = sorted(p for p in out.glob("zplane*.tif"))
    assert len(files) == B * S
    for plane, path in enumerate(files):
        b, s = divmod(plane, S)
        want = [page_value(stack_page(v, s, 0, b, S=S, R=1, F=F, C=B), B) for v in range(3)]
        np.testing.assert_array_equal(tifffile.imread(path), np.broadcast_to(np.array(want)[:, None, None], (3, 5, 6)))
