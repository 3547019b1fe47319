"""Synthetic raw ScanImage acquisitions with the real on-disk layout and known content.

tifffile can read but not write the ScanImage static header block, so the file is laid
out here byte by byte: a little-endian BigTIFF header, the ScanImage block at byte 16
(magic, version, frame-data text, ROI-group JSON), then one IFD + description + int16
strip per page, pages interleaved frame-major, saved-channel-minor.

The content is known in closed form (``synthetic_scene``: a Gaussian-cell "scene" or
``content="index"``, where every pixel of a page names its logged frame and saved
channel), so tests compute expected pixels from the ``AcquisitionSpec`` alone.

Volumetric recordings (``piezo_slices > 1``; with ``n_planes > 1`` beads, LBM with a
piezo stack) log ``frames_per_volume`` frames per volume in ScanImage's order (slice,
repeat, then ``flyback_frames``); ``n_frames`` then counts volumes, and "frame" in the
content rules above means the logged frame (flyback frames included), so every page's
value names its page. ``partial_volume_frames`` appends the start of an aborted volume.

The header uses the real value syntax: ``channel_save`` is written as ScanImage does
(a scalar ``2``, a row vector ``[1 4]``; by default ``[1;2;…]``), a single ROI as a JSON
object, booleans ``true``/``false``, empty values ``[]``. Every page's description
carries ``frameNumbers``, increasing ``frameTimestamps_sec`` (``(frameNumber − 1) /
frame_rate``), ``acqTriggerTimestamps_sec``, ``epoch`` and ``auxTrigger0..3``;
``dropped_after`` lists logged frames after which one frame number is skipped (a
dropped frame), ``aux_events`` maps a logged frame to an ``auxTrigger0`` time.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .synthetic_scene import FLY_TO_VALUE, cell_footprints, expected_roi, page_image

__all__ = ["FLY_TO_VALUE", "AcquisitionSpec", "expected_roi", "frame_data_text", "roi_group_json", "write_acquisition"]

SCANIMAGE_MAGIC = 117637889
_DESCRIPTION_WIDTH = 400


@dataclass
class AcquisitionSpec:
    n_frames: int = 24  # frames (volumes, for LBM) in the whole acquisition
    n_planes: int = 4  # light beads per colour = z-planes
    n_colors: int = 1  # colour channels (AI ports)
    roi_heights: list[int] = field(default_factory=lambda: [40, 32])  # rows per ROI
    width: int = 48  # pixels per line, the same for every ROI
    fly_to_lines: int = 3
    frames_per_file: int = 10
    frame_rate: float = 9.6  # volume rate, Hz
    line_period: float = 4.0e-5  # s
    objective_resolution: float = 157.5  # µm per scan degree
    deg_per_pixel: float = 0.0127  # ROI size in degrees = pixels * deg_per_pixel
    plane_shifts: list[list[int]] | None = None  # per-plane [dy, dx] translation of the scene
    phase_offset: float = 0.0  # displacement of odd page rows along X, pixels
    trailing_pages: int = 0  # extra pages of an unfinished frame at the end of the last file
    content: str = "scene"
    n_cells: int = 40
    noise: float = 0.0  # std of additive Gaussian noise
    texture: float = 0.0  # std of the static background texture that moves with plane_shifts
    seed: int = 0
    stem: str = "acq"
    piezo_slices: int = 0  # > 0: a piezo z-stack (SI.hStackManager.enable) of this many slices
    frames_per_slice: int = 1  # SI.hStackManager.framesPerSlice
    log_average_factor: int = 1  # SI.hScan2D.logAverageFactor; > 1 logs one averaged frame per slice
    z_step: float = 2.0  # SI.hStackManager.actualStackZStepSize, µm
    flyback_frames: int = 0  # numFramesPerVolumeWithFlyback - numFramesPerVolume, logged after each volume
    partial_volume_frames: int = 0  # logged frames of an aborted last volume
    channel_save: list[int] | None = None  # ScanImage channel numbers saved (default 1..n_saved)
    roi_zs: list | None = None  # each ROI's "zs" (default 0 for all)
    dropped_after: list[int] = field(default_factory=list)  # logged frames followed by a frameNumbers gap
    aux_events: dict[int, float] = field(default_factory=dict)  # logged frame -> auxTrigger0 time, s
    epoch: list[float] = field(default_factory=lambda: [2021, 11, 5, 9, 50, 13.56])

    def __post_init__(self) -> None:
        if self.channel_save is not None and len(self.channel_save) != self.n_saved:
            raise ValueError("channel_save needs one ScanImage channel number per saved channel")
        self.aux_events = {int(k): float(v) for k, v in self.aux_events.items()}
        self.roi_heights = [int(h) for h in self.roi_heights]
        if self.plane_shifts is None:
            self.plane_shifts = [[0, 0] for _ in range(self.n_planes)]
        self.plane_shifts = [[int(dy), int(dx)] for dy, dx in self.plane_shifts]
        if len(self.plane_shifts) != self.n_planes:
            raise ValueError("plane_shifts needs one [dy, dx] per plane")

    @property
    def n_rois(self) -> int:
        return len(self.roi_heights)

    @property
    def n_saved(self) -> int:
        return self.n_planes * self.n_colors

    @property
    def volumetric(self) -> bool:
        return self.piezo_slices > 1

    @property
    def logged_repeats(self) -> int:
        """Logged frames per slice: ScanImage logs one average of ``log_average_factor`` frames."""
        return self.frames_per_slice // self.log_average_factor

    @property
    def frames_per_volume(self) -> int:
        """Logged frames per volume, flyback included (1 when planar)."""
        if not self.volumetric:
            return 1
        return self.piezo_slices * self.logged_repeats + self.flyback_frames

    @property
    def n_logged_frames(self) -> int:
        return self.n_frames * self.frames_per_volume + self.partial_volume_frames

    @property
    def saved_channels(self) -> list[int]:
        return list(self.channel_save) if self.channel_save is not None else list(range(1, self.n_saved + 1))

    def frame_number(self, logged: int) -> int:
        """ScanImage's frameNumbers of a logged frame (1-based; skips a number after each dropped frame)."""
        dropped = sum(1 for d in self.dropped_after if d < logged)
        return logged * self.log_average_factor + 1 + dropped

    @property
    def page_height(self) -> int:
        return sum(self.roi_heights) + (self.n_rois - 1) * self.fly_to_lines

    def roi_row_starts(self) -> list[int]:
        starts, y = [], 0
        for h in self.roi_heights:
            starts.append(y)
            y += h + self.fly_to_lines
        return starts

    def file_names(self) -> list[str]:
        n_files = -(-self.n_logged_frames // self.frames_per_file)
        return [f"{self.stem}_{i + 1:05d}.tif" for i in range(n_files)]

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- header


def frame_data_text(spec: AcquisitionSpec) -> str:
    """The non-varying ``SI.* = value`` header, as ScanImage writes it."""
    saved = spec.saved_channels
    separator = " " if spec.channel_save is not None else ";"  # [1 4] as ScanImage 2021 writes; [1;2;3] as older LBM
    channel_save = str(saved[0]) if len(saved) == 1 else "[" + separator.join(map(str, saved)) + "]"
    acquired_per_volume = (spec.piezo_slices * spec.frames_per_slice + spec.flyback_frames) if spec.volumetric else 1
    per_volume = spec.piezo_slices * spec.frames_per_slice if spec.volumetric else 1
    names = " ".join(f"'Channel {i + 1}'" for i in range(max(4, max(saved))))
    flyto_time = spec.fly_to_lines * spec.line_period
    lines = [
        "SI.VERSION_MAJOR = 2023",
        "SI.VERSION_MINOR = 1",
        "SI.imagingSystem = 'LBM'" if spec.n_planes > 1 else "SI.imagingSystem = 'ResScanner'",
        f"SI.hChannels.channelSave = {channel_save}",
        f"SI.hChannels.channelsActive = {channel_save}",
        "SI.hChannels.channelsDataType = 'int16'",
        f"SI.hRoiManager.scanFrameRate = {spec.frame_rate!r}",
        f"SI.hRoiManager.scanFramePeriod = {1.0 / spec.frame_rate!r}",
        f"SI.hRoiManager.scanVolumeRate = {spec.frame_rate / acquired_per_volume!r}",
        f"SI.hChannels.channelName = {{{names}}}",
        f"SI.hRoiManager.linePeriod = {spec.line_period!r}",
        f"SI.hRoiManager.linesPerFrame = {spec.page_height}",
        f"SI.hRoiManager.pixelsPerLine = {spec.width}",
        "SI.hRoiManager.mroiEnable = true" if spec.n_rois > 1 else "SI.hRoiManager.mroiEnable = false",
        "SI.hRoiManager.scanZoomFactor = 1",
        f"SI.hScan2D.flytoTimePerScanfield = {flyto_time!r}",
        "SI.hScan2D.bidirectional = true",
        "SI.hScan2D.scanMode = 'resonant'",
        f"SI.hScan2D.logFramesPerFile = {spec.frames_per_file}",
        f"SI.hScan2D.logAverageFactor = {spec.log_average_factor}",
        "SI.hScan2D.uniformSampling = false",
        f"SI.objectiveResolution = {spec.objective_resolution!r}",
        f"SI.hStackManager.enable = {'true' if spec.piezo_slices else 'false'}",
        f"SI.hStackManager.numSlices = {max(1, spec.piezo_slices)}",
        f"SI.hStackManager.actualNumSlices = {max(1, spec.piezo_slices)}",
        f"SI.hStackManager.framesPerSlice = {spec.frames_per_slice}",
        f"SI.hStackManager.numFramesPerVolume = {per_volume}",
        f"SI.hStackManager.numFramesPerVolumeWithFlyback = {per_volume + (spec.flyback_frames if spec.volumetric else 0)}",
        f"SI.hStackManager.actualStackZStepSize = {spec.z_step!r}",
        f"SI.hStackManager.stackZStepSize = {spec.z_step!r}",
        "SI.hStackManager.stackMode = 'fast'" if spec.flyback_frames else "SI.hStackManager.stackMode = 'slow'",
        f"SI.hFastZ.enable = {'true' if spec.flyback_frames else 'false'}",
        "SI.hFastZ.discardFlybackFrames = false",
        f"SI.hFastZ.numDiscardFlybackFrames = {spec.flyback_frames}",
        "SI.hFastZ.waveformType = 'sawtooth'",
        "SI.hStackManager.arbitraryZs = []",
        f"SI.hStackManager.numVolumes = {spec.n_frames}",
        f"SI.hStackManager.actualNumVolumes = {spec.n_frames}",
    ]
    for index, ch in enumerate(saved):
        port = index // spec.n_planes
        lines.append(f"SI.hScan2D.virtualChannelSettings__{ch}.source = 'AI{port}'")
    return "\n".join(lines) + "\n"


def roi_group_json(spec: AcquisitionSpec) -> str:
    rois = []
    for r, h in enumerate(spec.roi_heights):
        size = [spec.width * spec.deg_per_pixel, h * spec.deg_per_pixel]
        rois.append(
            {
                "ver": 1,
                "classname": "scanimage.mroi.Roi",
                "name": f"ROI {r + 1}",
                "zs": 0 if spec.roi_zs is None else spec.roi_zs[r],
                "discretePlaneMode": False,
                "scanfields": {
                    "classname": "scanimage.mroi.scanfield.fields.RotatedRectangle",
                    "centerXY": [(r - (spec.n_rois - 1) / 2) * size[0], 0.0],
                    "sizeXY": size,
                    "rotationDegrees": 0,
                    "pixelResolutionXY": [spec.width, h],
                },
            }
        )
    group = {"RoiGroups": {"imagingRoiGroup": {"ver": 1, "name": "Default", "rois": rois[0] if len(rois) == 1 else rois}}}
    return json.dumps(group)


# --------------------------------------------------------------------------- writer

_TAGS_PER_PAGE = 13


def _ifd_bytes(ifd_at: int, height: int, width: int, description: bytes, software: bytes, last: bool) -> tuple[bytes, int]:
    """One BigTIFF IFD followed by its out-of-line strings; returns (bytes, data offset)."""
    ifd_size = 8 + _TAGS_PER_PAGE * 20 + 8
    desc_at = ifd_at + ifd_size
    soft_at = desc_at + len(description)
    data_at = soft_at + len(software)
    nbytes = height * width * 2
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 16),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (270, 2, len(description), desc_at),
        (273, 16, 1, data_at),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 16, 1, nbytes),
        (284, 3, 1, 1),
        (305, 2, len(software), soft_at),
        (339, 3, 1, 2),
    ]
    out = bytearray(struct.pack("<Q", len(entries)))
    for tag, type_code, count, value in entries:
        out += struct.pack("<HHQQ", tag, type_code, count, value)
    out += struct.pack("<Q", 0 if last else data_at + nbytes)
    return bytes(out) + description + software, data_at


def _description(spec: AcquisitionSpec, logged: int) -> bytes:
    """The per-page ImageDescription of a page of logged frame ``logged``, as ScanImage 2021 writes it."""
    number = spec.frame_number(logged)
    aux = spec.aux_events.get(logged)
    epoch = " ".join(f"{v:g}" for v in spec.epoch[:5]) + f" {spec.epoch[5]:.3f}"
    text = (
        f"frameNumbers = {number}\n"
        f"acquisitionNumbers = 1\n"
        f"frameNumberAcquisition = {number}\n"
        f"frameTimestamps_sec = {(number - 1) / spec.frame_rate:.6f}\n"
        f"acqTriggerTimestamps_sec = 0.000000\n"
        f"nextFileMarkerTimestamps_sec = -1.000000\n"
        f"endOfAcquisition = 0\n"
        f"endOfAcquisitionMode = 0\n"
        f"dcOverVoltage = 0\n"
        f"epoch = [{epoch}]\n"
        f"auxTrigger0 = {'[]' if aux is None else f'[{aux:.6f}]'}\n"
        f"auxTrigger1 = []\n"
        f"auxTrigger2 = []\n"
        f"auxTrigger3 = []\n"
        f"I2CData = {{}}\n"
    )
    return text.ljust(_DESCRIPTION_WIDTH).encode("ascii") + b"\0"


def _write_file(path: Path, spec: AcquisitionSpec, pages, n_pages: int) -> None:
    frame_text = frame_data_text(spec).encode("ascii") + b"\0"
    roi_text = roi_group_json(spec).encode("ascii")
    software = b"SI.VERSION_MAJOR = 2023\nSI.VERSION_MINOR = 1\0"
    header_block = struct.pack("<IIII", SCANIMAGE_MAGIC, 3, len(frame_text), len(roi_text)) + frame_text + roi_text
    first_ifd = 16 + len(header_block)
    first_ifd += (-first_ifd) % 8
    with open(path, "wb") as fh:
        fh.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd))
        fh.write(header_block)
        fh.write(b"\0" * (first_ifd - fh.tell()))
        for i, (logged, page) in enumerate(pages):
            ifd, data_at = _ifd_bytes(
                fh.tell(),
                spec.page_height,
                spec.width,
                _description(spec, logged),
                software,
                i == n_pages - 1,
            )
            fh.write(ifd)
            assert fh.tell() == data_at
            fh.write(np.ascontiguousarray(page, dtype="<i2").tobytes())


def write_acquisition(spec: AcquisitionSpec, folder: str | Path) -> list[Path]:
    """Write the acquisition as ``<stem>_00001.tif, …`` into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    names = spec.file_names()
    cell_images = {}
    if spec.content == "scene":
        cell_images = {(z, r): cell_footprints(spec, z, r) for z in range(spec.n_planes) for r in range(spec.n_rois)}
    for f, name in enumerate(names):
        frames = np.arange(f * spec.frames_per_file, min((f + 1) * spec.frames_per_file, spec.n_logged_frames))
        extra = spec.trailing_pages if f == len(names) - 1 else 0
        n_pages = len(frames) * spec.n_saved + extra
        paths.append(folder / name)
        _write_file(folder / name, spec, _pages(spec, frames, extra, cell_images), n_pages)
    return paths


def _pages(spec: AcquisitionSpec, frames: np.ndarray, extra: int, cell_images: dict):
    """Yield ``(logged frame, page)`` in file order, a block of frames at a time."""
    block = 8
    blocks = [frames[b0 : b0 + block] for b0 in range(0, len(frames), block)]
    if extra:
        blocks.append(np.array([frames[-1] + 1 if len(frames) else 0]))
    for b, chunk in enumerate(blocks):
        movies = {
            (c, z): [expected_roi(spec, chunk, c, z, r, cell_images.get((z, r))) for r in range(spec.n_rois)]
            for c in range(spec.n_colors)
            for z in range(spec.n_planes)
        }
        partial = extra and b == len(blocks) - 1
        for i, t in enumerate(chunk):
            for ch in range(extra if partial else spec.n_saved):
                yield int(t), page_image(spec, movies[divmod(ch, spec.n_planes)], i)
