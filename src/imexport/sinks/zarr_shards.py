"""Zarr v3 shard files written without zarr, for the layout our stores use.

Why: a plane job that imports zarr spends ≈ 0.25 s on the import alone, and zarr's async
codec pipeline costs ≈ 0.3 s of CPU more per plane than writing the bytes ourselves. For
the layout ``create_store`` makes by default (sharded, an inner chunk is one frame of
one plane, stored raw) a shard file is simple, so plane jobs write it directly; every
other layout still goes through zarr.

What zarr 3.1 writes for such a shard (``zarr/codecs/sharding.py``), and what
``encode_shard`` reproduces byte for byte:

- the non-empty inner chunks' bytes, one after another, in Morton order of their
  coordinates inside the shard. Zarr's Morton code gives no bits to axes of extent 1,
  so when only the T axis has more than one inner chunk (``FrameShards`` requires it)
  that order is simply T order;
- an inner chunk whose values all equal the fill value is empty: not stored (zarr's
  default ``write_empty_chunks=False``). That includes the chunks of a last, partial
  shard that lie beyond the array's end: zarr's shards are always full-sized;
- the index: one ``(offset, nbytes)`` pair of little-endian uint64 per inner chunk in C
  order, ``(2**64-1, 2**64-1)`` for an empty chunk, offsets counted from the start of
  the file (the index is at the end), then the CRC-32C of those index bytes as a
  little-endian uint32;
- a shard whose chunks are all empty has no file at all.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import google_crc32c
import numpy as np

EMPTY_CHUNK = 2**64 - 1
INDEX_CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
ENDIAN_CODES = {"little": "<", "big": ">"}


def shard_frames(n_frames: int, frame_bytes: int, target_chunk_mb: float) -> int:
    """Frames per shard (or per block a plane sink buffers) for ``target_chunk_mb``."""
    if not target_chunk_mb > 0:
        raise ValueError(f"target_chunk_mb must be positive, got {target_chunk_mb!r}")
    return int(min(n_frames, max(1, math.floor(target_chunk_mb * 2**20 / frame_bytes))))


@dataclass(frozen=True)
class FileGrid:
    """Where an array's files are: its shape, the grid of its stored files (shards, or
    chunks if unsharded) and the key of a file from its grid coordinates."""

    shape: tuple[int, ...]
    grid: tuple[int, ...]
    key: Callable[[tuple[int, ...]], str]

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> FileGrid | None:
        """From an array's ``zarr.json``; None unless the grid is regular and keys use
        the default encoding (what zarr gives a v3 array unless told otherwise)."""
        if metadata.get("zarr_format") != 3 or metadata.get("node_type") != "array":
            return None
        grid, keys = metadata.get("chunk_grid", {}), metadata.get("chunk_key_encoding", {})
        if grid.get("name") != "regular" or keys.get("name") != "default":
            return None
        separator = (keys.get("configuration") or {}).get("separator", "/")
        shape = tuple(metadata["shape"])
        file_shape = tuple(grid["configuration"]["chunk_shape"])
        if separator not in ("/", ".") or len(shape) != len(file_shape):
            return None
        return cls(shape, file_shape, partial(_default_key, separator))

    @classmethod
    def of_array(cls, array: Any) -> FileGrid:
        """From an open zarr array, whatever its key encoding."""
        metadata = array.metadata
        return cls(tuple(array.shape), tuple(metadata.chunk_grid.chunk_shape), metadata.encode_chunk_key)

    def slab_keys(self, z_index: int, start: int = 0, stop: int | None = None) -> Iterator[str]:
        """Keys of the files holding frames ``start:stop`` of plane ``z_index`` (axes
        T[, C], Z, Y, X)."""
        stop = self.shape[0] if stop is None else stop
        z_axis = len(self.shape) - 3
        ranges: list[Any] = []
        for axis, (size, extent) in enumerate(zip(self.shape, self.grid)):
            if axis == 0:
                ranges.append(range(start // extent, -(-stop // extent)))
            elif axis == z_axis:
                ranges.append([z_index // extent])
            else:
                ranges.append(range(-(-size // extent)))
        for coords in itertools.product(*ranges):
            yield self.key(coords)


def _default_key(separator: str, coords: tuple[int, ...]) -> str:
    return separator.join(["c", *map(str, coords)])


@dataclass(frozen=True)
class FrameShards:
    """An array whose shard files ``encode_shard`` writes exactly as zarr would.

    ``stored_dtype`` has the byte order of the shard's ``bytes`` codec.
    """

    files: FileGrid
    stored_dtype: np.dtype
    fill_value: int | float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> FrameShards | None:
        """From an array's ``zarr.json``; None for any layout this module does not cover."""
        files = FileGrid.from_metadata(metadata)
        codecs = metadata.get("codecs", [])
        if (
            files is None
            or len(files.shape) < 3
            or metadata.get("storage_transformers")
            or len(codecs) != 1
            or codecs[0].get("name") != "sharding_indexed"
        ):
            return None
        sharding = codecs[0].get("configuration", {})
        dtype = _plain_numeric_dtype(metadata.get("data_type"))
        stored_dtype = None if dtype is None else _stored_dtype(sharding.get("codecs", []), dtype)
        fill_value = metadata.get("fill_value")
        one_frame = (1,) * (len(files.shape) - 2) + files.shape[-2:]
        if (
            stored_dtype is None
            or not _finite_number(fill_value)
            or sharding.get("index_codecs") != INDEX_CODECS
            or sharding.get("index_location", "end") != "end"
            or tuple(sharding.get("chunk_shape", ())) != one_frame
            # inner chunks along T only: their Morton order is then T order
            or files.grid != (files.grid[0], *one_frame[1:])
        ):
            return None
        return cls(files, stored_dtype, fill_value)

    @property
    def shard_t(self) -> int:
        return self.files.grid[0]

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype in native byte order: what its values are computed in."""
        return self.stored_dtype.newbyteorder("=")


def _plain_numeric_dtype(name: Any) -> np.dtype | None:
    if not isinstance(name, str):
        return None
    try:
        dtype = np.dtype(name)
    except TypeError:
        return None
    return dtype if dtype.kind in "iuf" and dtype.name == name else None


def _finite_number(value: Any) -> bool:
    # zarr writes NaN and infinities as strings; bool is a number to Python, not to zarr
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _stored_dtype(codecs: list[dict[str, Any]], dtype: np.dtype) -> np.dtype | None:
    """``dtype`` in the byte order of ``codecs`` when they are one ``bytes`` codec."""
    if len(codecs) != 1 or codecs[0].get("name") != "bytes":
        return None
    endian = (codecs[0].get("configuration") or {}).get("endian")
    if endian is None:  # zarr leaves it out only where byte order has no meaning
        return dtype if dtype.itemsize == 1 else None
    code = ENDIAN_CODES.get(endian)
    return None if code is None else dtype.newbyteorder(code)


def encode_shard(frames: np.ndarray, layout: FrameShards) -> list[Any] | None:
    """The file of the shard whose first ``len(frames)`` inner chunks are ``frames``
    (``(n, Y, X)``, n at most ``layout.shard_t``), as buffers to write one after another;
    None when every chunk is empty."""
    index = np.full((layout.shard_t, 2), EMPTY_CHUNK, dtype="<u8")
    buffers: list[Any] = []
    offset = 0
    for t, frame in enumerate(frames):
        stored = np.ascontiguousarray(frame, dtype=layout.stored_dtype)
        if _all_fill_value(stored, layout.fill_value):
            continue
        index[t] = offset, stored.nbytes
        buffers.append(stored)
        offset += stored.nbytes
    if not buffers:
        return None
    index_bytes = index.tobytes()
    checksum = np.array(google_crc32c.value(index_bytes), dtype="<u4")
    return [*buffers, index_bytes, checksum.tobytes()]


def _all_fill_value(chunk: np.ndarray, fill_value: int | float) -> bool:
    if fill_value == 0:
        # zarr compares with a zero fill value bit for bit: -0.0 is data, not fill
        return not chunk.view(f"u{chunk.dtype.itemsize}").any()
    return bool((chunk == fill_value).all())
