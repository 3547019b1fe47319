import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from imexport.atomic import TEMP_MARKER
from imexport.hdf5_attrs import read_attrs, write_attrs
from imexport.sinks.base import PlaneTarget
from imexport.sinks.hdf5 import H5PlaneSink, assemble_h5

SHAPE = (6, 5)
N_FRAMES = 7


def plane_metadata(plane: int, z_index: int) -> dict:
    return {
        "fs": 17.5,
        "dx": 1.5,
        "dy": 1.25,
        "dz": None,
        "plane": plane,
        "z_index": z_index,
        "n_frames": N_FRAMES,
        "frames": [[0, N_FRAMES, 1]],
        "channels": [1],
        "roi": None,
        "source_files": ["/data/rec_00001.tif"],
        "notes": {"stim": "drifting gratings", "angles": [0, 45, 90]},
    }


def make_target(path: Path, n_channels=1, dtype=np.int16, n_frames=N_FRAMES, shape=SHAPE, plane=0, z_index=0, **options):
    return PlaneTarget(
        path=path,
        plane=plane,
        z_index=z_index,
        n_planes_out=3,
        n_frames=n_frames,
        n_channels=n_channels,
        frame_shape=shape,
        dtype=np.dtype(dtype),
        metadata=plane_metadata(plane + 1, z_index),
        options=options,
    )


def movie(dtype, n_channels=1, seed=0, n_frames=N_FRAMES, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = (n_frames, n_channels, *shape)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True)
    return rng.standard_normal(size).astype(dtype) * 1000


def write_plane(target: PlaneTarget, data: np.ndarray) -> None:
    sink = H5PlaneSink(target)
    for part in np.split(data, [2, 5]):
        sink.write(part)
    sink.commit()


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if TEMP_MARKER in path.name]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
def test_plane_file_is_bit_exact(tmp_path, dtype):
    target = make_target(tmp_path / "mov_planes" / "zplane01.h5", dtype=dtype)
    data = movie(dtype)
    write_plane(target, data)

    with h5py.File(target.path, "r") as file:
        dataset = file["mov"]
        assert dataset.dtype == np.dtype(dtype)
        assert dataset.shape == (N_FRAMES, *SHAPE)
        assert dataset.chunks is None  # uncompressed: one contiguous block
        assert dataset.compression is None
        assert np.array_equal(dataset[()], data[:, 0])
        assert read_attrs(file) == target.metadata
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("n_channels", [1, 2])
def test_large_plane_block_is_aligned_and_exact(tmp_path, n_channels):
    # big enough for HDF5's alignment (>= 4 KiB) and for several DirectFile staging blocks
    from imexport.sinks import direct

    shape, n_frames = (96, 80), 40
    target = make_target(tmp_path / "zplane01.h5", n_channels=n_channels, n_frames=n_frames, shape=shape)
    data = movie(np.int16, n_channels=n_channels, n_frames=n_frames, shape=shape)
    original = direct.STAGING_BYTES
    direct.STAGING_BYTES = 64 * 1024
    try:
        sink = H5PlaneSink(target)
        for part in np.array_split(data, 7):
            sink.write(part)
        sink.commit()
    finally:
        direct.STAGING_BYTES = original
    with h5py.File(target.path, "r") as file:
        dataset = file["mov"]
        assert dataset.id.get_offset() % 4096 == 0
        assert np.array_equal(dataset[()], data if n_channels > 1 else data[:, 0])
        assert read_attrs(file) == target.metadata


def test_plane_file_with_two_channels(tmp_path):
    target = make_target(tmp_path / "zplane01.h5", n_channels=2, dtype=np.uint16, dataset_name="data")
    data = movie(np.uint16, n_channels=2)
    write_plane(target, data)
    with h5py.File(target.path, "r") as file:
        assert file["data"].shape == (N_FRAMES, 2, *SHAPE)
        assert file["data"].chunks is None
        assert np.array_equal(file["data"][()], data)


@pytest.mark.parametrize(
    "options, compression, level",
    [
        ({"compression": "gzip"}, "gzip", 4),
        ({"compression": "gzip", "compression_level": 9}, "gzip", 9),
        ({"compression": "lzf"}, "lzf", None),
    ],
)
def test_compression_round_trips(tmp_path, options, compression, level):
    target = make_target(tmp_path / "zplane01.h5", dtype=np.uint16, **options)
    data = movie(np.uint16)
    write_plane(target, data)
    with h5py.File(target.path, "r") as file:
        assert file["mov"].compression == compression
        assert file["mov"].compression_opts == level
        assert np.array_equal(file["mov"][()], data[:, 0])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"compression": "zstd"}, "compression='zstd'.*None, 'gzip', 'lzf'"),
        ({"compression": "gzip", "compression_level": 12}, "compression_level"),
    ],
)
def test_invalid_compression_is_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        H5PlaneSink(make_target(tmp_path / "zplane01.h5", **options))
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing(tmp_path):
    target = make_target(tmp_path / "zplane01.h5")
    sink = H5PlaneSink(target)
    sink.write(movie(np.int16)[:3])
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_old_file(tmp_path):
    target = make_target(tmp_path / "zplane01.h5")
    target.path.write_bytes(b"old")
    sink = H5PlaneSink(target)
    sink.write(movie(np.int16)[:3])
    sink.abort()
    assert target.path.read_bytes() == b"old"
    assert temporaries(tmp_path) == []


def test_commit_with_missing_frames_raises(tmp_path):
    target = make_target(tmp_path / "zplane01.h5")
    sink = H5PlaneSink(target)
    sink.write(movie(np.int16)[:3])
    with pytest.raises(ValueError, match="3 frames written, 7 announced"):
        sink.commit()
    assert list(tmp_path.iterdir()) == []


def test_chunk_of_wrong_dtype_is_refused(tmp_path):
    sink = H5PlaneSink(make_target(tmp_path / "zplane01.h5", dtype=np.uint16))
    with pytest.raises(ValueError, match="dtype"):
        sink.write(movie(np.int16)[:2])
    sink.abort()


def write_planes(export: Path, n_planes=3, n_channels=1, dtype=np.int16):
    """Plane files in written Z order (source planes deliberately not in file order)."""
    files, stacks, metadata = [], [], []
    for z_index, plane in enumerate([2, 0, 1][:n_planes]):
        target = make_target(
            export / "mov_planes" / f"zplane{plane + 1:02d}.h5",
            n_channels=n_channels,
            dtype=dtype,
            plane=plane,
            z_index=z_index,
        )
        data = movie(dtype, n_channels=n_channels, seed=plane)
        write_plane(target, data)
        files.append(target.path)
        stacks.append(data)
        metadata.append(target.metadata)
    return files, stacks, metadata


EXPORT_METADATA = {
    "fs": 17.5,
    "dx": 1.5,
    "shifts": [[0.5, -1.0], [1.25, 2.0], [0.0, 0.0]],
    "user": {"animal": "m01", "depth_um": [100, 150]},
    "dz": None,
}


def read_master(master: Path):
    with h5py.File(master, "r") as file:
        return file["mov"][()], read_attrs(file), file["mov"].is_virtual


def test_master_stacks_planes_in_z_order(tmp_path):
    export = tmp_path / "export"
    files, stacks, metadata = write_planes(export)
    master = export / "mov.h5"
    assemble_h5(master, files, metadata=EXPORT_METADATA, plane_metadata=metadata)

    volume, attrs, is_virtual = read_master(master)
    assert is_virtual
    expected = np.stack([stack[:, 0] for stack in stacks], axis=1)
    assert volume.shape == (N_FRAMES, 3, *SHAPE)
    assert np.array_equal(volume, expected)
    assert attrs == {"metadata": EXPORT_METADATA, "planes": metadata}
    assert [plane["z_index"] for plane in attrs["planes"]] == [0, 1, 2]
    assert temporaries(tmp_path) == []


def test_master_stores_relative_source_names(tmp_path):
    export = tmp_path / "export"
    files, _, metadata = write_planes(export)
    assemble_h5(export / "mov.h5", files, metadata={}, plane_metadata=metadata)
    with h5py.File(export / "mov.h5", "r") as file:
        sources = [source.file_name for source in file["mov"].virtual_sources()]
    assert sources == [os.path.join("mov_planes", path.name) for path in files]


def test_master_reads_from_another_cwd_and_after_moving(tmp_path, monkeypatch):
    export = tmp_path / "export"
    files, stacks, metadata = write_planes(export)
    assemble_h5(export / "mov.h5", files, metadata=EXPORT_METADATA, plane_metadata=metadata)
    expected = np.stack([stack[:, 0] for stack in stacks], axis=1)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert np.array_equal(read_master(export / "mov.h5")[0], expected)

    moved = tmp_path / "archive" / "moved_export"
    moved.parent.mkdir()
    shutil.move(export, moved)
    assert not export.exists()
    assert np.array_equal(read_master(moved / "mov.h5")[0], expected)
    monkeypatch.chdir(moved)
    assert np.array_equal(read_master(Path("mov.h5"))[0], expected)


def test_master_with_two_channels(tmp_path):
    export = tmp_path / "export"
    files, stacks, metadata = write_planes(export, n_channels=2, dtype=np.uint16)
    assemble_h5(export / "mov.h5", files, metadata={}, plane_metadata=metadata)
    volume, _, _ = read_master(export / "mov.h5")
    assert volume.shape == (N_FRAMES, 2, 3, *SHAPE)
    assert volume.dtype == np.uint16
    assert np.array_equal(volume, np.stack(stacks, axis=2))


def test_mismatched_plane_shape_names_the_file(tmp_path):
    export = tmp_path / "export"
    files, _, metadata = write_planes(export, n_planes=2)
    odd = make_target(export / "mov_planes" / "zplane09.h5", shape=(4, 5), plane=8)
    write_plane(odd, movie(np.int16, shape=(4, 5)))
    with pytest.raises(ValueError, match="zplane09.h5"):
        assemble_h5(export / "mov.h5", [*files, odd.path], metadata={}, plane_metadata=[*metadata, odd.metadata])
    assert not (export / "mov.h5").exists()
    assert temporaries(tmp_path) == []


def test_mismatched_plane_dtype_names_the_file(tmp_path):
    export = tmp_path / "export"
    files, _, metadata = write_planes(export, n_planes=2)
    odd = make_target(export / "mov_planes" / "zplane09.h5", dtype=np.float32, plane=8)
    write_plane(odd, movie(np.float32))
    with pytest.raises(ValueError, match="zplane09.h5.*float32"):
        assemble_h5(export / "mov.h5", [*files, odd.path], metadata={}, plane_metadata=[*metadata, odd.metadata])


def test_reassembly_replaces_master(tmp_path):
    export = tmp_path / "export"
    files, stacks, metadata = write_planes(export)
    assemble_h5(export / "mov.h5", files, metadata={"run": 1}, plane_metadata=metadata)
    assemble_h5(export / "mov.h5", files[:2], metadata={"run": 2}, plane_metadata=metadata[:2])
    volume, attrs, _ = read_master(export / "mov.h5")
    assert volume.shape[1] == 2 and attrs["metadata"] == {"run": 2}


ATTRIBUTES = {
    "shifts": [[0.5, -1.0], [1.25, 2.0], [0.0, 3.5], [-2.0, 0.25]],
    "frames": [[0, 100, 1], [200, 300, 2]],
    "nested": {"a": {"b": [1, 2, 3]}, "c": None, "d": "text", "e": [[1, 2], [3]]},
    "missing": None,
    "name": "zplane03 – µm",
    "empty_name": "",
    "fs": 30.000001,
    "flag": True,
    "off": False,
    "count": 12,
    "flags": [True, False, True],
    "empty": [],
    "ragged": [[1, 2], [3]],
    "mixed_numbers": [1, 2.5],
    "strings": ["/data/a.tif", "/data/b.tif"],
    "with_none": [1, None],
    "huge": 2**70,
    "cube": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],
}


def test_attributes_round_trip_exactly(tmp_path):
    with h5py.File(tmp_path / "attrs.h5", "w") as file:
        write_attrs(file, ATTRIBUTES)
    with h5py.File(tmp_path / "attrs.h5", "r") as file:
        attrs = file.attrs
        restored = read_attrs(file)
        assert attrs["shifts"].dtype == np.float64 and attrs["shifts"].shape == (4, 2)
        assert attrs["frames"].dtype == np.int64
        assert attrs["cube"].shape == (2, 2, 2)
        assert isinstance(attrs["fs"], np.floating) and isinstance(attrs["count"], np.integer)
        assert "missing" not in attrs
        assert set(attrs["_none_keys"]) == {"missing"}
        assert set(attrs["_json_keys"]) == {"nested", "ragged", "mixed_numbers", "strings", "with_none", "huge"}

    assert restored == ATTRIBUTES
    for key, value in ATTRIBUTES.items():
        assert type(restored[key]) is type(value), key
    assert all(type(x) is float for row in restored["shifts"] for x in row)
    assert type(restored["mixed_numbers"][0]) is int


def test_rewriting_attributes_updates_encoding_lists(tmp_path):
    with h5py.File(tmp_path / "attrs.h5", "w") as file:
        write_attrs(file, {"a": None, "b": {"x": 1}, "c": 1})
        write_attrs(file, {"a": 2.0, "b": None})
        assert read_attrs(file) == {"a": 2.0, "b": None, "c": 1}


def test_reserved_attribute_name_is_refused(tmp_path):
    with h5py.File(tmp_path / "attrs.h5", "w") as file, pytest.raises(ValueError):
        write_attrs(file, {"_none_keys": 1})
