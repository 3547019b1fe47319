"""Reading one TIFF/BigTIFF directory (IFD) at a time, every value checked where it is read.

``IfdReader`` reads a page's directory from a memory map (``open_map``): the tags a raw
ScanImage page needs (geometry, pixel type, compression, strips) and, when asked, its
ImageDescription. A damaged value raises ``TiffLayoutError`` naming the file, the page,
the tag and its value. :mod:`imexport.sources.tiff_index` walks or checks whole chains.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

_TAG_WIDTH, _TAG_LENGTH, _TAG_BITS = 256, 257, 258
_TAG_COMPRESSION, TAG_STRIP_OFFSETS, _TAG_STRIP_COUNTS = 259, 273, 279
_TAG_SAMPLES_PER_PIXEL, _TAG_SAMPLE_FORMAT = 277, 339
TAG_DESCRIPTION = 270
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
_TYPE_CODES = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}
_SAMPLE_KIND = {1: "u", 2: "i", 3: "f"}
_SAMPLE_BITS = {"u": (8, 16, 32, 64), "i": (8, 16, 32, 64), "f": (16, 32, 64)}
COPY_AGAIN = "copy it again from the acquisition computer or a backup"
REPAIR = f"the file is damaged: {COPY_AGAIN}"


class TiffLayoutError(ValueError):
    """A TIFF that cannot be read page-by-page as uncompressed strips."""


@dataclass(frozen=True)
class Ifd:
    next_offset: int
    height: int
    width: int
    dtype: str
    data_offset: int
    data_bytes: int
    description: bytes = b""
    directory_bytes: int = 0  # tag count, tags and next offset


class IfdReader:
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
                raise TiffLayoutError(f"{path}: BigTIFF header bytes 4-7 are {offset_size}, {reserved} instead of 8, 0; {REPAIR}")
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
                f"lies beyond the end of the file ({len(self.buf)} bytes); {REPAIR}"
            )
        return where

    def _text(self, entry_offset: int, count: int) -> bytes:
        where = self._where(entry_offset, count, TAG_DESCRIPTION)
        return bytes(self.buf[where : where + count]).rstrip(b"\0")

    def _value(self, entry_offset: int, tag: int, type_code: int, count: int) -> list[int]:
        code = _TYPE_CODES.get(type_code)
        if code is None or count < 1:
            raise TiffLayoutError(
                f"{self.path}: page {self.page}: TIFF tag {tag} has field type {type_code} and {count} "
                f"value(s), not a count of integers; {REPAIR}"
            )
        where = self._where(entry_offset, _TYPE_SIZES[type_code] * count, tag)
        return list(struct.unpack_from(f"<{count}{code}", self.buf, where))

    def read_ifd(self, offset: int, page_number: int, description: bool = False) -> Ifd:
        size = len(self.buf)
        self.page = page_number  # named by the errors of the tag values read below
        count_fmt, entry_size, next_fmt = ("<Q", 20, "<Q") if self.big else ("<H", 12, "<I")
        count_size = struct.calcsize(count_fmt)
        if offset + count_size > size:
            raise TiffLayoutError(
                f"{self.path}: page {page_number} starts at byte {offset}, beyond the end of the file "
                f"({size} bytes): the file is truncated or its page chain damaged; {REPAIR}"
            )
        n_entries = struct.unpack_from(count_fmt, self.buf, offset)[0]
        end = offset + count_size + n_entries * entry_size + struct.calcsize(next_fmt)
        if n_entries == 0 or end > size:
            raise TiffLayoutError(
                f"{self.path}: page {page_number} has a damaged or truncated directory ({n_entries} tags "
                f"at byte {offset}); {REPAIR}"
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
                TAG_STRIP_OFFSETS,
                _TAG_STRIP_COUNTS,
                _TAG_SAMPLES_PER_PIXEL,
                _TAG_SAMPLE_FORMAT,
            ):
                tags[tag] = self._value(value_at, tag, type_code, count)
            elif description and tag == TAG_DESCRIPTION and type_code == 2:
                text = self._text(value_at, count)
        next_offset = struct.unpack_from(next_fmt, self.buf, end - struct.calcsize(next_fmt))[0]
        return replace(self._describe(tags, next_offset, page_number, text), directory_bytes=end - offset)

    def _describe(self, tags: dict[int, list[int]], next_offset: int, page_number: int, text: bytes = b"") -> Ifd:
        where = f"{self.path}: page {page_number}"
        compression = tags.get(_TAG_COMPRESSION, [1])[0]
        if compression != 1:
            raise TiffLayoutError(
                f"{where}: Compression (tag 259) = {compression}; raw ScanImage pages are uncompressed "
                f"(1): a compressed copy or a damaged file; {COPY_AGAIN}"
            )
        try:
            width, height = tags[_TAG_WIDTH][0], tags[_TAG_LENGTH][0]
            offsets, counts = tags[TAG_STRIP_OFFSETS], tags[_TAG_STRIP_COUNTS]
        except KeyError as missing:
            raise TiffLayoutError(f"{where} lacks TIFF tag {missing}; {REPAIR}") from None
        # each value is checked where it is read: a damaged tag must not become a dtype,
        # a shape or an offset (raw ScanImage pages: one integer or float sample per pixel)
        samples = tags.get(_TAG_SAMPLES_PER_PIXEL, [1])[0]
        if samples != 1:
            raise TiffLayoutError(f"{where}: SamplesPerPixel (tag 277) = {samples}, raw ScanImage pages have 1; {REPAIR}")
        sample_format = tags.get(_TAG_SAMPLE_FORMAT, [1])[0]
        kind = _SAMPLE_KIND.get(sample_format)
        bits = tags.get(_TAG_BITS, [8])[0]
        if kind is None or bits not in _SAMPLE_BITS[kind]:
            raise TiffLayoutError(
                f"{where}: BitsPerSample (tag 258) = {bits} with SampleFormat (tag 339) = "
                f"{sample_format} is no pixel type; {REPAIR}"
            )
        if width < 1 or height < 1 or not offsets or len(offsets) != len(counts):
            raise TiffLayoutError(
                f"{where}: ImageWidth x ImageLength = {width} x {height} with {len(offsets)} strip "
                f"offsets and {len(counts)} strip sizes; {REPAIR}"
            )
        dtype = np.dtype(f"<{kind}{bits // 8}").str
        for (a, na), b in zip(zip(offsets, counts), offsets[1:]):
            if a + na != b:
                raise TiffLayoutError(f"{where} stores its strips non-contiguously (StripOffsets, tag 273); {REPAIR}")
        data_bytes = sum(counts)
        if data_bytes != width * height * bits // 8:
            raise TiffLayoutError(
                f"{where}: strip bytes {data_bytes} (StripByteCounts, tag 279) do not match {height}x{width} "
                f"pixels of {bits} bits; {REPAIR}"
            )
        if offsets[0] + data_bytes > len(self.buf):
            raise TiffLayoutError(
                f"{where}: pixel data (byte {offsets[0]}, {data_bytes} bytes) runs past the end of the "
                f"file ({len(self.buf)} bytes): the file is truncated or damaged; {COPY_AGAIN}"
            )
        return Ifd(next_offset, height, width, dtype, offsets[0], data_bytes, text)


def open_map(path: Path):
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
