"""DirectFile leaves exactly the bytes a plain buffered file would, whatever the write pattern."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pytest
import tifffile

from imexport.sinks import direct
from imexport.sinks.direct import DirectFile

SMALL_STAGING = 64 * 1024  # several staging blocks per test file


@pytest.fixture(params=["direct", "buffered"])
def io_mode(request, monkeypatch):
    monkeypatch.setattr(direct, "STAGING_BYTES", SMALL_STAGING)
    monkeypatch.setenv(direct.ENV_SWITCH, "1" if request.param == "direct" else "0")
    return request.param


def _filesystem_takes_o_direct(folder) -> bool:
    # an independent probe: open a file with O_DIRECT and write one aligned block
    import mmap

    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    try:
        block = mmap.mmap(-1, 4096)
        os.pwrite(fd, block, 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(folder / "probe")


def test_direct_io_is_used_where_the_filesystem_allows_it(tmp_path, io_mode):
    expected = io_mode == "direct" and _filesystem_takes_o_direct(tmp_path)
    with DirectFile(tmp_path / "f.bin", head_bytes=0) as handle:
        handle.write(b"\2" * (SMALL_STAGING + 10))  # one block goes out through the direct path
        assert handle.uses_direct_io == expected
    assert (tmp_path / "f.bin").read_bytes() == b"\2" * (SMALL_STAGING + 10)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("head_bytes", [0, 4096, 10_000])
def test_random_writes_and_seeks_match_a_plain_file(tmp_path, io_mode, seed, head_bytes):
    rng = random.Random(seed)
    expected = io.BytesIO()
    handle = DirectFile(tmp_path / "f.bin", head_bytes=head_bytes)
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        if roll < 0.15:  # anywhere, also behind blocks already on disk and past the end
            position = rng.randint(0, expected.seek(0, os.SEEK_END) + 5000)
            assert handle.seek(position) == expected.seek(position)
        elif roll < 0.2:
            assert handle.seek(0, os.SEEK_END) == expected.seek(0, os.SEEK_END)
        data = rng.randbytes(rng.choice([1, 8, 100, 4096, 5000, 70_000, 200_000]))
        assert handle.write(data) == len(data)
        expected.write(data)
        assert handle.tell() == expected.tell()
    handle.close()
    assert (tmp_path / "f.bin").read_bytes() == expected.getvalue()


def test_numpy_arrays_are_written_as_their_bytes(tmp_path, io_mode):
    frames = np.arange(3 * 200 * 150, dtype=np.int16).reshape(3, 200, 150)
    with DirectFile(tmp_path / "f.bin", head_bytes=0) as handle:
        for frame in frames:
            handle.write(frame)
    assert np.array_equal(np.fromfile(tmp_path / "f.bin", np.int16).reshape(frames.shape), frames)


@pytest.mark.parametrize("offset", [0, 4096, 3000])
def test_a_region_of_an_existing_file_is_filled_in_place(tmp_path, io_mode, offset):
    path = tmp_path / "f.bin"
    before = bytes(range(256)) * 1000  # 256 kB the region must not disturb outside itself
    path.write_bytes(before)
    region = random.Random(offset).randbytes(150_000)
    with DirectFile(path, offset=offset, truncate=False, head_bytes=0) as handle:
        for start in range(0, len(region), 7000):
            handle.write(region[start : start + 7000])
    expected = bytearray(before)
    expected[offset : offset + len(region)] = region
    assert path.read_bytes() == bytes(expected)


def test_abort_writes_nothing_held_back(tmp_path, io_mode):
    path = tmp_path / "f.bin"
    handle = DirectFile(path)
    handle.write(b"x" * 1000)  # still in the head buffer
    handle.abort()
    assert handle.closed
    assert path.read_bytes() == b""


def test_tifffile_writes_through_it(tmp_path, io_mode):
    # tifffile reserves the header, writes the pixels, then patches the header: the
    # pattern DirectFile's head buffer exists for
    stack = np.random.default_rng(0).integers(-300, 3000, (25, 64, 48), dtype=np.int16)
    with DirectFile(tmp_path / "direct.tif") as handle:
        with tifffile.TiffWriter(handle, bigtiff=True, imagej=True) as writer:
            writer.write(iter(stack), shape=stack.shape, dtype=stack.dtype, metadata={"axes": "TYX"})
    with tifffile.TiffWriter(tmp_path / "plain.tif", bigtiff=True, imagej=True) as writer:
        writer.write(iter(stack), shape=stack.shape, dtype=stack.dtype, metadata={"axes": "TYX"})
    assert (tmp_path / "direct.tif").read_bytes() == (tmp_path / "plain.tif").read_bytes()
    assert np.array_equal(tifffile.imread(tmp_path / "direct.tif"), stack)


def test_numpy_cannot_bypass_it(tmp_path):
    with DirectFile(tmp_path / "f.bin") as handle, pytest.raises(io.UnsupportedOperation):
        handle.fileno()


def test_a_failing_write_raises_its_own_error(tmp_path, io_mode):
    # a full disk (here: the file size limit) must surface as the OSError it is, from close()
    import errno
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handle = DirectFile(tmp_path / "f.bin")
    handle.write(b"\1" * 500_000)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
    try:
        with pytest.raises(OSError) as failure:
            handle.close()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert failure.value.errno == errno.EFBIG
    assert handle.closed
