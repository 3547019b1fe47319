"""Assemble per-plane ImageJ TIFFs into one volumetric ImageJ BigTIFF hyperstack.

The plane TIFFs are read a T-chunk at a time (memory-mapped where possible) and their
pages streamed to tifffile in ImageJ order T, Z, C, so memory stays at one T-chunk of
the whole volume however long the recording is.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from imexport.atomic import commit_path, remove_path, temporary_sibling
from imexport.sinks.scales import known_positive

PLANE_AXES = "TCYX"


class PlaneTiff:
    """One per-plane ImageJ hyperstack seen as ``(T, C, Y, X)`` whatever axes it stored."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tiff = tifffile.TiffFile(self.path)
        series = self._tiff.series[0]
        self.shape = _normalised_shape(self.path, series.axes, series.shape)
        self.dtype = np.dtype(series.dtype)
        self._memmap = self._try_memmap()
        if self._memmap is not None:
            self._tiff.close()

    def _try_memmap(self) -> np.ndarray | None:
        try:
            return tifffile.memmap(self.path, mode="r").reshape(self.shape)
        except ValueError:  # compressed or otherwise non-contiguous: read pages instead
            return None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as an in-memory ``(n, C, Y, X)`` array."""
        if self._memmap is not None:
            return np.array(self._memmap[start:stop])
        n_channels = self.shape[1]
        pages = self._tiff.asarray(key=range(start * n_channels, stop * n_channels))
        return pages.reshape(stop - start, *self.shape[1:])

    def close(self) -> None:
        self._memmap = None
        self._tiff.close()


def _normalised_shape(path: Path, axes: str, shape: Sequence[int]) -> tuple[int, ...]:
    # tifffile drops length-1 axes of ImageJ files (one frame, one channel): put them back
    if axes not in {"YX", "CYX", "TYX", "TCYX"}:
        raise ValueError(
            f"{path}: expected an ImageJ hyperstack with axes TYX or TCYX, found {axes}"
        )
    sizes = dict(zip(axes, shape))
    return tuple(int(sizes.get(a, 1)) for a in PLANE_AXES)


def assemble_volume_tiff(
    out_path: Path,
    plane_tiffs: Sequence[Path],
    *,
    metadata: dict[str, Any],
    target_chunk_mb: float = 100,
) -> Path:
    """Write the planes (in written Z order) as one ImageJ BigTIFF hyperstack ``out_path``.

    Pages are ordered T, Z, C (page ``t*Z*C + z*C + c``); axes are TZCYX, or TZYX for one
    channel. ``metadata`` goes as JSON into the ImageJ ``Info`` property; dz, fs, dx and dy
    (when known) set spacing, finterval and the resolution tags.
    """
    if not plane_tiffs:
        raise ValueError("assemble_volume_tiff needs at least one plane TIFF")
    if not target_chunk_mb > 0:
        raise ValueError(f"target_chunk_mb must be positive, got {target_chunk_mb!r}")
    out_path = Path(out_path)
    with ExitStack() as stack:
        planes = []
        for path in plane_tiffs:
            plane = PlaneTiff(path)
            stack.callback(plane.close)
            planes.append(plane)
        _check_planes(planes)
        _write_volume(out_path, planes, metadata, target_chunk_mb)
    return out_path


def _check_planes(planes: list[PlaneTiff]) -> None:
    first = planes[0]
    for plane in planes[1:]:
        if plane.shape != first.shape or plane.dtype != first.dtype:
            raise ValueError(
                f"{plane.path}: (T, C, Y, X) {plane.shape} {plane.dtype} does not match "
                f"{first.path}: {first.shape} {first.dtype}"
            )


def imagej_metadata(metadata: dict[str, Any], axes: str) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """The ImageJ header of every TIFF imexport writes (a plane, or the volume): axes,
    unit, the export metadata as JSON in ``Info``, the plane spacing (with a Z axis) and
    frame interval when known, and the XY resolution (pixels per µm) when known.

    The metadata is serialised first, so unserialisable metadata fails before any file is
    written, and ASCII-only, because tifffile stores ImageJ strings as 7-bit ASCII. The
    key order is the order of the header's lines.
    """
    header = {"axes": axes, "unit": "um", "Info": json.dumps(metadata, ensure_ascii=True)}
    dz, fs = known_positive(metadata.get("dz")), known_positive(metadata.get("fs"))
    dx, dy = known_positive(metadata.get("dx")), known_positive(metadata.get("dy"))
    if dz and "Z" in axes:
        header["spacing"] = dz
    if fs:
        header["finterval"] = 1.0 / fs
    return header, (1.0 / dx, 1.0 / dy) if dx and dy else None


def _write_volume(
    out_path: Path,
    planes: list[PlaneTiff],
    metadata: dict[str, Any],
    target_chunk_mb: float,
) -> None:
    n_frames, n_channels, y, x = planes[0].shape
    n_planes = len(planes)
    shape = (n_frames, n_planes, n_channels, y, x) if n_channels > 1 else (n_frames, n_planes, y, x)
    header, resolution = imagej_metadata(metadata, "TZCYX" if n_channels > 1 else "TZYX")
    frame_bytes = n_planes * n_channels * y * x * planes[0].dtype.itemsize
    chunk_t = int(min(n_frames, max(1, math.floor(target_chunk_mb * 2**20 / frame_bytes))))
    temporary = temporary_sibling(out_path)
    try:
        with warnings.catch_warnings():
            # ImageJ itself reads only classic TIFF; BigTIFF is what this format asks for
            # (Fiji / Bio-Formats and tifffile read it), so tifffile's notice is expected
            warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
            tifffile.imwrite(
                temporary,
                _pages(planes, chunk_t),
                shape=shape,
                dtype=planes[0].dtype,
                imagej=True,
                bigtiff=True,
                resolution=resolution,
                metadata=header,
            )
        commit_path(temporary, out_path)
    except BaseException:
        remove_path(temporary)
        raise


def _pages(planes: list[PlaneTiff], chunk_t: int) -> Iterator[np.ndarray]:
    n_frames, n_channels = planes[0].shape[:2]
    for start in range(0, n_frames, chunk_t):
        stop = min(n_frames, start + chunk_t)
        blocks = [plane.read(start, stop) for plane in planes]
        for t in range(stop - start):
            for block in blocks:
                for c in range(n_channels):
                    yield block[t, c]
