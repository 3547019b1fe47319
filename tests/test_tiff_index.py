"""The IFD-chain page index and the fast, validated page count (sources/tiff_index.py).

Every expectation is taken from tifffile's own parse of the same file.
"""

from __future__ import annotations

import os
import re
import shutil
import struct

import numpy as np
import pytest
import tifffile

from imexport.sources import inspect_input, tiff_ifd, tiff_index
from imexport.sources.info import SourceError
from imexport.sources.scanimage_pages import build_page_index, check_page_index, save_page_index
from imexport.sources.tiff_index import FileIdentity, TiffLayoutError, count_pages, index_pages


def tifffile_layout(path):
    """(n_pages, [strip offset of each page], (height, width), dtype, [IFD offsets])."""
    with tifffile.TiffFile(path) as tf:
        pages = list(tf.pages)
        offsets = [p.dataoffsets[0] for p in pages]
        ifds = [p.offset for p in pages]
        return len(pages), offsets, pages[0].shape, pages[0].dtype, ifds


def first_ifd_offset(path) -> int:
    head = open(path, "rb").read(16)
    if struct.unpack_from("<H", head, 2)[0] == 43:
        return struct.unpack_from("<Q", head, 8)[0]
    return struct.unpack_from("<I", head, 4)[0]


@pytest.fixture
def no_full_walk(monkeypatch):
    """Makes count_pages' fallback (the full IFD walk) fail loudly; returns a call list."""
    calls = []

    def forbidden(path):
        calls.append(path)
        raise AssertionError("count_pages fell back to the full IFD walk")

    monkeypatch.setattr(tiff_index, "index_pages", forbidden)
    return calls


@pytest.fixture
def counted_full_walk(monkeypatch):
    calls = []
    real = tiff_index.index_pages

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(tiff_index, "index_pages", counting)
    return calls


# --------------------------------------------------------------------------- exact counts


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),  # 3 planes, 2 ROIs, 3 files of 3/3/1 frames
        dict(n_planes=1, roi_heights=[9], n_frames=1, frames_per_file=1),  # one page in the file
        dict(n_planes=2, n_frames=1, frames_per_file=1),  # two pages
        dict(n_planes=1, n_frames=3, frames_per_file=3),  # three pages
        dict(n_colors=2, n_planes=2, n_frames=5, frames_per_file=2, trailing_pages=3),
    ],
)
def test_counts_and_offsets_equal_tifffile(tmp_path, make_acquisition, overrides):
    spec, paths = make_acquisition(tmp_path, **overrides)
    assert len(paths) == len(spec.file_names())
    total = 0
    for path in paths:
        n, offsets, shape, dtype, _ = tifffile_layout(path)
        layout = index_pages(path)
        assert len(layout.data_offsets) == n
        assert layout.data_offsets.dtype == np.int64
        np.testing.assert_array_equal(layout.data_offsets, offsets)
        assert (layout.height, layout.width) == tuple(shape) == (spec.page_height, spec.width)
        assert np.dtype(layout.dtype) == dtype == np.dtype("<i2")
        assert count_pages(path) == (n, spec.page_height, spec.width, np.dtype("<i2").str)
        total += n
    assert total == spec.n_frames * spec.n_saved + spec.trailing_pages


def test_uniform_file_is_counted_without_the_full_walk(tmp_path, make_acquisition, no_full_walk):
    spec, paths = make_acquisition(tmp_path, n_frames=6, frames_per_file=6)
    n, *_ = count_pages(paths[0])
    assert n == 6 * spec.n_saved
    assert no_full_walk == []


def test_header_block_larger_than_a_page_stride_counts_exactly(tmp_path, make_acquisition):
    # 8 px x 4 rows of int16 = 64 bytes of pixels: one page is far smaller than the
    # ScanImage header block that sits between byte 16 and the first IFD.
    spec, paths = make_acquisition(tmp_path, n_planes=5, roi_heights=[4], width=8, n_frames=4, frames_per_file=4)
    path = paths[0]
    n, offsets, _, _, ifds = tifffile_layout(path)
    stride = ifds[1] - ifds[0]
    header = first_ifd_offset(path) - 16
    assert header > 2 * stride, "the test needs a header block larger than two page strides"
    # what a count from (file size - 16) / stride would claim: pages that do not exist
    size = path.stat().st_size
    assert (size - 16) // stride > n
    assert n == 4 * 5
    assert count_pages(path)[0] == n
    np.testing.assert_array_equal(index_pages(path).data_offsets, offsets)


def test_classic_tiff_from_tifffile(tmp_path):
    path = tmp_path / "classic.tif"
    data = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7)
    with tifffile.TiffWriter(path, bigtiff=False) as tw:
        for page in data:
            tw.write(page, contiguous=False)
    n, offsets, shape, _, _ = tifffile_layout(path)
    assert n == 5
    layout = index_pages(path)
    np.testing.assert_array_equal(layout.data_offsets, offsets)
    assert (layout.height, layout.width, layout.dtype) == (6, 7, "<u2")
    assert count_pages(path) == (5, 6, 7, "<u2")
    raw = path.read_bytes()
    for k, off in enumerate(layout.data_offsets):
        page = np.frombuffer(raw, "<u2", count=42, offset=int(off)).reshape(6, 7)
        np.testing.assert_array_equal(page, data[k])


# --------------------------------------------------------------------------- varying strides


def write_pages_with_descriptions(path, lengths):
    """A BigTIFF of ``len(lengths)`` 4x6 int16 pages whose descriptions have the given lengths."""
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, n in enumerate(lengths):
            tw.write(np.full((4, 6), i, np.int16), description="d" * n, contiguous=False, metadata=None)


@pytest.mark.parametrize(
    "lengths",
    [
        [10, 10, 10, 60, 60, 60, 60],  # stride changes after page 2
        [10, 60, 60, 60, 60],  # first stride differs from all the others
        [10, 10, 10, 10, 10, 10, 300],  # only the last page is longer
        [10, 10, 300, 10, 10, 10, 10, 10],  # one long page in the middle
    ],
)
def test_count_falls_back_when_strides_differ(tmp_path, lengths, counted_full_walk):
    path = tmp_path / "varying.tif"
    write_pages_with_descriptions(path, lengths)
    n, offsets, _, _, ifds = tifffile_layout(path)
    assert n == len(lengths)
    strides = set(np.diff(ifds).tolist())
    ifd_to_pixels = {int(o) - int(i) for o, i in zip(offsets, ifds)}
    assert len(strides) > 1 or len(ifd_to_pixels) > 1, "the pages must not all be laid out alike"
    assert count_pages(path) == (n, 4, 6, "<i2")
    assert counted_full_walk == [path]  # the stride was rejected, the chain walked
    np.testing.assert_array_equal(index_pages(path).data_offsets, offsets)


def test_count_is_exact_when_a_middle_page_is_one_stride_longer(tmp_path):
    path = tmp_path / "shifted.tif"
    write_pages_with_descriptions(path, [10] * 7)
    stride = np.diff(tifffile_layout(path)[4])[0]
    write_pages_with_descriptions(path, [10, 10, 10, 10 + int(stride), 10, 10, 10])
    n, _, _, _, ifds = tifffile_layout(path)
    assert n == 7
    assert ifds[-1] == ifds[0] + 7 * stride  # the last IFD sits exactly where an 8th page would
    assert count_pages(path)[0] == n


def test_uniform_file_is_indexed_without_a_walk_and_with_every_description(tmp_path, make_acquisition, monkeypatch):
    spec, paths = make_acquisition(tmp_path, n_colors=2, n_frames=12, frames_per_file=12)
    # descriptions are padded to one length here; ScanImage's lengths vary: page 7's is cut
    # short by 20 bytes of its padding (still a valid TIFF: only its count changes)
    with tifffile.TiffFile(paths[0]) as tf:
        entry, big = tf.pages[7].tags["ImageDescription"].offset, tf.is_bigtiff
    data = bytearray(paths[0].read_bytes())
    count_format = "<Q" if big else "<I"
    struct.pack_into(count_format, data, entry + 4, struct.unpack_from(count_format, data, entry + 4)[0] - 20)
    paths[0].write_bytes(bytes(data))
    with tifffile.TiffFile(paths[0]) as tf:
        # the stored bytes (tifffile's .value also strips the padding)
        tags = [p.tags["ImageDescription"] for p in tf.pages]
        expected = [bytes(data[t.valueoffset : t.valueoffset + t.count]).rstrip(b"\0") for t in tags]
        offsets = [p.dataoffsets[0] for p in tf.pages]
    assert len(set(expected)) == 13 and len({len(e) for e in expected}) == 2  # each frame's own, and page 7
    read = []
    real = tiff_ifd.IfdReader.read_ifd

    def counting(self, offset, page_number, description=False):
        read.append(page_number)
        return real(self, offset, page_number, description)

    monkeypatch.setattr(tiff_ifd.IfdReader, "read_ifd", counting)
    layout = index_pages(paths[0], descriptions=True)
    assert read == [0]  # page 0 read in full, every other page checked against it at once
    assert layout.descriptions == expected
    np.testing.assert_array_equal(layout.data_offsets, offsets)
    assert len(offsets) == 12 * spec.n_saved


def test_a_description_beyond_the_end_of_the_file_is_named_by_the_walk(one_file):
    spec, path, offsets, ifds = one_file
    last = len(ifds) - 1
    with tifffile.TiffFile(path) as tf:
        entry = tf.pages[last].tags["ImageDescription"].offset
        big = tf.is_bigtiff
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q" if big else "<I", data, entry + 4, len(data))  # its length: the whole file
    damaged = path.with_name("long_description.tif")
    damaged.write_bytes(bytes(data))
    assert count_pages(damaged)[0] == len(ifds)  # a description's length is not checked while planning
    with pytest.raises(TiffLayoutError, match=rf"page {last}: the value of TIFF tag 270 .* beyond the end") as err:
        index_pages(damaged, descriptions=True)
    assert str(damaged) in str(err.value)


# --------------------------------------------------------------------------- damaged files


@pytest.fixture
def one_file(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path, n_frames=4, frames_per_file=4)
    path = paths[0]
    _, offsets, _, _, ifds = tifffile_layout(path)
    return spec, path, offsets, ifds


def cut_copy(path, n_bytes, name):
    out = path.with_name(name)
    out.write_bytes(path.read_bytes()[:n_bytes])
    return out


@pytest.mark.parametrize("where", ["mid_page_pixels", "mid_ifd", "after_page_pixels", "inside_header"])
def test_truncated_file_raises_naming_the_file(one_file, where):
    spec, path, offsets, ifds = one_file
    page_bytes = spec.page_height * spec.width * 2
    k = 5  # a page in the middle of the file
    cut = {
        "mid_page_pixels": offsets[k] + page_bytes // 2,
        "mid_ifd": ifds[k] + 40,
        "after_page_pixels": offsets[k] + page_bytes,  # next page's IFD missing entirely
        "inside_header": 100,
    }[where]
    damaged = cut_copy(path, cut, f"cut_{where}.tif")
    for fn in (index_pages, count_pages):
        with pytest.raises(TiffLayoutError) as err:
            fn(damaged)
        assert str(damaged) in str(err.value)
    if where != "inside_header":
        with pytest.raises(TiffLayoutError, match="truncated"):
            index_pages(damaged)


def test_page_chain_loop_raises(one_file):
    spec, path, _, ifds = one_file
    data = bytearray(path.read_bytes())
    n_entries = struct.unpack_from("<Q", data, ifds[-1])[0]
    next_field = ifds[-1] + 8 + 20 * n_entries
    assert struct.unpack_from("<Q", data, next_field)[0] == 0  # the last page ends the chain
    struct.pack_into("<Q", data, next_field, ifds[2])
    looped = path.with_name("loop.tif")
    looped.write_bytes(bytes(data))
    for fn in (index_pages, count_pages):
        with pytest.raises(TiffLayoutError, match="loops") as err:
            fn(looped)
        assert str(looped) in str(err.value)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty"),
        (b"not a tiff at all, just some text" * 4, "not a little-endian TIFF"),
        (b"MM\x00\x2a" + b"\x00" * 60, "not a little-endian TIFF"),
        (b"II\x63\x00" + b"\x00" * 60, "magic number 99"),
        (b"II\x2b\x00\x08\x00\x00\x00" + struct.pack("<Q", 10_000) + b"\x00" * 60, "beyond the end"),
    ],
    ids=["empty", "text", "big_endian", "bad_magic", "first_ifd_past_eof"],
)
def test_non_tiff_bytes_raise(tmp_path, content, match):
    path = tmp_path / "junk.tif"
    path.write_bytes(content)
    for fn in (index_pages, count_pages):
        with pytest.raises(TiffLayoutError, match=match) as err:
            fn(path)
        assert str(path) in str(err.value)


def test_compressed_pages_raise(tmp_path):
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, np.ones((3, 8, 8), np.int16), compression="zlib", photometric="minisblack")
    with pytest.raises(TiffLayoutError, match="compressed"):
        index_pages(path)


def test_pages_of_different_size_raise_in_the_full_walk(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(np.zeros((4, 6), np.int16), contiguous=False)
        tw.write(np.zeros((4, 6), np.int16), contiguous=False)
        tw.write(np.zeros((5, 6), np.int16), contiguous=False)
    with pytest.raises(TiffLayoutError, match=r"page 2 is 5x6") as err:
        index_pages(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- file identity


def identity_of(path) -> FileIdentity:
    stat = os.stat(path)
    return FileIdentity(stat.st_size, stat.st_mtime_ns, stat.st_ino)


@pytest.fixture
def touch_during_walk(monkeypatch):
    """``touch_during_walk(path)``: the file's mtime moves by 1 s right after page 0's
    directory is read, i.e. in the middle of the walk, fast or full (a real change of the
    real file; the wrapper only chooses the moment)."""

    def arm(path):
        real = tiff_ifd.IfdReader.read_ifd

        def read_ifd(self, offset, page_number, description=False):
            ifd = real(self, offset, page_number, description)
            if self.path == path and page_number == 0:
                stat = os.stat(path)
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            return ifd

        monkeypatch.setattr(tiff_ifd.IfdReader, "read_ifd", read_ifd)

    return arm


def test_index_records_the_identity_from_before_the_walk(tmp_path, make_acquisition, touch_during_walk):
    spec, paths = make_acquisition(tmp_path, n_frames=3, frames_per_file=3)
    before = identity_of(paths[0])
    touch_during_walk(paths[0])
    layout = index_pages(paths[0], descriptions=True)
    assert len(layout.data_offsets) == 3 * spec.n_saved  # the walk went on past the change
    assert layout.identity == before
    assert identity_of(paths[0]).mtime_ns == before.mtime_ns + 10**9


def test_a_file_changed_during_the_walk_fails_the_index_check(tmp_path, make_acquisition, touch_during_walk):
    spec, paths = make_acquisition(tmp_path)  # 3 files
    info = inspect_input(str(paths[0].parent))
    touch_during_walk(paths[1])
    index = tmp_path / "page_index.npz"
    save_page_index(index, info, build_page_index(info))
    with pytest.raises(SourceError, match=re.escape(str(paths[1])) + r": changed after the run indexed it.*modified since"):
        check_page_index(index, info)


def test_the_saved_index_holds_each_file_identity_and_catches_a_replaced_file(tmp_path, make_acquisition):
    spec, paths = make_acquisition(tmp_path)
    info = inspect_input(str(paths[0].parent))
    index = tmp_path / "page_index.npz"
    identities = [identity_of(p) for p in paths]
    save_page_index(index, info, build_page_index(info))
    with np.load(index) as data:
        saved = list(zip(data["sizes"].tolist(), data["mtimes"].tolist(), data["inodes"].tolist()))
    assert saved == [(i.size, i.mtime_ns, i.inode) for i in identities]
    check_page_index(index, info)  # nothing changed: no error
    # the same bytes and mtime in a new file (a copy moved over the original): only the inode tells
    copy = tmp_path / "copy.tif"
    shutil.copy2(paths[2], copy)
    os.replace(copy, paths[2])
    now = identity_of(paths[2])
    assert (now.size, now.mtime_ns) == (identities[2].size, identities[2].mtime_ns) and now.inode != identities[2].inode
    with pytest.raises(SourceError, match=re.escape(str(paths[2])) + r": changed after .*replaced by another file"):
        check_page_index(index, info)
