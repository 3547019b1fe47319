"""Non-ScanImage inputs behind the one reader protocol (sources/__init__, arrays, tiff, suite2p, zarr, hdf5, npy).

Every test writes its input with the format's own library (tifffile, numpy, zarr, h5py)
or with imexport's sinks, from a known array ``movie`` in canonical (T, C, Z, Y, X)
order, then reads it back through ``inspect_input`` + ``open_plane_reader`` and compares
shape, dtype, every pixel and the physical metadata with what was written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from imexport.config import ConfigError
from imexport.plan import build_plan
from imexport.sinks.base import PlaneTarget
from imexport.sinks.hdf5 import H5PlaneSink, assemble_h5
from imexport.sinks.suite2p import Suite2pPlaneSink
from imexport.sinks.tiff import TiffPlaneSink
from imexport.sinks.tiff_volume import assemble_volume_tiff
from imexport.sinks.zarr_plane import ZarrPlaneSink
from imexport.sinks.zarr_store import create_store, finalize_store
from imexport.sources import build_index, inspect_input, open_plane_reader
from imexport.sources.info import SourceError, SourceInfo
from imexport.workflow_plan import plan_for_config

SCALES = {"fs": 7.5, "dx": 0.8, "dy": 1.25, "dz": 15.0}


def movie(shape=(6, 2, 3, 5, 7), dtype=np.int16, seed=0) -> np.ndarray:
    """A (T, C, Z, Y, X) array whose every pixel differs from its neighbours."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    high = min(30000, info.max) if info else 1000
    return rng.integers(0, high, shape).astype(dtype)


def read_all(info: SourceInfo, frames=None) -> np.ndarray:
    """Every pixel through the reader, as (T, C, Z, Y, X)."""
    frames = np.arange(info.n_frames) if frames is None else np.asarray(frames)
    with open_plane_reader(info) as reader:
        planes = [reader.read(frames, list(range(info.n_colors)), z) for z in range(info.n_planes)]
    return np.stack(planes, axis=2)


def check(info: SourceInfo, expected: np.ndarray, kind: str, scales: dict | None = None) -> None:
    assert info.kind == kind
    assert info.shape() == expected.shape
    assert np.dtype(info.dtype) == expected.dtype.newbyteorder("=")
    assert (info.roi_heights, info.fly_to_lines, info.page_height, info.page_width) == (
        [expected.shape[3]],
        0,
        expected.shape[3],
        expected.shape[4],
    )
    got = read_all(info)
    assert got.dtype == np.dtype(info.dtype)
    np.testing.assert_array_equal(got, expected)
    # frames out of order, one repeated, colours reversed: still the right ones
    frames = [info.n_frames - 1, 0, 2, 1, 1] if info.n_frames > 2 else [0]
    with open_plane_reader(info) as reader:
        block = reader.read(np.array(frames), list(range(info.n_colors))[::-1], info.n_planes - 1)
    np.testing.assert_array_equal(block, expected[frames][:, ::-1, -1])
    for key in ("fs", "dx", "dy", "dz"):
        want = (scales or {}).get(key)
        assert getattr(info, key) == (pytest.approx(want) if want is not None else None), key
    assert SourceInfo.from_json(info.to_json()) == info
    assert build_index(info) == []


def target(path: Path, m: np.ndarray, z: int, md: dict | None = None) -> PlaneTarget:
    T, C, Z, Y, X = m.shape
    # classic TIFF: tifffile warns that an ImageJ BigTIFF is nonconformant
    return PlaneTarget(
        path=path,
        plane=z,
        z_index=z,
        n_planes_out=Z,
        n_frames=T,
        n_channels=C,
        frame_shape=(Y, X),
        dtype=m.dtype,
        metadata={"plane": z + 1, "source_files": [], **SCALES, **(md or {})},
        options={"bigtiff": False},
    )


def fill(sink, m: np.ndarray, z: int) -> None:
    sink.write(m[:4, :, z])
    sink.write(m[4:, :, z])
    sink.commit()


# --------------------------------------------------------------------------- generic TIFF


def test_imagej_hyperstack_tzcyx_with_imagej_scales(tmp_path):
    m = movie()
    path = tmp_path / "stack.tif"
    tifffile.imwrite(
        path,
        m.transpose(0, 2, 1, 3, 4),
        imagej=True,
        resolution=(1 / 0.8, 1 / 1.25),
        metadata={"axes": "TZCYX", "finterval": 1 / 7.5, "spacing": 15.0, "unit": "um"},
    )
    check(inspect_input(path), m, "tiff", SCALES)


def test_compressed_hyperstack_reads_through_tifffile_zarr(tmp_path):
    m = movie((5, 1, 2, 6, 4), np.uint16)
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, m[:, 0], imagej=True, compression="zlib", metadata={"axes": "TZYX"})
    with pytest.raises(ValueError):
        tifffile.memmap(path, mode="r")  # the fallback path is the one under test
    check(inspect_input(path), m, "tiff")


def test_plain_t_stack_and_page_per_write_stack(tmp_path):
    m = movie((9, 1, 1, 5, 6), np.float32)
    tifffile.imwrite(tmp_path / "shaped.tif", m[:, 0, 0], photometric="minisblack")
    check(inspect_input(tmp_path / "shaped.tif"), m, "tiff")
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:  # no shape metadata: tifffile says "I" (sequence)
        for frame in m[:, 0, 0]:
            tw.write(frame, photometric="minisblack", metadata=None)
    check(inspect_input(tmp_path / "pages.tif"), m, "tiff")


def test_multi_file_series_is_naturally_sorted_and_joined_in_time(tmp_path):
    m = movie((11, 1, 1, 4, 5))
    folder = tmp_path / "series"
    folder.mkdir()
    bounds = [0, 1, 3, 4, 6, 7, 8, 9, 10, 11]  # 9 files: x_10 must come after x_9
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        tifffile.imwrite(folder / f"x_{i + 2}.tif", m[a:b, 0, 0], photometric="minisblack")
    info = inspect_input(folder)
    assert [Path(f).name for f in info.files] == [f"x_{i}.tif" for i in range(2, 11)]
    check(info, m, "tiff")
    check(inspect_input(folder / "x_*.tif"), m, "tiff")


def test_per_plane_files_with_plane_numbers_form_a_volume(tmp_path):
    m = movie((8, 2, 3, 5, 6))
    folder = tmp_path / "planes"
    folder.mkdir()
    for z in range(3):  # each plane split over two files along T, names as the reference writes
        for part, (a, b) in enumerate([(0, 5), (5, 8)]):
            tifffile.imwrite(
                folder / f"run_plane{z + 1}_{part + 1:05d}.tif", m[a:b, :, z], imagej=True, metadata={"axes": "TCYX"}
            )
    check(inspect_input(folder), m, "tiff")


def test_imexport_tiff_outputs_read_back_with_their_metadata(tmp_path):
    m = movie((6, 2, 3, 5, 7))
    folder = tmp_path / "out"
    for z in (2, 0, 1):  # zplane10 sorts after zplane2 by number, not by text
        name = f"zplane{[1, 2, 10][z]:02d}_tp00001-00006_ch01-02.tif"
        fill(TiffPlaneSink(target(folder / name, m, z, {"imexport_version": "x"})), m, z)
    info = inspect_input(folder)
    check(info, m, "tiff", SCALES)
    # the volume layout: one TZCYX hyperstack of the same planes
    volume = assemble_volume_tiff(tmp_path / "volume.tif", [Path(f) for f in info.files], metadata=SCALES)
    check(inspect_input(volume), m, "tiff", SCALES)


def test_a_plain_tiff_cut_inside_its_pixels_is_refused_not_read_short(tmp_path):
    # tifffile reads the 5-frame shape from the description and only warns that the file ends
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, movie((5, 1, 1, 8, 8))[:, 0, 0])
    with tifffile.TiffFile(good) as tf:
        pixels_start = tf.series[0].dataoffset
    cut = tmp_path / "cut.tif"
    kept = pixels_start + 3 * 8 * 8 * 2  # 3 of the 5 int16 frames
    cut.write_bytes(good.read_bytes()[:kept])
    with pytest.raises(SourceError) as refused:
        inspect_input(cut)
    assert str(refused.value).startswith(f"{cut}: cut short: its (5, 8, 8) series")
    assert f"the file has {kept}" in str(refused.value) and "copy it again" in str(refused.value)


@pytest.mark.parametrize("kept_bytes", [7, 12], ids=["header_cut_short", "first_directory_cut_short"])
def test_a_truncated_plain_tiff_is_a_source_error_naming_the_file(tmp_path, kept_bytes):
    # a plain (non-ScanImage) stack cut short inside its 8-byte header or its first page's
    # directory: tifffile raises struct.error or TiffFileError, never a page count
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, movie((5, 1, 1, 8, 8))[:, 0, 0])
    cut = tmp_path / "in" / "cut.tif"
    cut.parent.mkdir()
    cut.write_bytes(good.read_bytes()[:kept_bytes])
    with pytest.raises(SourceError, match="not a readable TIFF") as refused:
        inspect_input(cut)
    assert str(refused.value).startswith(f"{cut}: ")
    with pytest.raises(SourceError, match=f"{cut}: not a readable TIFF"):
        plan_for_config({"input": str(cut.parent), "outdir": str(tmp_path / "out")})


# --------------------------------------------------------------------------- Suite2p


def test_suite2p_plane_folders_written_by_our_sink(tmp_path):
    m = movie((6, 2, 3, 5, 7))
    for z in range(3):
        fill(Suite2pPlaneSink(target(tmp_path / "out" / f"zplane{z + 1:02d}_tp00001-00006", m, z)), m, z)
    (tmp_path / "out" / "combined").mkdir()  # suite2p's own un-numbered folder is not a plane
    np.save(tmp_path / "out" / "combined" / "ops.npy", {"Ly": 1, "Lx": 1})
    check(inspect_input(tmp_path / "out"), m, "suite2p", SCALES)
    one = inspect_input(tmp_path / "out" / "zplane02_tp00001-00006")
    check(one, m[:, :, 1:2], "suite2p", SCALES)
    check(inspect_input(tmp_path / "out" / "zplane02_tp00001-00006" / "ops.npy"), m[:, :, 1:2], "suite2p", SCALES)
    check(inspect_input(tmp_path / "out" / "zplane*_tp*"), m, "suite2p", SCALES)  # a glob of plane folders


def test_suite2p_own_layout_registered_binary_and_plane_order(tmp_path):
    m = movie((4, 1, 11, 3, 5))
    for z in range(11):  # plane0 .. plane10: numeric order, not text order
        folder = tmp_path / "suite2p" / f"plane{z}"
        folder.mkdir(parents=True)
        m[:, 0, z].astype("<i2").tofile(folder / "data.bin")
        np.save(
            folder / "ops.npy",
            {"Ly": 3, "Lx": 5, "fs": 30.0, "nframes": 4, "nchannels": 1, "reg_file": f"/elsewhere/plane{z}/data.bin"},
        )
    check(inspect_input(tmp_path / "suite2p"), m, "suite2p", {"fs": 30.0})


def test_bare_bin_needs_a_shape(tmp_path):
    m = movie((7, 1, 1, 4, 6))
    path = tmp_path / "movie.bin"
    m[:, 0, 0].tofile(path)
    check(inspect_input(path, shape=[4, 6]), m, "suite2p")
    check(inspect_input(path, shape=[7, 4, 6]), m, "suite2p")
    with pytest.raises(SourceError, match="input_options.shape"):
        inspect_input(path)
    with pytest.raises(SourceError, match=r"input_options.shape.*8 frames"):
        inspect_input(path, shape=[8, 4, 6])
    with pytest.raises(SourceError, match="whole number"):
        inspect_input(path, shape=[5, 6])


# --------------------------------------------------------------------------- Zarr


def test_imexport_zarr_store_with_its_metadata(tmp_path):
    m = movie((6, 2, 3, 5, 7))
    store, final = tmp_path / "tmp.zarr", tmp_path / "out" / "x.zarr"
    create_store(
        store,
        n_frames=6,
        n_channels=2,
        n_planes=3,
        frame_shape=(5, 7),
        dtype=m.dtype,
        target_chunk_mb=1,
        options={},
        metadata=SCALES,
        name="x",
    )
    for z in range(3):
        fill(ZarrPlaneSink(store, target(tmp_path / "unused", m, z), 1), m, z)
    finalize_store(store, final, pyramid=False)
    check(inspect_input(final), m, "zarr", SCALES)
    check(inspect_input(final / "zarr.json"), m, "zarr", SCALES)  # a path inside the store
    check(inspect_input(tmp_path / "out"), m, "zarr", SCALES)  # a folder holding one store


def test_ome_zarr_axes_order_scales_and_dataset_name(tmp_path):
    m = movie((5, 2, 3, 4, 6), np.uint16)
    group = zarr.create_group(tmp_path / "ome.zarr", zarr_format=3)
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    scale = [1.0, 0.5, 4.0, 0.3, 0.2]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {"axes": axes, "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}
        ],
    }
    group.create_array("s0", data=m.transpose(1, 0, 2, 3, 4), chunks=(1, 1, 1, 4, 6))
    group.create_array("other", data=m[:, 0, 0], chunks=(1, 4, 6))
    check(inspect_input(tmp_path / "ome.zarr"), m, "zarr", {"fs": 2.0, "dx": 0.2, "dy": 0.3, "dz": 4.0})
    # an array the multiscale does not describe has no scales
    check(inspect_input(tmp_path / "ome.zarr", dataset_name="other"), m[:, :1, :1], "zarr")
    with pytest.raises(SourceError, match="input_options.dataset_name"):
        inspect_input(tmp_path / "ome.zarr", dataset_name="missing")


def test_bare_zarr_v2_array_by_rank_or_dim_order(tmp_path):
    m = movie((5, 1, 3, 4, 6))
    array = zarr.create_array(tmp_path / "v2.zarr", shape=(3, 5, 4, 6), dtype="<i2", chunks=(1, 1, 4, 6), zarr_format=2)
    array[:] = m[:, 0].transpose(1, 0, 2, 3)
    check(inspect_input(tmp_path / "v2.zarr", dim_order="ZTYX"), m, "zarr")


# --------------------------------------------------------------------------- HDF5


def test_h5_dataset_choice(tmp_path):
    m = movie((5, 1, 2, 4, 6))
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["data"] = m[:, 0, 0]
        f["mov"] = m[:, 0]
        f.attrs.update({"fs": 7.5, "dz": 15.0})
    check(inspect_input(path), m, "hdf5", {"fs": 7.5, "dz": 15.0})  # "mov" wins
    check(inspect_input(path, dataset_name="data"), m[:, :, :1], "hdf5", {"fs": 7.5, "dz": 15.0})
    with pytest.raises(SourceError, match="input_options.dataset_name"):
        inspect_input(path, dataset_name="nope")
    only = tmp_path / "only.hdf5"
    with h5py.File(only, "w") as f:
        f["group/stack"] = m.transpose(0, 2, 1, 3, 4)
    check(inspect_input(only, dim_order="TZCYX"), m, "hdf5")
    two = tmp_path / "two.h5"
    with h5py.File(two, "w") as f:
        f["a"], f["b"] = m[:, 0, 0], m[:, 0, 0]
    with pytest.raises(SourceError, match="dataset_name"):
        inspect_input(two)


def test_imexport_h5_master_and_plane_files(tmp_path):
    m = movie((6, 2, 3, 5, 7))
    out = tmp_path / "out"
    planes = [out / "x_planes" / f"zplane{z + 1:02d}.h5" for z in range(3)]
    md = {"imexport_version": "x", "channels": [1, 2]}
    for z in range(3):
        fill(H5PlaneSink(target(planes[z], m, z, md)), m, z)
    assemble_h5(out / "x.h5", planes, metadata={**SCALES, **md}, plane_metadata=[{}] * 3)
    check(inspect_input(out / "x.h5"), m, "hdf5", SCALES)
    check(inspect_input(out), m, "hdf5", SCALES)  # a folder holding one .h5
    check(inspect_input(planes[1]), m[:, :, 1:2], "hdf5", SCALES)  # (T, C, Y, X) plane file
    os.remove(planes[2])
    with pytest.raises(SourceError, match="zplane03.h5"):
        inspect_input(out / "x.h5")


# --------------------------------------------------------------------------- NumPy


@pytest.mark.parametrize("order", ["TYX", "YX", "TZYX", "TCYX", "TCZYX", "ZTYX", "XYT", "CXZTY"])
def test_npy_dim_orders(tmp_path, order):
    full = movie((4, 2, 3, 5, 6))
    kept = full[tuple(slice(None) if a in order else slice(0, 1) for a in "TCZYX")]
    # the stored array: the canonical letters of `order`, permuted into `order`
    stored = kept.squeeze(axis=tuple(i for i, a in enumerate("TCZYX") if a not in order))
    present = [a for a in "TCZYX" if a in order]
    stored = stored.transpose([present.index(a) for a in order])
    np.save(tmp_path / "a.npy", stored)
    info = inspect_input(tmp_path / "a.npy", dim_order=order.lower())
    check(info, kept, "npy")


def test_npy_rank_guess_without_dim_order(tmp_path):
    m = movie((5, 1, 1, 4, 6), np.float64)
    np.save(tmp_path / "a.npy", m[:, 0, 0])
    check(inspect_input(tmp_path / "a.npy"), m, "npy")


@pytest.mark.parametrize("bad", ["TQYX", "TTYX", "TZY", "", "TCZYXX"])
def test_invalid_dim_order_names_the_key(tmp_path, bad):
    np.save(tmp_path / "a.npy", movie((3, 1, 2, 4, 5))[:, 0])
    with pytest.raises(SourceError, match="input_options.dim_order"):
        inspect_input(tmp_path / "a.npy", dim_order=bad or "?")
    with pytest.raises(SourceError, match=r"input_options.dim_order: 'TYX' names 3 dimensions.*has 4"):
        inspect_input(tmp_path / "a.npy", dim_order="TYX")


def test_invalid_dim_order_in_the_config_names_the_key(tmp_path):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "a.npy", movie((3, 1, 2, 4, 5))[:, 0])
    base = {"input": str(tmp_path / "in" / "a.npy"), "outdir": str(tmp_path / "out")}
    with pytest.raises(ConfigError, match="input_options.dim_order"):  # not letters of TCZYX: the schema
        plan_for_config({**base, "input_options": {"dim_order": "TQYX"}})
    with pytest.raises(SourceError, match="input_options.dim_order"):  # a repeated letter: the reader
        plan_for_config({**base, "input_options": {"dim_order": "TTYX"}})
    with pytest.raises(SourceError, match="input_options"):
        inspect_input(tmp_path / "a.npy", dimorder="TZYX")


# --------------------------------------------------------------------------- protocol


def test_detection_errors_name_the_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no readable input"):
        inspect_input(tmp_path / "empty")
    (tmp_path / "two").mkdir()
    np.save(tmp_path / "two" / "a.npy", np.zeros((2, 3, 4)))
    h5py.File(tmp_path / "two" / "b.h5", "w").close()
    with pytest.raises(SourceError, match="several inputs"):
        inspect_input(tmp_path / "two")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="not a readable type"):
        inspect_input(tmp_path / "notes.txt")
    with pytest.raises(SourceError, match="does not exist"):
        inspect_input(tmp_path / "missing.npy")


def test_a_changed_file_stops_the_job(tmp_path):
    np.save(tmp_path / "a.npy", movie((4, 1, 1, 3, 5))[:, 0, 0])
    info = inspect_input(tmp_path / "a.npy")
    np.save(tmp_path / "a.npy", movie((5, 1, 1, 3, 5))[:, 0, 0])
    with pytest.raises(SourceError, match="changed"):
        build_index(info)
    path = tmp_path / "m.bin"
    movie((4, 1, 1, 3, 5))[:, 0, 0].tofile(path)
    info = inspect_input(path, shape=[3, 5])
    with open(path, "ab") as fh:
        fh.write(b"\0" * 30)
    with pytest.raises(SourceError, match="changed"):
        build_index(info)


def test_plan_schedules_no_scan_phase_for_other_kinds(tmp_path):
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "a.npy", movie((4, 1, 2, 12, 16))[:, 0])
    config = {"input": str(tmp_path / "in" / "a.npy"), "outdir": str(tmp_path / "out"), "register_z": True}
    resolved, plan = plan_for_config(config)
    assert resolved["scan_phase"]["fix_phase"] is True
    assert plan.phase_tasks == {} and all(job.phase_record is None for job in plan.jobs.values())
    assert len(plan.axial_tasks) == 1  # axial registration works on any source
    assert any("fix_phase ignored" in note and "npy" in note for note in plan.notes)
    info = plan.source
    unidirectional = SourceInfo(
        **{**json.loads(info.to_json()), "kind": "scanimage", "options": {}, "scanimage": {"SI.hScan2D.bidirectional": False}}
    )
    plan = build_plan(resolved, unidirectional)
    assert plan.phase_tasks == {} and "unidirectionally" in plan.notes[0]
