"""Raw ScanImage TIFF acquisitions: header, geometry and page reading.

Two steps, matching the workflow:

* ``inspect_acquisition(paths)`` reads the header of the first file and counts pages
  in every file (cheap: run while Snakemake builds its DAG). Result: ``SourceInfo``.
* ``build_page_index(info)`` walks every file's IFD chain once and stores the offset of
  every page; ``PlaneReader`` then reads only the pages of one plane, by offset.

Page ``p`` of a file holds frame ``p // n_saved`` of that file and saved channel
``p % n_saved``; saved channel ``c * n_beads + b`` is colour ``c``, light bead ``b``
(``n_beads = n_saved // n_colors``). For LBM and single-plane recordings the bead is the
z-plane and a frame is a volume. Piezo stacks (``SI.hStackManager.enable``) have one
bead and move z between logged frames instead: volume ``v``, slice ``s``, repeat ``r``
is logged frame ``v*numSlices*framesPerSlice + s*framesPerSlice + r``, or
``v*numSlices + s`` when ScanImage already averaged the repeats
(``hScan2D.logAverageFactor > 1``). With ``piezo_average`` (default) the repeats of a
slice are averaged (rounded to the raw dtype) and Z = numSlices; without it every
repeat is its own plane, Z = numSlices * framesPerSlice (plane ``s*framesPerSlice + r``).
"""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .info import SourceError, SourceInfo
from .tiff_index import TiffLayoutError, count_pages, index_pages

log = logging.getLogger(__name__)
SCANIMAGE_MAGIC = 117637889  # first uint32 of the ScanImage static header block, at byte 16


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


def _piezo_stack(frame: dict, where: str, average: bool) -> dict[str, Any]:
    """How logged frames map to volumes and slices of a piezo stack."""
    try:
        slices = int(frame.get("SI.hStackManager.numSlices", 1))
        per_slice = int(frame.get("SI.hStackManager.framesPerSlice", 1))
        log_average = int(frame.get("SI.hScan2D.logAverageFactor", 1) or 1)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: the piezo stack settings (SI.hStackManager.numSlices, framesPerSlice) are not numbers") from None
    if slices < 1 or per_slice < 1:
        raise SourceError(f"{where}: piezo stack with numSlices = {slices}, framesPerSlice = {per_slice}")
    # ScanImage logs one frame per slice when it averages the repeats itself
    repeats = per_slice if log_average == 1 else 1
    average = bool(average) and repeats > 1
    return {
        "slices": slices,
        "frames_per_slice": per_slice,
        "log_average_factor": log_average,
        "frames_per_volume": slices * repeats,  # logged frames
        "average": average,
        "n_planes": slices if average or repeats == 1 else slices * repeats,
    }


def parse_header(frame: dict, roi_groups: dict, where: str, *, piezo_average: bool = True) -> dict[str, Any]:
    """ScanImage ``FrameData`` + ``RoiGroups`` → the fields we export with."""
    if "SI.hChannels.channelSave" not in frame:
        raise SourceError(f"{where}: ScanImage header lacks SI.hChannels.channelSave")
    try:
        saved = _flat_numbers(frame["SI.hChannels.channelSave"])
    except (TypeError, ValueError):
        raise SourceError(f"{where}: SI.hChannels.channelSave = {frame['SI.hChannels.channelSave']!r} is not a channel list") from None
    n_colors = _color_count(frame, saved)
    if len(saved) % n_colors:
        raise SourceError(f"{where}: {len(saved)} saved channels cannot be split over {n_colors} colour channels")
    n_beads = len(saved) // n_colors
    piezo = _piezo_stack(frame, where, piezo_average) if bool(frame.get("SI.hStackManager.enable", False)) else None
    if piezo and n_beads > 1:
        raise SourceError(f"{where}: LBM beads combined with a piezo stack (SI.hStackManager.enable) are not supported")
    n_planes = piezo["n_planes"] if piezo else n_beads
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
    dz = None  # LBM bead spacing is not in the header; users supply metadata.dz
    if piezo:
        stack_type = "piezo"
        # a volume takes numSlices x framesPerSlice acquired frames, averaged or not
        rate = float(rate) / (piezo["slices"] * piezo["frames_per_slice"]) if rate else None
        step = frame.get("SI.hStackManager.actualStackZStepSize") or frame.get("SI.hStackManager.stackZStepSize")
        # repeats exposed as planes sit at the same z: no single spacing describes them
        if step and piezo["n_planes"] == piezo["slices"]:
            dz = abs(float(step))
    else:
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
        "dz": dz,
        "rois": roi_info,
        "scanimage": {
            key: frame[key]
            for key in (
                "SI.VERSION_MAJOR", "SI.VERSION_MINOR", "SI.imagingSystem", "SI.hChannels.channelSave",
                "SI.hRoiManager.scanFrameRate", "SI.hRoiManager.linePeriod", "SI.hScan2D.flytoTimePerScanfield",
                "SI.hScan2D.bidirectional", "SI.objectiveResolution", "SI.hRoiManager.scanZoomFactor",
                "SI.hScan2D.logFramesPerFile", "SI.hStackManager.enable", "SI.hStackManager.numSlices",
                "SI.hStackManager.framesPerSlice", "SI.hScan2D.logAverageFactor",
                "SI.hStackManager.actualStackZStepSize", "SI.hStackManager.stackZStepSize",
            )
            if key in frame
        },
        "options": {"piezo": piezo} if piezo else {},
    }


def is_raw_scanimage(path: Path) -> bool:
    """A little-endian BigTIFF with the ScanImage static header block at byte 16."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[:4] == b"II+\0" and struct.unpack_from("<I", head, 16)[0] == SCANIMAGE_MAGIC


def read_header(path: Path, *, piezo_average: bool = True) -> dict[str, Any]:
    with open(path, "rb") as fh:
        try:
            frame, roi_groups, _ = tifffile.read_scanimage_metadata(fh)
        except ValueError as exc:
            raise SourceError(
                f"{path}: not a raw ScanImage TIFF (no ScanImage header block at byte 16: {exc})"
            ) from None
        except Exception as exc:  # damaged JSON or text inside a real header block
            raise SourceError(f"{path}: the ScanImage header is corrupt ({type(exc).__name__}: {exc})") from None
    return parse_header(frame, roi_groups, str(path), piezo_average=piezo_average)


# --------------------------------------------------------------------------- inspect


def inspect_acquisition(paths: list[Path], *, piezo_average: bool = True) -> SourceInfo:
    """Header of the first file + page count of every file (validated stride)."""
    paths = sorted((Path(p).resolve() for p in paths), key=natural_key)
    if not paths:
        raise SourceError("input: no TIFF files found")
    check_series(paths)
    header = read_header(paths[0], piezo_average=piezo_average)
    pages, geometry = [], None
    for path in paths:
        # only the first header is parsed: a plain TIFF slipped into the series would
        # otherwise be read as raw pages
        if path != paths[0] and not is_raw_scanimage(path):
            raise SourceError(f"{path}: not a raw ScanImage TIFF (no ScanImage header block), but {paths[0].name} is: not one acquisition")
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
    piezo = header["options"].get("piezo")
    if piezo:
        volumes, left = divmod(sum(frames), piezo["frames_per_volume"])
        if volumes == 0:
            raise SourceError(f"{paths[0]}: fewer frames than one piezo volume ({piezo['frames_per_volume']} frames)")
        if left:
            log.warning("%s ends on an unfinished volume: %d trailing frame(s) dropped", paths[-1], left)
        header = {**header, "options": {**header["options"], "n_frames": volumes}}
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
    stats = [os.stat(f) for f in info.files]  # what check_page_index compares against later
    with open(path, "wb") as fh:  # a file object: numpy must not append ".npz" to a temporary name
        np.savez(fh, **{f"file{i:05d}": o for i, o in enumerate(offsets)}, sizes=np.array([s.st_size for s in stats]),
                 mtimes=np.array([s.st_mtime_ns for s in stats]))


def check_page_index(path: Path, info: SourceInfo) -> None:
    """Stop before reading pixels if an input file changed since ``path`` was saved.

    Page offsets (and the plan) describe the files as they were indexed: a file that
    grew, shrank or was rewritten since (size or modification time differs) would give
    wrong pixels. An index saved before modification times were recorded is checked by
    size only.
    """
    with np.load(path) as data:
        sizes = data["sizes"]
        mtimes = data["mtimes"] if "mtimes" in data.files else None
    for i, name in enumerate(info.files):
        now = os.stat(name)
        if now.st_size != sizes[i] or (mtimes is not None and now.st_mtime_ns != mtimes[i]):
            raise SourceError(
                f"{name}: changed after the run indexed it ({int(sizes[i])} bytes then, {now.st_size} bytes now"
                f"{'' if mtimes is None or now.st_mtime_ns == mtimes[i] else ', modified since'}); "
                f"start the run again to re-index it"
            )


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

    def _logged(self, frames: np.ndarray, plane: int) -> tuple[np.ndarray, int]:
        """Logged frames ``(n, repeats)`` holding each frame (volume) of ``plane``, and its bead."""
        frames = np.asarray(frames, dtype=np.int64)
        piezo = self.info.options.get("piezo")
        if piezo is None:
            return frames[:, None], plane
        first = frames * piezo["frames_per_volume"]
        if piezo["average"]:
            repeats = piezo["frames_per_slice"]
            return (first + plane * repeats)[:, None] + np.arange(repeats), 0
        return (first + plane)[:, None], 0

    def _read_page(self, f: int, page: int, into: np.ndarray) -> None:
        got = os.preadv(self._fd(f), [memoryview(into).cast("B")], int(self.offsets[f][page]))
        if got != into.nbytes:
            raise SourceError(f"{self.info.files[f]}: page {page} is truncated (read {got} of {into.nbytes} bytes)")

    def _prefetch(self, file_of: list, first_page: list, channels: list[int], nbytes: int) -> None:
        """Tell the kernel which pages come next, so a cold read overlaps its I/O."""
        for files, pages in zip(file_of, first_page):
            for f, first in zip(files, pages):
                for channel in channels:
                    os.posix_fadvise(self._fd(f), int(self.offsets[f][first + channel]), nbytes, os.POSIX_FADV_WILLNEED)

    def read(self, frames: np.ndarray, colors: list[int], plane: int) -> np.ndarray:
        """``(len(frames), len(colors), page_height, page_width)`` raw pages (piezo repeats averaged)."""
        info = self.info
        if not 0 <= plane < info.n_planes:
            raise IndexError(f"plane {plane} outside 0..{info.n_planes - 1}")
        out = np.empty((len(frames), len(colors), info.page_height, info.page_width), self.dtype)
        logged, bead = self._logged(frames, plane)
        file_of = np.searchsorted(self.first_frame, logged, side="right") - 1
        # first page of each logged frame in its file; plain lists: numpy scalars are slow per page
        first_page = ((logged - self.first_frame[file_of]) * info.n_saved).tolist()
        file_of = file_of.tolist()
        n_beads = info.n_saved // info.n_colors
        repeats = logged.shape[1]
        page = np.empty(out.shape[2:], self.dtype) if repeats > 1 else None
        self._prefetch(file_of, first_page, [c * n_beads + bead for c in colors], out[0, 0].nbytes)
        for i in range(len(frames)):
            for j, c in enumerate(colors):
                channel = c * n_beads + bead
                if repeats == 1:
                    self._read_page(file_of[i][0], first_page[i][0] + channel, out[i, j])
                    continue
                total = np.zeros(page.shape, np.float64)
                for k in range(repeats):
                    self._read_page(file_of[i][k], first_page[i][k] + channel, page)
                    total += page
                # the mean of integer repeats rounds half to even, back to the raw dtype
                out[i, j] = np.rint(total / repeats) if self.dtype.kind in "iu" else total / repeats
        return out
