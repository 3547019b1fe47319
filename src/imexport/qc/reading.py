"""Reading back what was written: the mean image of each plane from each format's own
reader, the same frames from the raw source, the correction records, and the statistics
of an image (contrast range, filled pixels). At most ``max_frames`` evenly spaced frames
are read per plane and format, ``READ_CHUNK_FRAMES`` at a time."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import geometry
from ..formats import FORMATS
from ..jobs import Export
from ..plan import Plan, view_name
from ..sources import open_plane_reader
from ..sources.info import SourceInfo

PERCENTILES = (1.0, 99.5)  # per-plane contrast: dim deep planes stay visible
READ_CHUNK_FRAMES = 10  # frames held in memory at once while averaging


@dataclass
class PlaneMean:
    plane: int  # 0-based source plane
    image: np.ndarray  # float32 (Y, X) time mean of the first written channel


def written_planes(plan: Plan, fmt: str, roi: int | None) -> list[tuple[int, Export, int]]:
    """``(source plane, export, position inside the export)`` of every written plane, in written order."""
    return [
        (plan.jobs[key].plane, export, position)
        for export in plan.exports
        if export.format == fmt and export.roi == roi
        for position, key in enumerate(export.plane_jobs)
    ]


def read_frames(export: Export, position: int, frames: np.ndarray) -> np.ndarray:
    """Frames ``(n, Y, X)`` (0-based, increasing) of the first written channel of one plane."""
    return FORMATS[export.format].read_frames(export, position, frames)


def chunked_mean(read: Callable[[np.ndarray], np.ndarray], frames: np.ndarray) -> np.ndarray:
    total = None
    for start in range(0, len(frames), READ_CHUNK_FRAMES):
        part = np.asarray(read(frames[start : start + READ_CHUNK_FRAMES])).sum(axis=0, dtype=np.float64)
        total = part if total is None else total + part
    return (total / len(frames)).astype(np.float32)


def plane_mean(export: Export, position: int, frames: np.ndarray) -> np.ndarray:
    return chunked_mean(lambda f: read_frames(export, position, f), frames)


def written_means(plan: Plan, fmt: str, roi: int | None, positions: np.ndarray) -> list[PlaneMean]:
    return [PlaneMean(plane, plane_mean(export, z, positions)) for plane, export, z in written_planes(plan, fmt, roi)]


def format_differences(plan: Plan, fmt: str, roi: int | None, positions: np.ndarray, reference: list[PlaneMean]) -> list[float]:
    """Largest absolute difference per plane between the means read from ``fmt`` and ``reference``
    (one plane held at a time: only the first format's means are kept for the figures)."""
    return [
        float(np.abs(plane_mean(export, z, positions) - ref.image).max())
        for (_, export, z), ref in zip(written_planes(plan, fmt, roi), reference)
    ]


def raw_mean(plan: Plan, index_path: str, roi: int | None, plane: int, positions: np.ndarray) -> np.ndarray:
    """The same frames straight from the source, by the reader the plane jobs use, before any correction."""
    info, color = plan.source, int(plan.colors[0])
    with open_plane_reader(info, index_path) as reader:
        return chunked_mean(
            lambda f: geometry.extract(reader.read(plan.frames[f], [color], plane)[:, 0], info.layout, roi), positions
        )


def filled_mask(info: SourceInfo, roi: int | None) -> np.ndarray:
    """Pixels some ROI fills: the stitched canvas is zero below the shorter ROIs."""
    return geometry.extract(np.ones((info.page_height, info.page_width), bool), info.layout, roi)


def display_range(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    values = image[mask] if mask is not None else image.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    return low, high if high > low else low + 1.0


def normalised(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    low, high = display_range(image, mask)
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def phase_records(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """Scan-phase records per view, by plane."""
    by_view: dict[str, list[dict[str, Any]]] = {}
    for record_path, task in plan.phase_tasks.items():
        by_view.setdefault(view_name(task["roi"]), []).append(json.loads(Path(record_path).read_text()))
    return {view: sorted(records, key=lambda r: r["plane"]) for view, records in by_view.items()}


def mean_applied(record: dict[str, Any]) -> float:
    """The record's applied offset; its mean over frames for ``phasecorr_method: frame``."""
    applied = record["applied"]
    return float(np.mean(applied)) if isinstance(applied, list) else float(applied)
