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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

_TAG_WIDTH, _TAG_LENGTH, _TAG_BITS = 256, 257, 258
_TAG_COMPRESSION, _TAG_STRIP_OFFSETS, _TAG_STRIP_COUNTS = 259, 273, 279
_TAG_SAMPLES_PER_PIXEL, _TAG_SAMPLE_FORMAT = 277, 339
_TAG_DESCRIPTION = 270
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
_TYPE_CODES = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}
_SAMPLE_KIND = {1: "u", 2: "i", 3: "f"}
_SAMPLE_BITS = {"u": (8, 16, 32, 64), "i": (8, 16, 32, 64), "f": (16, 32, 64)}
_COPY_AGAIN = "copy it again from the acquisition computer or a backup"
_REPAIR = f"the file is damaged: {_COPY_AGAIN}"


class TiffLayoutError(ValueError):
    """A TIFF that cannot be read page-by-page as uncompressed strips."""


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


@dataclass(frozen=True)
class _Ifd:
    next_offset: int
    height: int
    width: int
    dtype: str
    data_offset: int
    data_bytes: int
    description: bytes = b""
    directory_bytes: int = 0  # tag count, tags and next offset


class _TiffReader:
    """Reads IFDs of one little-endian TIFF or BigTIFF from a memory map."""

    def __init__(self, path: Path, buffer) -> None:
        self.path = path
        self.buf = buffer
        self.page = 0
        head = bytes(buffer[:16])
        if head[:2] != b"II":
            raise TiffLayoutError(f"{path}: not a little-endian TIFF file")
        magic = struct.unpack_from("<H", head, 2)[0]
        if magic == 43:
            self.big = True
            offset_size, reserved = struct.unpack_from("<HH", head, 4)
            if (offset_size, reserved) != (8, 0):
                raise TiffLayoutError(
                    f"{path}: BigTIFF header bytes 4-7 are {offset_size}, {reserved} instead of 8, 0; {_REPAIR}"
                )
            self.first_ifd = struct.unpack_from("<Q", head, 8)[0]
        elif magic == 42:
            self.big = False
            self.first_ifd = struct.unpack_from("<I", head, 4)[0]
        else:
            raise TiffLayoutError(f"{path}: not a TIFF file (magic number {magic})")

    def _where(self, entry_offset: int, nbytes: int, tag: int) -> int:
        """File offset of a tag's value (inline when it fits), checked to lie inside the file."""
        if nbytes <= (8 if self.big else 4):
            return entry_offset
        where = struct.unpack_from("<Q" if self.big else "<I", self.buf, entry_offset)[0]
        if where + nbytes > len(self.buf):
            raise TiffLayoutError(
                f"{self.path}: page {self.page}: the value of TIFF tag {tag} ({nbytes} bytes at byte {where}) "
                f"lies beyond the end of the file ({len(self.buf)} bytes); {_REPAIR}"
            )
        return where

    def _text(self, entry_offset: int, count: int) -> bytes:
        where = self._where(entry_offset, count, _TAG_DESCRIPTION)
        return bytes(self.buf[where : where + count]).rstrip(b"\0")

    def _value(self, entry_offset: int, tag: int, type_code: int, count: int) -> list[int]:
        code = _TYPE_CODES.get(type_code)
        if code is None or count < 1:
            raise TiffLayoutError(
                f"{self.path}: page {self.page}: TIFF tag {tag} has field type {type_code} and {count} "
                f"value(s), not a count of integers; {_REPAIR}"
            )
        where = self._where(entry_offset, _TYPE_SIZES[type_code] * count, tag)
        return list(struct.unpack_from(f"<{count}{code}", self.buf, where))

    def read_ifd(self, offset: int, page_number: int, description: bool = False) -> _Ifd:
        size = len(self.buf)
        self.page = page_number  # named by the errors of the tag values read below
        count_fmt, entry_size, next_fmt = ("<Q", 20, "<Q") if self.big else ("<H", 12, "<I")
        count_size = struct.calcsize(count_fmt)
        if offset + count_size > size:
            raise TiffLayoutError(
                f"{self.path}: page {page_number} starts at byte {offset}, beyond the end of the file "
                f"({size} bytes): the file is truncated or its page chain damaged; {_REPAIR}"
            )
        n_entries = struct.unpack_from(count_fmt, self.buf, offset)[0]
        end = offset + count_size + n_entries * entry_size + struct.calcsize(next_fmt)
        if n_entries == 0 or end > size:
            raise TiffLayoutError(
                f"{self.path}: page {page_number} has a damaged or truncated directory ({n_entries} tags "
                f"at byte {offset}); {_REPAIR}"
            )
        tags: dict[int, list[int]] = {}
        text = b""
        for i in range(n_entries):
            entry = offset + count_size + i * entry_size
            if self.big:
                tag, type_code, count = struct.unpack_from("<HHQ", self.buf, entry)
                value_at = entry + 12
            else:
                tag, type_code, count = struct.unpack_from("<HHI", self.buf, entry)
                value_at = entry + 8
            if tag in (
                _TAG_WIDTH,
                _TAG_LENGTH,
                _TAG_BITS,
                _TAG_COMPRESSION,
                _TAG_STRIP_OFFSETS,
                _TAG_STRIP_COUNTS,
                _TAG_SAMPLES_PER_PIXEL,
                _TAG_SAMPLE_FORMAT,
            ):
                tags[tag] = self._value(value_at, tag, type_code, count)
            elif description and tag == _TAG_DESCRIPTION and type_code == 2:
                text = self._text(value_at, count)
        next_offset = struct.unpack_from(next_fmt, self.buf, end - struct.calcsize(next_fmt))[0]
        return replace(self._describe(tags, next_offset, page_number, text), directory_bytes=end - offset)

    def _describe(self, tags: dict[int, list[int]], next_offset: int, page_number: int, text: bytes = b"") -> _Ifd:
        where = f"{self.path}: page {page_number}"
        compression = tags.get(_TAG_COMPRESSION, [1])[0]
        if compression != 1:
            raise TiffLayoutError(
                f"{where}: Compression (tag 259) = {compression}; raw ScanImage pages are uncompressed "
                f"(1): a compressed copy or a damaged file; {_COPY_AGAIN}"
            )
        try:
            width, height = tags[_TAG_WIDTH][0], tags[_TAG_LENGTH][0]
            offsets, counts = tags[_TAG_STRIP_OFFSETS], tags[_TAG_STRIP_COUNTS]
        except KeyError as missing:
            raise TiffLayoutError(f"{where} lacks TIFF tag {missing}; {_REPAIR}") from None
        # each value is checked where it is read: a damaged tag must not become a dtype,
        # a shape or an offset (raw ScanImage pages: one integer or float sample per pixel)
        samples = tags.get(_TAG_SAMPLES_PER_PIXEL, [1])[0]
        if samples != 1:
            raise TiffLayoutError(f"{where}: SamplesPerPixel (tag 277) = {samples}, raw ScanImage pages have 1; {_REPAIR}")
        sample_format = tags.get(_TAG_SAMPLE_FORMAT, [1])[0]
        kind = _SAMPLE_KIND.get(sample_format)
        bits = tags.get(_TAG_BITS, [8])[0]
        if kind is None or bits not in _SAMPLE_BITS[kind]:
            raise TiffLayoutError(
                f"{where}: BitsPerSample (tag 258) = {bits} with SampleFormat (tag 339) = "
                f"{sample_format} is no pixel type; {_REPAIR}"
            )
        if width < 1 or height < 1 or not offsets or len(offsets) != len(counts):
            raise TiffLayoutError(
                f"{where}: ImageWidth x ImageLength = {width} x {height} with {len(offsets)} strip "
                f"offsets and {len(counts)} strip sizes; {_REPAIR}"
            )
        dtype = np.dtype(f"<{kind}{bits // 8}").str
        for (a, na), b in zip(zip(offsets, counts), offsets[1:]):
            if a + na != b:
                raise TiffLayoutError(f"{where} stores its strips non-contiguously (StripOffsets, tag 273); {_REPAIR}")
        data_bytes = sum(counts)
        if data_bytes != width * height * bits // 8:
            raise TiffLayoutError(
                f"{where}: strip bytes {data_bytes} (StripByteCounts, tag 279) do not match {height}x{width} "
                f"pixels of {bits} bits; {_REPAIR}"
            )
        if offsets[0] + data_bytes > len(self.buf):
            raise TiffLayoutError(
                f"{where}: pixel data (byte {offsets[0]}, {data_bytes} bytes) runs past the end of the "
                f"file ({len(self.buf)} bytes): the file is truncated or damaged; {_COPY_AGAIN}"
            )
        return _Ifd(next_offset, height, width, dtype, offsets[0], data_bytes, text)


def _open_map(path: Path):
    handle = open(path, "rb")
    try:
        buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:
        handle.close()
        raise TiffLayoutError(f"{path}: empty file") from None
    # we touch a few hundred bytes per page: without this hint the kernel reads ahead
    # megabytes on every fault, i.e. most of the recording, just to walk its directories
    buf.madvise(mmap.MADV_RANDOM)
    return handle, buf


def index_pages(path: str | Path, *, descriptions: bool = False) -> PageLayout:
    """Walk the whole IFD chain: exact page offsets, every page checked, and the file's
    identity (:class:`FileIdentity`) from before the walk.

    ``descriptions`` also keeps each page's ImageDescription (ScanImage's per-frame
    values). A chain that ends while the file holds room for more pages at the same
    stride is an error: the pages after the break would be silently lost.

    A file whose directories all repeat page 0's at one stride (``_uniform_chain``, what
    ScanImage writes) is indexed from that check, without reading each page in Python
    (≈ 25 → 3 µs a page); any other file, a damaged one included, is walked page by page,
    and the walk names the first damaged page.
    """
    path = Path(path)
    handle, buf = _open_map(path)
    try:
        stat = os.fstat(handle.fileno())  # of the file mapped: a path replaced since cannot pass for it
        identity = FileIdentity(stat.st_size, stat.st_mtime_ns, stat.st_ino)
        reader = _TiffReader(path, buf)
        uniform = _uniform_layout(reader, descriptions)
        if uniform is not None:
            first, stride, n_pages = uniform
            texts = _uniform_descriptions(reader, stride, n_pages) if descriptions else None
            if not descriptions or texts is not None:
                data_offsets = first.data_offset + np.arange(n_pages, dtype=np.int64) * stride
                return PageLayout(first.height, first.width, first.dtype, data_offsets, texts, identity)
        offsets: list[int] = []
        texts: list[bytes] = []
        first: _Ifd | None = None
        last: _Ifd | None = None
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
                f"recording short; {_REPAIR}"
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
            f"a damaged offset; {_REPAIR}"
        )


def first_descriptions(path: str | Path, n_pages: int) -> list[bytes]:
    """The ImageDescription of the first ``n_pages`` pages (fewer if the file holds fewer)."""
    path = Path(path)
    handle, buf = _open_map(path)
    try:
        reader = _TiffReader(path, buf)
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


def _uniform_chain(reader: _TiffReader, first: _Ifd, stride: int, n_pages: int) -> bool:
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
        or dict((tag, count) for tag, _, count in entries).get(_TAG_STRIP_OFFSETS) != 1
        or start + (n_pages - 1) * stride + length > len(buf)
        or not length <= gap <= stride - first.data_bytes
    ):
        return False
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
        if is_count and codes[(at - count_size - 4) // entry_size] != _TAG_DESCRIPTION:
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


def _uniform_layout(reader: _TiffReader, descriptions: bool = False) -> tuple[_Ifd, int, int] | None:
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


def _uniform_descriptions(reader: _TiffReader, stride: int, n_pages: int) -> list[bytes] | None:
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
        if tag != _TAG_DESCRIPTION or type_code != 2:
            continue

        def column(at: int) -> np.ndarray:  # one word of this entry, on every page
            words = np.lib.stride_tricks.as_strided(np.frombuffer(buf, np.uint8)[at:], shape=(n_pages, word), strides=(stride, 1))
            return np.ascontiguousarray(words).view(word_type)[:, 0].astype(np.int64)

        counts = column(entry + 4)
        inline = counts <= word
        where = np.where(inline, entry + word + 4 + moved, column(entry + 4 + word))
        if np.any(where + counts > len(buf)):
            return None
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
    handle, buf = _open_map(path)
    try:
        uniform = _uniform_layout(_TiffReader(path, buf))
        if uniform is not None:
            first, _, n_pages = uniform
            return n_pages, first.height, first.width, first.dtype
    finally:
        buf.close()
        handle.close()
    layout = index_pages(path)
    return len(layout.data_offsets), layout.height, layout.width, layout.dtype
