"""Known content of synthetic pages (see ``imexport.synthetic``), in closed form.

* ``content="scene"``: every plane shows the same field of Gaussian "cells" translated
  by ``plane_shifts[z]``, with per-cell activity over time; ROI ``r`` images columns
  ``[r*W, (r+1)*W)`` of that field. Odd page rows can be displaced by ``phase_offset``
  pixels to mimic bidirectional scan-phase error.
* ``content="index"``: every pixel of page ``p`` (logged frame ``t``, saved channel ``ch``)
  equals ``t * 64 + ch``, to prove the page mapping.

Fly-to rows between ROI strips always hold ``FLY_TO_VALUE``. The scene is computed in
integers (footprints in ``1 / _FOOTPRINT_SCALE`` units, activity rounded), so each
frame's pixels are exact whatever the batch of frames computed with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .synthetic import AcquisitionSpec

FLY_TO_VALUE = -1
_FOOTPRINT_SCALE = 1024  # cell footprints are stored in 1/1024 units


def _cells(spec: AcquisitionSpec):
    """Cell centres (in field coordinates), radii, amplitudes and activity phases."""
    rng = np.random.default_rng(spec.seed)
    field_h = max(spec.roi_heights)
    field_w = spec.width * spec.n_rois
    cy = rng.uniform(0, field_h, spec.n_cells)
    cx = rng.uniform(0, field_w, spec.n_cells)
    radius = rng.uniform(2.0, 4.0, spec.n_cells)
    amplitude = rng.uniform(400, 1500, spec.n_cells)
    frequency = rng.uniform(0.02, 0.2, spec.n_cells)
    phase = rng.uniform(0, 2 * np.pi, spec.n_cells)
    return cy, cx, radius, amplitude, frequency, phase


def cell_footprints(spec: AcquisitionSpec, z: int, r: int) -> np.ndarray:
    """Each cell's footprint in ROI ``r`` of plane ``z``: ``(n_cells, H_r, W)`` int64.

    Footprints are integers in units of ``1 / _FOOTPRINT_SCALE`` so the movie is an exact
    integer sum, the same however many frames are computed at once.
    """
    cy, cx, radius, *_ = _cells(spec)
    dy, dx = spec.plane_shifts[z]
    rows = np.arange(spec.roi_heights[r], dtype=np.float64)[:, None]
    cols = np.arange(spec.width, dtype=np.float64)[None, :] + r * spec.width
    out = np.empty((spec.n_cells, rows.shape[0], cols.shape[1]), np.int64)
    for k in range(spec.n_cells):
        d2 = (rows - cy[k] - dy) ** 2 + (cols - cx[k] - dx) ** 2
        out[k] = np.rint(np.exp(-d2 / (2 * radius[k] ** 2)) * _FOOTPRINT_SCALE)
    return out


def _texture(spec: AcquisitionSpec, c: int, z: int, r: int) -> np.ndarray:
    """Static neuropil-like texture of ROI ``r`` in plane ``z`` (integers), translated with the scene.

    Low-pass filtered noise on a field padded by the largest plane shift, sampled at
    integer offsets, so every plane sees exactly the same texture moved by its shift.
    """
    pad = 1 + max((max(abs(dy), abs(dx)) for dy, dx in spec.plane_shifts), default=0)
    height, width = max(spec.roi_heights) + 2 * pad, spec.width * spec.n_rois + 2 * pad
    rng = np.random.default_rng([spec.seed, 7])
    spectrum = np.fft.rfft2(rng.normal(size=(height, width)))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    field = np.fft.irfft2(spectrum * np.exp(-2 * (np.pi * 1.5) ** 2 * (fy**2 + fx**2)), s=(height, width))
    field *= spec.texture / field.std()
    dy, dx = spec.plane_shifts[z]
    y0, x0 = pad - dy, pad - dx + r * spec.width
    return np.rint(field[y0 : y0 + spec.roi_heights[r], x0 : x0 + spec.width] * (1.0 - 0.3 * c)).astype(np.int64)


def _activity(spec: AcquisitionSpec, frames: np.ndarray, c: int, z: int) -> np.ndarray:
    """Per-frame cell brightness ``(n_frames, n_cells)`` int64; planes and colours differ in gain."""
    _, _, _, amplitude, frequency, phase = _cells(spec)
    t = np.asarray(frames, dtype=np.float64)[:, None]
    gain = (1.0 - 0.04 * z) * (1.0 - 0.3 * c)
    return np.rint(amplitude * gain * (1.0 + 0.5 * np.sin(2 * np.pi * frequency * t + phase))).astype(np.int64)


def expected_roi(spec: AcquisitionSpec, frames, c: int, z: int, r: int, cell_images=None) -> np.ndarray:
    """Ground truth of ROI ``r`` for 0-based ``frames`` of colour ``c``, plane ``z``.

    These are the pixels the generator puts into the page before any scan-phase
    displacement: ``(len(frames), H_r, W)`` int16, each frame's values independent of
    which other frames are computed with it (integer sums, noise rounded once).
    ``cell_images`` may pass in a precomputed ``cell_footprints(spec, z, r)``.
    """
    frames = np.atleast_1d(np.asarray(frames, dtype=np.int64))
    if spec.content == "index":
        ch = c * spec.n_planes + z
        values = (frames * 64 + ch).astype(np.int16)
        return np.broadcast_to(values[:, None, None], (len(frames), spec.roi_heights[r], spec.width)).copy()
    images = cell_footprints(spec, z, r) if cell_images is None else cell_images
    # integer arithmetic up to the noise: exact whatever the batch of frames (a float32
    # sum rounds differently with the number of frames summed at once)
    weighted = np.tensordot(_activity(spec, frames, c, z), images, axes=(1, 0))
    movie = ((weighted + _FOOTPRINT_SCALE // 2) // _FOOTPRINT_SCALE + 300).astype(np.float64)
    if spec.texture:
        movie += _texture(spec, c, z, r)
    if spec.noise:
        for i, t in enumerate(frames):
            rng = np.random.default_rng([spec.seed, int(t), c, z, r])
            movie[i] += rng.normal(0.0, spec.noise, movie.shape[1:])
    return np.clip(np.rint(movie), -32768, 32767).astype(np.int16)


def _displace_odd_rows(page: np.ndarray, offset: float) -> np.ndarray:
    """Move odd page rows by ``offset`` px along X (linear interpolation, edge clamped)."""
    cols = np.arange(page.shape[1], dtype=np.float64)
    out = page.copy()
    for y in range(1, page.shape[0], 2):
        out[y] = np.rint(np.interp(cols - offset, cols, page[y].astype(np.float64)))
    return out


def page_image(spec: AcquisitionSpec, roi_frames: list[np.ndarray], i: int) -> np.ndarray:
    page = np.full((spec.page_height, spec.width), FLY_TO_VALUE, dtype=np.int16)
    for y0, movie in zip(spec.roi_row_starts(), roi_frames):
        page[y0 : y0 + movie.shape[1]] = movie[i]
    if spec.phase_offset and spec.content == "scene":
        page = _displace_odd_rows(page, spec.phase_offset)
    return page
