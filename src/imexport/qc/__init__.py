"""Quality-control figures and tables of a finished export, for ``snakemake --report``.

Everything shown is read back from the final outputs, each format through its own
reader (tifffile, the Suite2p binary, zarr, h5py), and from the correction records, so
the report shows what was written rather than what the plane jobs meant to write. At
most ``max_frames`` evenly spaced frames are read per plane and format, which bounds the
cost whatever the recording length.

matplotlib (with the Pillow it depends on) is the optional ``report`` extra. It is
imported inside the drawing functions only, so ``import imexport.qc`` works without it:
the workflow names the QC files while it builds its DAG, before any job runs.

The package: ``files`` (what the step writes), ``reading`` (outputs and records read
back, statistics), ``figures`` and ``pages`` (the report's PNGs and HTML tables); the
step itself is :func:`write_qc`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import axial
from ..metadata import frame_timing
from ..plan import build_plan, formats_of, view_name
from ..sources.info import SourceInfo
from .figures import (
    draw_axial_projection,
    draw_axial_shifts,
    draw_frame_intervals,
    draw_mean_grid,
    draw_phase_offsets,
    draw_phase_rows,
    draw_seams,
    save_gray_png,
)
from .files import QcFiles, qc_files
from .pages import write_benchmark_page, write_planes_page, write_run_page
from .reading import (
    filled_mask,
    format_differences,
    mean_applied,
    phase_records,
    raw_mean,
    written_means,
)

PLANE_PNG_BUDGET_PX = 8_000_000  # shared by the per-plane PNGs, so a report of many planes stays a few MB
PLANE_PNG_MAX_PX = 1024 * 1024


def write_qc(
    config: dict[str, Any], source_json: str, index_path: str, *, manifest: str, benchmarks: list[str], max_frames: int
) -> QcFiles:
    """Every QC file of one export run (the ``qc`` rule), from its outputs, records, manifest and benchmarks."""
    info = SourceInfo.from_json(Path(source_json).read_text())
    plan = build_plan(config, info)  # the same plan the workflow built from the same config
    files = qc_files(plan)
    formats = formats_of(config)
    primary = formats[0]
    positions = axial.mean_frame_indices(len(plan.frames), max_frames)
    n_read, n_total = len(positions), len(plan.frames)
    means = {roi: written_means(plan, primary, roi, positions) for roi in plan.rois}
    differences = {
        (fmt, roi): format_differences(plan, fmt, roi, positions, means[roi]) for fmt in formats[1:] for roi in plan.rois
    }
    budget = min(PLANE_PNG_MAX_PX, PLANE_PNG_BUDGET_PX // max(1, len(files.mean_planes)))

    for roi in plan.rois:
        view, mask = view_name(roi), filled_mask(info, roi)
        draw_mean_grid(
            means[roi],
            mask,
            n_read,
            n_total,
            f"Time-mean images, {view} ({primary}, first written channel)",
            files.mean_grids[view],
        )
        for mean in means[roi]:
            save_gray_png(mean.image, mask, files.mean_planes[(view, mean.plane + 1)], budget)
    if files.seams:
        draw_seams(means[None], info, files.seams)

    phase = phase_records(plan) if plan.phase_tasks else {}
    if phase:
        draw_phase_offsets(phase, files.phase_offsets)
        roi = plan.rois[0]
        view = view_name(roi)
        exported = {m.plane: m for m in means[roi]}
        record = max((r for r in phase[view] if r["plane"] - 1 in exported), key=lambda r: abs(mean_applied(r)))
        plane = record["plane"] - 1
        before = raw_mean(plan, index_path, roi, plane, positions)
        draw_phase_rows(before, exported[plane].image, info, roi, plane, mean_applied(record), view, files.phase_rows)

    if plan.axial_tasks:
        records = {view_name(task["roi"]): json.loads(Path(p).read_text()) for p, task in plan.axial_tasks.items()}
        draw_axial_shifts(records, [int(p) + 1 for p in plan.planes], files.axial_shifts)
        for roi in plan.rois:
            view = view_name(roi)
            shifts = axial.subset_shifts(records[view]["shifts"], [int(p) for p in plan.planes])
            draw_axial_projection(means[roi], shifts, filled_mask(info, roi), view, files.axial_projections[view])

    if files.frame_intervals:
        every_frame = np.arange(info.n_frames)
        draw_frame_intervals(frame_timing(info, index_path, every_frame), info.fs, files.frame_intervals)

    write_planes_page(plan, means, differences, formats, phase, n_read, files.planes_table)
    write_run_page(plan, config, manifest, files.run)
    write_benchmark_page(plan, benchmarks, files.benchmarks)
    return files
