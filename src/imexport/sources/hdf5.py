"""HDF5 files: a dataset ``mov``, else ``data``, else the file's only dataset.

``input_options.dataset_name`` names another. Dimensions: ``input_options.dim_order``,
else, for imexport's own files (master or per-plane), from the channel count in their
metadata, else by rank (3 TYX, 4 TZYX, 5 TCZYX). A virtual dataset (imexport's master
file) reads through to its plane files, which must exist: HDF5 would silently return
zeros for a missing one.

Physical scales from the root attributes (the ``metadata`` entry of our master file, or
the attributes themselves).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

from ..hdf5_attrs import read_attrs
from .arrays import array_source, physical, resolve_axes
from .info import SourceError, SourceInfo

PREFERRED = ("mov", "data")


def _datasets(file: h5py.File) -> list[str]:
    names: list[str] = []
    file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _pick(file: h5py.File, path: Path, dataset_name: str | None) -> str:
    names = _datasets(file)
    if dataset_name:
        if dataset_name.strip("/") not in names:
            raise SourceError(f"input_options.dataset_name: {path} has no dataset {dataset_name!r} (datasets: {names})")
        return dataset_name.strip("/")
    for name in PREFERRED:
        if name in names:
            return name
    if len(names) == 1:
        return names[0]
    raise SourceError(f"{path}: no 'mov' or 'data' dataset and {len(names)} others {names}: set input_options.dataset_name")


def _own_axes(metadata: dict[str, Any], ndim: int) -> str | None:
    """imexport files: (T, [C,] [Z,] Y, X), C present when more than one channel was written."""
    channels = metadata.get("channels")
    if "imexport_version" not in metadata or not isinstance(channels, list):
        return None
    c_axis = "C" if len(channels) > 1 else ""
    n_z = ndim - 3 - len(c_axis)
    return "T" + c_axis + "Z" * n_z + "YX" if n_z in (0, 1) else None


def check_virtual_sources(dataset: h5py.Dataset, path: Path) -> None:
    """Refuse a virtual dataset whose source files are missing (h5py would read fill
    values, zeros, for them without a word), naming every missing file."""
    if not dataset.is_virtual:
        return
    missing = []
    for source in dataset.virtual_sources():
        if source.file_name == ".":  # mapped from the file itself
            continue
        target = Path(source.file_name)
        if not target.is_absolute():
            target = path.parent / target  # HDF5 resolves it against the master's folder
        if not target.is_file() and source.file_name not in missing:
            missing.append(source.file_name)
    if missing:
        raise SourceError(
            f"{path}: its virtual dataset {dataset.name!r} maps {len(missing)} missing file(s) "
            f"({', '.join(missing)}); copy them next to it as they were written"
        )


def inspect_h5(path: Path, *, dataset_name: str | None = None, dim_order: str | None = None) -> SourceInfo:
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise SourceError(f"{path}: not a readable HDF5 file ({exc})") from None
    with file:
        name = _pick(file, path, dataset_name)
        dataset = file[name]
        check_virtual_sources(dataset, path)
        attrs = read_attrs(file)
        metadata = attrs["metadata"] if isinstance(attrs.get("metadata"), dict) else attrs
        axes = resolve_axes(_own_axes(metadata, dataset.ndim), dataset.shape, dim_order, f"{path}:{name}")
        return array_source(
            "hdf5", [str(path)], [axes], [dataset.shape], dataset.dtype, scales=physical(metadata), options={"dataset": name}
        )


def inspect(paths: list[Path], options: dict) -> SourceInfo:
    return inspect_h5(paths[0], dataset_name=options.get("dataset_name"), dim_order=options.get("dim_order"))


def open_array(info: SourceInfo, i: int):
    # HDF5 resolves the virtual dataset's relative file names against the master's folder
    file = h5py.File(os.fspath(info.files[i]), "r")
    return file[info.options["dataset"]], file.close
