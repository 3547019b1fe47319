"""HDF5 output: one file per plane, joined afterwards by a virtual dataset in a master file.

HDF5 files cannot be written by several processes at once, but planes are exported by
parallel jobs. So every plane job writes its own file (:class:`H5PlaneSink`) and one
cheap assembly step (:func:`assemble_h5`) writes a master file whose virtual dataset
maps all plane files into one ``(T, Z, Y, X)`` (or ``(T, C, Z, Y, X)``) movie without
copying any pixels.

Metadata is stored as attributes that keep numbers and lists usable (see
:func:`imexport.hdf5_attrs.write_attrs`), not as their ``str()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imexport.atomic import commit_path, remove_path, temporary_sibling
from imexport.hdf5_attrs import read_attrs, write_attrs
from imexport.sinks.base import PlaneTarget
from imexport.sinks.direct import ALIGN, DirectFile

# the acquisition times (ScanImage sources), float64 seconds and int64 frame numbers, one per
# frame, beside the movie: as attributes they could pass HDF5's 64 KiB attribute limit
TIMING_DATASETS = {"timestamps": "timestamps_sec", "frame_numbers": "frame_numbers"}
COMPRESSIONS = (None, "gzip", "lzf")
DEFAULT_GZIP_LEVEL = 4


# --- per-plane files -------------------------------------------------------------------


def compression_arguments(options: Mapping[str, Any]) -> dict[str, Any]:
    """h5py filter arguments from the format options.

    ``compression`` is None (default), "gzip" or "lzf"; ``compression_level`` (0-9,
    default 4) only applies to gzip and is ignored otherwise.
    """
    compression = options.get("compression")
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"hdf5 option compression={compression!r} is invalid; valid values: {', '.join(map(repr, COMPRESSIONS))}"
        )
    if compression != "gzip":
        return {"compression": compression}
    level = options.get("compression_level")
    level = DEFAULT_GZIP_LEVEL if level is None else level
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"hdf5 option compression_level={level!r} must be an int 0-9")
    return {"compression": "gzip", "compression_opts": level}


def plane_dataset_shape(target: PlaneTarget) -> tuple[int, ...]:
    channels = (target.n_channels,) if target.n_channels > 1 else ()
    return (target.n_frames, *channels, *target.frame_shape)


def timing_datasets(timing: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The per-frame times of ``timing`` as the ``TIMING_DATASETS`` arrays, and what stays
    in the ``timing`` attribute (the rest, naming those datasets)."""
    datasets = {
        name: np.asarray(timing[key], dtype=np.float64 if name == "timestamps" else np.int64)
        for name, key in TIMING_DATASETS.items()
    }
    attribute = {
        **{k: v for k, v in timing.items() if k not in TIMING_DATASETS.values()},
        "per_frame_datasets": list(TIMING_DATASETS),
    }
    return datasets, attribute


def write_metadata(file: h5py.File, metadata: Mapping[str, Any]) -> None:
    """``metadata`` as root attributes; its per-frame times as the ``TIMING_DATASETS``."""
    timing = metadata.get("timing")
    if timing:
        datasets, attribute = timing_datasets(timing)
        for name, values in datasets.items():
            file.create_dataset(name, data=values)
        metadata = {**metadata, "timing": attribute}
    write_attrs(file, metadata)


def copy_timing(plane_file: Path, master: h5py.File) -> dict[str, Any] | None:
    """The timing datasets of a plane file copied into the master; its ``timing`` attribute (or None)."""
    with h5py.File(plane_file, "r") as plane:
        for name in TIMING_DATASETS:
            if name in plane:
                master.create_dataset(name, data=plane[name][()])
        return read_attrs(plane).get("timing")


class H5PlaneSink:
    """Streams one plane into its own HDF5 file (``target.path``).

    The dataset (``options["dataset_name"]``, default "mov") is ``(T, Y, X)`` for one
    channel or ``(T, C, Y, X)`` for several, in ``target.dtype``. ``target.metadata``
    goes to the root attributes.

    Uncompressed (the default), the dataset is contiguous: HDF5 lays the file out and
    allocates the pixel block (4 KiB aligned, never filled), and the frames are then
    streamed into that block with :class:`DirectFile`, i.e. at the disk's direct-write
    rate instead of through HDF5's buffered writes. Compressed, it is chunked one frame
    (one channel) at a time and written through h5py.
    """

    def __init__(self, target: PlaneTarget):
        self.target = target
        self.final = Path(target.path).absolute()
        filters = compression_arguments(target.options)
        shape = plane_dataset_shape(target)
        self.temporary = temporary_sibling(self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_path(self.temporary)  # leftover of a killed job that had this pid
        self.n_written = 0
        self.file: h5py.File | None = None
        self.pixels: DirectFile | None = None
        try:
            if filters["compression"] is None:
                offset = self._lay_out_contiguous(shape)
                self.pixels = DirectFile(self.temporary, offset=offset, truncate=False, head_bytes=0)
            else:
                self.file = h5py.File(self.temporary, "w")
                self.dataset = self.file.create_dataset(
                    target.options.get("dataset_name", "mov"),
                    shape=shape,
                    dtype=target.dtype,
                    chunks=(1,) * (len(shape) - 2) + tuple(target.frame_shape),
                    **filters,
                )
                write_metadata(self.file, target.metadata)
        except BaseException:
            self.abort()
            raise

    def _lay_out_contiguous(self, shape: tuple[int, ...]) -> int:
        """Create the file with its dataset allocated but unwritten; the pixel block's offset."""
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        with h5py.File(self.temporary, "w", alignment_threshold=ALIGN, alignment_interval=ALIGN) as file:
            dataset = file.create_dataset(
                self.target.options.get("dataset_name", "mov"), shape=shape, dtype=self.target.dtype, dcpl=dcpl
            )
            write_metadata(file, self.target.metadata)
            offset = dataset.id.get_offset()
        if offset is None:
            raise RuntimeError(f"{self.final}: HDF5 did not allocate the dataset")
        return int(offset)

    def write(self, chunk: np.ndarray) -> None:
        self._check_chunk(chunk)
        stop = self.n_written + chunk.shape[0]
        if self.pixels is not None:
            # (n, C, Y, X) in C order is exactly the bytes of frames n of (T, [C,] Y, X)
            self.pixels.write(np.ascontiguousarray(chunk))
        else:
            self.dataset[self.n_written : stop] = chunk if self.target.n_channels > 1 else chunk[:, 0]
        self.n_written = stop

    def commit(self) -> None:
        if self.n_written != self.target.n_frames:
            self.abort()
            raise ValueError(f"{self.final}: {self.n_written} frames written, {self.target.n_frames} announced")
        if self.pixels is not None:
            self.pixels.close()
        if self.file is not None:
            self.file.close()
        commit_path(self.temporary, self.final)

    def abort(self) -> None:
        if self.pixels is not None:
            self.pixels.abort()
        if self.file is not None:
            self.file.close()
        remove_path(self.temporary)

    def _check_chunk(self, chunk: np.ndarray) -> None:
        target = self.target
        expected = (target.n_channels, *target.frame_shape)
        if chunk.ndim != 4 or tuple(chunk.shape[1:]) != expected:
            raise ValueError(f"{self.final}: chunk of shape {chunk.shape} does not match (n, {', '.join(map(str, expected))})")
        if chunk.dtype != np.dtype(target.dtype):
            raise ValueError(f"{self.final}: chunk dtype {chunk.dtype} is not {target.dtype}")
        if self.n_written + chunk.shape[0] > target.n_frames:
            raise ValueError(f"{self.final}: more than the {target.n_frames} announced frames")


# --- master file -----------------------------------------------------------------------


def plane_layout(path: Path, dataset_name: str) -> tuple[tuple[int, ...], np.dtype]:
    with h5py.File(path, "r") as file:
        dataset = file.get(dataset_name)
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{path} has no dataset {dataset_name!r}")
        return dataset.shape, dataset.dtype


def common_plane_layout(plane_files: list[Path], dataset_name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype every plane file shares; names the first file that differs."""
    shape, dtype = plane_layout(plane_files[0], dataset_name)
    if len(shape) not in (3, 4):
        raise ValueError(f"{plane_files[0]}: {dataset_name!r} is {shape}, not (T, [C,] Y, X)")
    for path in plane_files[1:]:
        other_shape, other_dtype = plane_layout(path, dataset_name)
        if (other_shape, other_dtype) != (shape, dtype):
            raise ValueError(f"{path}: {dataset_name!r} is {other_shape} {other_dtype}, but {plane_files[0]} is {shape} {dtype}")
    return shape, dtype


def volume_layout(
    master_folder: Path,
    plane_files: list[Path],
    dataset_name: str,
    plane_shape: tuple[int, ...],
    dtype: np.dtype,
) -> h5py.VirtualLayout:
    """Planes stacked on a Z axis placed after T (and C).

    Source names are relative to the master's folder: HDF5 resolves a relative source
    name against the folder of the file holding the virtual dataset, so the export
    folder can be moved or read from any working directory.
    """
    z_axis = len(plane_shape) - 2
    volume_shape = (*plane_shape[:z_axis], len(plane_files), *plane_shape[z_axis:])
    layout = h5py.VirtualLayout(shape=volume_shape, dtype=dtype)
    for z, path in enumerate(plane_files):
        source = h5py.VirtualSource(os.path.relpath(path, master_folder), dataset_name, shape=plane_shape, dtype=dtype)
        layout[(slice(None),) * z_axis + (z,)] = source
    return layout


def assemble_h5(
    master_path: Path | str,
    plane_files: Sequence[Path | str],
    *,
    dataset_name: str = "mov",
    metadata: Mapping[str, Any],
    plane_metadata: Sequence[Mapping[str, Any]],
) -> None:
    """Write the master file: a virtual dataset over ``plane_files`` (in written Z order).

    The dataset is ``(T, Z, Y, X)``, or ``(T, C, Z, Y, X)`` for multi-channel planes.
    Root attributes ``metadata`` (export level) and ``planes`` (one dict per plane, in
    Z order) are stored through :func:`write_attrs`.
    """
    master = Path(master_path).absolute()
    planes = [Path(path).absolute() for path in plane_files]
    if not planes:
        raise ValueError(f"{master}: no plane files to assemble")
    if len(plane_metadata) != len(planes):
        raise ValueError(f"{master}: {len(plane_metadata)} plane metadata entries for {len(planes)} plane files")
    shape, dtype = common_plane_layout(planes, dataset_name)
    layout = volume_layout(master.parent, planes, dataset_name, shape, dtype)
    temporary = temporary_sibling(master)
    master.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(temporary, "w") as file:
            file.create_virtual_dataset(dataset_name, layout)
            timing = copy_timing(planes[0], file)  # every plane file holds the same times
            write_attrs(
                file, {"metadata": {**metadata, **({"timing": timing} if timing else {})}, "planes": list(plane_metadata)}
            )
    except BaseException:
        remove_path(temporary)
        raise
    commit_path(temporary, master)
