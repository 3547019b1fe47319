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

import logging
import re
import struct
from pathlib import Path
from typing import Any

import tifffile

from .info import SourceError, SourceInfo
from .scanimage_header import (
    SUMMARY_KEYS,
    check_coplanar,
    color_count,
    is_volumetric,
    jsonable,
    roi_geometry,
    roi_list,
    saved_channels,
    stack_model,
)
from .scanimage_pages import PlaneReader, build_page_index, check_page_index, load_page_index, save_page_index
from .tiff_index import TiffLayoutError, count_pages

__all__ = [  # the page functions live in scanimage_pages; callers import them from here
    "PlaneReader", "build_page_index", "check_page_index", "inspect_acquisition", "load_page_index",
    "parse_header", "save_page_index",
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
    line_period = float(frame.get("SI.hRoiManager.linePeriod", 0) or 0)
    flyto = float(frame.get("SI.hScan2D.flytoTimePerScanfield", 0) or 0)
    fly_to_lines = int(round(flyto / line_period)) if line_period > 0 and len(rois) > 1 else 0
    roi_info = roi_geometry(frame, rois, where)
    first = roi_info[0]
    dx = first["size_um_xy"][0] / first["pixels_xy"][0] if first["size_um_xy"][0] > 0 else None
    dy = first["size_um_xy"][1] / first["pixels_xy"][1] if first["size_um_xy"][1] > 0 else None
    rate = frame.get("SI.hRoiManager.scanFrameRate")
    if not rate and frame.get("SI.hRoiManager.scanFramePeriod"):
        rate = 1.0 / float(frame["SI.hRoiManager.scanFramePeriod"])
    dz = None  # LBM bead spacing is not in the header; users supply metadata.dz
    if stack:
        stack_type = "lbm_piezo" if n_beads > 1 else "piezo"
        volume_rate = frame.get("SI.hRoiManager.scanVolumeRate")
        acquired = stack["slices"] * stack["frames_per_slice"] + stack["flyback_frames"]
        rate = volume_rate if volume_rate else (float(rate) / acquired if rate else None)
        step = frame.get("SI.hStackManager.actualStackZStepSize") or frame.get("SI.hStackManager.stackZStepSize")
        stack["slice_step_um"] = abs(float(step)) if isinstance(step, (int, float)) and step else None
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
            "channel_numbers": [saved[c * n_beads] if n_beads == 1 else saved[c * n_beads : (c + 1) * n_beads]
                                for c in range(n_colors)],
            "header": {"FrameData": jsonable(frame), "RoiGroups": jsonable(roi_groups)},
        },
    }


def is_raw_scanimage(path: Path) -> bool:
    """A little-endian BigTIFF with the ScanImage static header block at byte 16."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    return len(head) == 20 and head[:4] == b"II+\0" and struct.unpack_from("<I", head, 16)[0] == SCANIMAGE_MAGIC


def read_header(path: Path, *, slice_repeats: str = "average") -> dict[str, Any]:
    with open(path, "rb") as fh:
        try:
            frame, roi_groups, _ = tifffile.read_scanimage_metadata(fh)
        except ValueError as exc:
            raise SourceError(
                f"{path}: not a raw ScanImage TIFF (no ScanImage header block at byte 16: {exc})"
            ) from None
        except Exception as exc:  # damaged JSON or text inside a real header block
            raise SourceError(f"{path}: the ScanImage header is corrupt ({type(exc).__name__}: {exc})") from None
    return parse_header(frame, roi_groups, str(path), slice_repeats=slice_repeats)


def slice_repeats_option(slice_repeats: str | None, piezo_average: bool | None) -> str:
    """``input_options.slice_repeats``; the former ``piezo_average`` true/false still means average/planes."""
    if slice_repeats is not None and piezo_average is not None:
        raise SourceError("input_options: piezo_average and slice_repeats both given; "
                          "piezo_average is the old name, keep only slice_repeats")
    if slice_repeats is not None:
        return slice_repeats
    return "planes" if piezo_average is False else "average"


# --------------------------------------------------------------------------- inspect


def inspect_acquisition(paths: list[Path], *, slice_repeats: str | None = None,
                        piezo_average: bool | None = None) -> SourceInfo:
    """Header of the first file + page count of every file (validated stride)."""
    paths = sorted((Path(p).resolve() for p in paths), key=natural_key)
    if not paths:
        raise SourceError("input: no TIFF files found")
    check_series(paths)
    header = read_header(paths[0], slice_repeats=slice_repeats_option(slice_repeats, piezo_average))
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


def _check_file_sizes(paths: list[Path], pages: list[int], n_saved: int, per_file: Any) -> None:
    """Every file but the last holds whole frames, ``logFramesPerFile`` of them when the header says so."""
    for path, n in zip(paths[:-1], pages[:-1]):
        if n % n_saved:
            raise SourceError(f"{path}: {n} pages is not a whole number of frames of {n_saved} saved channel(s); "
                              f"only the last file of a recording may end on an unfinished frame")
        if isinstance(per_file, int) and not isinstance(per_file, bool) and n != per_file * n_saved:
            raise SourceError(
                f"{path}: {n} pages, but SI.hScan2D.logFramesPerFile = {per_file} x {n_saved} saved channel(s) "
                f"= {per_file * n_saved}: pages are missing inside the series (damaged or cut file)"
            )


def _roi_rows(path: Path, page_height: int, header: dict) -> int:
    """Fly-to lines between ROIs, checked: ROI heights + fly-to lines must fill the page exactly."""
    heights, fly = header["roi_heights"], header["fly_to_lines"]
    spare = page_height - sum(heights)
    if spare == (len(heights) - 1) * fly:
        return fly
    if len(heights) > 1 and spare >= 0 and spare % (len(heights) - 1) == 0:
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
            raise SourceError(f"{paths[0]}: fewer frames than one volume ({stack['frames_per_volume']} frames "
                              f"of {n_saved} pages, flyback included)")
        logged = header["options"]["header"]["FrameData"].get("SI.hStackManager.actualNumVolumes")
        if isinstance(logged, int) and volumes > logged:
            raise SourceError(f"{paths[0]}: the pages hold {volumes} volumes, but SI.hStackManager.actualNumVolumes = "
                              f"{logged}: the header's volume layout does not match the pages")
        if left:
            notes.append(f"{paths[-1].name} ends on an incomplete volume (an aborted acquisition?): its last "
                         f"{left} logged frame(s) are not exported, {volumes} whole volumes are")
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
