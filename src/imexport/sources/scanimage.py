"""Raw ScanImage TIFF acquisitions: header, geometry and page reading.

Two steps, matching the workflow:

* ``inspect_acquisition(paths)`` reads the header of the first file and counts pages
  in every file (cheap: run while Snakemake builds its DAG). Result: ``SourceInfo``.
* ``build_page_index(info)`` walks every file's IFD chain once and stores the offset of
  every page; ``PlaneReader`` then reads only the pages of one plane, by offset.

Page ``p`` of a file holds frame ``p // n_saved`` of that file and saved channel
``p % n_saved``; saved channel ``c * n_planes + z`` is colour ``c``, z-plane ``z``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..geometry import PageLayout, page_layout
from .tiff_index import TiffLayoutError, count_pages, index_pages

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """An input that cannot be exported as given; the message names the file."""


@dataclass
class SourceInfo:
    """Everything known about an acquisition before reading pixels (JSON-serialisable)."""

    files: list[str]
    pages_per_file: list[int]
    frames_per_file: list[int]
    page_height: int
    page_width: int
    dtype: str
    n_saved: int  # interleaved pages per frame (ScanImage "saved channels")
    n_colors: int
    n_planes: int
    stack_type: str
    roi_heights: list[int]  # as the ROI metadata asks
    fly_to_lines: int
    fs: float | None  # frame (volume) rate, Hz
    dx: float | None  # µm per pixel
    dy: float | None
    dz: float | None
    rois: list[dict[str, Any]] = field(default_factory=list)
    scanimage: dict[str, Any] = field(default_factory=dict)  # selected header fields

    @property
    def n_frames(self) -> int:
        return sum(self.frames_per_file)

    @property
    def layout(self) -> PageLayout:
        return page_layout(self.page_height, self.page_width, self.roi_heights, self.fly_to_lines)

    @property
    def n_rois(self) -> int:
        return len(self.roi_heights)

    def shape(self, roi: int | None = None) -> tuple[int, int, int, int, int]:
        """Canonical ``(T, C, Z, Y, X)`` of the stitched view, or of one ROI."""
        return (self.n_frames, self.n_colors, self.n_planes, *self.layout.output_shape(roi))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SourceInfo:
        return cls(**json.loads(text))


# --------------------------------------------------------------------------- inputs


def natural_key(path: str | Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


_SERIES_NUMBER = re.compile(r"^(?P<stem>.*)_(?P<number>\d{5})$")


def check_series(paths: list[Path]) -> None:
    """Files of one acquisition are numbered ``_00001, _00002, …`` without gaps."""
    numbered = [(_SERIES_NUMBER.match(p.stem), p) for p in paths]
    if len(paths) < 2 or not all(m for m, _ in numbered):
        return
    stems = {m["stem"] for m, _ in numbered}
    if len(stems) > 1:
        raise SourceError(f"input mixes acquisitions {sorted(stems)}; export them separately")
    numbers = [int(m["number"]) for m, _ in numbered]
    expected = list(range(numbers[0], numbers[0] + len(numbers)))
    if numbers != expected:
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        raise SourceError(
            f"input: the series {numbered[0][1].parent / (stems.pop() + '_NNNNN')}.tif has a gap: "
            f"file number(s) {missing} missing"
        )


# --------------------------------------------------------------------------- header


def _flat_numbers(value: Any) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _flat_numbers(v)]
    return [int(value)]


def _scanfield(roi: dict, where: str) -> dict:
    fields = roi.get("scanfields")
    if isinstance(fields, list):
        fields = fields[0] if fields else None
    if not isinstance(fields, dict) or "pixelResolutionXY" not in fields:
        raise SourceError(f"{where}: a ROI has no scanfield with pixelResolutionXY")
    return fields


def _color_count(frame: dict, saved: list[int]) -> int:
    ports = {
        frame.get(f"SI.hScan2D.virtualChannelSettings__{ch}.source")
        for ch in saved
    } - {None}
    if ports:
        return len(ports)
    return 2 if len(saved) == 2 else 1


def parse_header(frame: dict, roi_groups: dict, where: str) -> dict[str, Any]:
    """ScanImage ``FrameData`` + ``RoiGroups`` → the fields we export with."""
    if "SI.hChannels.channelSave" not in frame:
        raise SourceError(f"{where}: ScanImage header lacks SI.hChannels.channelSave")
    try:
        saved = _flat_numbers(frame["SI.hChannels.channelSave"])
    except (TypeError, ValueError):
        raise SourceError(f"{where}: SI.hChannels.channelSave = {frame['SI.hChannels.channelSave']!r} is not a channel list") from None
    if bool(frame.get("SI.hStackManager.enable", False)):
        raise SourceError(f"{where}: piezo z-stacks (SI.hStackManager.enable = true) are not supported yet")
    n_colors = _color_count(frame, saved)
    if len(saved) % n_colors:
        raise SourceError(f"{where}: {len(saved)} saved channels cannot be split over {n_colors} colour channels")
    n_planes = len(saved) // n_colors
    try:
        rois = roi_groups["RoiGroups"]["imagingRoiGroup"]["rois"]
    except (KeyError, TypeError):
        raise SourceError(f"{where}: the ScanImage ROI JSON has no RoiGroups.imagingRoiGroup.rois") from None
    rois = [rois] if isinstance(rois, dict) else list(rois)
    if not rois:
        raise SourceError(f"{where}: the ScanImage ROI group is empty")
    line_period = float(frame.get("SI.hRoiManager.linePeriod", 0) or 0)
    flyto = float(frame.get("SI.hScan2D.flytoTimePerScanfield", 0) or 0)
    fly_to_lines = int(round(flyto / line_period)) if line_period > 0 and len(rois) > 1 else 0
    objective = float(frame.get("SI.objectiveResolution", 1.0) or 1.0)
    roi_info = []
    for i, roi in enumerate(rois):
        sf = _scanfield(roi, where)
        width, height = (int(v) for v in sf["pixelResolutionXY"])
        size = [float(v) for v in sf.get("sizeXY", [0.0, 0.0])]
        roi_info.append({
            "index": i + 1,
            "name": roi.get("name", f"ROI {i + 1}"),
            "pixels_xy": [width, height],
            "size_deg_xy": size,
            "center_deg_xy": [float(v) for v in sf.get("centerXY", [0.0, 0.0])],
            "size_um_xy": [objective * size[0], objective * size[1]],
        })
    first = roi_info[0]
    dx = first["size_um_xy"][0] / first["pixels_xy"][0] if first["size_um_xy"][0] > 0 else None
    dy = first["size_um_xy"][1] / first["pixels_xy"][1] if first["size_um_xy"][1] > 0 else None
    rate = frame.get("SI.hRoiManager.scanFrameRate")
    if not rate and frame.get("SI.hRoiManager.scanFramePeriod"):
        rate = 1.0 / float(frame["SI.hRoiManager.scanFramePeriod"])
    stack_type = "lbm" if n_planes > 1 else "single_plane"
    return {
        "n_saved": len(saved),
        "n_colors": n_colors,
        "n_planes": n_planes,
        "stack_type": stack_type,
        "roi_heights": [r["pixels_xy"][1] for r in roi_info],
        "fly_to_lines": fly_to_lines,
        "fs": float(rate) if rate else None,
        "dx": dx,
        "dy": dy,
        "dz": None,  # LBM bead spacing is not in the header; users supply metadata.dz
        "rois": roi_info,
        "scanimage": {
            key: frame[key]
            for key in (
                "SI.VERSION_MAJOR", "SI.VERSION_MINOR", "SI.imagingSystem", "SI.hChannels.channelSave",
                "SI.hRoiManager.scanFrameRate", "SI.hRoiManager.linePeriod", "SI.hScan2D.flytoTimePerScanfield",
                "SI.hScan2D.bidirectional", "SI.objectiveResolution", "SI.hRoiManager.scanZoomFactor",
                "SI.hScan2D.logFramesPerFile",
            )
            if key in frame
        },
    }


def read_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        try:
            frame, roi_groups, _ = tifffile.read_scanimage_metadata(fh)
        except ValueError as exc:
            raise SourceError(
                f"{path}: not a raw ScanImage TIFF (no ScanImage header block at byte 16: {exc})"
            ) from None
        except Exception as exc:  # damaged JSON or text inside a real header block
            raise SourceError(f"{path}: the ScanImage header is corrupt ({type(exc).__name__}: {exc})") from None
    return parse_header(frame, roi_groups, str(path))


# --------------------------------------------------------------------------- inspect


def inspect_acquisition(paths: list[Path]) -> SourceInfo:
    """Header of the first file + page count of every file (validated stride)."""
    paths = sorted((Path(p).resolve() for p in paths), key=natural_key)
    if not paths:
        raise SourceError("input: no TIFF files found")
    check_series(paths)
    header = read_header(paths[0])
    pages, geometry = [], None
    for path in paths:
        try:
            n, height, width, dtype = count_pages(path)
        except TiffLayoutError as exc:
            raise SourceError(str(exc)) from None
        if geometry is None:
            geometry = (height, width, dtype)
        elif (height, width, dtype) != geometry:
            raise SourceError(
                f"{path}: pages are {height}x{width} {dtype}, but {paths[0].name} has "
                f"{geometry[0]}x{geometry[1]} {geometry[2]}: not one acquisition"
            )
        pages.append(n)
    return _info(paths, pages, geometry, header)


def _info(paths: list[Path], pages: list[int], geometry: tuple, header: dict) -> SourceInfo:
    n_saved = header["n_saved"]
    frames = [n // n_saved for n in pages]
    for path, n in zip(paths, pages):
        if n % n_saved:
            log.warning("%s ends on an unfinished frame: %d trailing page(s) dropped", path, n % n_saved)
    if sum(frames) == 0:
        raise SourceError(f"{paths[0]}: fewer pages than one frame ({n_saved} saved channels)")
    info = SourceInfo(
        files=[str(p) for p in paths],
        pages_per_file=list(pages),
        frames_per_file=frames,
        page_height=geometry[0],
        page_width=geometry[1],
        dtype=geometry[2],
        **header,
    )
    try:
        info.layout  # noqa: B018 - validates the ROI geometry against the page now
    except ValueError as exc:
        raise SourceError(f"{paths[0]}: {exc}") from None
    return info


def describe_planned(paths: list[Path], pages: list[int], page_shape: tuple[int, int], header: dict) -> SourceInfo:
    """``SourceInfo`` for files that will exist (the demo), from their header alone."""
    return _info([Path(p).resolve() for p in paths], pages, (*page_shape, "<i2"), header)


# --------------------------------------------------------------------------- pages


def build_page_index(info: SourceInfo) -> list[np.ndarray]:
    """Offsets of every page of every file, from the real IFD chains.

    Fails if a file changed since ``info`` was taken (page count or page size).
    """
    offsets = []
    for path, expected in zip(info.files, info.pages_per_file):
        try:
            layout = index_pages(path)
        except (TiffLayoutError, OSError) as exc:
            raise SourceError(str(exc)) from None
        if len(layout.data_offsets) != expected or (layout.height, layout.width) != (info.page_height, info.page_width):
            raise SourceError(
                f"{path}: has {len(layout.data_offsets)} pages of {layout.height}x{layout.width}, "
                f"but {expected} of {info.page_height}x{info.page_width} when the run was planned "
                f"(the file changed; start the run again)"
            )
        offsets.append(layout.data_offsets)
    return offsets


def save_page_index(path: Path, info: SourceInfo, offsets: list[np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: numpy must not append ".npz" to a temporary name
        np.savez(fh, **{f"file{i:05d}": o for i, o in enumerate(offsets)}, sizes=np.array([os.path.getsize(f) for f in info.files]))


def load_page_index(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[k] for k in sorted(data.files) if k.startswith("file")]


class PlaneReader:
    """Reads the raw pages of chosen frames, colours and one plane, by offset."""

    def __init__(self, info: SourceInfo, offsets: list[np.ndarray]) -> None:
        self.info = info
        self.offsets = offsets
        self.first_frame = np.concatenate([[0], np.cumsum(info.frames_per_file)])
        self.dtype = np.dtype(info.dtype)
        self._handles: dict[int, int] = {}

    def _fd(self, file_index: int) -> int:
        if file_index not in self._handles:
            self._handles[file_index] = os.open(self.info.files[file_index], os.O_RDONLY)
        return self._handles[file_index]

    def close(self) -> None:
        for fd in self._handles.values():
            os.close(fd)
        self._handles.clear()

    def __enter__(self) -> PlaneReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, frames: np.ndarray, colors: list[int], plane: int) -> np.ndarray:
        """``(len(frames), len(colors), page_height, page_width)`` raw pages."""
        info = self.info
        if not 0 <= plane < info.n_planes:
            raise IndexError(f"plane {plane} outside 0..{info.n_planes - 1}")
        out = np.empty((len(frames), len(colors), info.page_height, info.page_width), self.dtype)
        nbytes = info.page_height * info.page_width * self.dtype.itemsize
        file_of = np.searchsorted(self.first_frame, frames, side="right") - 1
        for i, (t, f) in enumerate(zip(frames, file_of)):
            local = int(t - self.first_frame[f])
            for j, c in enumerate(colors):
                page = local * info.n_saved + c * info.n_planes + plane
                view = memoryview(out[i, j]).cast("B")
                got = os.preadv(self._fd(int(f)), [view], int(self.offsets[f][page]))
                if got != nbytes:
                    raise SourceError(f"{info.files[f]}: page {page} is truncated (read {got} of {nbytes} bytes)")
        return out
