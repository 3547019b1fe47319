"""Config + source description → the list of outputs and the plane jobs that make them.

Shared by the Snakemake workflow (which turns each plane job into a Snakemake job) and
the in-process Python API (which runs the same steps in a loop), so both produce the
same files. Where each format's outputs go is the format's own ``layout``
(``imexport.formats``); ``roiNN/`` folders come first in ``separate`` mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import naming
from .formats import FORMATS, LayoutContext, OutputLayout
from .jobs import Export, PlaneJob
from .metadata import export_metadata, plane_metadata
from .selection import SelectionError, limit, reorder, select, to_runs
from .sources.info import SourceInfo

WORK_FOLDER = ".imexport"
log = logging.getLogger(__name__)


@dataclass
class Plan:
    outdir: str
    source: SourceInfo
    planes: np.ndarray
    frames: np.ndarray
    colors: np.ndarray
    rois: list[int | None]
    target_chunk_mb: float
    exports: list[Export] = field(default_factory=list)
    jobs: dict[str, PlaneJob] = field(default_factory=dict)  # key: what the job writes, relative to outdir
    phase_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # record path -> task
    axial_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # record path -> task
    notes: list[str] = field(default_factory=list)  # settings the plan had to set aside, for the summary

    @property
    def work(self) -> str:
        return str(Path(self.outdir) / WORK_FOLDER)

    @property
    def source_json(self) -> str:
        """The indexed source description the ``index_source`` step writes."""
        return str(Path(self.work) / "source.json")

    @property
    def page_index(self) -> str:
        """The page index the ``index_source`` step writes, shared by every plane job."""
        return str(Path(self.work) / "page_index.npz")

    def final_outputs(self) -> list[str]:
        return [e.path for e in self.exports]

    def jobs_of(self, output_type: str) -> dict[str, PlaneJob]:
        """The plane jobs writing one type of output (``jobs.OUTPUT_TYPES``)."""
        return {key: job for key, job in self.jobs.items() if job.output_type == output_type}

    def assembled(self, is_folder: bool) -> dict[str, Export]:
        """The exports an assemble step makes, whose product is a folder (or a file)."""
        return {e.key: e for e in self.exports if e.assembled and e.is_folder == is_folder}

    def stores(self) -> dict[str, Export]:
        """Temporary store path → the export whose prepare step creates it."""
        return {e.store: e for e in self.exports if e.store}

    def export(self, key: str) -> Export:
        return next(e for e in self.exports if e.key == key)

    def phase_views(self) -> dict[str, list[str]]:
        """Scan-phase record paths grouped by view (``stitched`` or ``roiNN``): one job each."""
        views: dict[str, list[str]] = {}
        for path in self.phase_tasks:
            views.setdefault(Path(path).parent.name, []).append(path)
        return views

    def plane_outputs(self, key: str) -> list[str]:
        return [self.jobs[k].output for k in self.export(key).plane_jobs]


def formats_of(config: dict[str, Any]) -> list[str]:
    value = config["format"]
    formats = [value] if isinstance(value, str) else list(value)
    for fmt in formats:
        if fmt not in FORMATS:
            raise SelectionError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if len(set(formats)) != len(formats):
        raise SelectionError(f"format: {formats} lists a format twice")
    return formats


def _rois(config: dict[str, Any], info: SourceInfo) -> list[int | None]:
    mode = config["roi_mode"]
    if mode == "concat_y":
        if config["rois"] is not None:
            raise SelectionError("rois: selects ROIs only with roi_mode: separate (concat_y always stitches all ROIs)")
        return [None]
    if mode == "separate":
        return [int(r) for r in select("rois", config["rois"], info.n_rois)]
    raise SelectionError(f"roi_mode: {mode!r} is not one of concat_y, separate")


def build_plan(config: dict[str, Any], info: SourceInfo) -> Plan:
    """The plan of a validated config (``config.validate``: every default filled)."""
    T, C, Z = info.n_frames, info.n_colors, info.n_planes
    planes = reorder("order", select("planes", config["planes"], Z), config["order"])
    frames = limit("num_frames", select("frames", config["frames"], T), config["num_frames"])
    colors = select("channels", config["channels"], C)
    rois = _rois(config, info)
    suffix = naming.sanitize_suffix(config["output_suffix"])
    naming.check_output_name(config["output_name"])
    outdir = Path(str(config["outdir"]))
    plan = Plan(str(outdir), info, planes, frames, colors, rois, float(config["target_chunk_mb"]))
    phase_records, axial_records = _plan_corrections(plan, config)
    plan.notes.extend(info.notes)  # what inspecting the source set aside (e.g. an incomplete last volume)
    for fmt in formats_of(config):
        output_format = FORMATS[fmt]
        options = output_format.options(config)
        for roi in rois:
            metadata = export_metadata(
                info,
                planes=planes,
                frames=frames,
                colors=colors,
                roi=roi,
                roi_mode=config["roi_mode"],
                user=dict(config["metadata"]),
            )
            context = LayoutContext(
                outdir=outdir,
                work=Path(plan.work),
                folder=outdir / naming.roi_folder(roi),
                planes=planes,
                frames=frames,
                channels=colors if C > 1 else None,
                suffix=suffix,
                options=options,
            )
            for layout in output_format.layout(context):
                _add_export(plan, fmt, roi, layout, options, metadata, phase_records, axial_records)
    return plan


def _add_export(
    plan: Plan,
    fmt: str,
    roi: int | None,
    layout: OutputLayout,
    options: dict[str, Any],
    metadata: dict[str, Any],
    phase_records: dict,
    axial_records: dict,
) -> None:
    outdir = Path(plan.outdir)
    frame_shape = tuple(int(n) for n in plan.source.layout.output_shape(roi))
    keys = []
    for z_index, output in layout.plane_outputs:
        plane = int(plan.planes[z_index])
        key = str(output.relative_to(outdir))
        plan.jobs[key] = PlaneJob(
            format=fmt,
            output_type=layout.output_type,
            output=str(output),
            plane=plane,
            z_index=z_index,
            n_planes_out=len(plan.planes),
            colors=tuple(int(c) for c in plan.colors),
            frames=tuple(tuple(run) for run in to_runs(plan.frames)),
            roi=roi,
            target_chunk_mb=plan.target_chunk_mb,
            options=options,
            store=None if layout.store is None else str(layout.store),
            phase_record=phase_records.get((plane, roi)),
            axial_record=axial_records.get(roi),
            metadata=plane_metadata(metadata, plane, z_index),
        )
        keys.append(key)
    plan.exports.append(
        Export(
            format=fmt,
            roi=roi,
            key=str(layout.product.relative_to(outdir)),
            path=str(layout.product),
            metadata=metadata,
            options=options,
            plane_jobs=tuple(keys),
            assembled=layout.assembled,
            is_folder=layout.is_folder,
            store=None if layout.store is None else str(layout.store),
            phase_records=tuple(phase_records[(int(p), roi)] for p in plan.planes if (int(p), roi) in phase_records),
            axial_record=axial_records.get(roi),
            shape=(len(plan.frames), len(plan.colors), len(plan.planes), *frame_shape),
            dtype=str(plan.source.dtype),
            target_chunk_mb=plan.target_chunk_mb,
        )
    )


def view_name(roi: int | None) -> str:
    """The name of a ROI view in file names and the report: ``stitched`` or ``roiNN``."""
    return "stitched" if roi is None else naming.roi_folder(roi)


def _plan_corrections(plan: Plan, config: dict[str, Any]) -> tuple[dict, dict]:
    """Scan-phase records per (plane, ROI view) and axial records per view.

    Axial registration needs every source plane, so it asks for their phase records too.
    """
    phase_options = dict(config["scan_phase"])
    register = bool(config["register_z"])
    axial_options = dict(config["axial"])
    color = int(plan.colors[0])
    work = Path(plan.work)
    phase_records: dict[tuple[int, int | None], str] = {}
    axial_records: dict[int | None, str] = {}
    planes = range(plan.source.n_planes) if register else [int(p) for p in plan.planes]
    fix_phase = bool(phase_options["fix_phase"])
    reason = _no_scan_phase(plan.source) if fix_phase else None
    if reason:
        fix_phase = False
        plan.notes.append(f"scan_phase.fix_phase ignored: {reason}")
        log.info("scan_phase.fix_phase ignored: %s", reason)
    for roi in plan.rois:
        if fix_phase:
            _check_phase_border(plan.source, roi, int(phase_options["border"]))
            for plane in planes:
                path = str(work / "scan_phase" / view_name(roi) / f"zplane{plane + 1:02d}.json")
                phase_records[(plane, roi)] = path
                plan.phase_tasks[path] = {
                    "plane": plane,
                    "roi": roi,
                    "color": color,
                    "frames": to_runs(plan.frames),
                    "options": phase_options,
                }
        if register:
            path = str(work / "axial" / f"{view_name(roi)}.json")
            axial_records[roi] = path
            plan.axial_tasks[path] = {
                "roi": roi,
                "color": color,
                "options": axial_options,
                "phase_records": [phase_records.get((z, roi)) for z in range(plan.source.n_planes)],
            }
    return phase_records, axial_records


def _no_scan_phase(info: SourceInfo) -> str | None:
    """Why the scan-phase correction cannot apply to this source, or None when it can.

    The odd-row offset is a property of bidirectional raw scanning; any other source
    has been processed (or was scanned one way) and its rows must not be moved.
    """
    if info.kind != "scanimage":
        return f"the source is {info.kind}, not a raw ScanImage recording"
    if not info.scanimage.get("SI.hScan2D.bidirectional", True):  # absent: ScanImage's resonant default
        return "the recording was scanned unidirectionally (SI.hScan2D.bidirectional = false)"
    return None


def _check_phase_border(info: SourceInfo, roi: int | None, border: int) -> None:
    """Stop before any job if the border crop leaves nothing to estimate the phase on."""
    strips = info.layout.strips if roi is None else [info.layout.strips[roi]]
    usable = [s for s in strips if s.height // 2 > 2 * border and s.width > 2 * border]
    if not usable:
        heights = [s.height for s in strips]
        raise SelectionError(
            f"scan_phase.border: {border} crops away every row of the ROI strips (heights {heights}, "
            f"width {strips[0].width}); use a smaller scan_phase.border or scan_phase.fix_phase: false"
        )
