"""The universal description of an input, shared by every reader.

``SourceInfo`` is what is known about an acquisition before any pixel is read (the
plan is made from it and it travels to every job as JSON); ``SourceError`` is the one
exception a reader raises for input that cannot be exported as given.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..geometry import PageLayout, page_layout


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
    kind: str = "scanimage"  # which reader opens it (sources.open_plane_reader)
    # what that reader needs beyond the fields above (piezo stack, array axes, dataset, ...);
    # "n_frames" is set where frames and files do not map one to one (piezo, plane grids)
    options: dict[str, Any] = field(default_factory=dict)
    # what inspection had to set aside (e.g. an incomplete last volume), for the plan summary
    notes: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.options.get("n_frames", sum(self.frames_per_file)))

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
