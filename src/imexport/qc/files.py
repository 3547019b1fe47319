"""The files the qc step writes, named while the workflow builds its DAG (no plotting
library needed for that)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..plan import Plan, view_name

QC_FOLDER = "qc"


@dataclass
class QcFiles:
    """Every file the qc step writes; the workflow marks each one for the report."""

    mean_grids: dict[str, str]  # view -> all planes in one grid
    mean_planes: dict[tuple[str, int], str]  # (view, 1-based plane) -> one plane
    planes_table: str
    run: str
    benchmarks: str
    seams: str | None = None  # stitched view of two or more ROIs only
    phase_offsets: str | None = None  # with scan_phase.fix_phase
    phase_rows: str | None = None
    axial_shifts: str | None = None  # with register_z
    axial_projections: dict[str, str] = field(default_factory=dict)
    frame_intervals: str | None = None  # ScanImage sources: their pages carry frame timestamps

    def all(self) -> list[str]:
        single = [
            self.planes_table,
            self.run,
            self.benchmarks,
            self.seams,
            self.phase_offsets,
            self.phase_rows,
            self.axial_shifts,
            self.frame_intervals,
        ]
        return [
            *self.mean_grids.values(),
            *self.mean_planes.values(),
            *self.axial_projections.values(),
            *(p for p in single if p),
        ]


def qc_files(plan: Plan) -> QcFiles:
    folder = Path(plan.work) / QC_FOLDER
    views = [view_name(roi) for roi in plan.rois]
    planes = [int(p) + 1 for p in plan.planes]
    phase = bool(plan.phase_tasks)
    axial_views = [view_name(task["roi"]) for task in plan.axial_tasks.values()]
    return QcFiles(
        mean_grids={v: str(folder / f"mean_images_{v}.png") for v in views},
        mean_planes={(v, p): str(folder / "planes" / f"mean_{v}_zplane{p:02d}.png") for v in views for p in planes},
        planes_table=str(folder / "plane_statistics.html"),
        run=str(folder / "run.html"),
        benchmarks=str(folder / "benchmarks.html"),
        seams=str(folder / "roi_seams.png") if plan.rois == [None] and plan.source.n_rois > 1 else None,
        phase_offsets=str(folder / "scan_phase_offsets.png") if phase else None,
        phase_rows=str(folder / "scan_phase_rows.png") if phase else None,
        axial_shifts=str(folder / "axial_shifts.png") if axial_views else None,
        axial_projections={v: str(folder / f"axial_projection_{v}.png") for v in axial_views},
        frame_intervals=str(folder / "frame_intervals.png") if plan.source.kind == "scanimage" else None,
    )
