"""The metadata written into every output: physical scales, selections, geometry.

Physical values come from the ScanImage header, then the config's ``metadata:``
mapping (which may supply what the header lacks, e.g. the LBM plane spacing ``dz``),
then stride scaling of the *written* selection: every k-th plane → ``dz * k``, every
k-th frame → ``fs / k``, an irregular frame selection → ``fs`` unknown (None).

Two things are too big or too late for the plan's per-plane metadata (Snakemake keeps
job parameters): the whole ScanImage header (``source_header``) and the acquisition
time of every frame, known once ``index_source`` has read the page descriptions
(``frame_timing``). Writers add them once per output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import __version__
from .selection import to_runs, uniform_step
from .sources.info import SourceInfo
from .sources.scanimage_timing import first_pages, frame_timestamps, load_timing, timing_metadata

PHYSICAL_KEYS = ("fs", "dx", "dy", "dz")
# Up to this many frames the per-frame timing lists stay inline in an output's metadata
# (about 40 kB of JSON: below HDF5's 64 KiB attribute limit, small in a TIFF header or a
# zarr.json); past it they go to a JSON sidecar beside the output (TIMING_SIDECAR_SUFFIX).
TIMING_INLINE_FRAMES = 1_000
PER_FRAME_TIMING_KEYS = ("timestamps_sec", "frame_numbers")
TIMING_SIDECAR_SUFFIX = ".timing.json"


def physical_scales(info: SourceInfo, user: dict[str, Any], planes: np.ndarray, frames: np.ndarray) -> dict:
    values = {key: getattr(info, key) for key in PHYSICAL_KEYS}
    for key in PHYSICAL_KEYS:
        if user.get(key) is not None:
            values[key] = float(user[key])
    plane_step = uniform_step(np.sort(planes))
    frame_step = uniform_step(frames)
    if values["dz"] is not None:
        values["dz"] = values["dz"] * plane_step if plane_step else None
    if values["fs"] is not None:
        values["fs"] = values["fs"] / frame_step if frame_step else None
    values["plane_stride"] = plane_step
    values["frame_stride"] = frame_step
    return values


def export_metadata(
    info: SourceInfo,
    *,
    planes: np.ndarray,
    frames: np.ndarray,
    colors: np.ndarray,
    roi: int | None,
    roi_mode: str,
    user: dict[str, Any],
) -> dict[str, Any]:
    """Metadata shared by all planes of one export (one ROI or the stitched view)."""
    height, width = info.layout.output_shape(roi)
    md: dict[str, Any] = {key: value for key, value in user.items() if key not in PHYSICAL_KEYS}
    md.update(
        {
            "imexport_version": __version__,
            "source_format": info.kind,
            "source_files": list(info.files),
            "source_shape": list(info.shape()),
            "stack_type": info.stack_type,
            **physical_scales(info, user, planes, frames),
            "units": {"fs": "Hz", "dx": "micrometer", "dy": "micrometer", "dz": "micrometer"},
            "planes": [int(p) + 1 for p in planes],
            "frames": to_runs(frames),
            "n_frames": int(len(frames)),
            "frames_per_file": exported_frames_per_file(info, frames),
            "channels": [int(c) + 1 for c in colors],
            **_source_channels(info, colors),
            **_z_layout(info),
            "roi_mode": roi_mode,
            "roi": None if roi is None else roi + 1,
            "shape": [int(len(frames)), int(len(colors)), int(len(planes)), height, width],
            "dims": ["t", "c", "z", "y", "x"],
            "fly_to_lines": info.fly_to_lines,
            "roi_geometry": [{**meta, "page_rows": [s.y0, s.y0 + s.height]} for meta, s in zip(info.rois, info.layout.strips)],
            "scanimage": info.scanimage,
        }
    )
    return md


def exported_frames_per_file(info: SourceInfo, frames: np.ndarray) -> list[int] | None:
    """How many of the exported ``frames`` each source file holds (Suite2p's ``frames_per_file``).

    A ScanImage frame belongs to the file of its first page (a volume split over two files
    counts in the first); other sources, where their files hold frames in order, one to
    one. None where frames and files do not map so (e.g. a grid of plane files).
    """
    frames = np.asarray(frames, dtype=np.int64)
    if info.kind == "scanimage":
        first_page = np.concatenate([[0], np.cumsum(info.pages_per_file)])
        files = np.searchsorted(first_page, first_pages(info, frames), side="right") - 1
    elif sum(info.frames_per_file) == info.n_frames:
        files = np.searchsorted(np.cumsum(info.frames_per_file), frames, side="right")
    else:
        return None
    return np.bincount(files, minlength=len(info.files)).astype(int).tolist()


def split_timing(timing: dict[str, Any], sidecar_name: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``timing`` as an output's metadata carries it, and what goes to its sidecar (None: nothing).

    Past ``TIMING_INLINE_FRAMES`` frames the per-frame lists move to the sidecar
    ``sidecar_name`` (a file name beside the output), which the inline part names.
    """
    if len(timing.get("timestamps_sec", ())) <= TIMING_INLINE_FRAMES:
        return timing, None
    inline = {k: v for k, v in timing.items() if k not in PER_FRAME_TIMING_KEYS}
    inline["per_frame_sidecar"] = sidecar_name
    return inline, {k: timing[k] for k in PER_FRAME_TIMING_KEYS}


def plane_metadata(export_md: dict[str, Any], plane: int, z_index: int) -> dict[str, Any]:
    """The export's metadata narrowed to one plane."""
    return {**export_md, "plane": plane + 1, "z_index": z_index}


def _source_channels(info: SourceInfo, colors: np.ndarray) -> dict[str, Any]:
    """The ScanImage channel number(s) behind each exported colour (``channelSave``)."""
    numbers = info.options.get("channel_numbers")
    return {"source_channels": [numbers[int(c)] for c in colors]} if numbers else {}


def _z_layout(info: SourceInfo) -> dict[str, Any]:
    """How the planes of a ScanImage stack were acquired (slices, repeats, flyback, beads)."""
    stack = info.options.get("stack")
    if not stack:
        return {}
    keys = (
        "slices",
        "frames_per_slice",
        "log_average_factor",
        "repeats",
        "flyback_frames",
        "slice_repeats",
        "beads",
        "slice_step_um",
    )
    layout = {key: stack.get(key) for key in keys}
    # planes are bead-major: plane = bead x slices + slice (x repeats + repeat with slice_repeats: planes)
    layout["plane_order"] = "bead, slice, repeat" if stack["slice_repeats"] == "planes" else "bead, slice"
    return {"z_layout": layout}


def source_header(info: SourceInfo) -> dict[str, Any]:
    """The whole ScanImage header (every ``SI.*`` value and the ROI JSON), as JSON; {} for other inputs."""
    return info.options.get("header") or {}


def frame_timing(info: SourceInfo, index_path: str | None, frames: np.ndarray) -> dict[str, Any]:
    """Acquisition times of the exported ``frames`` (0-based), from the page index; {} when unknown.

    ``timestamps_sec`` holds each frame's ``frameTimestamps_sec`` (a volume: its first
    page's), ``frame_numbers`` ScanImage's numbers of those pages, ``acquisition_start``
    the ``epoch`` as ISO 8601, ``dropped_frames`` the gaps in ``frameNumbers``.
    """
    if info.kind != "scanimage" or index_path is None:
        return {}
    return timing_metadata(info, load_timing(index_path), frames)


def plane_timestamps(info: SourceInfo, index_path: str, frames: np.ndarray, plane: int | None = None) -> np.ndarray | None:
    """float64 seconds of each exported frame (of ``plane``'s own page when given); None when unknown."""
    timing = load_timing(index_path) if info.kind == "scanimage" else None
    return None if not timing else frame_timestamps(info, timing, frames, plane)
