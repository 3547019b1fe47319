"""A gzip-compressed copy of a finished NWB file (``nwb.compression: gzip``).

Compressed chunks have sizes known only once compressed, so parallel plane jobs cannot
place them: they write the uncompressed file as always, and the assemble step copies it
into a new file whose pixel datasets are gzip-compressed, one frame per chunk, a block of
frames at a time (memory: one block). Everything else is copied as HDF5 stores it, links as
links; the one object reference NWB keeps in an attribute (the root ``.specloc``, which
points at the cached schema) is made again for the new file.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import h5py

MIB = 2**20


def compressed_copy(source: Path, target: Path, *, pixels: Collection[str], level: int, block_mb: float) -> None:
    """``source`` copied to ``target`` with the datasets named in ``pixels`` (HDF5 paths,
    ``/acquisition/…/data``) gzip-compressed at ``level``, copied ``block_mb`` MiB at a time."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        _copy_group(src, dst, set(pixels), level, block_mb)


def _copy_group(src: h5py.Group, dst: h5py.Group, pixels: set[str], level: int, block_mb: float) -> None:
    for name in src:
        link = src.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink | h5py.ExternalLink):
            dst[name] = link
            continue
        obj = src[name]
        if isinstance(obj, h5py.Group):
            _copy_group(obj, dst.create_group(name), pixels, level, block_mb)
        elif obj.name in pixels:
            _compress_dataset(obj, dst, name, level, block_mb)
        else:
            src.copy(obj, dst, name=name)
    for key, value in src.attrs.items():
        # a reference points into the source file: the same object's in the new one
        dst.attrs[key] = dst.file[src.file[value].name].ref if isinstance(value, h5py.Reference) else value


def _compress_dataset(data: h5py.Dataset, dst: h5py.Group, name: str, level: int, block_mb: float) -> None:
    copy = dst.create_dataset(
        name, shape=data.shape, dtype=data.dtype, chunks=(1, *data.shape[1:]), compression="gzip", compression_opts=level
    )
    frame_bytes = data.dtype.itemsize * int(data.size // max(1, data.shape[0]))
    step = max(1, int(block_mb * MIB) // max(1, frame_bytes))
    for start in range(0, data.shape[0], step):
        copy[start : start + step] = data[start : start + step]
    for key, value in data.attrs.items():
        copy.attrs[key] = value
