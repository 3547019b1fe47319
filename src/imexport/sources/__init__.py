"""Every input behind one protocol: find it, describe it, read planes of it.

* ``inspect_input(spec, **input_options)`` finds what ``spec`` (a file, a folder or a
  glob) holds and returns its ``SourceInfo`` (metadata only; ``kind`` says which reader):
  ``scanimage`` (raw ScanImage TIFF: LBM, multi-ROI, single plane, piezo), ``tiff``
  (any other TIFF), ``suite2p``, ``zarr``, ``hdf5`` or ``npy``.
* ``build_index(info)`` is the ``index_source`` step: the page offsets of a raw
  recording; for the other kinds a check that every file still matches the plan
  (their readers need no index).
* ``open_plane_reader(info, index)`` returns the reader plane jobs use:
  ``read(frames, colors, plane) -> (n, C, page_height, page_width)``, a context manager.
  Non-ScanImage sources present one ROI covering the whole frame, so their "page" is the
  frame and everything downstream is the same for every kind.
"""

from __future__ import annotations

import glob
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import ArrayReader
from .info import SourceError, SourceInfo
from .scanimage import (
    PlaneReader,
    build_page_index,
    inspect_acquisition,
    is_raw_scanimage,
    load_page_index,
    natural_key,
)

TIFF_SUFFIXES = (".tif", ".tiff")
H5_SUFFIXES = (".h5", ".hdf5")
INPUT_OPTIONS = ("dim_order", "dataset_name", "shape", "slice_repeats", "piezo_average")
# kind -> its module under sources/, an ``ArrayReader`` (sources/base.py); imported on
# first use so that the DAG of a raw recording never loads h5py or zarr
READERS = {"tiff": "tiff", "suite2p": "suite2p", "zarr": "zarr_source", "hdf5": "hdf5", "npy": "npy"}


def resolve_input(spec: str | Path) -> list[Path]:
    """Files named by the config's ``input``, naturally sorted (``_2`` before ``_10``)."""
    text = str(spec)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = [Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in TIFF_SUFFIXES]
        if not files:
            raise SourceError(f"input: the pattern {text!r} matches no .tif/.tiff file")
    elif path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")]
        if not files:
            raise SourceError(f"input: the folder {path} holds no .tif/.tiff file")
    elif path.is_file():
        files = [path]
    else:
        raise SourceError(f"input: {path} does not exist")
    return sorted((p.resolve() for p in files), key=natural_key)


def _visible(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=natural_key)


def locate_input(spec: str | Path) -> tuple[str, list[Path]]:
    """``(kind, paths)`` for the config's ``input``; ``kind`` "tiff" covers raw ScanImage too.

    A folder is read as: a suite2p plane folder (``ops.npy`` in it), else its TIFF files,
    else its suite2p plane sub-folders, else its one ``.zarr`` store, ``.h5`` or ``.npy``.
    """
    from .suite2p import is_plane_folder
    from .zarr_source import zarr_root

    text = str(spec)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        matches = sorted((Path(p) for p in glob.glob(str(path)) if not Path(p).name.startswith(".")), key=natural_key)
        if not matches or any(p.suffix.lower() in TIFF_SUFFIXES for p in matches):
            return "tiff", resolve_input(spec)
        if all(is_plane_folder(p) for p in matches):
            return "suite2p", [p.resolve() for p in matches]
        if len(matches) == 1:
            return locate_input(matches[0])
        raise SourceError(
            f"input: the pattern {text!r} matches {len(matches)} paths that are not TIFF files or suite2p plane folders"
        )
    store = zarr_root(path)
    if store is not None:
        return "zarr", [store]
    if path.is_file():
        suffix = path.suffix.lower()
        if path.name == "ops.npy":
            return "suite2p", [path.parent.resolve()]
        kind = {
            ".npy": "npy",
            ".bin": "suite2p",
            **dict.fromkeys(H5_SUFFIXES, "hdf5"),
            **dict.fromkeys(TIFF_SUFFIXES, "tiff"),
        }.get(suffix)
        if kind is None:
            raise SourceError(f"input: {path} is not a readable type (.tif, .tiff, .h5, .hdf5, .npy, .bin, a .zarr store)")
        return kind, [path.resolve()]
    if path.is_dir():
        if is_plane_folder(path):
            return "suite2p", [path.resolve()]
        children = _visible(path)
        if any(p.is_file() and p.suffix.lower() in TIFF_SUFFIXES for p in children):
            return "tiff", resolve_input(path)
        if any(is_plane_folder(p) for p in children):
            return "suite2p", [path.resolve()]
        candidates = [
            p for p in children if zarr_root(p) == p.resolve() or (p.is_file() and p.suffix.lower() in (*H5_SUFFIXES, ".npy"))
        ]
        if len(candidates) == 1:
            return locate_input(candidates[0])
        if candidates:
            raise SourceError(
                f"input: the folder {path} holds several inputs ({', '.join(p.name for p in candidates)}); name one"
            )
        raise SourceError(
            f"input: the folder {path} holds no readable input (.tif/.tiff files, suite2p plane folders, "
            f"a .zarr store, an .h5 or .npy file)"
        )
    raise SourceError(f"input: {path} does not exist")


def inspect_input(spec: str | Path, **options: Any) -> SourceInfo:
    """Detect the format of ``spec`` and describe it (``options``: the config's ``input_options``)."""
    unknown = sorted(set(options) - set(INPUT_OPTIONS))
    if unknown:
        raise SourceError(f"input_options: unknown key(s) {unknown} (valid: {', '.join(INPUT_OPTIONS)})")
    kind, paths = locate_input(spec)
    if kind == "tiff" and is_raw_scanimage(paths[0]):
        return inspect_acquisition(paths, slice_repeats=options.get("slice_repeats"), piezo_average=options.get("piezo_average"))
    return array_reader(kind).inspect(paths, options)


def array_reader(kind: str) -> ArrayReader:
    """The reader module of a non-ScanImage kind, imported now (see ``READERS``)."""
    if kind not in READERS:
        raise SourceError(f"unknown source kind {kind!r} (known: scanimage, {', '.join(READERS)})")
    return importlib.import_module(f"{__name__}.{READERS[kind]}")


def open_plane_reader(info: SourceInfo, index: str | os.PathLike | list[np.ndarray] | None = None):
    """The plane reader of ``info``.

    ``index`` matters for raw ScanImage only: the index file ``index_source`` saved, or its
    offsets; None walks the IFD chains now (what ``index_source`` does once per run).
    """
    if info.kind == "scanimage":
        if index is None:
            return PlaneReader(info, build_page_index(info))
        offsets = load_page_index(Path(index)) if isinstance(index, (str, os.PathLike)) else index
        return PlaneReader(info, offsets)
    from .arrays import GridReader

    return GridReader(info, array_reader(info.kind).open_array)


def build_index(info: SourceInfo) -> list[np.ndarray]:
    """Page offsets of a raw recording; for other kinds, check every file against the plan."""
    if info.kind == "scanimage":
        return build_page_index(info)
    with open_plane_reader(info) as reader:
        reader.verify()
    return []


__all__ = [
    "SourceError",
    "SourceInfo",
    "build_index",
    "inspect_input",
    "locate_input",
    "open_plane_reader",
    "resolve_input",
]
