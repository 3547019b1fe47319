"""The QC figures (matplotlib, imported inside the drawing functions only), saved as
small PNGs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import axial
from ..atomic import write_atomic
from ..selection import from_runs
from ..sources.info import SourceInfo
from .reading import PlaneMean, display_range, filled_mask, normalised

DPI = 100
MAX_FIGURE_WIDTH_IN = 16.0  # 1600 px at DPI
PLANE_PNG_MIN_SIDE = 512  # the report shows images at their own size: small planes are enlarged
SEAM_HALF_WIDTH = 16  # columns shown on each side of a ROI seam
SEAM_MAX_PLANES = 4
PHASE_CROP = (32, 64)  # rows, columns of the scan-phase before/after crop


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


def save_gray_png(image: np.ndarray, mask: np.ndarray, path: str, max_pixels: int) -> None:
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
            image = ax.imshow(
                values,
                aspect="auto",
                cmap="coolwarm",
                vmin=-limit,
                vmax=limit,
                interpolation="nearest",
                extent=(0.5, values.shape[1] + 0.5, len(recs) + 0.5, 0.5),
            )
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
            ax.plot(planes, [r["applied"] for r in recs], "x", markersize=9, color=line.get_color(), label=f"{view}: applied")
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


def draw_phase_rows(
    before: np.ndarray, after: np.ndarray, info: SourceInfo, roi: int | None, plane: int, applied: float, view: str, path: str
) -> None:
    """Odd and even page rows of one plane before (raw pages) and after (exported) the correction."""
    strip = info.layout.strips[0 if roi is None else roi]  # the crop lies in the view's first ROI
    ch, cw = min(PHASE_CROP[0], strip.height), min(PHASE_CROP[1], strip.width)
    y0, x0 = _busiest_window(
        after, range(0, strip.height - ch + 1, max(1, ch // 2)), range(0, strip.width - cw + 1, max(1, cw // 2)), (ch, cw)
    )
    row = y0 + max(0, ch // 2 - 1)
    row += (strip.y0 + row) % 2  # the profiled pair: an even page row and the odd one below it
    fig = _figure(11, 7)
    axes = fig.subplots(2, 2)
    low, high = display_range(after[y0 : y0 + ch, x0 : x0 + cw])
    for col, (name, image) in enumerate((("before: raw pages", before), ("after: exported", after))):
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        ax = axes[0, col]
        ax.imshow(
            crop,
            cmap="gray",
            vmin=low,
            vmax=high,
            interpolation="nearest",
            extent=(x0 - 0.5, x0 + cw - 0.5, y0 + ch - 0.5, y0 - 0.5),
        )
        for r in (row, row + 1):
            ax.axhline(r, color="tab:orange" if (strip.y0 + r) % 2 == 0 else "tab:cyan", linewidth=0.6, alpha=0.8)
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
        profile = axes[1, col]
        columns = np.arange(x0, x0 + cw)
        if row + 1 < image.shape[0]:
            for r, parity, colour in ((row, "even", "tab:orange"), (row + 1, "odd", "tab:cyan")):
                profile.plot(columns, image[r, x0 : x0 + cw], color=colour, label=f"row {r} ({parity} page row {strip.y0 + r})")
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
                ax.plot(
                    limit,
                    shifts[np.asarray(limit) - 1, axis],
                    "s",
                    markersize=10,
                    markerfacecolor="none",
                    color="tab:red",
                    label=f"{view}: step at max_reg_xy",
                )
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


def draw_axial_projection(means: list[PlaneMean], shifts: list[list[int]], mask: np.ndarray, view: str, path: str) -> None:
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


def draw_frame_intervals(timing: dict[str, Any], fs: float | None, path: str) -> None:
    """The interval between consecutive frames (volumes) of the whole recording, from the
    page descriptions' ``frameTimestamps_sec``; dropped frames (gaps in ``frameNumbers``)
    named in the title. A note instead of a plot when the pages carry no timestamps."""
    fig = _figure(10, 3)
    ax = fig.subplots()
    times = np.asarray(timing.get("timestamps_sec", []), dtype=float)
    if len(times) < 2 or not np.isfinite(times).any():
        ax.text(0.5, 0.5, "no frame timestamps in the page descriptions", ha="center", va="center")
        ax.set_axis_off()
        _save_figure(fig, path)
        return
    ax.plot(np.arange(2, len(times) + 1), np.diff(times) * 1e3, ".-", markersize=3, linewidth=0.8)
    if fs:
        ax.axhline(1e3 / fs, color="0.6", linewidth=0.8, label=f"1 / fs = {1e3 / fs:.2f} ms")
        ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame (volume), 1-based")
    ax.set_ylabel("interval to the previous frame (ms)")
    dropped = timing.get("dropped_frames", [])
    where = ", ".join(f"{d['missing']} after frameNumbers {d['after_frame_number']}" for d in dropped[:5])
    more = f" and {len(dropped) - 5} more gap(s)" if len(dropped) > 5 else ""
    fig.suptitle(
        f"Frame intervals: {sum(d['missing'] for d in dropped)} dropped frame(s)" + (f" ({where}{more})" if dropped else ""),
        fontsize=11,
    )
    _save_figure(fig, path)
