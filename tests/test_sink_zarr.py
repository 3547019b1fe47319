"""Zarr v3 / OME-NGFF 0.5 store: layout, plane sinks, concurrency, compression, pyramid."""

from __future__ import annotations

import json
import math
import multiprocessing
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05 import Image
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec

from imexport.formats import output_format
from imexport.sinks.base import PlaneTarget
from imexport.sinks.zarr_plane import PLANES_DIR, ZarrPlaneSink, plane_marker
from imexport.sinks.zarr_shards import FrameShards
from imexport.sinks.zarr_store import (
    COMPRESSORS,
    DEFAULT_LEVELS,
    create_store,
    finalize_store,
    zarr_layout,
)

METADATA = {"fs": 20.0, "dx": 0.5, "dy": 0.75, "dz": 4.0, "user_note": "µ-scope"}


def make_store(path, data, *, target_chunk_mb=0.05, options=None, metadata=METADATA):
    """Create a store for ``data`` shaped (T, C, Z, Y, X)."""
    n_frames, n_channels, n_planes, y, x = data.shape
    return create_store(
        path,
        n_frames=n_frames,
        n_channels=n_channels,
        n_planes=n_planes,
        frame_shape=(y, x),
        dtype=data.dtype,
        target_chunk_mb=target_chunk_mb,
        options=options or {},
        metadata=metadata,
        name="recording",
    )


def plane_target(path, data, z):
    n_frames, n_channels, n_planes, y, x = data.shape
    return PlaneTarget(
        path=Path(path),
        plane=z + 10,
        z_index=z,
        n_planes_out=n_planes,
        n_frames=n_frames,
        n_channels=n_channels,
        frame_shape=(y, x),
        dtype=data.dtype,
        metadata={"plane": z + 11, "z_index": z, "fs": 20.0, "n_frames": n_frames},
    )


def write_plane(store, data, z, *, sizes=(3, 1, 7, 2), target_chunk_mb=0.05):
    """Stream plane ``z`` of ``data`` in uneven chunks, cycling through ``sizes``."""
    sink = ZarrPlaneSink(store, plane_target(store, data, z), target_chunk_mb)
    start, i = 0, 0
    while start < data.shape[0]:
        stop = min(data.shape[0], start + sizes[i % len(sizes)])
        sink.write(data[start:stop, :, z])
        start, i = stop, i + 1
    sink.commit()
    return sink


def stored(data):
    """``data`` in the store's axis order: channel axis dropped when there is one channel."""
    return data[:, 0] if data.shape[1] == 1 else data


def random_data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


def shard_files(store, level="0"):
    return sorted(p for p in (Path(store) / level / "c").rglob("*") if p.is_file())


def export(tmp_path, data, *, options=None, metadata=METADATA, target_chunk_mb=0.05, **finalize):
    tmp, final = tmp_path / ".rec.zarr.tmp", tmp_path / "rec.zarr"
    make_store(tmp, data, options=options, metadata=metadata, target_chunk_mb=target_chunk_mb)
    for z in range(data.shape[2]):
        write_plane(tmp, data, z, target_chunk_mb=target_chunk_mb)
    finalize_store(tmp, final, **finalize)
    return final


# ---------------------------------------------------------------------------------------
# layout


def test_layout_4d_sharded():
    layout = zarr_layout(
        n_frames=1000,
        n_channels=1,
        n_planes=14,
        frame_shape=(512, 448),
        dtype=np.int16,
        target_chunk_mb=10,
        options={},
    )
    shard_t = math.floor(10 * 2**20 / (512 * 448 * 2))
    assert layout["shard_t"] == shard_t == 22
    assert layout["shape"] == (1000, 14, 512, 448)
    assert layout["chunks"] == (1, 1, 512, 448)
    assert layout["shards"] == (22, 1, 512, 448)
    assert layout["dimension_names"] == ["t", "z", "y", "x"]
    assert (layout["compressor"], layout["compression_level"]) == ("none", None)
    sizes = [*layout["shape"], *layout["chunks"], *layout["shards"], layout["shard_t"]]
    assert all(type(v) is int for v in sizes)


def test_layout_5d_and_limits():
    layout = zarr_layout(
        n_frames=5,
        n_channels=2,
        n_planes=3,
        frame_shape=(64, 32),
        dtype=np.float32,
        target_chunk_mb=100,
        options={},
    )
    assert layout["shape"] == (5, 2, 3, 64, 32)
    assert layout["chunks"] == (1, 1, 1, 64, 32)
    assert layout["shards"] == (5, 1, 1, 64, 32)  # capped at T
    assert layout["dimension_names"] == ["t", "c", "z", "y", "x"]
    tiny = zarr_layout(
        n_frames=5,
        n_channels=1,
        n_planes=1,
        frame_shape=(1024, 1024),
        dtype=np.float32,
        target_chunk_mb=0.001,
        options={},
    )
    assert tiny["shard_t"] == 1  # never below one frame


def test_layout_unsharded():
    layout = zarr_layout(
        n_frames=50,
        n_channels=1,
        n_planes=2,
        frame_shape=(16, 16),
        dtype=np.uint16,
        target_chunk_mb=0.01,
        options={"sharded": False},
    )
    assert layout["shards"] is None
    assert layout["chunks"] == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="zarr.sharded"):
        zarr_layout(
            n_frames=5,
            n_channels=1,
            n_planes=1,
            frame_shape=(8, 8),
            dtype=np.uint8,
            target_chunk_mb=1,
            options={"sharded": "yes"},
        )


# ---------------------------------------------------------------------------------------
# plane sinks


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
@pytest.mark.parametrize("n_channels", [1, 2])
def test_plane_writes_round_trip(tmp_path, dtype, n_channels):
    data = random_data((23, n_channels, 3, 40, 36), dtype)
    store = tmp_path / "s.zarr"
    make_store(store, data)
    for z, sizes in zip(range(3), [(1,), (5, 2, 9), (23,)]):
        write_plane(store, data, z, sizes=sizes)
    array = zarr.open_array(str(store), path="0", mode="r")
    assert array.dtype == dtype
    np.testing.assert_array_equal(array[:], stored(data))


def test_sink_writes_whole_shards_only(tmp_path):
    data = random_data((29, 1, 2, 64, 64), np.uint16)
    store = tmp_path / "s.zarr"
    layout = make_store(store, data, target_chunk_mb=0.04)
    shard_t = layout["shard_t"]
    assert shard_t == 5
    sink = write_plane(store, data, 1, sizes=(3, 1, 7, 2), target_chunk_mb=0.04)
    expected = [(t, min(29, t + shard_t)) for t in range(0, 29, shard_t)]
    assert sink.written_t_ranges == expected
    files = shard_files(store)
    assert len(files) == math.ceil(29 / shard_t)
    assert all(f.parent.parent.name == "1" for f in files)  # .../c/<t>/<z>/0/0


def test_unsharded_store(tmp_path):
    data = random_data((9, 1, 2, 16, 20), np.int16)
    store = tmp_path / "s.zarr"
    make_store(store, data, options={"sharded": False})
    for z in range(2):
        write_plane(store, data, z)
    array = zarr.open_array(str(store), path="0", mode="r")
    assert array.shards is None
    assert array.chunks == (1, 1, 16, 20)
    assert len(shard_files(store)) == 9 * 2
    np.testing.assert_array_equal(array[:], stored(data))


def zarr_json(store):
    return json.loads((Path(store) / "0" / "zarr.json").read_text())


def array_files(store):
    """Every file of array "0" but its metadata: relative path -> bytes."""
    folder = Path(store) / "0"
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "zarr.json"
    }


def assert_same_files(ours, theirs):
    ours, theirs = array_files(ours), array_files(theirs)
    assert sorted(ours) == sorted(theirs)
    for relative in ours:
        assert ours[relative] == theirs[relative], relative


@pytest.mark.parametrize("options", [{}, {"sharded": False}, {"compressor": "zstd"}])
def test_shard_files_equal_what_zarr_itself_writes(tmp_path, options):
    # the sink encodes in memory and streams the files itself: same bytes as zarr's LocalStore
    data = random_data((12, 2, 2, 24, 20), np.int16)
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    for store in (ours, theirs):
        make_store(store, data, options=options, target_chunk_mb=0.01)
    # only the default layout is encoded without zarr
    assert (FrameShards.from_metadata(zarr_json(ours)) is not None) == (options == {})
    for z in range(2):
        write_plane(ours, data, z, target_chunk_mb=0.01)
    zarr.open_array(str(theirs), path="0", mode="r+")[:] = data
    assert_same_files(ours, theirs)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
@pytest.mark.parametrize("n_channels", [1, 2])
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_frame_shards_equal_what_zarr_itself_writes(tmp_path, dtype, n_channels, byte_order):
    n_frames, shard_t, frame = 11, 3, (24, 20)  # the last shard holds 2 frames of 3
    data = random_data((n_frames, n_channels, 2, *frame), dtype)
    data[4] = 0  # a frame of fill value in the middle of a shard, in every plane
    data[3:6, :, 1] = 0  # plane 1's whole second shard: no file
    if np.issubdtype(dtype, np.floating):
        data[7, :, 0] = -0.0  # zarr compares a zero fill value bit for bit: this is data
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    target_mb = shard_t * frame[0] * frame[1] * np.dtype(dtype).itemsize / 2**20
    for store in (ours, theirs):
        assert make_store(store, data, target_chunk_mb=target_mb)["shard_t"] == shard_t
    assert FrameShards.from_metadata(zarr_json(ours)) is not None
    # a file left by an earlier run where plane 1 now has a shard of fill value only
    stale = ours / "0" / "c" / "1" / ("0/1" if n_channels > 1 else "1") / "0" / "0"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old pixels")
    incoming = data.astype(np.dtype(dtype).newbyteorder(byte_order))
    for z in range(2):
        sink = ZarrPlaneSink(ours, plane_target(ours, data, z), target_mb)
        for start in range(0, n_frames, 4):
            sink.write(incoming[start : start + 4, :, z])
        sink.commit()
    zarr.open_array(str(theirs), path="0", mode="r+")[:] = stored(data)
    assert not stale.exists()
    assert_same_files(ours, theirs)
    np.testing.assert_array_equal(zarr.open_array(str(ours), path="0", mode="r")[:], stored(data))


@pytest.mark.parametrize(
    ("endian", "separator", "dtype", "fill_value"),
    [("big", "/", np.int16, 0), ("little", ".", np.int16, 7), ("big", "/", np.float32, 0.1)],
)
def test_frame_shards_honour_byte_order_key_separator_and_fill_value(tmp_path, endian, separator, dtype, fill_value):
    data = random_data((7, 1, 2, 10, 8), dtype)
    data[1] = fill_value
    data[3:6, :, 0] = fill_value
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    for store in (ours, theirs):
        zarr.create_group(str(store), zarr_format=3).create_array(
            "0",
            shape=(7, 2, 10, 8),
            dtype=dtype,
            chunks=(3, 1, 10, 8),
            serializer=ShardingCodec(
                chunk_shape=(1, 1, 10, 8),
                codecs=[BytesCodec(endian=endian)],
                index_codecs=[BytesCodec(), Crc32cCodec()],
            ),
            compressors=None,
            filters=None,
            fill_value=fill_value,
            chunk_key_encoding={"name": "default", "separator": separator},
        )
    assert FrameShards.from_metadata(zarr_json(ours)) is not None
    for z in range(2):
        write_plane(ours, data, z)
    zarr.open_array(str(theirs), path="0", mode="r+")[:] = stored(data)
    assert_same_files(ours, theirs)


def test_other_key_encodings_go_through_zarr(tmp_path):
    data = random_data((5, 1, 2, 10, 8), np.int16)
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    for store in (ours, theirs):
        zarr.create_group(str(store), zarr_format=3).create_array(
            "0",
            shape=(5, 2, 10, 8),
            dtype=np.int16,
            chunks=(2, 1, 10, 8),
            shards=None,
            compressors=None,
            filters=None,
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "."},
        )
    assert FrameShards.from_metadata(zarr_json(ours)) is None
    write_plane(ours, data, 1)
    assert [p.name for p in output_format("zarr").slab_files(ours, 1)] == ["0.1.0.0", "1.1.0.0", "2.1.0.0"]
    assert output_format("zarr").slab_files(ours, 0) == []
    zarr.open_array(str(theirs), path="0", mode="r+")[:, 1] = data[:, 0, 1]
    assert_same_files(ours, theirs)


def test_plane_job_of_default_layout_never_imports_zarr(tmp_path):
    data = random_data((7, 2, 3, 16, 12), np.uint16)
    store = tmp_path / "s.zarr"
    make_store(store, data, target_chunk_mb=0.001)
    np.save(tmp_path / "data.npy", data)
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        import numpy as np
        from imexport.formats import output_format
        from imexport.sinks.base import PlaneTarget

        data, store = np.load({str(tmp_path / "data.npy")!r}), Path({str(store)!r})
        target = PlaneTarget(
            path=store, plane=1, z_index=1, n_planes_out=3, n_frames=7, n_channels=2,
            frame_shape=(16, 12), dtype=np.dtype(np.uint16), metadata={{}},
        )
        sink = output_format("zarr").open_sink(target, store=store, target_chunk_mb=0.001)
        sink.write(data[:, :, 1])
        sink.commit()
        files = [str(p.relative_to(store)) for p in output_format("zarr").slab_files(store, 1)]
        print(json.dumps({{"zarr": "zarr" in sys.modules, "files": files}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["zarr"] is False
    written = sorted(str(p.relative_to(store)) for p in shard_files(store))
    assert sorted(report["files"]) == written
    assert all(path.split("/")[4] == "1" for path in written)  # 0/c/<t>/<c>/<z>/0/0
    expected = np.zeros_like(data)
    expected[:, :, 1] = data[:, :, 1]
    np.testing.assert_array_equal(zarr.open_array(str(store), path="0", mode="r")[:], expected)


def test_rewritten_plane_of_fill_values_leaves_no_stale_shard(tmp_path):
    # a rerun of a plane job over a slab written before: shards that are now all fill
    # value must disappear (zarr stores none), not keep the old pixels
    data = random_data((10, 1, 2, 16, 16), np.int16)
    store = tmp_path / "s.zarr"
    make_store(store, data, target_chunk_mb=0.002)
    for z in range(2):
        write_plane(store, data, z, target_chunk_mb=0.002)
    before = len(shard_files(store))
    data[:, :, 1] = 0
    write_plane(store, data, 1, target_chunk_mb=0.002)
    assert len(shard_files(store)) < before
    assert all(f.parent.parent.name == "0" for f in shard_files(store))
    np.testing.assert_array_equal(zarr.open_array(str(store), path="0", mode="r")[:], stored(data))


def test_sink_rejects_bad_input(tmp_path):
    data = random_data((6, 1, 1, 8, 8), np.uint16)
    store = tmp_path / "s.zarr"
    make_store(store, data)
    sink = ZarrPlaneSink(store, plane_target(store, data, 0), 0.05)
    with pytest.raises(ValueError, match="chunk shape"):
        sink.write(np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(ValueError, match="more than 6 frames"):
        sink.write(np.zeros((7, 1, 8, 8), np.uint16))
    sink.write(data[:4, :, 0])
    with pytest.raises(RuntimeError, match="4 of 6 frames"):
        sink.commit()
    assert not plane_marker(store, 0).exists()


def test_sink_rejects_mismatched_target(tmp_path):
    data = random_data((6, 1, 2, 8, 8), np.uint16)
    store = tmp_path / "s.zarr"
    make_store(store, data)
    target = plane_target(store, data, 0)
    target.frame_shape = (8, 9)
    with pytest.raises(ValueError, match="expects"):
        ZarrPlaneSink(store, target, 0.05)
    target = plane_target(store, data, 0)
    target.z_index = 2
    with pytest.raises(ValueError, match="z_index 2"):
        ZarrPlaneSink(store, target, 0.05)
    target = plane_target(store, data, 0)
    target.dtype = np.dtype(np.int16)
    with pytest.raises(ValueError, match="dtype"):
        ZarrPlaneSink(store, target, 0.05)


def test_abort_removes_only_that_plane_marker(tmp_path):
    data = random_data((6, 1, 2, 8, 8), np.uint16)
    store = tmp_path / "s.zarr"
    make_store(store, data)
    write_plane(store, data, 0)
    sink = write_plane(store, data, 1)
    sink.abort()
    assert plane_marker(store, 0).is_file()
    assert not plane_marker(store, 1).exists()
    with pytest.raises(RuntimeError, match=r"z_index \[1\]"):
        finalize_store(store, tmp_path / "final.zarr")
    write_plane(store, data, 1)  # the rerun rewrites the slab
    finalize_store(store, tmp_path / "final.zarr")
    array = zarr.open_array(str(tmp_path / "final.zarr"), path="0", mode="r")
    np.testing.assert_array_equal(array[:], stored(data))


# ---------------------------------------------------------------------------------------
# concurrency


def _write_plane_in_process(store, shape, z, barrier):
    data = np.zeros(shape, np.uint16)
    data[:, :, z] = random_data((shape[0], shape[1], *shape[3:]), np.uint16, seed=z)
    barrier.wait()  # all processes start writing together
    write_plane(Path(store), data, z, sizes=(2, 5), target_chunk_mb=0.01)


def test_concurrent_processes_write_their_own_planes(tmp_path):
    shape = (41, 2, 4, 48, 40)
    data = np.zeros(shape, np.uint16)
    for z in range(4):
        data[:, :, z] = random_data((41, 2, 48, 40), np.uint16, seed=z)
    store = tmp_path / "s.zarr"
    layout = make_store(store, data, target_chunk_mb=0.01)
    assert layout["shard_t"] == 2  # many shard writes per process
    # spawn, not fork: zarr runs an event-loop thread that a forked child cannot use
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    processes = [context.Process(target=_write_plane_in_process, args=(str(store), shape, z, barrier)) for z in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    finalize_store(store, tmp_path / "final.zarr")
    array = zarr.open_array(str(tmp_path / "final.zarr"), path="0", mode="r")
    np.testing.assert_array_equal(array[:], data)


# ---------------------------------------------------------------------------------------
# compression


def _codec_config(store):
    meta = json.loads((Path(store) / "0" / "zarr.json").read_text())
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    assert [c["name"] for c in sharding["configuration"]["index_codecs"]] == ["bytes", "crc32c"]
    return sharding["configuration"]["codecs"][1:]


@pytest.mark.parametrize("compressor", COMPRESSORS[1:])
@pytest.mark.parametrize("explicit", [False, True])
def test_compressor_round_trip(tmp_path, compressor, explicit):
    data = random_data((7, 1, 2, 24, 24), np.int16)
    level = {"gzip": 1, "zstd": 19, "blosc-lz4": 9, "blosc-zstd": 0}[compressor]
    options = {"compressor": compressor, **({"compression_level": level} if explicit else {})}
    final = export(tmp_path, data, options=options)
    array = zarr.open_array(str(final), path="0", mode="r")
    np.testing.assert_array_equal(array[:], stored(data))
    (codec,) = _codec_config(final)
    effective = level if explicit else DEFAULT_LEVELS[compressor]
    assert codec["configuration"].get("level", codec["configuration"].get("clevel")) == effective
    if compressor.startswith("blosc"):
        assert codec["configuration"]["cname"] == compressor.removeprefix("blosc-")
        assert codec["configuration"]["shuffle"] == "shuffle"


def _store_bytes(path):
    return sum(p.stat().st_size for p in shard_files(path))


@pytest.mark.parametrize("compressor", COMPRESSORS[1:])
def test_compressor_without_level_really_compresses(tmp_path, compressor):
    ramp = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 300
    data = np.broadcast_to(ramp, (12, 1, 2, 64, 64)).copy()
    plain = export(tmp_path / "plain", data)
    packed = export(tmp_path / "packed", data, options={"compressor": compressor})
    assert _store_bytes(packed) < _store_bytes(plain) / 4
    assert _codec_config(plain) == []


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"compressor": "lzma"}, "zarr.compressor"),
        ({"compressor": "gzip", "compression_level": 10}, "zarr.compression_level"),
        ({"compressor": "gzip", "compression_level": -1}, "zarr.compression_level"),
        ({"compressor": "zstd", "compression_level": 0}, "zarr.compression_level"),
        ({"compressor": "zstd", "compression_level": 23}, "zarr.compression_level"),
        ({"compressor": "blosc-lz4", "compression_level": 10}, "zarr.compression_level"),
        ({"compressor": "blosc-zstd", "compression_level": "5"}, "zarr.compression_level"),
        ({"compressor": "gzip", "compression_level": True}, "zarr.compression_level"),
        ({"compressor": "none", "compression_level": 3}, "zarr.compression_level"),
    ],
)
def test_bad_compression_options(tmp_path, options, key):
    data = random_data((2, 1, 1, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=key) as error:
        make_store(tmp_path / "s.zarr", data, options=options)
    assert "gzip" in str(error.value) or "from" in str(error.value)  # names the valid values
    assert not (tmp_path / "s.zarr").exists()


# ---------------------------------------------------------------------------------------
# OME-NGFF metadata and finalize


@pytest.mark.parametrize("n_channels", [1, 2])
def test_ome_metadata_validates(tmp_path, n_channels):
    data = random_data((5, n_channels, 2, 16, 16), np.uint16)
    final = export(tmp_path, data, extra_attrs={"provenance": {"tool": "test"}})
    group = zarr.open_group(str(final), mode="r")
    Image.from_zarr(group)
    attrs = group.attrs.asdict()
    multiscale = attrs["ome"]["multiscales"][0]
    assert attrs["ome"]["version"] == "0.5"
    assert multiscale["name"] == "recording"
    names = ["t", "c", "z", "y", "x"] if n_channels > 1 else ["t", "z", "y", "x"]
    assert [a["name"] for a in multiscale["axes"]] == names
    assert multiscale["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert multiscale["axes"][-1] == {"name": "x", "type": "space", "unit": "micrometer"}
    if n_channels > 1:
        assert multiscale["axes"][1] == {"name": "c", "type": "channel"}
    scale = [0.05, *([1.0] if n_channels > 1 else []), 4.0, 0.75, 0.5]
    assert multiscale["datasets"] == [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]
    assert "version" not in json.dumps({k: v for k, v in attrs.items() if k != "ome"})
    assert "version" not in json.dumps(multiscale)
    assert attrs["imexport"] == METADATA
    assert attrs["imexport_zarr"]["unknown_scale_axes"] == []
    assert attrs["provenance"] == {"tool": "test"}
    assert list(group.array_keys()) == ["0"]
    assert group["0"].metadata.dimension_names == tuple(names)


def test_unknown_scales_default_to_one(tmp_path):
    data = random_data((3, 1, 1, 8, 8), np.uint16)
    final = export(tmp_path, data, metadata={"fs": None, "dx": 2.0, "dy": None, "dz": None})
    attrs = zarr.open_group(str(final), mode="r").attrs.asdict()
    scale = attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 1.0, 1.0, 2.0]
    assert attrs["imexport_zarr"]["unknown_scale_axes"] == ["t", "z", "y"]
    # an unknown scale is one step per index: its axis names no physical unit
    assert attrs["ome"]["multiscales"][0]["axes"] == [
        {"name": "t", "type": "time"},
        {"name": "z", "type": "space"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    Image.from_zarr(zarr.open_group(str(final), mode="r"))  # still valid OME-NGFF 0.5


def test_plane_metadata_collected(tmp_path):
    data = random_data((4, 1, 3, 8, 8), np.uint16)
    final = export(tmp_path, data)
    attrs = zarr.open_group(str(final), mode="r").attrs.asdict()
    assert [p["z_index"] for p in attrs["imexport_planes"]] == [0, 1, 2]
    assert [p["plane"] for p in attrs["imexport_planes"]] == [11, 12, 13]
    assert not (final / PLANES_DIR).exists()
    assert not (tmp_path / ".rec.zarr.tmp").exists()


def test_finalize_replaces_existing_store_wholly(tmp_path):
    big = random_data((30, 1, 3, 16, 16), np.uint16, seed=1)
    final = export(tmp_path, big, target_chunk_mb=0.002)  # 4-frame shards
    assert len(shard_files(final)) == 8 * 3
    small = random_data((4, 1, 1, 16, 16), np.uint16, seed=2)
    final = export(tmp_path, small, target_chunk_mb=0.002)
    array = zarr.open_array(str(final), path="0", mode="r")
    np.testing.assert_array_equal(array[:], stored(small))
    assert len(shard_files(final)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.zarr"]


def test_create_store_clears_leftover_temporary(tmp_path):
    data = random_data((4, 1, 2, 8, 8), np.uint16)
    store = tmp_path / "s.zarr"
    make_store(store, data)
    write_plane(store, data, 0)
    make_store(store, data)
    assert shard_files(store) == []
    assert not (store / PLANES_DIR).exists()


# ---------------------------------------------------------------------------------------
# pyramid


def reference_halve(a, axis):
    """Independent 2x reduction along one axis: sums of pairs over counts (last may be 1)."""
    starts = np.arange(0, a.shape[axis], 2)
    sums = np.add.reduceat(a.astype(np.float64), starts, axis=axis)
    counts = np.add.reduceat(np.ones(a.shape[axis]), starts)
    shape = [1] * a.ndim
    shape[axis] = len(counts)
    return sums / counts.reshape(shape)


def reference_level(a, halve_z, method):
    """Next level of a (T, C, Z, Y, X) array computed by plain numpy."""
    if method == "nearest":
        return a[:, :, :: 2 if halve_z else 1, ::2, ::2]
    out = a
    for axis in ([2] if halve_z else []) + [3, 4]:
        # every mean of means over equal-weight pairs is the block mean, except at odd
        # edges where the pair holds one pixel: both pick the pixels that exist
        out = reference_halve(out, axis)
    if np.issubdtype(a.dtype, np.integer):
        out = np.rint(out)
    return out.astype(a.dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("method", ["mean", "nearest"])
def test_pyramid_levels(tmp_path, dtype, method):
    data = random_data((5, 1, 3, 260, 270), dtype)
    final = export(tmp_path, data, pyramid=True, pyramid_method=method, target_chunk_mb=0.2)
    group = zarr.open_group(str(final), mode="r")
    Image.from_zarr(group)
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert [d["path"] for d in multiscale["datasets"]] == ["0", "1", "2"]  # 3rd would be 33 px
    assert multiscale["type"] == method
    # dz (4) is coarser than dy, dx (0.75, 0.5) at every level here: Z is kept
    assert group["1"].shape == (5, 3, 130, 135)
    assert group["2"].shape == (5, 3, 65, 68)
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales == [[0.05, 4.0, 0.75, 0.5], [0.05, 4.0, 1.5, 1.0], [0.05, 4.0, 3.0, 2.0]]
    expected = data
    for level in ("1", "2"):
        expected = reference_level(expected, False, method)
        array = group[level]
        assert array.dtype == dtype
        assert array.metadata.dimension_names == ("t", "z", "y", "x")
        if dtype == np.float32 and method == "mean":
            np.testing.assert_allclose(array[:], stored(expected), rtol=1e-6)
        else:
            np.testing.assert_array_equal(array[:], stored(expected))


def test_pyramid_mean_rounds_integers(tmp_path):
    data = np.zeros((1, 1, 1, 128, 128), np.uint8)
    data[0, 0, 0, 0:2, 0:2] = [[3, 4], [3, 4]]  # 3.5: rounds to 4, truncates to 3
    data[0, 0, 0, 0:2, 2:4] = [[1, 2], [2, 2]]  # 1.75: rounds to 2, truncates to 1
    final = export(tmp_path, data, pyramid=True, pyramid_max_layers=1)
    level = zarr.open_array(str(final), path="1", mode="r")[0, 0]
    assert level[0, :3].tolist() == [4, 2, 0]
    np.testing.assert_array_equal(level, reference_level(data, False, "mean")[0, 0, 0])


def _levels(final):
    group = zarr.open_group(str(final), mode="r")
    multiscale = group.attrs["ome"]["multiscales"][0]
    shapes = [group[d["path"]].shape for d in multiscale["datasets"]]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    return group, shapes, scales


def test_pyramid_halves_z_when_it_is_the_finest_axis(tmp_path):
    data = random_data((3, 2, 3, 256, 256), np.uint16)
    metadata = {"fs": 10.0, "dx": 1.0, "dy": 1.0, "dz": 0.5}
    final = export(tmp_path, data, metadata=metadata, pyramid=True, target_chunk_mb=0.2)
    group, shapes, scales = _levels(final)
    Image.from_zarr(group)
    assert shapes == [(3, 2, 3, 256, 256), (3, 2, 2, 128, 128), (3, 2, 1, 64, 64)]
    assert [s[2:] for s in scales] == [[0.5, 1.0, 1.0], [1.0, 2.0, 2.0], [2.0, 4.0, 4.0]]
    level1 = reference_level(data, True, "mean")
    np.testing.assert_array_equal(group["1"][:], level1)
    np.testing.assert_array_equal(group["2"][:], reference_level(level1, True, "mean"))


def test_pyramid_z_joins_once_lateral_spacing_catches_up(tmp_path):
    data = random_data((2, 1, 2, 520, 520), np.uint8)
    metadata = {"fs": 10.0, "dx": 1.0, "dy": 1.0, "dz": 2.0}
    final = export(tmp_path, data, metadata=metadata, pyramid=True, target_chunk_mb=0.2)
    _, shapes, scales = _levels(final)
    assert [s[1] for s in shapes] == [2, 2, 1, 1]
    assert [s[1:] for s in scales] == [
        [2.0, 1.0, 1.0],
        [2.0, 2.0, 2.0],
        [4.0, 4.0, 4.0],
        [4.0, 8.0, 8.0],
    ]  # a single plane cannot halve any more


def test_pyramid_keeps_z_when_dz_unknown(tmp_path):
    data = random_data((2, 1, 3, 130, 128), np.uint16)
    metadata = {"fs": 10.0, "dx": 1.0, "dy": 1.0, "dz": None}
    final = export(tmp_path, data, metadata=metadata, pyramid=True)
    _, shapes, scales = _levels(final)
    assert shapes == [(2, 3, 130, 128), (2, 3, 65, 64)]
    assert scales[1] == [0.1, 1.0, 2.0, 2.0]


def test_pyramid_max_layers_and_small_frames(tmp_path):
    data = random_data((2, 1, 1, 600, 600), np.uint8)
    final = export(tmp_path / "a", data, pyramid=True, pyramid_max_layers=2)
    assert _levels(final)[1] == [(2, 1, 600, 600), (2, 1, 300, 300), (2, 1, 150, 150)]
    edge = random_data((2, 1, 1, 127, 400), np.uint8)
    final = export(tmp_path / "b", edge, pyramid=True, pyramid_max_layers=1)
    assert _levels(final)[1] == [(2, 1, 127, 400), (2, 1, 64, 200)]  # 64 rows are enough
    small = random_data((2, 1, 1, 126, 400), np.uint8)
    final = export(tmp_path / "c", small, pyramid=True)
    assert _levels(final)[1] == [(2, 1, 126, 400)]  # 63 rows are not
    group = zarr.open_group(str(final), mode="r")
    assert "type" not in group.attrs["ome"]["multiscales"][0]
    assert list(group.array_keys()) == ["0"]
    with pytest.raises(ValueError, match="pyramid_method"):
        export(tmp_path / "d", small, pyramid=True, pyramid_method="gaussian")


def test_pyramid_levels_share_the_shard_recipe(tmp_path):
    data = random_data((40, 1, 2, 256, 256), np.uint16)
    options = {"compressor": "zstd"}
    final = export(tmp_path, data, options=options, pyramid=True, target_chunk_mb=0.5)
    group = zarr.open_group(str(final), mode="r")
    assert group["0"].shards == (4, 1, 256, 256)
    assert group["1"].shards == (16, 1, 128, 128)
    assert group["2"].shards == (40, 1, 64, 64)
    for level in ("0", "1", "2"):
        assert group[level].chunks == (1, 1, *group[level].shape[-2:])
        assert group[level].compressors[0].level == 3


def test_pyramid_memory_stays_near_one_shard(tmp_path):
    data = random_data((256, 1, 1, 256, 256), np.uint16)  # 32 MiB at level 0
    tmp, final = tmp_path / "tmp.zarr", tmp_path / "rec.zarr"
    make_store(tmp, data, target_chunk_mb=0.25)  # 2-frame shards at level 0, 8 at level 1
    write_plane(tmp, data, 0, target_chunk_mb=0.25)
    del data
    tracemalloc.start()
    try:
        finalize_store(tmp, final, pyramid=True, pyramid_max_layers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # level 0 is 32 MiB and level 1 8 MiB; a shard is 0.25 MiB. The design holds a few
    # shard-sized buffers (source block, output shard, float mean, zarr's encoded shard)
    assert peak < 3 * 2**20
