"""Raw ScanImage pages: the page index (offsets + timing) and the plane reader.

``build_page_index(info)`` walks every file's IFD chain once (the ``index_source``
step), keeping each page's pixel offset and the timing of its description;
``PlaneReader`` then reads only the pages of one plane, by offset. Which pages hold a
(frame, colour, plane) follows ``scanimage_header.logged_frames``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .info import SourceError, SourceInfo
from .scanimage_header import logged_frames
from .scanimage_timing import dropped_frames, join_files, parse_descriptions
from .tiff_index import FileIdentity, TiffLayoutError, index_pages

log = logging.getLogger(__name__)


class PageIndex(list):
    """The pixel offsets of every page, one array per file, plus ``timing`` over all pages
    and each file's identity from before its pages were walked."""

    timing: dict[str, np.ndarray] | None = None
    identities: list[FileIdentity] | None = None


def build_page_index(info: SourceInfo) -> PageIndex:
    """Offsets (and timing) of every page of every file, from the real IFD chains.

    Fails if a file changed since ``info`` was taken (page count or page size).
    """
    offsets, timing, identities = PageIndex(), [], []
    for path, expected in zip(info.files, info.pages_per_file):
        try:
            layout = index_pages(path, descriptions=True)
        except (TiffLayoutError, OSError) as exc:
            raise SourceError(str(exc)) from None
        if len(layout.data_offsets) != expected or (layout.height, layout.width) != (info.page_height, info.page_width):
            raise SourceError(
                f"{path}: has {len(layout.data_offsets)} pages of {layout.height}x{layout.width}, "
                f"but {expected} of {info.page_height}x{info.page_width} when the run was planned "
                f"(the file changed; start the run again)"
            )
        offsets.append(layout.data_offsets)
        identities.append(layout.identity)
        timing.append(parse_descriptions(layout.descriptions))
    offsets.timing = join_files(timing)
    offsets.identities = identities
    for gap in dropped_frames(info, offsets.timing):
        log.warning(
            "%s: %d frame(s) dropped after frameNumbers = %d (a gap in the page descriptions)",
            info.files[0],
            gap["missing"],
            gap["after_frame_number"],
        )
    return offsets


def save_page_index(path: Path, info: SourceInfo, offsets: list[np.ndarray]) -> None:
    """Save the offsets with what ``check_page_index`` compares against later: each file's
    size, mtime and inode as the page walk found them (now, for kinds without one)."""
    identities = getattr(offsets, "identities", None)
    if identities is None:
        identities = [FileIdentity(s.st_size, s.st_mtime_ns, s.st_ino) for s in map(os.stat, info.files)]
    timing = getattr(offsets, "timing", None) or {}
    with open(path, "wb") as fh:  # a file object: numpy must not append ".npz" to a temporary name
        np.savez(
            fh,
            **{f"file{i:05d}": o for i, o in enumerate(offsets)},
            sizes=np.array([i.size for i in identities]),
            mtimes=np.array([i.mtime_ns for i in identities]),
            inodes=np.array([i.inode for i in identities], dtype=np.uint64),
            **{f"timing_{k}": v for k, v in timing.items()},
        )


def check_page_index(path: Path, info: SourceInfo) -> None:
    """Stop before reading pixels if an input file changed since ``path`` was saved.

    Page offsets (and the plan) describe the files as they were indexed: a file that
    grew, shrank, was rewritten or replaced since (size, modification time or inode
    differs) would give wrong pixels. An index saved before modification times or inodes
    were recorded is checked without them.
    """
    with np.load(path) as data:
        sizes = data["sizes"]
        mtimes = data["mtimes"] if "mtimes" in data.files else None
        inodes = data["inodes"] if "inodes" in data.files else None
    for i, name in enumerate(info.files):
        now = os.stat(name)
        modified = mtimes is not None and now.st_mtime_ns != mtimes[i]
        replaced = inodes is not None and now.st_ino != inodes[i]
        if now.st_size != sizes[i] or modified or replaced:
            raise SourceError(
                f"{name}: changed after the run indexed it ({int(sizes[i])} bytes then, {now.st_size} bytes now"
                f"{', modified since' if modified else ''}{', replaced by another file' if replaced else ''}); "
                f"start the run again to re-index it"
            )


def load_page_index(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[k] for k in sorted(data.files) if k.startswith("file")]


class PlaneReader:
    """Reads the raw pages of chosen frames, colours and one plane, by offset."""

    def __init__(self, info: SourceInfo, offsets: list[np.ndarray]) -> None:
        self.info = info
        self.offsets = offsets
        self.first_frame = np.concatenate([[0], np.cumsum(info.frames_per_file)])
        self.dtype = np.dtype(info.dtype)
        self._handles: dict[int, int] = {}

    def _fd(self, file_index: int) -> int:
        if file_index not in self._handles:
            self._handles[file_index] = os.open(self.info.files[file_index], os.O_RDONLY)
        return self._handles[file_index]

    def close(self) -> None:
        for fd in self._handles.values():
            os.close(fd)
        self._handles.clear()

    def __enter__(self) -> PlaneReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_page(self, f: int, page: int, into: np.ndarray) -> None:
        got = os.preadv(self._fd(f), [memoryview(into).cast("B")], int(self.offsets[f][page]))
        if got != into.nbytes:
            raise SourceError(f"{self.info.files[f]}: page {page} is truncated (read {got} of {into.nbytes} bytes)")

    def _prefetch(self, file_of: list, first_page: list, channels: list[int], nbytes: int) -> None:
        """Tell the kernel which pages come next, so a cold read overlaps its I/O."""
        for files, pages in zip(file_of, first_page):
            for f, first in zip(files, pages):
                for channel in channels:
                    os.posix_fadvise(self._fd(f), int(self.offsets[f][first + channel]), nbytes, os.POSIX_FADV_WILLNEED)

    def read(self, frames: np.ndarray, colors: list[int], plane: int) -> np.ndarray:
        """``(len(frames), len(colors), page_height, page_width)`` raw pages (slice repeats averaged)."""
        info = self.info
        if not 0 <= plane < info.n_planes:
            raise IndexError(f"plane {plane} outside 0..{info.n_planes - 1}")
        out = np.empty((len(frames), len(colors), info.page_height, info.page_width), self.dtype)
        logged, bead = logged_frames(info, frames, plane)
        file_of = np.searchsorted(self.first_frame, logged, side="right") - 1
        # first page of each logged frame in its file; plain lists: numpy scalars are slow per page
        first_page = ((logged - self.first_frame[file_of]) * info.n_saved).tolist()
        file_of = file_of.tolist()
        n_beads = info.n_saved // info.n_colors
        repeats = logged.shape[1]
        page = np.empty(out.shape[2:], self.dtype) if repeats > 1 else None
        self._prefetch(file_of, first_page, [c * n_beads + bead for c in colors], out[0, 0].nbytes)
        for i in range(len(frames)):
            for j, c in enumerate(colors):
                channel = c * n_beads + bead
                if repeats == 1:
                    self._read_page(file_of[i][0], first_page[i][0] + channel, out[i, j])
                    continue
                total = np.zeros(page.shape, np.float64)
                for k in range(repeats):
                    self._read_page(file_of[i][k], first_page[i][k] + channel, page)
                    total += page
                # the mean of integer repeats rounds half to even, back to the raw dtype
                out[i, j] = np.rint(total / repeats) if self.dtype.kind in "iu" else total / repeats
        return out
