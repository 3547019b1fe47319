"""Sources that are plain arrays on disk: generic TIFF, Suite2p binaries, Zarr, HDF5, NumPy.

Every such source is described by a ``SourceInfo`` whose geometry is one ROI strip
covering the whole frame (``roi_heights=[Y]``, no fly-to lines), so the plan, the
stitching and the sinks treat it exactly like a raw recording. What the reader needs
goes into ``SourceInfo.options``:

* ``axes``: per file, the letters (a subset of ``TCZYX``) naming its array's dimensions,
  in the order they are stored;
* ``shapes``: per file, the array's shape when the run was planned (checked on opening:
  a file that changed stops the job instead of writing wrong pixels);
* ``grid``: file indices as ``grid[z][c] = [files along T]``. One cell means the files
  are one array split along T; several Z (or C) cells mean one file (series) per plane
  (or colour), whose arrays then have no Z (or C) dimension of their own;
* ``n_frames`` and whatever the format's ``open_array`` needs (``dataset``, ...).

``GridReader`` serves ``read(frames, colors, plane) -> (n, C, Y, X)`` from that grid,
reading runs of consecutive frames with basic slicing only, so the same code serves numpy
memory maps, h5py datasets, zarr arrays and tifffile's zarr view of compressed TIFFs,
and memory stays at the block ``read`` returns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .info import SourceError, SourceInfo

log = logging.getLogger(__name__)

CANONICAL = "TCZYX"
PHYSICAL_KEYS = ("fs", "dx", "dy", "dz")
# tifffile's names for dimensions it cannot identify: unnamed, image sequence, samples
UNNAMED_AXES = set("QIS")
_GUESS = {2: "YX", 3: "TYX", 4: "TZYX", 5: "TCZYX"}

# (array, close) for file ``i`` of a source; ``close`` may be None
Opener = Callable[[SourceInfo, int], tuple[Any, Callable[[], None] | None]]


# --------------------------------------------------------------------------- axes


def check_dim_order(value: Any, shape: tuple[int, ...], where: str) -> str:
    """``input_options.dim_order`` validated against an array of ``shape``."""
    order = str(value).upper()
    if not order or set(order) - set(CANONICAL) or len(set(order)) != len(order) or "Y" not in order or "X" not in order:
        raise SourceError(
            f"input_options.dim_order: {value!r} is not valid; give the letters of the stored dimensions "
            f"in order, each once, from T, C, Z, Y, X and including Y and X (e.g. TYX, TZYX, TCZYX)"
        )
    if len(order) != len(shape):
        raise SourceError(
            f"input_options.dim_order: {value!r} names {len(order)} dimensions, but {where} has "
            f"{len(shape)}: shape {tuple(shape)}"
        )
    return order


def resolve_axes(native: str | None, shape: tuple[int, ...], dim_order: str | None, where: str) -> str:
    """Axis letters of an array: ``dim_order`` if given, else the file's own names, else by rank.

    The rank guess (2 YX, 3 TYX, 4 TZYX, 5 TCZYX) is the reference's; it also covers
    files whose leading dimensions are unnamed. A 4-D guess is ambiguous (two colours
    or two planes?), so it is logged.
    """
    if dim_order:
        return check_dim_order(dim_order, shape, where)
    native = (native or "").upper()
    if native and len(native) == len(shape) and len(set(native)) == len(native) and {"Y", "X"} <= set(native) <= set(CANONICAL):
        return native
    if native and not (native.endswith("YX") and set(native[:-2]) <= UNNAMED_AXES):
        raise SourceError(
            f"{where}: dimensions {native!r} (shape {tuple(shape)}) cannot be mapped to T, C, Z, Y, X; "
            f"set input_options.dim_order"
        )
    if len(shape) not in _GUESS:
        raise SourceError(f"{where}: {len(shape)}-D array (shape {tuple(shape)}) needs input_options.dim_order")
    if len(shape) == 4:
        log.warning("%s: 4-D array without dimension names read as TZYX (set input_options.dim_order, e.g. TCYX)", where)
    return _GUESS[len(shape)]


# --------------------------------------------------------------------------- metadata


def physical(metadata: dict[str, Any] | None) -> dict[str, float | None]:
    """fs, dx, dy, dz from a metadata mapping: positive finite numbers, else None."""
    metadata = metadata if isinstance(metadata, dict) else {}
    out: dict[str, float | None] = {}
    for key in PHYSICAL_KEYS:
        value = metadata.get(key)
        try:
            value = None if value is None or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            value = None
        out[key] = value if value is not None and math.isfinite(value) and value > 0 else None
    return out


# --------------------------------------------------------------------------- describe


def array_source(
    kind: str,
    files: list[str],
    axes: list[str],
    shapes: list[tuple[int, ...]],
    dtype: Any,
    *,
    grid: list[list[list[int]]] | None = None,
    scales: dict[str, float | None] | None = None,
    options: dict[str, Any] | None = None,
) -> SourceInfo:
    """The ``SourceInfo`` of arrays laid out as ``grid`` (default: all files along T).

    Checks that every file agrees with the first in everything but T, and that every
    cell of the grid holds the same number of frames; errors name the file.
    """
    grid = grid or [[list(range(len(files)))]]
    sizes = [dict(zip(a, s)) for a, s in zip(axes, shapes)]
    n_z_cells, n_c_cells = len(grid), len(grid[0])
    for i, size in enumerate(sizes):
        for letter, cells in (("Z", n_z_cells), ("C", n_c_cells)):
            if cells > 1 and size.get(letter, 1) != 1:
                raise SourceError(
                    f"{files[i]}: holds {size[letter]} {letter} positions, but is one of {cells} files along {letter}"
                )
    first = sizes[grid[0][0][0]]
    common = {a: first.get(a, 1) for a in "CZYX"}
    for i, size in enumerate(sizes):
        other = {a: size.get(a, 1) for a in "CZYX"}
        if other != common:
            raise SourceError(
                f"{files[i]}: (C, Z, Y, X) = {tuple(other.values())}, but {files[grid[0][0][0]]} has "
                f"{tuple(common.values())}: not one recording"
            )
    frames_per_file = [int(size.get("T", 1)) for size in sizes]
    cell_frames = {(z, c): sum(frames_per_file[i] for i in cell) for z, row in enumerate(grid) for c, cell in enumerate(row)}
    n_frames = cell_frames[0, 0]
    for (z, c), n in cell_frames.items():
        if n != n_frames:
            raise SourceError(
                f"{files[grid[z][c][0]]}: {n} frames, but {files[grid[0][0][0]]} has {n_frames} "
                f"(every plane and colour needs the same number of frames)"
            )
    if n_frames == 0:
        raise SourceError(f"{files[0]}: holds no frames")
    n_colors = n_c_cells if n_c_cells > 1 else common["C"]
    n_planes = n_z_cells if n_z_cells > 1 else common["Z"]
    height, width = common["Y"], common["X"]
    scales = scales or {}
    dtype = np.dtype(dtype)
    return SourceInfo(
        files=list(files),
        pages_per_file=[int(np.prod([size.get(a, 1) for a in "TCZ"])) for size in sizes],
        frames_per_file=frames_per_file,
        page_height=height,
        page_width=width,
        dtype=dtype.newbyteorder("=").str,  # readers return native byte order
        n_saved=n_colors * n_planes,
        n_colors=n_colors,
        n_planes=n_planes,
        stack_type="volume" if n_planes > 1 else "single_plane",
        roi_heights=[height],
        fly_to_lines=0,
        fs=scales.get("fs"),
        dx=scales.get("dx"),
        dy=scales.get("dy"),
        dz=scales.get("dz"),
        rois=[{"index": 1, "name": "full frame", "pixels_xy": [width, height]}],
        kind=kind,
        options={
            **(options or {}),
            "axes": list(axes),
            "shapes": [[int(n) for n in s] for s in shapes],
            "grid": grid,
            "n_frames": n_frames,
        },
    )


# --------------------------------------------------------------------------- read


class GridReader:
    """``read(frames, colors, plane) -> (n, C, Y, X)`` over the files of an array source."""

    def __init__(self, info: SourceInfo, opener: Opener) -> None:
        self.info = info
        self.opener = opener
        self.dtype = np.dtype(info.dtype)
        self.grid = info.options["grid"]
        self.axes = info.options["axes"]
        self._arrays: dict[int, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def _array(self, i: int) -> Any:
        if i not in self._arrays:
            array, close = self.opener(self.info, i)
            if close is not None:
                self._closers.append(close)
            planned = tuple(self.info.options["shapes"][i])
            if tuple(array.shape) != planned or np.dtype(array.dtype).newbyteorder("=") != self.dtype:
                raise SourceError(
                    f"{self.info.files[i]}: holds {tuple(array.shape)} {np.dtype(array.dtype)}, but "
                    f"{planned} {self.dtype} when the run was planned (the file changed; start the run again)"
                )
            self._arrays[i] = array
        return self._arrays[i]

    def verify(self) -> None:
        """Open every file: each must still hold what the plan was built from."""
        for i in range(len(self.info.files)):
            self._array(i)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()
        self._arrays.clear()

    def __enter__(self) -> GridReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, frames: np.ndarray, colors: list[int], plane: int) -> np.ndarray:
        info = self.info
        if not 0 <= plane < info.n_planes:
            raise IndexError(f"plane {plane} outside 0..{info.n_planes - 1}")
        frames = np.asarray(frames, dtype=np.int64)
        if len(frames) and (frames.min() < 0 or frames.max() >= info.n_frames):
            raise IndexError(f"frames outside 0..{info.n_frames - 1}")
        out = np.empty((len(frames), len(colors), info.page_height, info.page_width), self.dtype)
        z_cell, z = (plane, 0) if len(self.grid) > 1 else (0, plane)
        for j, color in enumerate(colors):
            c_cell, c = (color, 0) if len(self.grid[z_cell]) > 1 else (0, color)
            files = self.grid[z_cell][c_cell]
            starts = np.cumsum([0] + [info.frames_per_file[i] for i in files])
            for position, first, count in _runs(frames):
                # a run may cross from one file of the series into the next
                done = 0
                while done < count:
                    t = first + done
                    k = int(np.searchsorted(starts, t, side="right") - 1)
                    take = min(count - done, int(starts[k + 1]) - t)
                    local = t - int(starts[k])
                    block = self._block(files[k], local, local + take, c, z)
                    out[position + done : position + done + take, j] = block
                    done += take
        return out

    def _block(self, i: int, start: int, stop: int, c: int, z: int) -> np.ndarray:
        """Frames ``start:stop`` of colour ``c``, plane ``z`` of file ``i`` as ``(n, Y, X)``."""
        axes = self.axes[i]
        position = {"T": slice(start, stop), "C": c, "Z": z, "Y": slice(None), "X": slice(None)}
        block = np.asarray(self._array(i)[tuple(position[a] for a in axes)])
        kept = [a for a in axes if a in "TYX"]
        block = block.transpose([kept.index(a) for a in "TYX" if a in kept])
        return block if "T" in kept else block[None]


def _runs(frames: np.ndarray) -> list[tuple[int, int, int]]:
    """``(position in frames, first frame, length)`` of each run of consecutive frames."""
    if len(frames) == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    bounds = np.concatenate([[0], breaks, [len(frames)]])
    return [(int(a), int(frames[a]), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
