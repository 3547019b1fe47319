"""NumPy ``.npy`` arrays, memory-mapped, with their dimensions from ``input_options.dim_order``.

Without ``dim_order`` the rank decides (2 YX, 3 TYX, 4 TZYX, 5 TCZYX), as in the
reference; a ``.npy`` carries no physical scales, so fs, dx, dy, dz are unknown unless
the config's ``metadata:`` gives them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .arrays import array_source, resolve_axes
from .info import SourceError, SourceInfo


def _load(path: str | Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SourceError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
        array.close()
        raise SourceError(f"{path}: an .npz archive, not one .npy array")
    return array


def inspect_npy(path: Path, *, dim_order: str | None = None) -> SourceInfo:
    array = _load(path)
    axes = resolve_axes(None, array.shape, dim_order, str(path))
    return array_source("npy", [str(Path(path).resolve())], [axes], [array.shape], array.dtype)


def inspect(paths: list[Path], options: dict) -> SourceInfo:
    return inspect_npy(paths[0], dim_order=options.get("dim_order"))


def open_array(info: SourceInfo, i: int):
    return _load(info.files[i]), None
