"""Scan-phase and axial corrections as records computed once, then used by plane jobs.

Scan phase: one offset per plane (and per ROI in ``separate`` mode), estimated from a
fixed window — up to ``window_frames`` frames evenly spaced over the *whole* recording —
so it never depends on ``target_chunk_mb``, the format, or which frames and planes are
exported. Only ROI rows enter the estimate (never fly-to lines), with page-row parity.
With ``phasecorr_method: frame`` each written frame gets its own offset.

Estimates within ``SNAP_PX`` of a whole number are applied as that whole number: a
whole-pixel shift moves columns without resampling, and the estimator is not more
precise than that. An estimate of 0 leaves the pixels bit-identical.

Axial: the time-mean of every plane (after scan-phase correction, of the same view —
stitched or one ROI) is registered plane to plane; the shifts are recorded, never
applied to the pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import axial, geometry, phase
from .backend import array_module
from .selection import from_runs, to_runs
from .sources import open_plane_reader
from .sources.info import SourceInfo

SNAP_PX = 0.1
CORRECTION_BATCH = 16
PHASE_KEYS = ("phasecorr_method", "use_fft", "border", "max_offset", "window_frames")


def applied_offset(offset: float, use_fft: bool) -> float:
    nearest = round(offset)
    if not use_fft or abs(offset - nearest) < SNAP_PX:
        return float(nearest)
    return float(offset)


def _strips(info: SourceInfo, roi: int | None) -> list[geometry.RoiStrip]:
    layout = info.layout
    return list(layout.strips) if roi is None else [layout.strips[roi]]


def _window_image(
    reader, frames: np.ndarray, color: int, plane: int, method: str, chunk: int, prepare: Callable | None = None
) -> np.ndarray:
    """The window reduced to one page image, read ``chunk`` frames at a time; ``prepare(pages,
    frames)``, if given, transforms each chunk of pages read before it is reduced."""

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            pages = reader.read(part, [color], plane)
            yield (pages if prepare is None else prepare(pages, part))[:, 0]

    return phase.reduce_window(chunks(), method)


def estimate_scan_phase(
    info: SourceInfo,
    offsets: list[np.ndarray],
    *,
    plane: int,
    roi: int | None,
    color: int,
    frames_runs: list[list[int]],
    options: dict[str, Any],
    chunk: int = 16,
) -> dict[str, Any]:
    """The scan-phase record of one plane (one ROI, or all ROIs of the stitched view)."""
    method = options["phasecorr_method"]
    params = {key: options[key] for key in PHASE_KEYS}
    strips = _strips(info, roi)
    kwargs = {"use_fft": options["use_fft"], "border": options["border"], "max_offset": options["max_offset"]}
    record: dict[str, Any] = {"plane": plane + 1, "roi": None if roi is None else roi + 1, "params": params}
    with open_plane_reader(info, offsets) as reader:
        if method == "frame":
            frames = from_runs(frames_runs)
            per_frame = []
            for start in range(0, len(frames), chunk):
                pages = reader.read(frames[start : start + chunk], [color], plane)[:, 0]
                per_frame.extend(phase.frame_offsets(pages, strips=_row_strips(strips), **kwargs).tolist())
            record.update(
                {
                    "frames": frames_runs,
                    "offsets": per_frame,
                    "applied": [applied_offset(o, options["use_fft"]) for o in per_frame],
                }
            )
            return record
        window = axial.mean_frame_indices(info.n_frames, int(options["window_frames"]))
        image = _window_image(reader, window, color, plane, method, chunk)
    offset = phase.estimate_offset([(image[s.rows], s.y0) for s in strips], **kwargs)
    record.update({"window": to_runs(window), "offset": offset, "applied": applied_offset(offset, options["use_fft"])})
    return record


def _row_strips(strips: list[geometry.RoiStrip]) -> list[tuple[slice, int]]:
    """``(rows, first page row)`` of each strip, as :func:`phase.frame_offsets` takes them."""
    return [(s.rows, s.y0) for s in strips]


def phase_corrector(record: dict[str, Any] | None, info: SourceInfo, roi: int | None, frames: np.ndarray) -> Callable | None:
    """``correct(pages, start, plane)`` for the export loop, or None when nothing to do."""
    if record is None:
        return None
    use_fft = record["params"]["use_fft"]
    strips = _strips(info, roi)
    if "offsets" in record:
        # frames outside the record (the axial window) are estimated from their own page
        by_frame = dict(zip(from_runs(record["frames"]).tolist(), record["applied"]))
        per_frame = np.array([by_frame.get(int(t), np.nan) for t in frames])
        params = record["params"]
        kwargs = {"use_fft": use_fft, "border": params["border"], "max_offset": params["max_offset"]}
    else:
        if record["applied"] == 0:
            return None
        per_frame = np.full(len(frames), record["applied"])

    def offset_of(pages: np.ndarray, i: int, start: int) -> float:
        offset = float(per_frame[start + i])
        if np.isnan(offset):
            estimate = phase.frame_offsets(pages[i : i + 1, 0], strips=_row_strips(strips), **kwargs)[0]
            offset = applied_offset(float(estimate), use_fft)
        return offset

    def correct(pages: np.ndarray, start: int, plane: int) -> np.ndarray:
        offsets = [offset_of(pages, i, start) for i in range(len(pages))]
        # frames sharing an offset are corrected together, in place, a few at a time: one
        # matrix product per batch instead of per frame, while the batch stays cache-sized
        i = 0
        while i < len(pages):
            j = i + 1
            while j < len(pages) and j - i < CORRECTION_BATCH and offsets[j] == offsets[i]:
                j += 1
            if offsets[i] != 0:
                for strip in strips:
                    phase.shift_odd_rows(pages[i:j, ..., strip.rows, :], offsets[i], first_row=strip.y0, use_fft=use_fft)
            i = j
        return pages

    return correct


def compute_axial_shifts(
    info: SourceInfo,
    offsets: list[np.ndarray],
    *,
    roi: int | None,
    color: int,
    phase_records: list[dict[str, Any] | None],
    options: dict[str, Any],
    threads: int = 1,
) -> dict[str, Any]:
    """Shifts of every source plane of one view (stitched, or one ROI), plane 0 = (0, 0).

    The time-means of the planes are taken ``threads`` planes at a time (reads and numpy
    reductions release the GIL).
    """
    indices = axial.mean_frame_indices(info.n_frames, int(options["max_frames"]))
    chunk = int(options["chunk_frames"])

    def mean_of(plane: int) -> np.ndarray:
        return corrected_plane_mean(info, offsets, plane, roi, color, phase_records[plane], indices, chunk)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        mean = np.stack(list(pool.map(mean_of, range(info.n_planes)))).astype(np.float32)
    xp, backend = array_module(options.get("gpu", "auto"))
    result = axial.plane_shifts(mean, max_reg_xy=int(options["max_reg_xy"]), xp=xp)
    return {
        "roi": None if roi is None else roi + 1,
        "shifts": np.asarray(result.shifts).tolist(),
        "steps": np.asarray(result.steps).tolist(),
        "at_search_limit": [z + 1 for z in result.at_search_limit],
        "params": {
            "max_frames": int(options["max_frames"]),
            "chunk_frames": chunk,
            "max_reg_xy": int(options["max_reg_xy"]),
            "sigma": result.params["sigma"],
            "smooth_sigma": result.params["smooth_sigma"],
            "backend": backend,
            "frames_used": to_runs(indices),
        },
    }


def corrected_plane_mean(
    info: SourceInfo,
    offsets: list[np.ndarray],
    plane: int,
    roi: int | None,
    color: int,
    phase_record: dict[str, Any] | None,
    indices: np.ndarray,
    chunk: int,
) -> np.ndarray:
    """The scan-phase corrected mean of frames ``indices`` of one plane, as the view's image
    (float64), read ``chunk`` frames at a time.

    With one offset for the plane the raw frames are averaged and the mean is shifted once:
    the shift is linear, so this is the mean of the shifted frames without their rounding
    to integers (< 0.5 DN apart), at 1/len(indices) of the cost. Per-frame offsets
    (``phasecorr_method: frame``) shift every frame before it is added.
    """
    correct = phase_corrector(phase_record, info, roi, np.arange(info.n_frames))
    per_frame = correct is not None and "offsets" in phase_record
    each_frame = (lambda pages, frames: _correct_at(correct, pages, frames, plane)) if per_frame else None
    with open_plane_reader(info, offsets) as reader:
        mean = _window_image(reader, indices, color, plane, "mean", chunk, each_frame)
    if correct is not None and not per_frame:
        mean = correct(mean[None, None], 0, plane)[0, 0]
    # the stitched canvas is zero below shorter ROIs; that static block would pull every
    # estimate towards (0, 0), so only the rows all ROIs fill are registered
    rows = slice(0, min(s.height for s in _strips(info, roi)))
    return geometry.extract(mean, info.layout, roi)[rows]


def _correct_at(correct: Callable, pages: np.ndarray, indices: np.ndarray, plane: int) -> np.ndarray:
    """``pages`` of frames ``indices`` (positions in the whole recording) corrected one by
    one: the corrector takes runs of consecutive frames."""
    out = pages.copy()
    for i, t in enumerate(indices):
        out[i : i + 1] = correct(out[i : i + 1], int(t), plane)
    return out


def shift_metadata(axial_record: dict[str, Any], planes: np.ndarray) -> dict[str, Any]:
    """``plane_shifts`` for the written planes, in written order, first written plane at (0, 0)."""
    return {
        "plane_shifts": axial.subset_shifts(axial_record["shifts"], [int(p) for p in planes]),
        "plane_shifts_params": {**axial_record["params"], "at_search_limit": axial_record["at_search_limit"]},
    }
