"""Generic (non-ScanImage) TIFF: ImageJ hyperstacks, plain stacks, series, per-plane files.

* One file: its first tifffile series, with tifffile's dimension names (ImageJ files say
  T, Z, C; a plain multi-page stack is read as T). ``input_options.dim_order`` overrides.
* Several files whose names carry at least two distinct plane numbers (``zplaneNN`` or
  ``planeNN``, as imexport and the reference write them): one plane per number, files
  with the same number joined along T in natural order. This reads imexport's own
  per-plane TIFF folder back as a volume.
* Other sets of files: one recording split along T, in natural order (a gap in a
  ``_00001`` numbering is an error, as for raw data).

Pixels come from a memory map where the pages are stored contiguously and uncompressed
(what imexport and ImageJ write), otherwise through tifffile's zarr view of the series,
which decodes only the pages asked for.

Physical scales: imexport's own ``Info`` JSON (fs, dx, dy, dz) first, then the ImageJ
fields (``finterval``, ``spacing``, the resolution tags when the unit is microns), then
tifffile's shaped-description JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..user_errors import held_warnings
from .arrays import array_source, physical, resolve_axes
from .info import SourceError, SourceInfo
from .scanimage import check_series, natural_key

log = logging.getLogger(__name__)

_PLANE_NUMBER = re.compile(r"plane(\d+)", re.IGNORECASE)
_MICRONS = {"um", "µm", "\\u00b5m", "micron", "microns", "micrometer", "micrometre"}


def plane_number(name: str) -> int | None:
    match = _PLANE_NUMBER.search(name)
    return int(match.group(1)) if match else None


@contextmanager
def _readable(path: Path, notes: list[str]) -> Iterator[None]:
    """Any failure of tifffile reading ``path``'s structure as one SourceError naming the file:
    tifffile reports damage with many exception types (a truncated header raises struct.error).
    The damage tifffile reads past, it only logs (naming a page, not the file): one note
    naming the file, in the plan's summary, instead."""
    try:
        with held_warnings("tifffile") as warned:
            yield
    except Exception as exc:  # noqa: BLE001 - whatever tifffile raised, the file is damaged
        raise SourceError(
            f"{path}: not a readable TIFF ({type(exc).__name__}: {exc}): damaged, cut short or not a TIFF file"
        ) from None
    if warned:
        note = f"{path}: damaged TIFF structure that tifffile read past ({'; '.join(warned)}); check its pixels or copy it again"
        if note not in notes:
            notes.append(note)


def _series(path: Path, notes: list[str]) -> tuple[str, tuple[int, ...], np.dtype]:
    with _readable(path, notes), tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        axes, shape, dtype = series.axes, tuple(series.shape), np.dtype(series.dtype)
        end = None if series.dataoffset is None else series.dataoffset + series.nbytes
    # tifffile takes a contiguous series' shape from its description and only warns when
    # the file ends early: the frames past the end would be read as missing, not refused
    if end is not None and end > path.stat().st_size:
        raise SourceError(
            f"{path}: cut short: its {shape} series needs bytes up to {end}, the file has {path.stat().st_size}; copy it again"
        )
    return axes, shape, dtype


def _scales(path: Path, notes: list[str]) -> dict[str, float | None]:
    with _readable(path, notes), tifffile.TiffFile(path) as tf:
        ij = tf.imagej_metadata or {}
        shaped = tf.shaped_metadata[0] if tf.shaped_metadata else {}
        page = tf.pages.first
        resolution = [page.tags[name].value for name in ("XResolution", "YResolution") if name in page.tags]
    try:
        own = json.loads(ij["Info"]) if isinstance(ij.get("Info"), str) else {}
    except json.JSONDecodeError:  # free-text Info written by another program
        own = {}
    from_imagej: dict[str, Any] = {}
    if ij.get("finterval"):
        from_imagej["fs"] = 1.0 / float(ij["finterval"])
    if ij.get("spacing"):
        from_imagej["dz"] = ij["spacing"]
    if str(ij.get("unit", "")).lower() in _MICRONS and len(resolution) == 2:
        # resolution tags hold pixels per unit as a (numerator, denominator) rational
        (xn, xd), (yn, yd) = resolution
        if xn and yn:
            from_imagej.update(dx=xd / xn, dy=yd / yn)
    layers = [physical(own), physical(from_imagej), physical(shaped if isinstance(shaped, dict) else {})]
    return {key: next((layer[key] for layer in layers if layer[key] is not None), None) for key in layers[0]}


def inspect_tiff(paths: list[Path], *, dim_order: str | None = None) -> SourceInfo:
    paths = sorted((Path(p) for p in paths), key=natural_key)
    numbers = [plane_number(p.name) for p in paths]
    grid = None
    if len(paths) > 1 and None not in numbers and len(set(numbers)) > 1:
        # one plane per number; within a plane, its files along T in natural order
        by_plane: dict[int, list[int]] = {}
        for i, number in enumerate(numbers):
            by_plane.setdefault(number, []).append(i)
        grid = [[by_plane[n]] for n in sorted(by_plane)]
    else:
        check_series(paths)
    axes, shapes, dtype, notes = [], [], None, []
    for path in paths:
        native, shape, file_dtype = _series(path, notes)
        if dtype is None:
            dtype = file_dtype
        elif file_dtype != dtype:
            raise SourceError(f"{path}: pixels are {file_dtype}, but {paths[0]} has {dtype}: not one recording")
        axes.append(resolve_axes(native, shape, dim_order, str(path)))
        shapes.append(shape)
    info = array_source("tiff", [str(p) for p in paths], axes, shapes, dtype, grid=grid, scales=_scales(paths[0], notes))
    info.notes.extend(notes)
    return info


def inspect(paths: list[Path], options: dict) -> SourceInfo:
    return inspect_tiff(paths, dim_order=options.get("dim_order"))


def open_array(info: SourceInfo, i: int):
    """The pixels of file ``i``; what tifffile warns of while opening it (planning noted
    the damage, naming the file) goes to imexport's log (a job's: its log file)."""
    path = info.files[i]
    with held_warnings("tifffile") as warned:
        opened = _open_array(path)
    if warned:
        log.info("%s: tifffile read past damage: %s", path, "; ".join(warned))
    return opened


def _open_array(path: str):
    try:
        return tifffile.memmap(path, series=0, mode="r"), None
    except ValueError:  # compressed or scattered pages
        import zarr  # here, not at the top: planning imports this module, and zarr costs 0.15 s

        tf = tifffile.TiffFile(path)
        store = tf.series[0].aszarr()

        def close() -> None:
            store.close()
            tf.close()

        return zarr.open(store, mode="r"), close
