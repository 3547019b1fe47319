"""Quality-control figures and tables of a finished export, for ``snakemake --report``.

Everything shown is read back from the final outputs, each format through its own
reader (tifffile, the Suite2p binary, zarr, h5py), and from the correction records, so
the report shows what was written rather than what the plane jobs meant to write. At
most ``max_frames`` evenly spaced frames are read per plane and format, which bounds the
cost whatever the recording length.

matplotlib (with the Pillow it depends on) is the optional ``report`` extra. It is
imported inside the drawing functions only, so ``import imexport.qc`` works without it:
the workflow names the QC files while it builds its DAG, before any job runs.
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import axial, geometry
from .formats import FORMATS
from .jobs import Export
from .plan import Plan, build_plan, formats_of, view_name
from .selection import from_runs
from .atomic import write_atomic
from .sources import open_plane_reader
from .sources.scanimage import SourceInfo
from .steps import plan_summary

QC_FOLDER = "qc"
PERCENTILES = (1.0, 99.5)  # per-plane contrast: dim deep planes stay visible
DPI = 100
MAX_FIGURE_WIDTH_IN = 16.0  # 1600 px at DPI
# The per-plane PNGs share a pixel budget so a report of many planes (and ROIs) stays
# a few MB; each is block-averaged down only when its share is smaller than the plane.
PLANE_PNG_BUDGET_PX = 8_000_000
PLANE_PNG_MAX_PX = 1024 * 1024
PLANE_PNG_MIN_SIDE = 512  # the report shows images at their own size: small planes are enlarged
READ_CHUNK_FRAMES = 10  # frames held in memory at once while averaging
SEAM_HALF_WIDTH = 16  # columns shown on each side of a ROI seam
SEAM_MAX_PLANES = 4
PHASE_CROP = (32, 64)  # rows, columns of the scan-phase before/after crop


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

    def all(self) -> list[str]:
        single = [self.planes_table, self.run, self.benchmarks, self.seams, self.phase_offsets,
                  self.phase_rows, self.axial_shifts]
        return [*self.mean_grids.values(), *self.mean_planes.values(), *self.axial_projections.values(),
                *(p for p in single if p)]


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
    )


# --------------------------------------------------------------------------- reading back


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


def format_differences(plan: Plan, fmt: str, roi: int | None, positions: np.ndarray,
                       reference: list[PlaneMean]) -> list[float]:
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


# --------------------------------------------------------------------------- output helpers


def _figure(width_in: float, height_in: float):
    # a bare Figure on an Agg canvas: no pyplot, so no global state and no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width_in, MAX_FIGURE_WIDTH_IN), height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: str) -> None:
    """PNG of one channel for grey figures (mean images, black text), else a 256-colour palette:
    a third of the bytes of matplotlib's RGBA, which matters with 30 planes."""
    from PIL import Image

    fig.canvas.draw()
    rgb = np.ascontiguousarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    if (rgb == rgb[..., :1]).all():
        image = Image.fromarray(np.ascontiguousarray(rgb[..., 0]))
    else:
        image = Image.fromarray(rgb).quantize(colors=256)
    write_atomic(Path(path), lambda fh: image.save(fh, format="PNG", optimize=True))


def _save_gray_png(image: np.ndarray, mask: np.ndarray, path: str, max_pixels: int) -> None:
    """8-bit grey at the plane's own contrast: block-averaged down to ``max_pixels`` if larger,
    each pixel repeated as a square block if the plane is small."""
    from PIL import Image

    low, high = display_range(image, mask)
    shrink = math.ceil(math.sqrt(image.size / max_pixels))
    if shrink > 1:
        h, w = (n // shrink * shrink for n in image.shape)
        image = image[:h, :w].reshape(h // shrink, shrink, w // shrink, shrink).mean(axis=(1, 3))
    gray = np.round(np.clip((image - low) / (high - low), 0.0, 1.0) * 255).astype(np.uint8)
    grow = PLANE_PNG_MIN_SIDE // max(gray.shape)
    if grow > 1:
        gray = np.repeat(np.repeat(gray, grow, axis=0), grow, axis=1)
    write_atomic(Path(path), lambda fh: Image.fromarray(gray).save(fh, format="PNG", optimize=True))


_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:12px;color:#222}"
    "table{border-collapse:collapse;margin:6px 0 16px}"
    "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right;vertical-align:top}"
    "th{background:#eef}td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}"
    "h2{font-size:15px;margin:18px 0 4px}p.note{color:#555}"
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):  # three significant digits, no exponent for intensities
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns (names) are left-aligned."""
    def row(cells: list[str], tag: str) -> str:
        tags = [f"<{tag} class=l>" if i < left else f"<{tag}>" for i in range(len(cells))]
        return "<tr>" + "".join(f"{t}{c}</{tag}>" for t, c in zip(tags, cells)) + "</tr>"

    body = "".join(row([_cell(c) for c in r], "td") for r in rows)
    return "<table>" + row([html.escape(h) for h in header], "th") + body + "</table>"


def _write_page(path: str, title: str, body: str) -> None:
    head = f"<meta charset=utf-8><title>{html.escape(title)}</title><style>{_STYLE}</style>"
    text = f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"
    write_atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


# --------------------------------------------------------------------------- figures


def draw_mean_grid(means: list[PlaneMean], mask: np.ndarray, n_read: int, n_total: int, title: str, path: str) -> None:
    n = len(means)
    height, width = means[0].image.shape
    # about 16:10 overall, whatever the number of planes and the shape of one
    ncols = max(1, min(n, round(math.sqrt(1.6 * n * height / width))))
    nrows = math.ceil(n / ncols)
    fig_width = min(MAX_FIGURE_WIDTH_IN, max(8.0, ncols * width / DPI))
    panel_height = fig_width / ncols * height / width
    fig = _figure(fig_width, nrows * (panel_height + 0.3) + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, mean in zip(axes, means):
        low, high = display_range(mean.image, mask)
        ax.imshow(mean.image, cmap="gray", vmin=low, vmax=high)
        ax.set_title(f"plane {mean.plane + 1} · {n_read}/{n_total} frames · {height}×{width}", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=11)
    _save_figure(fig, path)


def draw_seams(means: list[PlaneMean], info: SourceInfo, path: str) -> None:
    """The columns on both sides of every ROI seam of the stitched view, full height."""
    strips = info.layout.strips
    half = max(1, min(SEAM_HALF_WIDTH, min(s.width for s in strips) // 2))
    seams = np.cumsum([s.width for s in strips])[:-1]
    shown = [means[i] for i in np.unique(np.linspace(0, len(means) - 1, min(SEAM_MAX_PLANES, len(means))).astype(int))]
    mask = filled_mask(info, None)
    height = means[0].image.shape[0]
    panel_height = min(7.0, max(3.0, height / DPI))
    fig = _figure(2.4 * len(shown) + 0.5, len(seams) * (panel_height + 0.4) + 0.4)
    axes = fig.subplots(len(seams), len(shown), squeeze=False)
    for r, x in enumerate(seams):
        cols = slice(int(x) - half, int(x) + half)
        for ax, mean in zip(axes[r], shown):
            crop = mean.image[:, cols]
            low, high = display_range(crop, mask[:, cols])
            ax.imshow(crop, cmap="gray", vmin=low, vmax=high, aspect="auto", interpolation="nearest")
            ax.axvline(half - 0.5, color="tab:red", linestyle="--", linewidth=0.8)
            ax.set_xticks([0, half, 2 * half - 1], [str(x - half), str(x), str(x + half - 1)], fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"ROI {r + 1} | ROI {r + 2} · plane {mean.plane + 1}", fontsize=9)
    fig.suptitle("Stitched field of view: columns around each ROI seam (dashed), full height", fontsize=11)
    _save_figure(fig, path)


def _phase_records(plan: Plan) -> dict[str, list[dict[str, Any]]]:
    """Scan-phase records per view, by plane."""
    by_view: dict[str, list[dict[str, Any]]] = {}
    for record_path, task in plan.phase_tasks.items():
        by_view.setdefault(view_name(task["roi"]), []).append(json.loads(Path(record_path).read_text()))
    return {view: sorted(records, key=lambda r: r["plane"]) for view, records in by_view.items()}


def mean_applied(record: dict[str, Any]) -> float:
    """The record's applied offset; its mean over frames for ``phasecorr_method: frame``."""
    applied = record["applied"]
    return float(np.mean(applied)) if isinstance(applied, list) else float(applied)


def draw_phase_offsets(records: dict[str, list[dict[str, Any]]], path: str) -> None:
    from matplotlib.ticker import MaxNLocator

    first = next(iter(records.values()))[0]
    method = first["params"]["phasecorr_method"]
    if method == "frame":
        # one offset per written frame: planes x frames, one panel per view
        fig = _figure(10, 0.6 + 3.2 * len(records))
        axes = fig.subplots(len(records), 1, squeeze=False)[:, 0]
        for ax, (view, recs) in zip(axes, records.items()):
            values = np.array([r["applied"] for r in recs], dtype=float)
            limit = max(0.5, float(np.nanmax(np.abs(values))))
            image = ax.imshow(values, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest",
                              extent=(0.5, values.shape[1] + 0.5, len(recs) + 0.5, 0.5))
            ax.set_yticks(range(1, len(recs) + 1), [str(r["plane"]) for r in recs], fontsize=7)
            ax.set_xlabel("written frame")
            ax.set_ylabel("plane")
            ax.set_title(f"{view}: applied odd-row offset per frame", fontsize=10)
            fig.colorbar(image, ax=ax, label="offset (px)")
    else:
        fig = _figure(8, 4)
        ax = fig.subplots()
        for view, recs in records.items():
            planes = [r["plane"] for r in recs]
            line = ax.plot(planes, [r["offset"] for r in recs], "o-", label=f"{view}: estimate")[0]
            ax.plot(planes, [r["applied"] for r in recs], "x", markersize=9, color=line.get_color(),
                    label=f"{view}: applied")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("plane")
        ax.set_ylabel("odd-row offset (px)")
        ax.set_title(f"Scan-phase offset per plane ({method} of {len(from_runs(first['window']))} frames)", fontsize=10)
        ax.legend(fontsize=8)
    _save_figure(fig, path)


def _busiest_window(image: np.ndarray, rows: range, cols: range, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the crop with the most horizontal structure (where a row offset shows)."""
    ch, cw = size
    gradient = np.abs(np.diff(image, axis=1))
    best, corner = -1.0, (rows.start, cols.start)
    for y in rows:
        for x in cols:
            score = float(gradient[y : y + ch, x : x + cw - 1].sum())
            if score > best:
                best, corner = score, (y, x)
    return corner


def draw_phase_rows(before: np.ndarray, after: np.ndarray, info: SourceInfo, roi: int | None, plane: int,
                    applied: float, view: str, path: str) -> None:
    """Odd and even page rows of one plane before (raw pages) and after (exported) the correction."""
    strip = info.layout.strips[0 if roi is None else roi]  # the crop lies in the view's first ROI
    ch, cw = min(PHASE_CROP[0], strip.height), min(PHASE_CROP[1], strip.width)
    y0, x0 = _busiest_window(after, range(0, strip.height - ch + 1, max(1, ch // 2)),
                             range(0, strip.width - cw + 1, max(1, cw // 2)), (ch, cw))
    row = y0 + max(0, ch // 2 - 1)
    row += (strip.y0 + row) % 2  # the profiled pair: an even page row and the odd one below it
    fig = _figure(11, 7)
    axes = fig.subplots(2, 2)
    low, high = display_range(after[y0 : y0 + ch, x0 : x0 + cw])
    for col, (name, image) in enumerate((("before: raw pages", before), ("after: exported", after))):
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        ax = axes[0, col]
        ax.imshow(crop, cmap="gray", vmin=low, vmax=high, interpolation="nearest",
                  extent=(x0 - 0.5, x0 + cw - 0.5, y0 + ch - 0.5, y0 - 0.5))
        for r in (row, row + 1):
            ax.axhline(r, color="tab:orange" if (strip.y0 + r) % 2 == 0 else "tab:cyan", linewidth=0.6, alpha=0.8)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
        profile = axes[1, col]
        columns = np.arange(x0, x0 + cw)
        if row + 1 < image.shape[0]:
            for r, parity, colour in ((row, "even", "tab:orange"), (row + 1, "odd", "tab:cyan")):
                profile.plot(columns, image[r, x0 : x0 + cw], color=colour,
                             label=f"row {r} ({parity} page row {strip.y0 + r})")
        profile.set_xlabel("column")
        profile.set_ylabel("mean intensity")
        profile.legend(fontsize=7)
        profile.tick_params(labelsize=7)
    fig.suptitle(f"Scan phase, plane {plane + 1}, {view}: odd rows shifted by {applied:+.2f} px", fontsize=11)
    _save_figure(fig, path)


def draw_axial_shifts(records: dict[str, dict[str, Any]], written: list[int], path: str) -> None:
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10, 4)
    axes = fig.subplots(1, 2)
    for view, record in records.items():
        shifts = np.asarray(record["shifts"])
        planes = np.arange(1, len(shifts) + 1)
        for ax, axis, name in ((axes[0], 0, "dy"), (axes[1], 1, "dx")):
            ax.plot(planes, shifts[:, axis], "o-", markersize=4, label=view)
            limit = record["at_search_limit"]  # 1-based planes whose step hit the search window's edge
            if limit:
                ax.plot(limit, shifts[np.asarray(limit) - 1, axis], "s", markersize=10, markerfacecolor="none",
                        color="tab:red", label=f"{view}: step at max_reg_xy")
            ax.set_title(f"{name} (rows)" if axis == 0 else f"{name} (columns)", fontsize=10)
    first = next(iter(records.values()))
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.set_xlabel("plane")
        ax.set_ylabel("shift applied to align with plane 1 (px)")
        for plane in written:
            ax.axvline(plane, color="0.9", linewidth=3, zorder=0)
        ax.legend(fontsize=8)
    fig.suptitle(f"Axial plane shifts (max_reg_xy {first['params']['max_reg_xy']}; written planes shaded)", fontsize=11)
    _save_figure(fig, path)


def draw_axial_projection(means: list[PlaneMean], shifts: list[list[int]], mask: np.ndarray, view: str,
                          path: str) -> None:
    """Max over planes of the per-plane-normalised means, as written and with the shifts applied."""
    stack = np.stack([normalised(m.image, mask) for m in means])
    raw = stack.max(axis=0)
    aligned = axial.apply_shifts_padded(stack, shifts).max(axis=0)
    height, width = aligned.shape
    fig_width = min(MAX_FIGURE_WIDTH_IN, max(8.0, 2 * width / DPI))
    fig = _figure(fig_width, fig_width / 2 * height / width + 0.8)
    axes = fig.subplots(1, 2)
    for ax, image, name in ((axes[0], raw, "without shifts"), (axes[1], aligned, "with plane_shifts applied")):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name} · {image.shape[0]}×{image.shape[1]}", fontsize=10)
        ax.set_axis_off()
    fig.suptitle(f"Max projection over {len(means)} planes, {view}", fontsize=11)
    _save_figure(fig, path)


# --------------------------------------------------------------------------- tables


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + str(key), value))
    return rows


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def history_html(manifest: Path) -> str:
    """The processing steps the manifest records: the input's earlier ones, then this export."""
    steps = json.loads(manifest.read_text()).get("steps") or []
    rows = []
    for i, step in enumerate(steps, 1):
        inputs, outputs = step.get("inputs") or [], step.get("outputs") or []
        software = ", ".join(f"{name} {version}" for name, version in (step.get("software") or {}).items())
        rows.append([i, step.get("step"), step.get("timestamp"), step.get("host"), software,
                     f"{len(inputs)} file(s), {_size(sum(f.get('size', 0) for f in inputs))}",
                     f"{len(outputs)} output(s), {_size(sum(o.get('size', 0) for o in outputs))}", step.get("id")])
    return _table(["#", "step", "timestamp", "host", "software", "inputs", "outputs", "id"], rows, left=8)


def write_run_page(plan: Plan, config: dict[str, Any], manifest: str, path: str) -> None:
    outputs = "\n".join(str(Path(p).relative_to(plan.outdir)) for p in plan.final_outputs())
    body = (
        f"<h2>Plan</h2><pre>{html.escape(plan_summary(plan))}</pre>"
        f"<h2>Outputs (in {html.escape(str(Path(plan.outdir).resolve()))})</h2><pre>{html.escape(outputs)}</pre>"
        f"<h2>Processing history ({html.escape(Path(manifest).name)})</h2>{history_html(Path(manifest))}"
        f"<h2>Resolved configuration</h2>"
        + _table(["key", "value"], [[k, json.dumps(v)] for k, v in _flatten(config)], left=2)
    )
    _write_page(path, "imexport run", body)


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):  # Snakemake writes NA when a job ended before it sampled
        return None


def benchmark_rows(plan: Plan, benchmarks: list[str]) -> list[dict[str, Any]]:
    """One row per job; its step is the first folder of ``<step>/<job>.tsv`` under the benchmarks folder."""
    folder = Path(plan.work) / "benchmarks"
    rows = []
    for tsv in map(Path, benchmarks):
        name = str(tsv.relative_to(folder).with_suffix(""))
        step, _, job = name.partition("/")
        with open(tsv, newline="") as fh:
            values = list(csv.DictReader(fh, delimiter="\t"))[-1]  # the last repeat of the job
        rows.append({"step": step, "job": job or name, "s": _number(values.get("s")),
                     "max_rss": _number(values.get("max_rss")), "cpu_time": _number(values.get("cpu_time")),
                     "finished": datetime.fromtimestamp(tsv.stat().st_mtime).isoformat(" ", "seconds")})
    return rows


def write_benchmark_page(plan: Plan, benchmarks: list[str], path: str) -> None:
    rows = benchmark_rows(plan, benchmarks)
    steps: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        steps.setdefault(row["step"], []).append(row)

    def peak(items, key):
        values = [r[key] for r in items if r[key] is not None]
        return max(values) if values else None

    summary = [[step, len(items), sum(r["s"] or 0 for r in items), peak(items, "s"), peak(items, "max_rss")]
               for step, items in steps.items()]
    body = (
        "<h2>Per step</h2>"
        + _table(["step", "jobs", "total wall time (s)", "longest job (s)", "peak RSS (MB)"], summary)
        + "<h2>Per job</h2>"
        + _table(["step", "job", "wall time (s)", "peak RSS (MB)", "CPU time (s)", "finished"],
                 [[r["step"], r["job"], r["s"], r["max_rss"], r["cpu_time"], r["finished"]] for r in rows], left=2)
        + "<p class=note>Peak memory is sampled while a job runs: jobs shorter than the first sample show –.</p>"
    )
    _write_page(path, "imexport benchmarks", body)


def write_planes_page(plan: Plan, means: dict[int | None, list[PlaneMean]],
                      differences: dict[tuple[str, int | None], list[float]], formats: list[str],
                      phase: dict[str, list[dict[str, Any]]], n_read: int, path: str) -> None:
    primary = formats[0]
    header = ["view", "plane", "frames read", "shape", "mean", f"p{PERCENTILES[0]:g}", f"p{PERCENTILES[1]:g}"]
    header += [f"max |Δ| {fmt} − {primary}" for fmt in formats[1:]]
    if phase:
        header += ["scan-phase estimate (px)", "applied (px)"]
    rows = []
    for roi in plan.rois:
        view = view_name(roi)
        by_plane = {r["plane"]: r for r in phase.get(view, [])}
        for i, mean in enumerate(means[roi]):
            image = mean.image
            low, high = display_range(image, filled_mask(plan.source, roi))
            row = [view, mean.plane + 1, n_read, "×".join(map(str, image.shape)), float(image.mean()), low, high]
            row += [differences[(fmt, roi)][i] for fmt in formats[1:]]
            if phase:
                record = by_plane.get(mean.plane + 1)
                if record is None:
                    row += [None, None]
                elif "offsets" in record:
                    row += [f"median {np.median(record['offsets']):.2f} over {len(record['offsets'])} frames",
                            f"mean {mean_applied(record):.2f}"]
                else:
                    row += [record["offset"], record["applied"]]
            rows.append(row)
    note = ("<p class=note>Each mean is over the same evenly spaced written frames. Δ compares the mean images read "
            "back from each format with those of the first; non-zero only where a format converts the pixels "
            "(the Suite2p binary is int16).</p>" if len(formats) > 1 else "")
    _write_page(path, "imexport plane statistics", _table(header, rows, left=1) + note)


# --------------------------------------------------------------------------- the step


def write_qc(config: dict[str, Any], source_json: str, index_path: str, *, manifest: str, benchmarks: list[str],
             max_frames: int) -> QcFiles:
    """Every QC file of one export run (the ``qc`` rule), from its outputs, records, manifest and benchmarks."""
    info = SourceInfo.from_json(Path(source_json).read_text())
    plan = build_plan(config, info)  # the same plan the workflow built from the same config
    files = qc_files(plan)
    formats = formats_of(config)
    primary = formats[0]
    positions = axial.mean_frame_indices(len(plan.frames), max_frames)
    n_read, n_total = len(positions), len(plan.frames)
    means = {roi: written_means(plan, primary, roi, positions) for roi in plan.rois}
    differences = {(fmt, roi): format_differences(plan, fmt, roi, positions, means[roi])
                   for fmt in formats[1:] for roi in plan.rois}
    budget = min(PLANE_PNG_MAX_PX, PLANE_PNG_BUDGET_PX // max(1, len(files.mean_planes)))

    for roi in plan.rois:
        view, mask = view_name(roi), filled_mask(info, roi)
        draw_mean_grid(means[roi], mask, n_read, n_total,
                       f"Time-mean images, {view} ({primary}, first written channel)", files.mean_grids[view])
        for mean in means[roi]:
            _save_gray_png(mean.image, mask, files.mean_planes[(view, mean.plane + 1)], budget)
    if files.seams:
        draw_seams(means[None], info, files.seams)

    phase = _phase_records(plan) if plan.phase_tasks else {}
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

    write_planes_page(plan, means, differences, formats, phase, n_read, files.planes_table)
    write_run_page(plan, config, manifest, files.run)
    write_benchmark_page(plan, benchmarks, files.benchmarks)
    return files
