"""Raw ScanImage TIFF acquisitions: header, geometry and page count (the plan's view).

Two steps, matching the workflow:

* ``inspect_acquisition(paths)`` reads the header of the first file and counts pages
  in every file (cheap: run while Snakemake builds its DAG), checking that header and
  pages agree. Result: ``SourceInfo``.
* ``build_page_index(info)`` (``scanimage_pages``) walks every file's IFD chain once and
  stores the offset and timing of every page; ``PlaneReader`` then reads only the pages
  of one plane, by offset.

Which page holds which (time, colour, plane) — LBM beads, piezo / fast-Z stacks with
flyback frames and slice repeats, LBM with a piezo stack — is ``scanimage_header``'s
page order; ``input_options.slice_repeats`` (``average`` | ``first`` | ``planes``)
says what becomes of ``framesPerSlice > 1`` repeats.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .info import SourceError, SourceInfo
from .scanimage_header import (
    SUMMARY_KEYS,
    check_coplanar,
    color_count,
    is_volumetric,
    jsonable,
    real,
    roi_geometry,
    roi_list,
    saved_channels,
    stack_model,
)
from .scanimage_pages import PlaneReader, build_page_index, check_page_index, load_page_index, save_page_index
from .scanimage_timing import parse_descriptions
from .tiff_index import TiffLayoutError, count_pages, first_descriptions

__all__ = [  # the page functions live in scanimage_pages; callers import them from here
    "PlaneReader",
    "build_page_index",
    "check_page_index",
    "inspect_acquisition",
    "load_page_index",
    "parse_header",
    "save_page_index",
]

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


def parse_header(frame: dict, roi_groups: dict, where: str, *, slice_repeats: str = "average") -> dict[str, Any]:
    """ScanImage ``FrameData`` + ``RoiGroups`` → the ``SourceInfo`` fields they decide."""
    saved = saved_channels(frame, where)
    n_colors = color_count(frame, saved, is_volumetric(frame, where))
    if len(saved) % n_colors:
        raise SourceError(f"{where}: {len(saved)} saved channels cannot be split over {n_colors} colour channels")
    n_beads = len(saved) // n_colors
    stack = stack_model(frame, where, beads=n_beads, slice_repeats=slice_repeats)
    rois = roi_list(roi_groups, where)
    check_coplanar(rois, where)
    line_period = real(frame, "SI.hRoiManager.linePeriod", where, positive=True)
    flyto = real(frame, "SI.hScan2D.flytoTimePerScanfield", where) or 0.0
    if flyto < 0:
        raise SourceError(f"{where}: SI.hScan2D.flytoTimePerScanfield = {flyto} is negative: the header is damaged")
    fly_to_lines = int(round(flyto / line_period)) if line_period and len(rois) > 1 else 0
    roi_info = roi_geometry(frame, rois, where)
    first = roi_info[0]
    dx = first["size_um_xy"][0] / first["pixels_xy"][0] if first["size_um_xy"][0] > 0 else None
    dy = first["size_um_xy"][1] / first["pixels_xy"][1] if first["size_um_xy"][1] > 0 else None
    rate = real(frame, "SI.hRoiManager.scanFrameRate", where, positive=True)
    if not rate and real(frame, "SI.hRoiManager.scanFramePeriod", where, positive=True):
        rate = 1.0 / real(frame, "SI.hRoiManager.scanFramePeriod", where)
    dz = None  # LBM bead spacing is not in the header; users supply metadata.dz
    if stack:
        stack_type = "lbm_piezo" if n_beads > 1 else "piezo"
        volume_rate = real(frame, "SI.hRoiManager.scanVolumeRate", where, positive=True)
        acquired = stack["slices"] * stack["frames_per_slice"] + stack["flyback_frames"]
        rate = volume_rate if volume_rate else (float(rate) / acquired if rate else None)
        step = real(frame, "SI.hStackManager.actualStackZStepSize", where) or real(
            frame, "SI.hStackManager.stackZStepSize", where
        )
        stack["slice_step_um"] = abs(step) if step else None
        # repeats exposed as planes sit at the same z, and beads x slices are not evenly
        # spaced: no single spacing describes those planes
        if stack["n_planes"] == stack["slices"]:
            dz = stack["slice_step_um"]
        n_planes = stack["n_planes"]
    else:
        n_planes = n_beads
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
        "scanimage": {key: jsonable(frame[key]) for key in SUMMARY_KEYS if key in frame},
        "options": {
            **({"stack": stack} if stack else {}),
            "saved_channels": saved,
            # the ScanImage channel number(s) behind each colour: one per colour, or its beads (LBM)
            "channel_numbers": [
                saved[c * n_beads] if n_beads == 1 else saved[c * n_beads : (c + 1) * n_beads] for c in range(n_colors)
            ],
            "header": {"FrameData": jsonable(frame), "RoiGroups": jsonable(roi_groups)},
        },
    }


def is_raw_scanimage(path: Path) -> bool:
    """A little-endian BigTIFF with the ScanImage static header block at byte 16."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[:4] == b"II+\0" and struct.unpack_from("<I", head, 16)[0] == SCANIMAGE_MAGIC


_COPY_AGAIN = "copy it again from the acquisition computer or a backup"
_ARRAY_CALL = re.compile(r"\b(?:zeros|ones)\(([^)]*)\)")


def _header_text(path: Path, data: bytes, part: str) -> str:
    """One part of the header block as text (UTF-8, or cp1252 as older ScanImage wrote it)."""
    data = data.rstrip(b"\0")
    for encoding in ("utf-8", "cp1252"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            error = exc
            continue
        if "\0" not in text:
            return text
        error = f"a zero byte at {text.index(chr(0))}"
    raise SourceError(f"{path}: the {part} of the ScanImage header is damaged ({error}); {_COPY_AGAIN}")


def read_header_block(path: Path) -> tuple[dict, dict]:
    """The static header block ScanImage writes at byte 16: ``(FrameData, RoiGroups)``.

    Parsed here rather than by ``tifffile.read_scanimage_metadata``, which logs damaged
    JSON as a warning and returns nothing: every damaged part is refused naming it.
    Layout: magic, version (3 or 4), the sizes of the FrameData text and of the RoiGroups
    JSON (uint32 each), then both.
    """
    with open(path, "rb") as fh:
        head = fh.read(32)
        file_size = os.fstat(fh.fileno()).st_size
        if len(head) < 32 or head[:4] != b"II+\0" or struct.unpack_from("<I", head, 16)[0] != SCANIMAGE_MAGIC:
            raise SourceError(
                f"{path}: not a raw ScanImage TIFF (no ScanImage header block at byte 16: a BigTIFF "
                f"starting II+ with magic {SCANIMAGE_MAGIC} there)"
            )
        version, frame_size, roi_size = struct.unpack_from("<III", head, 20)
        if version not in (3, 4) or 32 + frame_size + roi_size > file_size:
            raise SourceError(
                f"{path}: the ScanImage header block is damaged (version {version}, {frame_size} + "
                f"{roi_size} bytes of header in a {file_size} byte file); {_COPY_AGAIN}"
            )
        frame_bytes, roi_bytes = fh.read(frame_size), fh.read(roi_size)
    frame_text = _header_text(path, frame_bytes, "SI.* text")
    # tifffile builds MATLAB zeros(...)/ones(...) arrays as given: a damaged size must
    # not allocate more than the header itself could describe
    for call in _ARRAY_CALL.finditer(frame_text):
        sizes = call.group(1).split(",")
        if not all(n.strip().isdigit() for n in sizes) or math.prod(int(n) for n in sizes) > len(frame_text):
            raise SourceError(
                f"{path}: the ScanImage header holds {call.group(0)!r}, not an array size ScanImage "
                f"writes: the header is damaged; {_COPY_AGAIN}"
            )
    frame = tifffile.matlabstr2py(frame_text)
    if not isinstance(frame, dict):
        raise SourceError(f"{path}: the ScanImage header block holds no SI.* fields: the header is damaged; {_COPY_AGAIN}")
    try:
        roi_groups = json.loads(_header_text(path, roi_bytes, "ROI block (RoiGroups JSON)")) if roi_size > 1 else {}
    except (ValueError, RecursionError) as exc:  # a JSONDecodeError is a ValueError
        raise SourceError(
            f"{path}: the ROI block (RoiGroups JSON) of the ScanImage header is damaged ({exc}); {_COPY_AGAIN}"
        ) from None
    return frame, roi_groups


def read_header(path: Path, *, slice_repeats: str = "average") -> dict[str, Any]:
    frame, roi_groups = read_header_block(path)
    return parse_header(frame, roi_groups, str(path), slice_repeats=slice_repeats)


def slice_repeats_option(slice_repeats: str | None, piezo_average: bool | None) -> str:
    """``input_options.slice_repeats``; the former ``piezo_average`` true/false still means average/planes."""
    if slice_repeats is not None and piezo_average is not None:
        raise SourceError(
            "input_options: piezo_average and slice_repeats both given; piezo_average is the old name, keep only slice_repeats"
        )
    if slice_repeats is not None:
        return slice_repeats
    return "planes" if piezo_average is False else "average"


# --------------------------------------------------------------------------- inspect


def inspect_acquisition(paths: list[Path], *, slice_repeats: str | None = None, piezo_average: bool | None = None) -> SourceInfo:
    """Header of the first file + page count of every file (every page's directory checked)."""
    paths = sorted((Path(p).resolve() for p in paths), key=natural_key)
    if not paths:
        raise SourceError("input: no TIFF files found")
    check_series(paths)
    header = read_header(paths[0], slice_repeats=slice_repeats_option(slice_repeats, piezo_average))
    _check_saved_channels(paths[0], header)
    pages, geometry = [], None
    for path in paths:
        # only the first header is parsed: a plain TIFF slipped into the series would
        # otherwise be read as raw pages
        if path != paths[0] and not is_raw_scanimage(path):
            raise SourceError(
                f"{path}: not a raw ScanImage TIFF (no ScanImage header block at byte 16: magic {SCANIMAGE_MAGIC} "
                f"missing or damaged), but {paths[0].name} is: not one acquisition"
            )
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


def _check_saved_channels(path: Path, header: dict) -> None:
    """The pages of one frame share a ``frameNumbers``: as many pages as the header saves channels.

    A damaged ``SI.hChannels.channelSave`` that still parses (``[1 2 3]`` → ``[1 213]``)
    would otherwise regroup every page into frames of the wrong size.
    """
    n_saved = header["n_saved"]
    try:
        numbers = parse_descriptions(first_descriptions(path, 2 * n_saved))["frame_numbers"]
    except TiffLayoutError as exc:
        raise SourceError(str(exc)) from None
    if numbers.size == 0 or np.any(numbers < 0):
        return  # no frameNumbers in the descriptions (an older ScanImage): nothing to compare
    frames = numbers[: numbers.size // n_saved * n_saved].reshape(-1, n_saved)
    per_frame = int(np.argmax(numbers != numbers[0])) or numbers.size  # pages until the number changes
    if np.any(frames != frames[:, :1]) or np.any(frames[1:, 0] == frames[:-1, 0]):
        raise SourceError(
            f"{path}: SI.hChannels.channelSave = {header['options']['saved_channels']} saves {n_saved} page(s) a frame, "
            f"but the pages' frameNumbers {numbers.tolist()} change every {per_frame} page(s): the header does not "
            f"describe these pages (damaged?); {_COPY_AGAIN}"
        )


def _check_file_sizes(paths: list[Path], pages: list[int], n_saved: int, per_file: Any) -> None:
    """Every file but the last holds whole frames, ``logFramesPerFile`` of them when the header says so."""
    for path, n in zip(paths[:-1], pages[:-1]):
        if n % n_saved:
            raise SourceError(
                f"{path}: {n} pages is not a whole number of frames of {n_saved} saved channel(s); "
                f"only the last file of a recording may end on an unfinished frame"
            )
        if isinstance(per_file, int) and not isinstance(per_file, bool) and n != per_file * n_saved:
            raise SourceError(
                f"{path}: {n} pages, but SI.hScan2D.logFramesPerFile = {per_file} x {n_saved} saved channel(s) "
                f"= {per_file * n_saved}: pages are missing inside the series (damaged or cut file)"
            )


def _rounds_to(lines: int, header: dict) -> bool:
    """Is ``lines`` the fly-to time in line periods, rounded down or up?

    Only that much may the page correct the header: a ROI height changed by damage would
    otherwise be absorbed into the fly-to gap and every ROI cut at the wrong row.
    """
    fields = header["scanimage"]
    period, flyto = fields.get("SI.hRoiManager.linePeriod"), fields.get("SI.hScan2D.flytoTimePerScanfield")
    if not (isinstance(period, float) and isinstance(flyto, (int, float)) and period > 0):
        return False
    in_lines = round(flyto / period, 6)  # 2.0000000001 line periods is 2 lines
    return math.floor(in_lines) <= lines <= math.ceil(in_lines)


def _roi_rows(path: Path, page_height: int, header: dict) -> int:
    """Fly-to lines between ROIs, checked: ROI heights + fly-to lines must fill the page exactly."""
    heights, fly = header["roi_heights"], header["fly_to_lines"]
    spare = page_height - sum(heights)
    if spare == (len(heights) - 1) * fly:
        return fly
    if len(heights) > 1 and spare >= 0 and spare % (len(heights) - 1) == 0 and _rounds_to(spare // (len(heights) - 1), header):
        # the header's fly-to time rounds to a different line count than the page holds
        log.info("%s: %d fly-to lines between ROIs (from the page height), not %d", path, spare // (len(heights) - 1), fly)
        return spare // (len(heights) - 1)
    raise SourceError(
        f"{path}: the ROI heights {heights} (RoiGroups ... pixelResolutionXY) plus {len(heights) - 1} x {fly} "
        f"fly-to lines make {sum(heights) + (len(heights) - 1) * fly} rows, but the pages have {page_height}: "
        f"the header does not describe these pages"
    )


def _info(paths: list[Path], pages: list[int], geometry: tuple, header: dict) -> SourceInfo:
    n_saved = header["n_saved"]
    notes = []
    _check_file_sizes(paths, pages, n_saved, header["scanimage"].get("SI.hScan2D.logFramesPerFile"))
    frames = [n // n_saved for n in pages]
    if pages[-1] % n_saved:
        log.warning("%s ends on an unfinished frame: %d trailing page(s) dropped", paths[-1], pages[-1] % n_saved)
    if sum(frames) == 0:
        raise SourceError(f"{paths[0]}: fewer pages than one frame ({n_saved} saved channels)")
    stack = header["options"].get("stack")
    if stack:
        volumes, left = divmod(sum(frames), stack["frames_per_volume"])
        if volumes == 0:
            raise SourceError(
                f"{paths[0]}: fewer frames than one volume ({stack['frames_per_volume']} frames "
                f"of {n_saved} pages, flyback included)"
            )
        logged = header["options"]["header"]["FrameData"].get("SI.hStackManager.actualNumVolumes")
        if isinstance(logged, int) and volumes > logged:
            raise SourceError(
                f"{paths[0]}: the pages hold {volumes} volumes, but SI.hStackManager.actualNumVolumes = "
                f"{logged}: the header's volume layout does not match the pages"
            )
        if left:
            notes.append(
                f"{paths[-1].name} ends on an incomplete volume (an aborted acquisition?): its last "
                f"{left} logged frame(s) are not exported, {volumes} whole volumes are"
            )
            log.warning("%s ends on an unfinished volume: %d trailing frame(s) dropped", paths[-1], left)
        header = {**header, "options": {**header["options"], "n_frames": volumes}}
    header = {**header, "fly_to_lines": _roi_rows(paths[0], geometry[0], header)}
    info = SourceInfo(
        files=[str(p) for p in paths],
        pages_per_file=list(pages),
        frames_per_file=frames,
        page_height=geometry[0],
        page_width=geometry[1],
        dtype=geometry[2],
        notes=notes,
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
