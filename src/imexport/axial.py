"""Axial (plane-to-plane) registration of a light-beads-microscopy (LBM) volume.

Each LBM plane is imaged by its own beam, and the beams are not perfectly co-aligned, so
every plane's field of view sits slightly off its neighbour's. Each plane of a temporal
mean is registered to the plane before it by phase correlation, and the per-pair steps
are chained into one shift per plane relative to plane 0.

Sign convention
---------------
``shifts[z] = (dy, dx)`` is the integer translation to *apply* to plane z (moving its
content by +dy rows and +dx columns, as ``np.roll`` does) so that it lines up with
plane 0; ``shifts[0]`` is ``(0, 0)``. If plane z shows plane z-1's content translated by
``(+dy, +dx)``, i.e. ``np.roll(prev, (dy, dx), axis=(0, 1))``, then
``shifts[z] - shifts[z-1] == (-dy, -dx)``.

All FFT work goes through ``xp`` (numpy or cupy, see :mod:`imexport.backend`) so the CPU
and GPU paths are the same code; results are always numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

# Keeps the unit-magnitude normalisation finite where a frequency carries no power.
_SPECTRUM_EPS = 1e-5


@dataclass
class AxialResult:
    """Per-plane shifts of one volume and how they were obtained."""

    shifts: np.ndarray  # (Z, 2) int [dy, dx] to apply to each plane to align it with plane 0
    steps: np.ndarray  # (Z, 2) int shift of plane z relative to plane z-1 (row 0 is zero)
    # planes whose step peaked on the edge of the search window: the true step may be
    # larger than max_reg_xy and aliased, so the caller should report them
    at_search_limit: list[int] = field(default_factory=list)
    backend: str = "numpy"
    params: dict[str, float] = field(default_factory=dict)


def mean_frame_indices(n_frames_total: int, max_frames: int) -> np.ndarray:
    """Evenly spaced 0-based frame indices, first and last included, without repeats."""
    if n_frames_total < 1 or max_frames < 1:
        raise ValueError("n_frames_total and max_frames must be at least 1")
    count = min(max_frames, n_frames_total)
    return np.unique(np.linspace(0, n_frames_total - 1, count).astype(int))


def plane_shifts(
    mean_volume: Any,
    *,
    max_reg_xy: int = 30,
    sigma: float = 1.45,
    smooth_sigma: float = 1.15,
    xp: ModuleType = np,
) -> AxialResult:
    """Register every plane of ``mean_volume`` ``(Z, Y, X)`` to the previous one.

    ``max_reg_xy`` bounds the step searched between neighbouring planes, ``sigma`` is the
    width of the edge taper and ``smooth_sigma`` the Gaussian smoothing of the
    correlation, both in pixels.
    """
    if sigma <= 0 or smooth_sigma <= 0 or max_reg_xy < 0:
        raise ValueError("sigma and smooth_sigma must be positive and max_reg_xy non-negative")
    volume = xp.asarray(mean_volume, dtype=xp.float64)
    if volume.ndim != 3:
        raise ValueError(f"mean_volume must be (Z, Y, X), got shape {volume.shape}")
    n_planes, ny, nx = volume.shape
    radius = (min(max_reg_xy, (ny - 1) // 2), min(max_reg_xy, (nx - 1) // 2))
    tapered = _taper_edges(volume, sigma, xp)
    smoothing = xp.fft.fft2(_wrapped_gaussian((ny, nx), smooth_sigma, xp))

    steps = np.zeros((n_planes, 2), dtype=np.int64)
    at_search_limit = []
    reference = _reference_spectrum(volume[0], smoothing, xp)
    for z in range(1, n_planes):
        cross = _unit_magnitude(xp.fft.fft2(tapered[z]), xp) * reference
        lag_y, lag_x = _correlation_peak(cross, radius, xp)
        steps[z] = (-lag_y, -lag_x)  # undo the displacement of plane z
        if abs(lag_y) == radius[0] or abs(lag_x) == radius[1]:
            at_search_limit.append(z)
        reference = _reference_spectrum(volume[z], smoothing, xp)

    return AxialResult(
        shifts=np.cumsum(steps, axis=0),
        steps=steps,
        at_search_limit=at_search_limit,
        backend=xp.__name__,
        params={"max_reg_xy": max_reg_xy, "sigma": sigma, "smooth_sigma": smooth_sigma},
    )


def subset_shifts(shifts: Any, planes: Sequence[int]) -> list[list[int]]:
    """Shifts of the listed 0-based planes, in that order, relative to the first listed."""
    rows = np.asarray(shifts, dtype=np.int64)[list(planes)]
    # rows[:1] broadcasts the first row and keeps an empty selection empty.
    return (rows - rows[:1]).tolist()


def canvas_padding(shifts: Any) -> tuple[int, int, int, int]:
    """Margins ``(top, bottom, left, right)`` that fit every plane after its shift."""
    shifts = np.asarray(shifts, dtype=np.int64)
    dy, dx = shifts[:, 0], shifts[:, 1]
    return (
        int(max(0, -dy.min())),
        int(max(0, dy.max())),
        int(max(0, -dx.min())),
        int(max(0, dx.max())),
    )


def apply_shifts_padded(planes_frames: np.ndarray, shifts: Any) -> np.ndarray:
    """Place each plane of ``(..., Z, Y, X)`` at its shift on a zero canvas large enough for all.

    Returns ``(..., Z, Y + top + bottom, X + left + right)`` with the margins of
    :func:`canvas_padding`.
    """
    planes_frames = np.asarray(planes_frames)
    shifts = np.asarray(shifts, dtype=np.int64)
    if planes_frames.ndim < 3 or shifts.shape != (planes_frames.shape[-3], 2):
        raise ValueError(f"need (..., Z, Y, X) frames and (Z, 2) shifts, got {planes_frames.shape} and {shifts.shape}")
    top, bottom, left, right = canvas_padding(shifts)
    ny, nx = planes_frames.shape[-2:]
    canvas = np.zeros(
        planes_frames.shape[:-2] + (ny + top + bottom, nx + left + right),
        dtype=planes_frames.dtype,
    )
    for z, (dy, dx) in enumerate(shifts):
        rows = slice(top + dy, top + dy + ny)
        cols = slice(left + dx, left + dx + nx)
        canvas[..., z, rows, cols] = planes_frames[..., z, :, :]
    return canvas


def _logistic_edge(n: int, sigma: float, xp: ModuleType) -> Any:
    """1 in the interior falling smoothly to 0 over the last few ``sigma`` at each end."""
    centre = (n - 1) / 2
    distance = xp.abs(xp.arange(n) - centre)
    return 1.0 / (1.0 + xp.exp((distance - (centre - 2 * sigma)) / sigma))


def _taper_edges(volume: Any, sigma: float, xp: ModuleType) -> Any:
    """Blend every plane's edges into the volume mean.

    The FFT treats each plane as periodic; without the taper the jump between opposite
    edges would correlate with itself at zero lag and pull the peak towards (0, 0).
    """
    _, ny, nx = volume.shape
    mask = xp.outer(_logistic_edge(ny, sigma, xp), _logistic_edge(nx, sigma, xp))
    return volume * mask + volume.mean() * (1 - mask)


def _wrapped_gaussian(shape: tuple[int, int], std: float, xp: ModuleType) -> Any:
    """Unit-sum Gaussian centred on pixel (0, 0), wrapping around the edges like the FFT."""
    ny, nx = shape
    dy = xp.fft.fftfreq(ny) * ny
    dx = xp.fft.fftfreq(nx) * nx
    gaussian = xp.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * std**2))
    return gaussian / gaussian.sum()


def _unit_magnitude(spectrum: Any, xp: ModuleType) -> Any:
    return spectrum / (xp.abs(spectrum) + _SPECTRUM_EPS)


def _reference_spectrum(plane: Any, smoothing: Any, xp: ModuleType) -> Any:
    """Conjugate, phase-only spectrum of a plane, smoothed so the peak is a blob not a spike."""
    return _unit_magnitude(xp.conj(xp.fft.fft2(plane)), xp) * smoothing


def _correlation_peak(cross: Any, radius: tuple[int, int], xp: ModuleType) -> tuple[int, int]:
    """Lag ``(ly, lx)`` of the correlation maximum within ``±radius`` of zero lag."""
    correlation = xp.real(xp.fft.ifft2(cross))
    ny, nx = correlation.shape
    ry, rx = radius
    rows = xp.arange(-ry, ry + 1) % ny
    cols = xp.arange(-rx, rx + 1) % nx
    window = correlation[rows[:, None], cols[None, :]]
    iy, ix = divmod(int(xp.argmax(window)), 2 * rx + 1)
    return iy - ry, ix - rx
