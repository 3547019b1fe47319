"""Config + source description → the list of outputs and the plane jobs that make them.

Shared by the Snakemake workflow (which turns each plane job into a Snakemake job) and
the in-process Python API (which runs them in a loop), so both produce the same files.

Layout under ``outdir`` (``roiNN/`` first in ``separate`` mode):

* ``tiff`` (``layout: plane``): ``zplaneNN_tp….tif`` per plane
* ``bin``: ``zplaneNN_tp…/`` per plane with ``data_raw.bin`` + ``ops.npy``
* ``zarr``: one store ``zplane…_tp….zarr`` for all planes
* ``h5``: one file ``zplane…_tp….h5`` (virtual dataset) + ``…_planes/zplaneNN.h5``
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import naming
from .metadata import export_metadata, plane_metadata
from .selection import SelectionError, limit, reorder, select, to_runs
from .sources.info import SourceInfo

FORMATS = ("tiff", "bin", "zarr", "h5")
WORK_FOLDER = ".imexport"
log = logging.getLogger(__name__)


@dataclass
class Export:
    """One output of one format for one ROI (or the stitched view).

    ``kind`` says how the plane jobs become the product: ``plane`` (the plane job's
    output is the product), ``h5`` (a master file joins per-plane files), ``zarr``
    (plane jobs fill a temporary store that is then finalised), ``tiff_volume``
    (temporary per-plane TIFFs are joined into one hyperstack).
    """

    format: str
    kind: str
    roi: int | None
    key: str  # path relative to outdir
    path: str  # the final product the user opens
    metadata: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    plane_jobs: list[str] = field(default_factory=list)  # keys into Plan.jobs, in written Z order
    store: str | None = None  # temporary store the plane jobs fill (zarr)
    phase_records: list[str] = field(default_factory=list)  # per written plane, Z order
    axial_record: str | None = None


@dataclass
class Plan:
    outdir: str
    source: SourceInfo
    planes: np.ndarray
    frames: np.ndarray
    colors: np.ndarray
    rois: list[int | None]
    target_chunk_mb: float
    exports: list[Export]
    jobs: dict[str, dict[str, Any]]
    phase_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # record path -> task
    axial_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # record path -> task
    notes: list[str] = field(default_factory=list)  # settings the plan had to set aside, for the summary

    @property
    def work(self) -> str:
        return str(Path(self.outdir) / WORK_FOLDER)

    def final_outputs(self) -> list[str]:
        return [e.path for e in self.exports]

    def jobs_of(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: job for key, job in self.jobs.items() if job["kind"] == kind}

    def exports_of(self, kind: str) -> dict[str, Export]:
        return {e.key: e for e in self.exports if e.kind == kind}

    def export(self, key: str) -> Export:
        return next(e for e in self.exports if e.key == key)

    def phase_views(self) -> dict[str, list[str]]:
        """Scan-phase record paths grouped by view (``stitched`` or ``roiNN``): one job each."""
        views: dict[str, list[str]] = {}
        for path in self.phase_tasks:
            views.setdefault(Path(path).parent.name, []).append(path)
        return views

    def plane_outputs(self, key: str) -> list[str]:
        return [self.jobs[k]["output"] for k in self.export(key).plane_jobs]


def formats_of(config: dict[str, Any]) -> list[str]:
    value = config.get("format", "tiff")
    formats = [value] if isinstance(value, str) else list(value)
    for fmt in formats:
        if fmt not in FORMATS:
            raise SelectionError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if len(set(formats)) != len(formats):
        raise SelectionError(f"format: {formats} lists a format twice")
    return formats


def _rois(config: dict[str, Any], info: SourceInfo) -> list[int | None]:
    mode = config.get("roi_mode", "concat_y")
    if mode == "concat_y":
        if config.get("rois") is not None:
            raise SelectionError("rois: selects ROIs only with roi_mode: separate (concat_y always stitches all ROIs)")
        return [None]
    if mode == "separate":
        return [int(r) for r in select("rois", config.get("rois"), info.n_rois)]
    raise SelectionError(f"roi_mode: {mode!r} is not one of concat_y, separate")


def build_plan(config: dict[str, Any], info: SourceInfo) -> Plan:
    T, C, Z = info.n_frames, info.n_colors, info.n_planes
    planes = reorder("order", select("planes", config.get("planes"), Z), config.get("order"))
    frames = limit("num_frames", select("frames", config.get("frames"), T), config.get("num_frames"))
    colors = select("channels", config.get("channels"), C)
    rois = _rois(config, info)
    suffix = naming.sanitize_suffix(config.get("output_suffix"))
    output_name = naming.check_output_name(config.get("output_name"))
    outdir = Path(str(config["outdir"]))
    chunk_mb = float(config.get("target_chunk_mb", 100))
    color_tag = colors if C > 1 else None
    plan = Plan(str(outdir), info, planes, frames, colors, rois, chunk_mb, [], {})
    work = Path(plan.work)
    phase_records, axial_records = _plan_corrections(plan, config)
    tiff_layout = (config.get("tiff") or {}).get("layout", "plane")

    for fmt in formats_of(config):
        options = dict(config.get(fmt) or {})
        if fmt == "bin" and output_name:
            options["output_name"] = output_name
        for roi in rois:
            base = outdir / naming.roi_folder(roi)
            md = export_metadata(
                info, planes=planes, frames=frames, colors=colors, roi=roi,
                roi_mode=config.get("roi_mode", "concat_y"), user=dict(config.get("metadata") or {}),
            )
            volume_stem = naming.stem(planes=planes, frames=frames, channels=color_tag, suffix=suffix)

            def add_job(export: Export, kind: str, output: Path, z_index: int) -> None:
                plane = int(planes[z_index])
                key = str(output.relative_to(outdir))
                plan.jobs[key] = {
                    "kind": kind,
                    "format": "tiff" if fmt == "tiff" else fmt,
                    "output": str(output),
                    "plane": plane,
                    "z_index": z_index,
                    "n_planes_out": len(planes),
                    "colors": [int(c) for c in colors],
                    "frames": to_runs(frames),
                    "roi": roi,
                    "target_chunk_mb": chunk_mb,
                    "options": options,
                    "store": export.store,
                    "phase_record": phase_records.get((plane, roi)),
                    "axial_record": axial_records.get(roi),
                    "metadata": plane_metadata(md, plane, z_index),
                }
                export.plane_jobs.append(key)

            def add_export(kind: str, final: Path, store: Path | None = None) -> Export:
                export = Export(fmt, kind, roi, str(final.relative_to(outdir)), str(final), md, options,
                                store=None if store is None else str(store),
                                phase_records=[phase_records[(int(p), roi)] for p in planes if (int(p), roi) in phase_records],
                                axial_record=axial_records.get(roi))
                plan.exports.append(export)
                return export

            if fmt == "tiff" and tiff_layout == "volume":
                export = add_export("tiff_volume", base / f"{volume_stem}.tif")
                for z_index, plane in enumerate(planes):
                    add_job(export, "intermediate", work / "tiff_planes" / export.key / f"zplane{int(plane) + 1:02d}.tif", z_index)
            elif fmt in ("tiff", "bin"):
                for z_index, plane in enumerate(planes):
                    name = naming.stem(planes=np.array([plane]), frames=frames, channels=color_tag, suffix=suffix)
                    export = add_export("plane", base / (name + (".tif" if fmt == "tiff" else "")))
                    add_job(export, "file" if fmt == "tiff" else "folder", Path(export.path), z_index)
            elif fmt == "h5":
                export = add_export("h5", base / f"{volume_stem}.h5")
                for z_index, plane in enumerate(planes):
                    add_job(export, "file", base / f"{volume_stem}_planes" / f"zplane{int(plane) + 1:02d}.h5", z_index)
            else:  # zarr: plane jobs fill one temporary store, finalised as a whole
                final = base / f"{volume_stem}.zarr"
                store = work / "zarr" / final.relative_to(outdir)
                export = add_export("zarr", final, store)
                for z_index in range(len(planes)):
                    add_job(export, "slab", store.parent / f"{store.name}.planes" / f"z{z_index:04d}.done", z_index)
    return plan


def _view(roi: int | None) -> str:
    return "stitched" if roi is None else naming.roi_folder(roi)


def _plan_corrections(plan: Plan, config: dict[str, Any]) -> tuple[dict, dict]:
    """Scan-phase records per (plane, ROI view) and axial records per view.

    Axial registration needs every source plane, so it asks for their phase records too.
    """
    phase_options = dict(config.get("scan_phase") or {})
    register = bool(config.get("register_z"))
    axial_options = dict(config.get("axial") or {})
    color = int(plan.colors[0])
    work = Path(plan.work)
    phase_records: dict[tuple[int, int | None], str] = {}
    axial_records: dict[int | None, str] = {}
    planes = range(plan.source.n_planes) if register else [int(p) for p in plan.planes]
    fix_phase = bool(phase_options.get("fix_phase"))
    reason = _no_scan_phase(plan.source) if fix_phase else None
    if reason:
        fix_phase = False
        plan.notes.append(f"scan_phase.fix_phase ignored: {reason}")
        log.info("scan_phase.fix_phase ignored: %s", reason)
    for roi in plan.rois:
        if fix_phase:
            _check_phase_border(plan.source, roi, int(phase_options.get("border", 3)))
            for plane in planes:
                path = str(work / "scan_phase" / _view(roi) / f"zplane{plane + 1:02d}.json")
                phase_records[(plane, roi)] = path
                plan.phase_tasks[path] = {"plane": plane, "roi": roi, "color": color,
                                          "frames": to_runs(plan.frames), "options": phase_options}
        if register:
            path = str(work / "axial" / f"{_view(roi)}.json")
            axial_records[roi] = path
            plan.axial_tasks[path] = {
                "roi": roi, "color": color, "options": axial_options,
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
