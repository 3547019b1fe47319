"""The contract every output writer follows, and the atomic-commit helper they share.

A plane job streams one plane (one ROI, or the stitched field of view) as chunks of
shape ``(n_frames, n_channels, Y, X)`` into a sink. The sink writes under a hidden
temporary name next to the final path and renames it into place only in ``commit``, so
a killed job never leaves an output that looks complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

TEMP_MARKER = ".imexport-tmp"


@dataclass
class PlaneTarget:
    """Everything a sink needs to know about the plane it writes."""

    path: Path  # final output path (a file, or a folder for Suite2p plane folders)
    plane: int  # 0-based index of the plane in the source
    z_index: int  # 0-based position of this plane in the written Z order
    n_planes_out: int  # planes in the whole export (for volumetric containers)
    n_frames: int  # frames this job writes
    n_channels: int  # colour channels written
    frame_shape: tuple[int, int]  # (Y, X) of one written frame
    dtype: np.dtype
    metadata: dict[str, Any]  # JSON-serialisable export metadata for this plane
    options: dict[str, Any] = field(default_factory=dict)  # the format's config block


class PlaneSink(Protocol):
    def write(self, chunk: np.ndarray) -> None:
        """Append frames; ``chunk`` is ``(n, n_channels, Y, X)`` in time order."""

    def commit(self) -> None:
        """Finish the file and move it into place atomically."""

    def abort(self) -> None:
        """Remove everything written so far; the final path is untouched."""


def temporary_sibling(path: Path) -> Path:
    """A hidden name in the same folder (same filesystem, so ``os.replace`` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}-{os.getpid()}")


def remove_path(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit_path(temporary: Path, final: Path) -> None:
    """Replace ``final`` by ``temporary``; a folder target is swapped as a whole."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir() and not final.is_symlink():
        # os.replace cannot overwrite a non-empty folder: move the old one aside first
        old = temporary_sibling(final).with_name(temporary_sibling(final).name + "-old")
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old)
    else:
        os.replace(temporary, final)


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file through ``write(binary_handle)`` under a temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        with open(temporary, "wb") as fh:
            write(fh)
        commit_path(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, lambda fh: fh.write(json.dumps(value, indent=1).encode()))


def known_positive(value: Any) -> float | None:
    """A physical scale (fs, dx, dy, dz) if known: a finite positive number, else None."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None
