"""Page index of an uncompressed TIFF/BigTIFF: where every page's pixels start.

Raw ScanImage files hold hundreds of thousands of pages; tifffile parses every tag of
every page, which takes minutes. We only need each page's strip offset, so we walk
the IFD chain ourselves over a memory map. For a fast page *count* (while Snakemake
builds its DAG) a constant page stride is assumed only after it has been checked
against the real IFDs at both ends of the file.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TAG_WIDTH, _TAG_LENGTH, _TAG_BITS = 256, 257, 258
_TAG_COMPRESSION, _TAG_STRIP_OFFSETS, _TAG_STRIP_COUNTS = 259, 273, 279
_TAG_SAMPLE_FORMAT = 339
_TAG_DESCRIPTION = 270
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
_TYPE_CODES = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}
_SAMPLE_KIND = {1: "u", 2: "i", 3: "f"}


class TiffLayoutError(ValueError):
    """A TIFF that cannot be read page-by-page as uncompressed strips."""


@dataclass(frozen=True)
class PageLayout:
    """Geometry shared by all pages and the pixel offset of each page."""

    height: int
    width: int
    dtype: str
    data_offsets: np.ndarray  # int64, one per page
    descriptions: list[bytes] | None = None  # each page's ImageDescription, when asked for


@dataclass(frozen=True)
class _Ifd:
    next_offset: int
    height: int
    width: int
    dtype: str
    data_offset: int
    data_bytes: int
    description: bytes = b""


class _TiffReader:
    """Reads IFDs of one little-endian TIFF or BigTIFF from a memory map."""

    def __init__(self, path: Path, buffer) -> None:
        self.path = path
        self.buf = buffer
        head = bytes(buffer[:16])
        if head[:2] != b"II":
            raise TiffLayoutError(f"{path}: not a little-endian TIFF file")
        magic = struct.unpack_from("<H", head, 2)[0]
        if magic == 43:
            self.big = True
            self.first_ifd = struct.unpack_from("<Q", head, 8)[0]
        elif magic == 42:
            self.big = False
            self.first_ifd = struct.unpack_from("<I", head, 4)[0]
        else:
            raise TiffLayoutError(f"{path}: not a TIFF file (magic number {magic})")

    def _text(self, entry_offset: int, count: int) -> bytes:
        inline = 8 if self.big else 4
        where = entry_offset if count <= inline else struct.unpack_from("<Q" if self.big else "<I", self.buf, entry_offset)[0]
        if where + count > len(self.buf):
            raise TiffLayoutError(f"{self.path}: tag value beyond the end of the file (truncated?)")
        return bytes(self.buf[where : where + count]).rstrip(b"\0")

    def _value(self, entry_offset: int, type_code: int, count: int) -> list[int]:
        code = _TYPE_CODES.get(type_code)
        if code is None:
            raise TiffLayoutError(f"{self.path}: unexpected TIFF field type {type_code}")
        nbytes = _TYPE_SIZES[type_code] * count
        inline = 8 if self.big else 4
        if nbytes <= inline:
            where = entry_offset
        else:
            where = struct.unpack_from("<Q" if self.big else "<I", self.buf, entry_offset)[0]
        if where + nbytes > len(self.buf):
            raise TiffLayoutError(f"{self.path}: tag value beyond the end of the file (truncated?)")
        return list(struct.unpack_from(f"<{count}{code}", self.buf, where))

    def read_ifd(self, offset: int, page_number: int, description: bool = False) -> _Ifd:
        size = len(self.buf)
        count_fmt, entry_size, next_fmt = ("<Q", 20, "<Q") if self.big else ("<H", 12, "<I")
        count_size = struct.calcsize(count_fmt)
        if offset + count_size > size:
            raise TiffLayoutError(f"{self.path}: page {page_number} starts beyond the end of the file (truncated?)")
        n_entries = struct.unpack_from(count_fmt, self.buf, offset)[0]
        end = offset + count_size + n_entries * entry_size + struct.calcsize(next_fmt)
        if n_entries == 0 or end > size:
            raise TiffLayoutError(f"{self.path}: page {page_number} has a damaged or truncated directory")
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
            if tag in (_TAG_WIDTH, _TAG_LENGTH, _TAG_BITS, _TAG_COMPRESSION,
                       _TAG_STRIP_OFFSETS, _TAG_STRIP_COUNTS, _TAG_SAMPLE_FORMAT):
                tags[tag] = self._value(value_at, type_code, count)
            elif description and tag == _TAG_DESCRIPTION and type_code == 2:
                text = self._text(value_at, count)
        next_offset = struct.unpack_from(next_fmt, self.buf, end - struct.calcsize(next_fmt))[0]
        return self._describe(tags, next_offset, page_number, text)

    def _describe(self, tags: dict[int, list[int]], next_offset: int, page_number: int, text: bytes = b"") -> _Ifd:
        where = f"{self.path}: page {page_number}"
        if tags.get(_TAG_COMPRESSION, [1])[0] != 1:
            raise TiffLayoutError(f"{where} is compressed; raw ScanImage pages are uncompressed")
        try:
            width, height = tags[_TAG_WIDTH][0], tags[_TAG_LENGTH][0]
            offsets, counts = tags[_TAG_STRIP_OFFSETS], tags[_TAG_STRIP_COUNTS]
        except KeyError as missing:
            raise TiffLayoutError(f"{where} lacks TIFF tag {missing}") from None
        bits = tags.get(_TAG_BITS, [8])[0]
        kind = _SAMPLE_KIND.get(tags.get(_TAG_SAMPLE_FORMAT, [1])[0], "u")
        dtype = np.dtype(f"<{kind}{bits // 8}").str
        for (a, na), b in zip(zip(offsets, counts), offsets[1:]):
            if a + na != b:
                raise TiffLayoutError(f"{where} stores its strips non-contiguously")
        data_bytes = sum(counts)
        if data_bytes != width * height * bits // 8:
            raise TiffLayoutError(f"{where}: strip bytes {data_bytes} do not match {height}x{width} pixels")
        if offsets[0] + data_bytes > len(self.buf):
            raise TiffLayoutError(f"{where}: pixel data runs past the end of the file (truncated file)")
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
    """Walk the whole IFD chain: exact page offsets, every page checked.

    ``descriptions`` also keeps each page's ImageDescription (ScanImage's per-frame
    values). A chain that ends while the file holds room for more pages at the same
    stride is an error: the pages after the break would be silently lost.
    """
    path = Path(path)
    handle, buf = _open_map(path)
    try:
        reader = _TiffReader(path, buf)
        offsets: list[int] = []
        texts: list[bytes] = []
        first: _Ifd | None = None
        last: _Ifd | None = None
        ifd_offset, last_ifd_offset, seen = reader.first_ifd, 0, set()
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
                f"recording short"
            )
        return PageLayout(first.height, first.width, first.dtype, np.asarray(offsets, dtype=np.int64),
                          texts if descriptions else None)
    finally:
        buf.close()
        handle.close()


_STRIDE_SAMPLES = 64


def _on_stride(reader: _TiffReader, first: _Ifd, stride: int, n_pages: int) -> bool:
    """Do evenly spaced sample pages (all pages of a small file) sit exactly on the stride?

    One page longer than the others displaces every later directory, so any sample
    after it fails; the last sample must also end the chain.
    """
    samples = np.unique(np.linspace(0, n_pages - 1, min(n_pages, _STRIDE_SAMPLES)).astype(np.int64))
    data_gap = first.data_offset - reader.first_ifd
    for k in samples.tolist():
        at = reader.first_ifd + k * stride
        try:
            ifd = reader.read_ifd(at, k)
        except TiffLayoutError:
            return False
        expected_next = at + stride if k < n_pages - 1 else 0
        if ifd.next_offset != expected_next or ifd.data_offset - at != data_gap:
            return False
    return True


def count_pages(path: str | Path) -> tuple[int, int, int, str]:
    """Page count and page geometry ``(n_pages, height, width, dtype)``, fast.

    Uses the stride between the first two pages when sample directories across the file
    (see ``_on_stride``) confirm it; falls back to the full walk otherwise.
    """
    path = Path(path)
    handle, buf = _open_map(path)
    try:
        reader = _TiffReader(path, buf)
        first = reader.read_ifd(reader.first_ifd, 0)
        stride = first.next_offset - reader.first_ifd
        if first.next_offset and stride > 0:
            predicted = (len(buf) - reader.first_ifd) // stride
            if _on_stride(reader, first, stride, predicted):
                return predicted, first.height, first.width, first.dtype
    finally:
        buf.close()
        handle.close()
    layout = index_pages(path)
    return len(layout.data_offsets), layout.height, layout.width, layout.dtype
