"""The plane job's side of a Zarr store: one plane's frames into its z-slab of array "0".

This module does not import zarr unless the array's layout needs it: for the default
layout the shard files are written by ``zarr_shards.encode_shard``, and a plane job then
never pays zarr's import (≈ 0.25 s a process). See ``zarr_store`` for the whole workflow
and why concurrent plane jobs are safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imexport.atomic import remove_path, write_json_atomic
from imexport.sinks.base import PlaneTarget
from imexport.sinks.direct import DirectFile
from imexport.sinks.zarr_shards import FileGrid, FrameShards, encode_shard, shard_frames

ARRAY_PATH = "0"
PLANES_DIR = ".imexport_planes"

# what an encoder yields per file of a slab: its key, and its bytes as buffers to write
# in turn, or None where the file must not exist (all fill value)
EncodedFiles = Iterator[tuple[str, list[Any] | None]]


class ZarrPlaneSink:
    """Writes one plane's frames into its z-slab of an existing store, whole shards only.

    Frames are buffered until a shard's T-extent is complete and then written as whole
    shard files; the last, shorter shard is written at ``commit``.
    ``written_t_ranges`` lists the ``(start, stop)`` frame ranges of those writes.
    """

    def __init__(self, store_path: Path, target: PlaneTarget, target_chunk_mb: float) -> None:
        self._store_path = Path(store_path)
        self._target = target
        metadata = (self._store_path / ARRAY_PATH / "zarr.json").read_bytes()
        layout = FrameShards.from_metadata(json.loads(metadata))
        self._encoder = FrameShardEncoder(layout) if layout else ZarrEncoder(metadata)
        self._shape = self._encoder.files.shape
        self._dtype = self._encoder.dtype
        self._check_target()
        frame_bytes = target.frame_shape[0] * target.frame_shape[1] * self._dtype.itemsize
        self._block_t = self._encoder.shard_t or shard_frames(self._n_total, frame_bytes, target_chunk_mb)
        self._buffer: np.ndarray | None = None
        self._filled = 0
        self._flushed = 0
        self.written_t_ranges: list[tuple[int, int]] = []

    @property
    def _n_total(self) -> int:
        return self._shape[0]

    @property
    def _marker(self) -> Path:
        return plane_marker(self._store_path, self._target.z_index)

    def _check_target(self) -> None:
        t = self._target
        shape = self._shape
        n_channels = shape[1] if len(shape) == 5 else 1
        expected = (t.n_frames, t.n_channels, *t.frame_shape)
        found = (shape[0], n_channels, *shape[-2:])
        if tuple(expected) != found:
            raise ValueError(
                f"plane z={t.z_index} expects (frames, channels, Y, X) {tuple(expected)} "
                f"but the store {self._store_path} holds {found}"
            )
        if not 0 <= t.z_index < shape[-3]:
            raise ValueError(f"z_index {t.z_index} outside the store's {shape[-3]} planes")
        if np.dtype(t.dtype) != self._dtype:
            raise ValueError(f"plane dtype {t.dtype} differs from the store's {self._dtype}")

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk)
        expected = (self._target.n_channels, *self._target.frame_shape)
        if chunk.ndim != 4 or chunk.shape[1:] != expected:
            raise ValueError(f"chunk shape {chunk.shape} is not (n, C, Y, X) with C, Y, X = {expected}")
        if self._flushed + self._filled + len(chunk) > self._n_total:
            raise ValueError(f"plane z={self._target.z_index} receives more than {self._n_total} frames")
        if self._buffer is None:
            self._buffer = np.empty((self._block_t, *expected), self._dtype)
        start = 0
        while start < len(chunk):
            take = min(len(chunk) - start, self._block_t - self._filled)
            free = self._buffer[self._filled : self._filled + take]
            np.copyto(free, chunk[start : start + take], casting="same_kind")
            self._filled += take
            start += take
            if self._filled == self._block_t:
                self._flush()

    def _flush(self) -> None:
        start, stop = self._flushed, self._flushed + self._filled
        block = self._buffer[: self._filled]
        for key, buffers in self._encoder.encode(block, self._target.z_index, start, stop):
            path = self._store_path / ARRAY_PATH / key
            if buffers is None:  # zarr stores no file here, so an earlier run's must go
                remove_path(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with DirectFile(path, head_bytes=0) as out:
                for buffer in buffers:
                    out.write(buffer)
        self.written_t_ranges.append((start, stop))
        self._flushed, self._filled = stop, 0

    def commit(self) -> None:
        if self._filled:
            self._flush()
        self._buffer = None
        if self._flushed != self._n_total:
            raise RuntimeError(f"plane z={self._target.z_index} got {self._flushed} of {self._n_total} frames")
        write_json_atomic(self._marker, self._target.metadata)  # finalize never reads a half-written marker

    def abort(self) -> None:
        """Drop the buffer and the plane's marker; the slab stays until a rerun rewrites it."""
        self._buffer = None
        self._filled = 0
        remove_path(self._marker)


class FrameShardEncoder:
    """The default layout: one shard per channel of a block, encoded without zarr."""

    def __init__(self, layout: FrameShards) -> None:
        self._layout = layout
        self.files = layout.files
        self.dtype = layout.dtype
        self.shard_t = layout.shard_t

    def encode(self, block: np.ndarray, z_index: int, start: int, stop: int) -> EncodedFiles:
        """The files of ``block`` (``(n, C, Y, X)``, frames ``start:stop`` of plane ``z_index``)."""
        keys = self.files.slab_keys(z_index, start, stop)
        for key, channel in zip(keys, range(block.shape[1]), strict=True):
            yield key, encode_shard(block[:, channel], self._layout)


class ZarrEncoder:
    """Any other layout: zarr encodes each block into the same array held in memory,
    whose files are then taken from there."""

    def __init__(self, metadata: bytes) -> None:
        import zarr
        from zarr.core.buffer import default_buffer_prototype
        from zarr.storage import MemoryStore

        self._encoded: dict[str, Any] = {"zarr.json": default_buffer_prototype().buffer.from_bytes(metadata)}
        self._array = zarr.open_array(MemoryStore(self._encoded), mode="r+")
        self.files = FileGrid.of_array(self._array)
        self.dtype = np.dtype(self._array.dtype)
        self.shard_t = self._array.shards[0] if self._array.shards else None

    def encode(self, block: np.ndarray, z_index: int, start: int, stop: int) -> EncodedFiles:
        """The files of ``block`` (``(n, C, Y, X)``, frames ``start:stop`` of plane ``z_index``)."""
        if self._array.ndim == 5:
            self._array[start:stop, :, z_index] = block
        else:
            self._array[start:stop, z_index] = block[:, 0]
        for key in self.files.slab_keys(z_index, start, stop):
            encoded = self._encoded.pop(key, None)
            yield key, None if encoded is None else [encoded.as_numpy_array()]


def file_grid(array_folder: Path) -> FileGrid:
    """The file grid of the array in ``array_folder``, read without zarr where it can be."""
    metadata = json.loads((Path(array_folder) / "zarr.json").read_bytes())
    files = FileGrid.from_metadata(metadata)
    if files is None:
        import zarr

        files = FileGrid.of_array(zarr.open_array(str(array_folder), mode="r"))
    return files


def plane_marker(store_path: Path, z_index: int) -> Path:
    return Path(store_path) / PLANES_DIR / f"z{z_index:04d}.json"
