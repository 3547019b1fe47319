"""Acquisition time of every page, from ScanImage's per-page ImageDescription.

Each page's description holds ``frameNumbers``, ``frameTimestamps_sec`` (seconds since
the acquisition trigger), ``acqTriggerTimestamps_sec``, ``epoch`` (the wall-clock start,
``[2021 11  5  9 50 13.560]``) and ``auxTrigger0..3`` (event times, ``[]`` when none).
``index_source`` parses them while it walks the IFD chains and stores them in the page
index (keys ``timing_*``); ``frame_timestamps`` then gives the time of chosen frames:
the time of a volume is the time of its first page.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .info import SourceInfo
from .scanimage_header import logged_frames

_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN")  # MATLAB numbers
_SCALAR = {
    key: re.compile(rb"^%s\s*=[ \t]*([^\n\0]*)" % key.encode(), re.M)
    for key in ("frameNumbers", "frameTimestamps_sec", "acqTriggerTimestamps_sec")
}
_EPOCH = re.compile(rb"^epoch\s*=\s*\[([^\]\n\0]*)\]", re.M)
_AUX = re.compile(rb"^auxTrigger(\d)\s*=\s*\[([^\]\n\0]*[0-9][^\]\n\0]*)\]", re.M)  # non-empty event lists only
AUX_CHANNELS = 4


def _numbers(value: bytes) -> list[float]:
    return [float(m.decode()) for m in _NUMBER.findall(value)] if value else []


def epoch_iso(epoch: list[float]) -> str | None:
    """``[year month day hour minute seconds]`` → ISO 8601 (local wall clock, as logged)."""
    if len(epoch) != 6 or not all(math.isfinite(v) for v in epoch):
        return None
    year, month, day, hour, minute = (int(v) for v in epoch[:5])
    micro = int(round(epoch[5] * 1e6))
    try:
        start = _dt.datetime(year, month, day, hour, minute) + _dt.timedelta(microseconds=micro)
    except ValueError:
        return None
    return start.isoformat(timespec="microseconds")


def parse_descriptions(texts: list[bytes]) -> dict[str, Any]:
    """Per-page timing arrays of one file (NaN / -1 where a page lacks a value).

    One regular-expression pass per field over all descriptions at once (a few µs a
    page): the index step reads hundreds of thousands of them.
    """
    n = len(texts)
    blob = b"\n".join(texts)  # "^" then matches the first line of every description
    starts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])

    def per_page(pattern: re.Pattern, fill: float) -> np.ndarray:
        where, found = [], []
        for match in pattern.finditer(blob):
            text = match.group(1)
            try:
                value = float(text)  # the usual single number
            except ValueError:
                numbers = _numbers(text)  # empty, or a list: its first value
                if not numbers:
                    continue
                value = numbers[0]
            where.append(match.start())
            found.append(value)
        values = np.full(n, fill)
        values[np.searchsorted(starts, where, side="right") - 1] = found
        return values

    epoch = _EPOCH.search(blob)
    aux_pages: list[list[int]] = [[] for _ in range(AUX_CHANNELS)]
    aux_times: list[list[float]] = [[] for _ in range(AUX_CHANNELS)]
    for match in _AUX.finditer(blob):
        k, events = int(match.group(1)), _numbers(match.group(2))
        if k < AUX_CHANNELS:
            aux_pages[k] += [int(np.searchsorted(starts, match.start(), side="right") - 1)] * len(events)
            aux_times[k] += events
    return {
        "frame_numbers": per_page(_SCALAR["frameNumbers"], -1).astype(np.int64),
        "frame_timestamps": per_page(_SCALAR["frameTimestamps_sec"], np.nan),
        "acq_trigger_timestamps": per_page(_SCALAR["acqTriggerTimestamps_sec"], np.nan),
        "epoch": epoch_iso(_numbers(epoch.group(1))) if epoch else None,
        **{f"aux{k}_pages": np.asarray(aux_pages[k], np.int64) for k in range(AUX_CHANNELS)},
        **{f"aux{k}_times": np.asarray(aux_times[k], np.float64) for k in range(AUX_CHANNELS)},
    }


def join_files(per_file: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One timing table over all pages of all files (page numbers count across files)."""
    starts = np.cumsum([0] + [len(t["frame_numbers"]) for t in per_file])
    joined = {
        key: np.concatenate([t[key] for t in per_file]) for key in ("frame_numbers", "frame_timestamps", "acq_trigger_timestamps")
    }
    for k in range(AUX_CHANNELS):
        joined[f"aux{k}_pages"] = np.concatenate([t[f"aux{k}_pages"] + s for t, s in zip(per_file, starts)])
        joined[f"aux{k}_times"] = np.concatenate([t[f"aux{k}_times"] for t in per_file])
    joined["epoch"] = np.array([t["epoch"] or "" for t in per_file])
    return joined


def load_timing(index_path: str | Path) -> dict[str, np.ndarray] | None:
    """The timing table ``index_source`` stored beside the page offsets (None if absent)."""
    with np.load(index_path) as data:
        keys = [k for k in data.files if k.startswith("timing_")]
        return {k[len("timing_") :]: data[k] for k in keys} or None


# --------------------------------------------------------------------------- frames


def first_pages(info: SourceInfo, frames, plane: int | None = None) -> np.ndarray:
    """Page number (counted across files) of the first page of each frame, or of ``plane`` in it."""
    frames = np.asarray(frames, dtype=np.int64)
    if plane is None:
        stack = info.options.get("stack")
        logged, channel = frames * (stack["frames_per_volume"] if stack else 1), 0
    else:
        per_frame, bead = logged_frames(info, frames, plane)
        logged, channel = per_frame[:, 0], bead
    first_frame = np.concatenate([[0], np.cumsum(info.frames_per_file)])
    first_page = np.concatenate([[0], np.cumsum(info.pages_per_file)])
    file_of = np.searchsorted(first_frame, logged, side="right") - 1
    return first_page[file_of] + (logged - first_frame[file_of]) * info.n_saved + channel


def frame_timestamps(info: SourceInfo, timing: dict[str, np.ndarray], frames, plane: int | None = None) -> np.ndarray:
    """``frameTimestamps_sec`` of the chosen frames (0-based): a volume's time is its first page's.

    With ``plane``, the time of that plane's own (first) page instead.
    """
    return timing["frame_timestamps"][first_pages(info, frames, plane)]


def dropped_frames(info: SourceInfo, timing: dict[str, np.ndarray]) -> list[dict[str, int]]:
    """Gaps in ``frameNumbers`` between consecutive logged frames: ``{after, missing}`` each.

    The expected step is the most common one (1, or ScanImage's logAverageFactor).
    """
    numbers = timing["frame_numbers"][:: info.n_saved][: sum(info.frames_per_file)]
    numbers = numbers[numbers >= 0]
    if len(numbers) < 2:
        return []
    steps = np.diff(numbers)
    values, counts = np.unique(steps, return_counts=True)
    usual = int(values[np.argmax(counts)])
    return [{"after_frame_number": int(numbers[i]), "missing": int(steps[i] // usual - 1)} for i in np.flatnonzero(steps > usual)]


def timing_metadata(info: SourceInfo, timing: dict[str, np.ndarray] | None, frames) -> dict[str, Any]:
    """What every output's metadata carries about time, for the exported ``frames``."""
    if not timing:
        return {}
    pages = first_pages(info, frames)
    epochs = [str(e) for e in timing["epoch"] if str(e)]
    triggers = timing["acq_trigger_timestamps"]
    aux = {}
    for k in range(AUX_CHANNELS):
        # every saved channel's page of a frame repeats the frame's events: count them once
        once = timing[f"aux{k}_pages"] % info.n_saved == 0
        if once.any():
            aux[f"auxTrigger{k}"] = [float(t) for t in timing[f"aux{k}_times"][once]]
    return {
        "acquisition_start": epochs[0] if epochs else None,
        "acq_trigger_timestamps_sec": sorted({float(t) for t in triggers[np.isfinite(triggers)]}),
        "timestamps_sec": [float(t) for t in timing["frame_timestamps"][pages]],
        "frame_numbers": [int(n) for n in timing["frame_numbers"][pages]],
        "dropped_frames": dropped_frames(info, timing),
        **({"aux_triggers_sec": aux} if aux else {}),
    }
