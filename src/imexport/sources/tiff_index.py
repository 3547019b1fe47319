"""Page index of an uncompressed TIFF/BigTIFF: where every page's pixels start.

Raw ScanImage files hold hundreds of thousands of pages; tifffile parses every tag of
every page, which takes minutes. We only need each page's strip offset, so we walk
the IFD chain ourselves over a memory map. For a fast page *count* (while Snakemake
builds its DAG) every page's directory is compared with page 0's at once (numpy, ~1-3 µs
a page): a damaged page anywhere stops the plan, before any job. Every value read from
a tag is checked where it is read; a damaged one raises ``TiffLayoutError`` naming the
file, the page, the tag and its value.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tiff_ifd import REPAIR, TAG_DESCRIPTION, TAG_STRIP_OFFSETS, Ifd, IfdReader, TiffLayoutError, open_map

__all__ = ["FileIdentity", "PageLayout", "TiffLayoutError", "count_pages", "first_descriptions", "index_pages"]


@dataclass(frozen=True)
class FileIdentity:
    """What a file was when its pages were walked: taken from the open file before the walk,
    so a change during the walk differs from it and is caught by the next comparison."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class PageLayout:
    """Geometry shared by all pages and the pixel offset of each page."""

    height: int
    width: int
    dtype: str
    data_offsets: np.ndarray  # int64, one per page
    descriptions: list[bytes] | None = None  # each page's ImageDescription, when asked for
    identity: FileIdentity | None = None  # the file's identity before the walk


def index_pages(path: str | Path, *, descriptions: bool = False) -> PageLayout:
    """Walk the whole IFD chain: exact page offsets, every page checked, and the file's
    identity (:class:`FileIdentity`) from before the walk.

    ``descriptions`` also keeps each page's ImageDescription (ScanImage's per-frame
    values). A chain that ends while the file holds room for more pages at the same
    stride is an error: the pages after the break would be silently lost.

    A file whose directories all repeat page 0's at one stride (``_uniform_chain``, what
    ScanImage writes) is indexed from that check, without reading each page in Python
    (with descriptions ≈ 24 → 6 µs a page, measured); any other file, a damaged one included, is walked page by page,
    and the walk names the first damaged page.
    """
    path = Path(path)
    handle, buf = open_map(path)
    try:
        stat = os.fstat(handle.fileno())  # of the file mapped: a path replaced since cannot pass for it
        identity = FileIdentity(stat.st_size, stat.st_mtime_ns, stat.st_ino)
        reader = IfdReader(path, buf)
        uniform = _uniform_layout(reader, descriptions)
        if uniform is not None:
            first, stride, n_pages = uniform
            texts = _uniform_descriptions(reader, stride, n_pages) if descriptions else None
            if not descriptions or texts is not None:
                data_offsets = first.data_offset + np.arange(n_pages, dtype=np.int64) * stride
                return PageLayout(first.height, first.width, first.dtype, data_offsets, texts, identity)
        offsets: list[int] = []
        texts: list[bytes] = []
        first: Ifd | None = None
        last: Ifd | None = None
        ifd_offset, last_ifd_offset, seen = reader.first_ifd, 0, set()
        directories: list[tuple[int, int]] = []
        stride = 0
        while ifd_offset:
            if ifd_offset in seen:
                raise TiffLayoutError(f"{path}: the page chain loops back on itself")
            seen.add(ifd_offset)
            ifd = reader.read_ifd(ifd_offset, len(offsets), descriptions)
            if first is None:
                first = ifd
            elif (ifd.height, ifd.width, ifd.dtype) != (first.height, first.width, first.dtype):
                raise TiffLayoutError(
                    f"{path}: page {len(offsets)} is {ifd.height}x{ifd.width} {ifd.dtype}, "
                    f"page 0 is {first.height}x{first.width} {first.dtype}"
                )
            if len(offsets) == 1:
                stride = ifd_offset - last_ifd_offset
            offsets.append(ifd.data_offset)
            directories.append((ifd_offset, ifd.directory_bytes))
            texts.append(ifd.description)
            last, last_ifd_offset, ifd_offset = ifd, ifd_offset, ifd.next_offset
        if first is None:
            raise TiffLayoutError(f"{path}: no pages")
        left = len(buf) - max(last_ifd_offset, last.data_offset + last.data_bytes)
        if len(offsets) == 1:  # one page: its directory, strings and pixels are the stride
            stride = last.data_offset + last.data_bytes - reader.first_ifd
        if stride > 0 and left >= stride:
            raise TiffLayoutError(
                f"{path}: the page chain ends after {len(offsets)} pages, but the file holds {left} more bytes "
                f"(room for {left // stride} more pages of {stride} bytes): a damaged directory cuts the "
                f"recording short; {REPAIR}"
            )
        _check_no_overlap(path, directories, offsets, first.data_bytes)
        return PageLayout(
            first.height,
            first.width,
            first.dtype,
            np.asarray(offsets, dtype=np.int64),
            texts if descriptions else None,
            identity,
        )
    finally:
        buf.close()
        handle.close()


def _check_no_overlap(path: Path, directories: list[tuple[int, int]], data_offsets: list[int], data_bytes: int) -> None:
    """No page's pixels may share bytes with another page's pixels or any directory.

    A damaged strip offset that still points inside the file would otherwise read
    another page's pixels (or a directory) as this page's, silently.
    """
    n = len(data_offsets)
    starts = np.array([at for at, _ in directories] + data_offsets, dtype=np.int64)
    ends = starts + np.array([size for _, size in directories] + [data_bytes] * n, dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    clash = np.flatnonzero(starts[order][1:] < ends[order][:-1])
    if clash.size:
        a, b = (int(order[clash[0]]), int(order[clash[0] + 1]))
        name = lambda i: f"the directory of page {i}" if i < n else f"the pixels of page {i - n}"  # noqa: E731
        raise TiffLayoutError(
            f"{path}: {name(b)} (byte {starts[b]}) overlap {name(a)} (bytes {starts[a]}-{ends[a] - 1}): "
            f"a damaged offset; {REPAIR}"
        )


def first_descriptions(path: str | Path, n_pages: int) -> list[bytes]:
    """The ImageDescription of the first ``n_pages`` pages (fewer if the file holds fewer)."""
    path = Path(path)
    handle, buf = open_map(path)
    try:
        reader = IfdReader(path, buf)
        texts, at = [], reader.first_ifd
        while at and len(texts) < n_pages:
            ifd = reader.read_ifd(at, len(texts), description=True)
            texts.append(ifd.description)
            at = ifd.next_offset
        return texts
    finally:
        buf.close()
        handle.close()


_BLOCK_PAGES = 16384


def _read_ahead(buf: mmap.mmap, starts: np.ndarray, length: int) -> None:
    """Ask the kernel for ``length`` bytes at each of ``starts`` at once, before reading them.

    The map reads one 4 KiB page per fault (``MADV_RANDOM``, see ``open_map``): on a cold
    cache every directory would be its own synchronous disk read, one after the other;
    ``MADV_WILLNEED`` queues them all, so the reads wait only for those not yet done.
    """
    aligned = starts - starts % mmap.PAGESIZE
    for at, size in zip(aligned.tolist(), (starts + length - aligned).tolist()):
        buf.madvise(mmap.MADV_WILLNEED, at, size)


def _uniform_chain(reader: IfdReader, first: Ifd, stride: int, n_pages: int) -> bool:
    """Does every page's directory repeat page 0's, with its offsets moved by its page's stride?

    All ``n_pages`` directories are compared at once (numpy over the memory map, one
    directory read per page, no Python per page): the same tags, types and counts, each
    value either the same on every page (pixel type, size, compression, ...) or page 0's
    plus ``k * stride`` (where page ``k`` keeps its pixels and strings), and each page's
    next-directory offset the next page, 0 on the last. Only the description's length may
    vary (it is text, read at indexing). With page 0 fully read, that holds every page to
    page 0's checks; pages stored in several strips (a strip list outside the directory),
    or whose pixels do not lie between their directory and the next, are left to the full
    walk.
    """
    big, buf, start = reader.big, reader.buf, reader.first_ifd
    count_size, entry_size, word = (8, 20, 8) if big else (2, 12, 4)
    n_entries = struct.unpack_from("<Q" if big else "<H", buf, start)[0]  # page 0 was read: this is sane
    entries = [struct.unpack_from("<HHQ" if big else "<HHI", buf, start + count_size + i * entry_size) for i in range(n_entries)]
    codes = [tag for tag, _, _ in entries]
    length = count_size + n_entries * entry_size + word
    gap = first.data_offset - start  # pixels between a page's directory and the next one
    if (
        n_pages < 2
        or dict((tag, count) for tag, _, count in entries).get(TAG_STRIP_OFFSETS) != 1
        or start + (n_pages - 1) * stride + length > len(buf)
        or not length <= gap <= stride - first.data_bytes
    ):
        return False
    _read_ahead(buf, start + np.arange(n_pages, dtype=np.int64) * stride, length)
    whole = np.frombuffer(buf, np.uint8)  # a view: count_pages closes the map once this returns
    ifds = np.lib.stride_tricks.as_strided(whole[start:], shape=(n_pages, length), strides=(stride, 1))
    word_type = np.dtype("<u8" if big else "<u4")

    def column(at: int) -> np.ndarray:  # one word of every page's directory
        return np.ascontiguousarray(ifds[:, at : at + word]).view(word_type)[:, 0].astype(np.int64)

    moved = np.arange(n_pages, dtype=np.int64) * stride
    fixed = np.ones(length, bool)  # bytes that must equal page 0's on every page
    slots = [(count_size + i * entry_size + 4 + word, False) for i in range(n_entries)]  # value words
    slots += [(count_size + i * entry_size + 4, True) for i in range(n_entries)]  # count words
    for at, is_count in slots:
        if is_count and codes[(at - count_size - 4) // entry_size] != TAG_DESCRIPTION:
            continue  # a count that must not change stays among the fixed bytes
        fixed[at : at + word] = False
        if is_count:
            continue
        values = column(at)
        if not (np.all(values == values[0]) or np.all(values == values[0] + moved)):
            return False
    fixed[length - word :] = False
    next_offsets = column(length - word)
    expected = np.append(start + moved[1:], 0)
    if not np.all(next_offsets == expected):
        return False
    reference = ifds[0, fixed]
    # in blocks: the fixed bytes of all pages at once would take ~300 bytes a page
    return all(bool(np.all(ifds[k : k + _BLOCK_PAGES, fixed] == reference)) for k in range(0, n_pages, _BLOCK_PAGES))


def _uniform_layout(reader: IfdReader, descriptions: bool = False) -> tuple[Ifd, int, int] | None:
    """``(page 0, stride, page count)`` when every page repeats page 0 at the stride between
    the first two pages (``_uniform_chain``) and the last page's pixels lie inside the file;
    else None."""
    first = reader.read_ifd(reader.first_ifd, 0, descriptions)
    stride = first.next_offset - reader.first_ifd
    if not first.next_offset or stride <= 0:
        return None
    n_pages = (len(reader.buf) - reader.first_ifd) // stride
    last_data_end = first.data_offset + (n_pages - 1) * stride + first.data_bytes
    if last_data_end > len(reader.buf) or not _uniform_chain(reader, first, stride, n_pages):
        return None
    return first, stride, n_pages


def _uniform_descriptions(reader: IfdReader, stride: int, n_pages: int) -> list[bytes] | None:
    """Every page's ImageDescription in a uniform chain, or None when one lies (partly)
    outside the file: the full walk then names the page.

    ``_uniform_chain`` let only the description's length vary and its value offset be the
    same on every page or move with the page; both are read for all pages at once.
    """
    big, buf, start = reader.big, reader.buf, reader.first_ifd
    count_size, entry_size, word = (8, 20, 8) if big else (2, 12, 4)
    n_entries = struct.unpack_from("<Q" if big else "<H", buf, start)[0]
    word_type = np.dtype("<u8" if big else "<u4")
    moved = np.arange(n_pages, dtype=np.int64) * stride
    for i in range(n_entries):
        entry = start + count_size + i * entry_size
        tag, type_code = struct.unpack_from("<HH", buf, entry)
        if tag != TAG_DESCRIPTION or type_code != 2:
            continue

        def column(at: int) -> np.ndarray:  # one word of this entry, on every page
            words = np.lib.stride_tricks.as_strided(np.frombuffer(buf, np.uint8)[at:], shape=(n_pages, word), strides=(stride, 1))
            return np.ascontiguousarray(words).view(word_type)[:, 0].astype(np.int64)

        counts = column(entry + 4)
        inline = counts <= word
        where = np.where(inline, entry + word + 4 + moved, column(entry + 4 + word))
        if np.any(where + counts > len(buf)):
            return None
        _read_ahead(buf, where, int(counts.max()))
        return [bytes(buf[w : w + c]).rstrip(b"\0") for w, c in zip(where.tolist(), counts.tolist())]
    return [b""] * n_pages  # no description tag (read_ifd gives b"" too)


def count_pages(path: str | Path) -> tuple[int, int, int, str]:
    """Page count and page geometry ``(n_pages, height, width, dtype)``, fast.

    Uses the stride between the first two pages when every directory of the file repeats
    page 0's at that stride (``_uniform_chain``, ~1 µs a page); otherwise the full walk
    decides, which names the first damaged page. Either way every page is checked before
    any job starts.
    """
    path = Path(path)
    handle, buf = open_map(path)
    try:
        uniform = _uniform_layout(IfdReader(path, buf))
        if uniform is not None:
            first, _, n_pages = uniform
            return n_pages, first.height, first.width, first.dtype
    finally:
        buf.close()
        handle.close()
    layout = index_pages(path)
    return len(layout.data_offsets), layout.height, layout.width, layout.dtype
