"""A plane job writing into a file laid out in advance, outside the file's library.

An uncompressed contiguous dataset is one block of bytes at a fixed place in its file, so
once a prepare step has allocated it (HDF5, NWB), each plane job can write its own frames
with ``os.pwrite`` at their byte offsets while other plane jobs write theirs: the library
(which cannot be written by several processes) is used only to lay the file out and to
read the offsets. One ``pwrite`` per frame and colour, straight from the chunk, so memory
stays at one chunk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imexport.sinks.base import PlaneTarget


class OffsetSlabSink:
    """Writes one plane's frames (every colour) at the byte offsets :meth:`image_offset`
    gives, as :meth:`image_bytes` lays each ``(Y, X)`` image out. Subclasses read the
    offsets from the file before calling ``__init__``."""

    def __init__(self, path: Path, target: PlaneTarget) -> None:
        self.path = Path(path)
        self.target = target
        self.n_written = 0
        self.fd: int | None = os.open(self.path, os.O_WRONLY)

    def image_offset(self, frame: int, colour: int) -> int:
        raise NotImplementedError

    def image_bytes(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image)

    def write(self, chunk: np.ndarray) -> None:
        target = self.target
        if chunk.ndim != 4 or tuple(chunk.shape[1:]) != (target.n_channels, *target.frame_shape):
            raise ValueError(f"{self.path}: chunk of shape {chunk.shape} does not match the plane's frames")
        if chunk.dtype != np.dtype(target.dtype):
            raise ValueError(f"{self.path}: chunk dtype {chunk.dtype} is not {target.dtype}")
        if self.n_written + len(chunk) > target.n_frames:
            raise ValueError(f"{self.path}: more than the {target.n_frames} announced frames")
        for i, frame in enumerate(chunk):
            for colour, image in enumerate(frame):
                view = memoryview(self.image_bytes(image)).cast("B")
                pwrite_all(self.fd, view, self.image_offset(self.n_written + i, colour))
        self.n_written += len(chunk)

    def commit(self) -> None:
        if self.n_written != self.target.n_frames:
            self.abort()
            raise ValueError(f"{self.path}: {self.n_written} frames written, {self.target.n_frames} announced")
        self._close()

    def abort(self) -> None:
        """Stop writing; what was written stays in the (still temporary) file and a rerun
        of the plane job writes it again."""
        self._close()

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while len(view):
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
