"""Suite2p binaries: a plane folder, a folder of plane folders, or a bare ``.bin``.

* Plane folder (``ops.npy`` + binary): ``Ly``, ``Lx`` from ops, the frame count from the
  binary's size (a size that is not a whole number of frames is an error). The raw
  movie is read (``ops["raw_file"]``, ``data_raw.bin``), else the registered one
  (``data.bin``); the second colour is the matching ``*_chan2`` binary
  (imexport writes ``data_chan2_raw.bin`` next to ``data_raw.bin``) when ``nchannels`` is 2.
  Binaries are looked up by name inside the folder, so a moved folder still reads.
* Folder of plane folders: sub-folders holding ``ops.npy``, in the order of the plane
  number in their names (``zplane(\\d+)`` / ``plane(\\d+)``: imexport's
  ``zplane07_tp…``, suite2p's ``plane0``); folders without a number (suite2p's
  ``combined``) are skipped.
* Bare ``.bin``: int16 frames of ``input_options.shape`` = ``[Ly, Lx]`` or
  ``[T, Ly, Lx]``, else of the ``ops.npy`` next to it.

Physical scales: ops' ``imexport`` entry (our own metadata), then ops' own ``fs`` (unless
``fs_unknown``), ``dx``/``dy``/``dz`` or ``umPerPix*``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import array_source, physical
from .info import SourceError, SourceInfo
from .tiff import plane_number

log = logging.getLogger(__name__)

OPS = "ops.npy"
DTYPE = np.dtype("<i2")  # suite2p binaries are little-endian int16


def is_plane_folder(path: Path) -> bool:
    return path.is_dir() and (path / OPS).is_file()


def _ops(folder: Path) -> dict[str, Any]:
    try:
        ops = np.load(folder / OPS, allow_pickle=True).item()
    except Exception as exc:  # numpy raises many kinds for a damaged pickle
        raise SourceError(f"{folder / OPS}: not a readable suite2p ops file ({type(exc).__name__}: {exc})") from None
    if not isinstance(ops, dict) or "Ly" not in ops or "Lx" not in ops:
        raise SourceError(f"{folder / OPS}: has no Ly / Lx")
    return ops


def _named(folder: Path, ops: dict, keys: tuple[str, ...], fallbacks: tuple[str, ...]) -> Path | None:
    names = [Path(str(ops[k])).name for k in keys if ops.get(k)] + list(fallbacks)
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _binaries(folder: Path, ops: dict) -> list[Path]:
    raw = _named(folder, ops, ("raw_file",), ("data_raw.bin",))
    if raw is not None:
        chan2 = _named(folder, ops, ("raw_file_chan2",), ("data_chan2_raw.bin", "data_chan2.bin"))
    else:
        raw = _named(folder, ops, ("reg_file",), ("data.bin",))
        chan2 = _named(folder, ops, ("reg_file_chan2",), ("data_chan2.bin",))
    if raw is None:
        raise SourceError(f"{folder}: a suite2p plane folder without data_raw.bin or data.bin")
    return [raw, chan2] if chan2 is not None and int(ops.get("nchannels", 1)) >= 2 else [raw]


def _frames(path: Path, height: int, width: int) -> int:
    frame_bytes = height * width * DTYPE.itemsize
    size = os.path.getsize(path)
    if size % frame_bytes:
        raise SourceError(f"{path}: {size} bytes is not a whole number of {height}x{width} int16 frames (truncated?)")
    return size // frame_bytes


def _scales(ops: dict) -> dict[str, float | None]:
    own = physical(ops.get("imexport"))
    native = physical(
        {
            "fs": None if ops.get("fs_unknown") else ops.get("fs"),
            "dx": ops.get("dx", ops.get("umPerPixX")),
            "dy": ops.get("dy", ops.get("umPerPixY")),
            "dz": ops.get("dz", ops.get("umPerPixZ")),
        }
    )
    return {key: own[key] if own[key] is not None else native[key] for key in own}


def plane_folders(folder: Path) -> list[Path]:
    """Numbered plane sub-folders of ``folder``, in plane order."""
    numbered = {}
    for child in folder.iterdir():
        if child.name.startswith(".") or not is_plane_folder(child):
            continue
        number = plane_number(child.name)
        if number is None:
            continue
        if number in numbered:
            raise SourceError(f"{folder}: {numbered[number].name} and {child.name} are both plane {number}")
        numbered[number] = child
    return [numbered[n] for n in sorted(numbered)]


def inspect_suite2p(targets: list[Path], *, shape: list[int] | None = None) -> SourceInfo:
    """``targets``: one ``.bin``, one plane folder, one folder of plane folders, or plane folders."""
    if len(targets) == 1 and targets[0].is_file():
        return _inspect_bin(targets[0], shape)
    if len(targets) == 1 and not is_plane_folder(targets[0]):
        folders = plane_folders(targets[0])
        if not folders:
            raise SourceError(f"{targets[0]}: no suite2p plane folders (ops.npy in a planeNN / zplaneNN folder)")
    elif len(targets) == 1:
        folders = targets
    else:
        folders = sorted(targets, key=lambda p: (plane_number(p.name) is None, plane_number(p.name) or 0, p.name))
    files, shapes, grid, first_ops = [], [], [], None
    for folder in folders:
        ops = _ops(folder)
        first_ops = first_ops or ops
        height, width = int(ops["Ly"]), int(ops["Lx"])
        row = []
        for binary in _binaries(folder, ops):
            n = _frames(binary, height, width)
            if ops.get("nframes") not in (None, n):
                log.warning("%s: ops.npy says nframes=%s, the binary holds %d frames (used)", binary, ops["nframes"], n)
            row.append([len(files)])
            files.append(str(binary.resolve()))
            shapes.append((n, height, width))
        if grid and len(row) != len(grid[0]):
            raise SourceError(f"{folder}: {len(row)} colour binaries, but {folders[0]} has {len(grid[0])}")
        grid.append(row)
    return array_source("suite2p", files, ["TYX"] * len(files), shapes, DTYPE, grid=grid, scales=_scales(first_ops))


def _inspect_bin(path: Path, shape: list[int] | None) -> SourceInfo:
    ops = _ops(path.parent) if (path.parent / OPS).is_file() else None
    if shape:
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise SourceError(f"input_options.shape: {shape!r} must be [Ly, Lx] or [T, Ly, Lx] for {path}")
        height, width = shape[-2:]
    elif ops is not None:
        height, width = int(ops["Ly"]), int(ops["Lx"])
    else:
        raise SourceError(f"{path}: a bare .bin needs input_options.shape ([Ly, Lx] or [T, Ly, Lx]; no ops.npy next to it)")
    n = _frames(path, height, width)
    if shape and len(shape) == 3 and shape[0] != n:
        raise SourceError(
            f"input_options.shape: {shape!r} says {shape[0]} frames, but {path} holds {n} {height}x{width} int16 frames"
        )
    scales = _scales(ops) if ops is not None else None
    return array_source("suite2p", [str(path.resolve())], ["TYX"], [(n, height, width)], DTYPE, scales=scales)


def inspect(paths: list[Path], options: dict) -> SourceInfo:
    return inspect_suite2p(paths, shape=options.get("shape"))


def open_array(info: SourceInfo, i: int):
    path, shape = info.files[i], tuple(info.options["shapes"][i])
    if os.path.getsize(path) != int(np.prod(shape)) * DTYPE.itemsize:
        raise SourceError(f"{path}: its size changed since the run was planned (start the run again)")
    return np.memmap(path, dtype=DTYPE, mode="r", shape=shape), None
