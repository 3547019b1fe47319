"""Assemble per-plane ImageJ TIFFs into one volumetric ImageJ BigTIFF hyperstack.

The plane TIFFs are read a T-chunk at a time (memory-mapped where possible) and their
pages streamed to tifffile in ImageJ order T, Z, C, so memory stays at one T-chunk of
the whole volume however long the recording is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from imexport.atomic import commit_path, remove_path, temporary_sibling
from imexport.sinks.imagej import imagej_metadata
from imexport.sinks.tiff import use_bigtiff

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
        raise ValueError(f"{path}: expected an ImageJ hyperstack with axes TYX or TCYX, found {axes}")
    sizes = dict(zip(axes, shape))
    return tuple(int(sizes.get(a, 1)) for a in PLANE_AXES)


def assemble_volume_tiff(
    out_path: Path,
    plane_tiffs: Sequence[Path],
    *,
    metadata: dict[str, Any],
    target_chunk_mb: float = 100,
    bigtiff: bool | str = "auto",
) -> Path:
    """Write the planes (in written Z order) as one ImageJ hyperstack ``out_path``
    (BigTIFF as config ``tiff.bigtiff`` says: see :func:`imexport.sinks.tiff.use_bigtiff`).

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
        _write_volume(out_path, planes, metadata, target_chunk_mb, bigtiff)
    return out_path


def _check_planes(planes: list[PlaneTiff]) -> None:
    first = planes[0]
    for plane in planes[1:]:
        if plane.shape != first.shape or plane.dtype != first.dtype:
            raise ValueError(
                f"{plane.path}: (T, C, Y, X) {plane.shape} {plane.dtype} does not match {first.path}: {first.shape} {first.dtype}"
            )


def _write_volume(
    out_path: Path,
    planes: list[PlaneTiff],
    metadata: dict[str, Any],
    target_chunk_mb: float,
    bigtiff_option: bool | str,
) -> None:
    n_frames, n_channels, y, x = planes[0].shape
    n_planes = len(planes)
    shape = (n_frames, n_planes, n_channels, y, x) if n_channels > 1 else (n_frames, n_planes, y, x)
    header, resolution = imagej_metadata(metadata, "TZCYX" if n_channels > 1 else "TZYX")
    frame_bytes = n_planes * n_channels * y * x * planes[0].dtype.itemsize
    chunk_t = int(min(n_frames, max(1, math.floor(target_chunk_mb * 2**20 / frame_bytes))))
    n_pages = n_frames * n_planes * n_channels
    bigtiff = use_bigtiff(bigtiff_option, n_frames * frame_bytes, n_pages, len(header["Info"]))
    temporary = temporary_sibling(out_path)
    try:
        with warnings.catch_warnings():
            # ImageJ itself reads only classic TIFF; BigTIFF is written only past 4 GiB or
            # when asked for (Fiji / Bio-Formats and tifffile read it): the notice is expected
            warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
            tifffile.imwrite(
                temporary,
                _pages(planes, chunk_t),
                shape=shape,
                dtype=planes[0].dtype,
                imagej=True,
                bigtiff=bigtiff,
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
