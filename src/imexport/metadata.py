"""The metadata written into every output: physical scales, selections, geometry.

Physical values come from the ScanImage header, then the config's ``metadata:``
mapping (which may supply what the header lacks, e.g. the LBM plane spacing ``dz``),
then stride scaling of the *written* selection: every k-th plane → ``dz * k``, every
k-th frame → ``fs / k``, an irregular frame selection → ``fs`` unknown (None).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import __version__
from .selection import to_runs, uniform_step
from .sources.info import SourceInfo

PHYSICAL_KEYS = ("fs", "dx", "dy", "dz")


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
            "channels": [int(c) + 1 for c in colors],
            "roi_mode": roi_mode,
            "roi": None if roi is None else roi + 1,
            "shape": [int(len(frames)), int(len(colors)), int(len(planes)), height, width],
            "dims": ["t", "c", "z", "y", "x"],
            "fly_to_lines": info.fly_to_lines,
            "roi_geometry": [
                {**meta, "page_rows": [s.y0, s.y0 + s.height]}
                for meta, s in zip(info.rois, info.layout.strips)
            ],
            "scanimage": info.scanimage,
        }
    )
    return md


def plane_metadata(export_md: dict[str, Any], plane: int, z_index: int) -> dict[str, Any]:
    """The export's metadata narrowed to one plane."""
    return {**export_md, "plane": plane + 1, "z_index": z_index}
