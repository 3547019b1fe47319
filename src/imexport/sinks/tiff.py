"""One ImageJ hyperstack TIFF per plane (axes ``TYX``, or ``TCYX`` for several colours).

tifffile writes a correct ImageJ header only when the whole shape is given up front
with an iterator of pages, while the export pushes chunks as it reads them. A writer
thread bridges the two through a small bounded queue, so memory stays at a couple of
chunks whatever the recording length.
"""

from __future__ import annotations

import json
import queue
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..atomic import commit_path, remove_path, temporary_sibling, write_json_atomic
from ..metadata import TIMING_SIDECAR_SUFFIX, split_timing
from .base import PlaneTarget
from .direct import DirectFile
from .imagej import imagej_metadata

_QUEUE_CHUNKS = 2
# BigTIFF + ImageJ is only written past classic TIFF's 4 GiB (or when asked for): Fiji,
# Bio-Formats and tifffile read it, plain ImageJ 1.x does not, so tifffile's warning is noise.
warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
_DONE = object()
CLASSIC_TIFF_LIMIT = 2**32  # classic TIFF's 32-bit offsets address at most 4 GiB
# what a file holds beyond its pixels, generously: one IFD per page (about 200 bytes in
# an ImageJ TIFF) and a reserve for the description and the first page's tags
IFD_BYTES_PER_PAGE = 1024
HEADER_RESERVE_BYTES = 2**24


def use_bigtiff(option: bool | str, pixel_bytes: int, n_pages: int, description_bytes: int = 0) -> bool:
    """Config ``tiff.bigtiff``: ``auto`` (default) is BigTIFF only when classic TIFF cannot hold the file."""
    if option == "auto":
        size = pixel_bytes + n_pages * IFD_BYTES_PER_PAGE + description_bytes + HEADER_RESERVE_BYTES
        return size >= CLASSIC_TIFF_LIMIT
    if isinstance(option, bool):
        return option
    raise ValueError(f"tiff.bigtiff must be auto, true or false, got {option!r}")


class _Aborted(Exception):
    pass


def timing_sidecar(path: Path) -> Path:
    """Where the per-frame times of a TIFF with many frames go (see ``metadata.split_timing``)."""
    return path.with_name(path.name + TIMING_SIDECAR_SUFFIX)


def header_metadata(path: Path, metadata: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The metadata the ImageJ ``Info`` of ``path`` carries, and its timing sidecar's content (or None)."""
    if not metadata.get("timing"):
        return metadata, None
    inline, sidecar = split_timing(metadata["timing"], timing_sidecar(path).name)
    return {**metadata, "timing": inline}, sidecar


def read_timing(path: Path) -> dict[str, Any]:
    """The timing a TIFF written here carries (its ``Info``, and its sidecar's lists); {} if none."""
    with tifffile.TiffFile(path) as tif:
        info = json.loads((tif.imagej_metadata or {}).get("Info", "{}"))
    timing = info.get("timing") or {}
    if "per_frame_sidecar" in timing:
        timing = {k: v for k, v in timing.items() if k != "per_frame_sidecar"}
        timing.update(json.loads(timing_sidecar(path).read_text()))
    return timing


class TiffPlaneSink:
    def __init__(self, target: PlaneTarget) -> None:
        self.target = target
        self.header, self.sidecar = header_metadata(Path(target.path), target.metadata)
        self.temporary = temporary_sibling(target.path)
        self.temporary.parent.mkdir(parents=True, exist_ok=True)
        self.frames_written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._complete = False  # set by the writer thread only once the file is whole
        self._thread = threading.Thread(target=self._run, name=f"tiff-writer-{target.path.name}", daemon=True)
        self._thread.start()

    def _pages(self):
        while True:
            chunk = self._queue.get()
            if chunk is _DONE:
                return
            if chunk is None:
                raise _Aborted
            for frame in chunk:
                yield from frame

    def _run(self) -> None:
        t = self.target
        axes = "TCYX" if t.n_channels > 1 else "TYX"
        shape = (t.n_frames, t.n_channels, *t.frame_shape) if t.n_channels > 1 else (t.n_frames, *t.frame_shape)
        metadata, resolution = imagej_metadata(self.header, axes)
        pixel_bytes = int(np.prod(shape)) * t.dtype.itemsize
        bigtiff = use_bigtiff(t.options.get("bigtiff", "auto"), pixel_bytes, t.n_frames * t.n_channels, len(metadata["Info"]))
        # tifffile writes the pixel data first and the header + first IFD last: DirectFile
        # keeps its head in memory, so the pixels stream out past the page cache
        out = DirectFile(self.temporary)
        try:
            with tifffile.TiffWriter(out, bigtiff=bigtiff, imagej=True) as tw:
                tw.write(self._pages(), shape=shape, dtype=t.dtype, resolution=resolution, metadata=metadata)
            out.close()
            self._complete = True
        except BaseException as exc:  # handed to the producer thread, which re-raises it
            self._error = exc
            try:
                out.abort()
            except OSError:
                pass  # the temporary is removed by the producer anyway
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _put(self, item) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError(f"TIFF writer for {self.target.path} stopped") from self._error

    def write(self, chunk: np.ndarray) -> None:
        expected = (self.target.n_channels, *self.target.frame_shape)
        if chunk.shape[1:] != expected:
            raise ValueError(f"{self.target.path}: chunk shape {chunk.shape[1:]} != {expected}")
        if self.frames_written + len(chunk) > self.target.n_frames:
            raise ValueError(f"{self.target.path}: more frames than the {self.target.n_frames} announced")
        self._put(np.ascontiguousarray(chunk, dtype=self.target.dtype))
        self.frames_written += len(chunk)

    def commit(self) -> None:
        if self.frames_written != self.target.n_frames:
            self.abort()
            raise ValueError(f"{self.target.path}: {self.frames_written} frames written, {self.target.n_frames} announced")
        self._put(_DONE)
        self._thread.join()
        if self._error is not None or not self._complete:
            remove_path(self.temporary)
            raise self._error or RuntimeError(f"TIFF writer for {self.target.path} stopped before finishing the file")
        if self.sidecar is not None:
            write_json_atomic(timing_sidecar(Path(self.target.path)), self.sidecar)
        commit_path(self.temporary, self.target.path)

    def abort(self) -> None:
        if self._thread.is_alive():
            try:
                self._put(None)
            except BaseException:  # the writer already failed; nothing left to stop
                pass
            self._thread.join()
        remove_path(self.temporary)
