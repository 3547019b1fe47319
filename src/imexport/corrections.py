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

from collections.abc import Callable
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


def _exact_sum_dtype(dtype: np.dtype, n: int) -> type:
    """Accumulator for a sum over ``n`` pages: small integers add exactly (and twice as fast)
    in int32; the float64 total of such exact partial sums equals a float64 sum."""
    if dtype.kind in "iu" and dtype.itemsize <= 2 and n <= 2**15:
        return np.int32
    return np.float64


def _window_image(reader, frames: np.ndarray, color: int, plane: int, method: str, chunk: int) -> np.ndarray:
    """The window reduced to one page image, streamed ``chunk`` frames at a time.

    Only what ``method`` needs is accumulated (float64 sums straight from the raw
    integers, no float copy of the chunk): this runs for every plane of a view.
    """
    if method not in ("mean", "max", "std", "mean-sub"):
        raise ValueError(f"scan_phase.phasecorr_method: {method!r} is not one of mean, max, std, mean-sub, frame")
    total = total_sq = peak = first = None
    for start in range(0, len(frames), chunk):
        pages = reader.read(frames[start : start + chunk], [color], plane)[:, 0]
        if first is None:
            first = pages[0].astype(np.float64)
        if method == "max":
            peak = pages.max(0) if peak is None else np.maximum(peak, pages.max(0))
            continue
        part = pages.sum(0, dtype=_exact_sum_dtype(pages.dtype, len(pages))).astype(np.float64)
        total = part if total is None else total + part
        if method == "std":
            values = pages.astype(np.float64)
            part_sq = np.einsum("nij,nij->ij", values, values)
            total_sq = part_sq if total_sq is None else total_sq + part_sq
    if method == "max":
        return peak.astype(np.float64)
    mean = total / len(frames)
    if method == "mean":
        return mean
    if method == "std":
        return np.sqrt(np.maximum(total_sq / len(frames) - mean**2, 0.0))
    return first - mean


def estimate_scan_phase(
    info: SourceInfo, offsets: list[np.ndarray], *, plane: int, roi: int | None, color: int,
    frames_runs: list[list[int]], options: dict[str, Any], chunk: int = 16,
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
                for page in pages:
                    per_frame.append(phase.estimate_offset([(page[s.rows], s.y0) for s in strips], **kwargs))
            record.update({"frames": frames_runs, "offsets": per_frame,
                           "applied": [applied_offset(o, options["use_fft"]) for o in per_frame]})
            return record
        window = axial.mean_frame_indices(info.n_frames, int(options["window_frames"]))
        image = _window_image(reader, window, color, plane, method, chunk)
    offset = phase.estimate_offset([(image[s.rows], s.y0) for s in strips], **kwargs)
    record.update({"window": to_runs(window), "offset": offset, "applied": applied_offset(offset, options["use_fft"])})
    return record


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
            page = pages[i, 0]
            offset = applied_offset(phase.estimate_offset([(page[s.rows], s.y0) for s in strips], **kwargs), use_fft)
        return offset

    def correct(pages: np.ndarray, start: int, plane: int) -> np.ndarray:
        offsets = [offset_of(pages, i, start) for i in range(len(pages))]
        # frames sharing an offset are corrected together, a few at a time: one FFT call
        # per batch instead of per frame, while the batch stays cache-sized
        i = 0
        while i < len(pages):
            j = i + 1
            while j < len(pages) and j - i < CORRECTION_BATCH and offsets[j] == offsets[i]:
                j += 1
            if offsets[i] != 0:
                for strip in strips:
                    pages[i:j, ..., strip.rows, :] = phase.apply_offset(
                        pages[i:j, ..., strip.rows, :], offsets[i], first_row=strip.y0, use_fft=use_fft
                    )
            i = j
        return pages

    return correct


def compute_axial_shifts(
    info: SourceInfo, offsets: list[np.ndarray], *, roi: int | None, color: int,
    phase_records: list[dict[str, Any] | None], options: dict[str, Any],
) -> dict[str, Any]:
    """Shifts of every source plane of one view (stitched, or one ROI), plane 0 = (0, 0)."""
    every_frame = np.arange(info.n_frames)
    correctors = [phase_corrector(r, info, roi, every_frame) for r in phase_records]
    layout = info.layout
    # the stitched canvas is zero below shorter ROIs; that static block would pull every
    # estimate towards (0, 0), so only the rows all ROIs fill are registered
    rows = slice(0, min(s.height for s in _strips(info, roi)))

    def read_frames(indices: np.ndarray) -> np.ndarray:
        planes = []
        with open_plane_reader(info, offsets) as reader:
            for z in range(info.n_planes):
                pages = reader.read(indices, [color], z)
                if correctors[z] is not None:
                    # the corrector is indexed by position in the full recording
                    pages = _correct_at(correctors[z], pages, indices, z)
                planes.append(geometry.extract(pages[:, 0], layout, roi)[:, rows])
        return np.stack(planes, axis=1)

    mean = axial.temporal_mean(read_frames, info.n_frames, max_frames=int(options["max_frames"]),
                               chunk_frames=int(options["chunk_frames"]))
    xp, backend = array_module(options.get("gpu", "auto"))
    result = axial.plane_shifts(mean, max_reg_xy=int(options["max_reg_xy"]), xp=xp)
    return {
        "roi": None if roi is None else roi + 1,
        "shifts": np.asarray(result.shifts).tolist(),
        "steps": np.asarray(result.steps).tolist(),
        "at_search_limit": [z + 1 for z in result.at_search_limit],
        "params": {
            "max_frames": int(options["max_frames"]), "chunk_frames": int(options["chunk_frames"]),
            "max_reg_xy": int(options["max_reg_xy"]), "sigma": result.params["sigma"],
            "smooth_sigma": result.params["smooth_sigma"], "backend": backend,
            "frames_used": to_runs(axial.mean_frame_indices(info.n_frames, int(options["max_frames"]))),
        },
    }


def _correct_at(correct: Callable, pages: np.ndarray, indices: np.ndarray, plane: int) -> np.ndarray:
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
