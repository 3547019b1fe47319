"""The ScanImage header → how pages map to (time, colour, plane), and the whole header as JSON.

Page order of one acquisition cycle (one volume, ScanImage's logging order): for each
slice ``s``, for each logged repeat ``r`` of it, one page per saved channel (channel
fastest); then the flyback frames, again one page per saved channel. So

    page = v·P + (s·R + r)·C + c,   P = (S·R + F)·C

with ``S`` slices, ``R`` logged repeats per slice (``framesPerSlice``, or
``framesPerSlice / logAverageFactor`` when ScanImage averaged before logging), ``F``
flyback frames (``numFramesPerVolumeWithFlyback − numFramesPerVolume``) and ``C`` saved
channels. Saved channel ``c·B + b`` is colour ``c``, light bead ``b`` (LBM, ``B`` beads
per colour). A recording is volumetric iff ``SI.hStackManager.enable`` and
``numSlices > 1``; otherwise a frame is a volume (``S = R = 1``, ``F = 0``).

Planes are numbered in depth order, bead-major: plane ``b·S + s`` (LBM with a piezo
stack: each bead's piezo sweep stays within the bead spacing), times ``R`` with
``slice_repeats: planes`` (plane ``(b·S + s)·R + r``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .info import SourceError, SourceInfo

SLICE_REPEATS = ("average", "first", "planes")
# header fields copied into every output's metadata (the whole header goes once per export)
SUMMARY_KEYS = (
    "SI.VERSION_MAJOR", "SI.VERSION_MINOR", "SI.imagingSystem", "SI.hChannels.channelSave",
    "SI.hRoiManager.scanFrameRate", "SI.hRoiManager.linePeriod", "SI.hScan2D.flytoTimePerScanfield",
    "SI.hScan2D.bidirectional", "SI.objectiveResolution", "SI.hRoiManager.scanZoomFactor",
    "SI.hScan2D.logFramesPerFile", "SI.hStackManager.enable", "SI.hStackManager.numSlices",
    "SI.hStackManager.framesPerSlice", "SI.hScan2D.logAverageFactor",
    "SI.hStackManager.actualStackZStepSize", "SI.hStackManager.stackZStepSize",
)


def jsonable(value: Any) -> Any:
    """A parsed MATLAB value as plain JSON: lists, numbers, strings, booleans, None.

    ``Inf``/``NaN`` become the strings ``"Inf"``, ``"-Inf"``, ``"NaN"`` (JSON has no such numbers).
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Inf" if value > 0 else "-Inf")
    return str(value)


def flat_numbers(value: Any) -> list[int]:
    """``1``, ``[1 4]``, ``[1;2]`` (MATLAB scalar, row or column vector) → ``[1]``, ``[1, 4]``, ``[1, 2]``."""
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in flat_numbers(v)]
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(value)
    return [int(value)]


def _integer(frame: dict, key: str, where: str, default: int | None) -> int | None:
    """A whole-number header field; ``default`` when absent or ``[]``, None when ``Inf``."""
    value = frame.get(key, default)
    if value is None or value == []:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: {key} = {value!r} is not a number") from None
    if math.isinf(number):
        return None
    if not number.is_integer():
        raise SourceError(f"{where}: {key} = {value!r} is not a whole number")
    return int(number)


def saved_channels(frame: dict, where: str) -> list[int]:
    if "SI.hChannels.channelSave" not in frame:
        raise SourceError(f"{where}: ScanImage header lacks SI.hChannels.channelSave")
    try:
        saved = flat_numbers(frame["SI.hChannels.channelSave"])
    except (TypeError, ValueError):
        raise SourceError(
            f"{where}: SI.hChannels.channelSave = {frame['SI.hChannels.channelSave']!r} is not a channel list"
        ) from None
    if not saved:
        raise SourceError(f"{where}: SI.hChannels.channelSave is empty: no channel was saved")
    return saved


def color_count(frame: dict, saved: list[int], volumetric: bool) -> int:
    """Colour channels among the saved ones: distinct AI ports, else a guess by count.

    Without port settings a volumetric recording has one bead, so every saved channel is
    a colour; a planar one with two saved channels is two PMTs, with more it is LBM.
    """
    ports = {frame.get(f"SI.hScan2D.virtualChannelSettings__{ch}.source") for ch in saved} - {None}
    if ports:
        return len(ports)
    if volumetric:
        return len(saved)
    return 2 if len(saved) == 2 else 1


def is_volumetric(frame: dict, where: str) -> bool:
    """A stack iff ``SI.hStackManager.enable`` and ``numSlices > 1`` (planar files may have enable with one slice)."""
    slices = _integer(frame, "SI.hStackManager.numSlices", where, 1)
    return frame.get("SI.hStackManager.enable") is True and slices is not None and slices > 1


def stack_model(frame: dict, where: str, *, beads: int, slice_repeats: str) -> dict[str, Any] | None:
    """The page order of a volumetric recording (None when planar), checked field by field."""
    if not is_volumetric(frame, where):
        return None
    slices = _integer(frame, "SI.hStackManager.numSlices", where, 1)
    per_slice = _integer(frame, "SI.hStackManager.framesPerSlice", where, 1)
    log_average = _integer(frame, "SI.hScan2D.logAverageFactor", where, 1) or 1
    if per_slice < 1 or log_average < 1:
        raise SourceError(f"{where}: SI.hStackManager.framesPerSlice = {per_slice}, "
                          f"SI.hScan2D.logAverageFactor = {log_average}: both must be at least 1")
    if log_average > 1 and per_slice % log_average:
        raise SourceError(
            f"{where}: SI.hScan2D.logAverageFactor = {log_average} does not divide SI.hStackManager.framesPerSlice = "
            f"{per_slice}: the logged frames of a slice are unknown; not supported"
        )
    repeats = per_slice // log_average  # logged frames per slice
    actual = _integer(frame, "SI.hStackManager.actualNumSlices", where, None)
    if actual is not None and actual != slices:
        raise SourceError(f"{where}: SI.hStackManager.numSlices = {slices} but actualNumSlices = {actual}; "
                          f"the header does not say how many slices were logged")
    per_volume = _integer(frame, "SI.hStackManager.numFramesPerVolume", where, slices * per_slice)
    if per_volume not in (slices * per_slice, slices * repeats):
        raise SourceError(
            f"{where}: SI.hStackManager.numFramesPerVolume = {per_volume}, but numSlices x framesPerSlice = "
            f"{slices} x {per_slice}: the header contradicts itself"
        )
    with_flyback = _integer(frame, "SI.hStackManager.numFramesPerVolumeWithFlyback", where, per_volume)
    flyback = with_flyback - per_volume
    if flyback < 0:
        raise SourceError(f"{where}: SI.hStackManager.numFramesPerVolumeWithFlyback = {with_flyback} is less than "
                          f"numFramesPerVolume = {per_volume}")
    if flyback and log_average > 1:
        raise SourceError(
            f"{where}: flyback frames (numFramesPerVolumeWithFlyback - numFramesPerVolume = {flyback}) with "
            f"SI.hScan2D.logAverageFactor = {log_average}: how ScanImage logs this is not known here; not supported"
        )
    if slice_repeats not in SLICE_REPEATS:
        raise SourceError(f"input_options.slice_repeats = {slice_repeats!r}: use one of {', '.join(SLICE_REPEATS)}")
    mode = slice_repeats if repeats > 1 else "first"
    return {
        "slices": slices,
        "frames_per_slice": per_slice,
        "log_average_factor": log_average,
        "repeats": repeats,
        "flyback_frames": flyback,
        "frames_per_volume": slices * repeats + flyback,  # logged frames of one cycle
        "slice_repeats": mode,
        "beads": beads,
        "n_planes": beads * slices * (repeats if mode == "planes" else 1),
    }


def _scanfield(roi: dict, where: str) -> dict:
    fields = roi.get("scanfields")
    if isinstance(fields, list):
        fields = fields[0] if fields else None
    if not isinstance(fields, dict) or "pixelResolutionXY" not in fields:
        raise SourceError(f"{where}: a ROI has no scanfield with pixelResolutionXY")
    return fields


def roi_list(roi_groups: dict, where: str) -> list[dict]:
    try:
        rois = roi_groups["RoiGroups"]["imagingRoiGroup"]["rois"]
    except (KeyError, TypeError):
        raise SourceError(f"{where}: the ScanImage ROI JSON has no RoiGroups.imagingRoiGroup.rois") from None
    rois = [rois] if isinstance(rois, dict) else list(rois)
    if not rois:
        raise SourceError(f"{where}: the ScanImage ROI group is empty")
    return rois


def check_coplanar(rois: list[dict], where: str) -> None:
    """ROIs imaged at different depths must not be stitched side by side as one plane."""
    depths = [jsonable(roi.get("zs", 0)) for roi in rois]
    if len(rois) > 1 and any(d != depths[0] for d in depths[1:]):
        listed = ", ".join(f"ROI {i + 1}: {d}" for i, d in enumerate(depths))
        raise SourceError(
            f"{where}: the ROIs are imaged at different depths (RoiGroups.imagingRoiGroup.rois[].zs = {listed}); "
            f"multi-ROI recordings with per-ROI depths are not supported: they cannot be stitched as one plane"
        )


def roi_geometry(frame: dict, rois: list[dict], where: str) -> list[dict[str, Any]]:
    objective = float(frame.get("SI.objectiveResolution", 1.0) or 1.0)
    out = []
    for i, roi in enumerate(rois):
        sf = _scanfield(roi, where)
        width, height = (int(v) for v in sf["pixelResolutionXY"])
        size = [float(v) for v in sf.get("sizeXY", [0.0, 0.0])]
        out.append({
            "index": i + 1,
            "name": roi.get("name", f"ROI {i + 1}"),
            "pixels_xy": [width, height],
            "size_deg_xy": size,
            "center_deg_xy": [float(v) for v in sf.get("centerXY", [0.0, 0.0])],
            "size_um_xy": [objective * size[0], objective * size[1]],
        })
    return out


def logged_frames(info: SourceInfo, frames, plane: int) -> tuple[np.ndarray, int]:
    """Logged frames ``(n, k)`` holding each frame (volume) of ``plane`` (``k`` repeats to average), and its bead.

    A logged frame is ``n_saved`` consecutive pages; volume ``v``, slice ``s``, repeat ``r``
    is logged frame ``v·(S·R + F) + s·R + r``.
    """
    frames = np.asarray(frames, dtype=np.int64)
    stack = info.options.get("stack")
    if stack is None:
        return frames[:, None], plane
    slices, repeats, mode = stack["slices"], stack["repeats"], stack["slice_repeats"]
    first = frames * stack["frames_per_volume"]
    if mode == "planes":
        bead, depth = divmod(plane, slices * repeats)
        return (first + depth)[:, None], bead  # depth = s·R + r
    bead, s = divmod(plane, slices)
    if mode == "average":
        return (first + s * repeats)[:, None] + np.arange(repeats), bead
    return (first + s * repeats)[:, None], bead
