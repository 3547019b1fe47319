"""HDF5 output as one self-contained file, written by parallel plane jobs.

HDF5 files cannot be written by several processes through the library, but an
uncompressed contiguous dataset is one block of bytes at a fixed place in the file. So
the prepare step (:func:`create_file`) lays the file out with h5py, dataset ``mov``
``(T, Z, Y, X)`` (``(T, C, Z, Y, X)`` with several colours) allocated up front and never
filled; each plane job (:class:`H5SlabSink`) writes its frames at their byte offsets
with ``os.pwrite``, outside HDF5; the assemble step (:func:`finalize_file`) adds the
attributes (and any extra datasets) through h5py, then renames the file into place.

The file is built under imexport's work folder and gets its final name only at the end,
so a killed job never leaves a file that looks complete. The history step later sets one
more attribute (:func:`rewrite_attrs`): not on a copy (the file holds every pixel), and
not under the final name either. Compressed data cannot be
placed this way (chunk sizes are known only once compressed): compression needs the
virtual-dataset layout (``sinks/hdf5.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imexport.atomic import commit_path, remove_path, temporary_sibling
from imexport.hdf5_attrs import write_attrs
from imexport.sinks.base import PlaneTarget
from imexport.sinks.direct import ALIGN
from imexport.sinks.offset_writer import OffsetSlabSink


def create_file(path: Path, *, shape: Sequence[int], dtype: Any, dataset_name: str) -> None:
    """The file with its dataset allocated (space reserved, nothing written: it reads as 0).

    Creation times are not recorded, so two runs give the same bytes.
    """
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # the offset exists before any write
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # no pass writing zeros over the whole block
    dcpl.set_obj_track_times(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_path(path)  # what an interrupted run left
    with h5py.File(path, "w", alignment_threshold=ALIGN, alignment_interval=ALIGN) as file:
        dataset = file.create_dataset(dataset_name, shape=tuple(shape), dtype=dtype, dcpl=dcpl, track_times=False)
        if dataset.id.get_offset() is None:
            raise RuntimeError(f"{path}: HDF5 did not allocate the dataset {dataset_name!r}")


class H5SlabSink(OffsetSlabSink):
    """Writes one plane's frames into the file :func:`create_file` made.

    Frame ``t`` (colour ``c``) of plane ``z`` is block ``(t * C + c) * Z + z`` of ``Y * X``
    values after the dataset's offset (C order of ``(T, [C,] Z, Y, X)``).
    """

    def __init__(self, path: Path, target: PlaneTarget) -> None:
        name = target.options.get("dataset_name", "mov")
        with h5py.File(path, "r") as file:
            dataset = file[name]
            offset, shape, dtype = dataset.id.get_offset(), dataset.shape, dataset.dtype
        n_colors = shape[1] if len(shape) == 5 else 1
        expected = (target.n_frames, target.n_channels, *target.frame_shape)
        if (shape[0], n_colors, *shape[-2:]) != expected or not 0 <= target.z_index < shape[-3]:
            raise ValueError(f"{path}: {name!r} is {shape}, no room for plane z={target.z_index} of {expected}")
        if dtype != np.dtype(target.dtype):
            raise ValueError(f"{path}: {name!r} is {dtype}, the plane is {target.dtype}")
        self.offset = int(offset)
        self.n_planes = shape[-3]
        self.frame_bytes = int(np.prod(shape[-2:])) * dtype.itemsize
        super().__init__(path, target)

    def image_offset(self, frame: int, colour: int) -> int:
        block = (frame * self.target.n_channels + colour) * self.n_planes + self.target.z_index
        return self.offset + block * self.frame_bytes


def finalize_file(
    path: Path,
    final: Path,
    *,
    metadata: Mapping[str, Any],
    plane_metadata: Sequence[Mapping[str, Any]],
    datasets: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Root attributes ``metadata`` and ``planes`` (as :func:`assemble_h5` writes them), the
    extra ``datasets`` (name -> array, e.g. per-frame values), then ``path`` becomes ``final``."""
    with h5py.File(path, "r+") as file:
        write_attrs(file, {"metadata": dict(metadata), "planes": list(plane_metadata)})
        for name, values in (datasets or {}).items():
            file.create_dataset(name, data=values, track_times=False)
    commit_path(path, final)


def rewrite_attrs(path: Path, attrs: Mapping[str, Any]) -> None:
    """Set root attributes of a committed file in place, but never under its final name.

    Copying the file to edit the copy would write every pixel again, and HDF5 has no
    journal: a kill while it writes its metadata can leave a file that no longer opens.
    So the file is renamed aside (a hidden temporary sibling), edited, flushed and
    renamed back (:func:`imexport.atomic.commit_path`). A kill in between leaves no
    file under the final name — the output is missing, and the next run writes it again
    (its temporary is removed when that run starts) — rather than a damaged one that
    looks complete. An error while editing removes the file for the same reason.
    """
    path = Path(path)
    aside = temporary_sibling(path)
    os.replace(path, aside)
    try:
        with h5py.File(aside, "r+") as file:
            write_attrs(file, attrs)
        commit_path(aside, path)
    except BaseException:
        remove_path(aside)
        raise
