"""The contract every output writer follows.

A plane job streams one plane (one ROI, or the stitched field of view) as chunks of
shape ``(n_frames, n_channels, Y, X)`` into a sink. The sink writes under a hidden
temporary name next to the final path and renames it into place only in ``commit``
(``imexport.atomic``), so a killed job never leaves an output that looks complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass
class PlaneTarget:
    """Everything a sink needs to know about the plane it writes."""

    path: Path  # final output path (a file, or a folder for Suite2p plane folders)
    plane: int  # 0-based index of the plane in the source
    z_index: int  # 0-based position of this plane in the written Z order
    n_planes_out: int  # planes in the whole export (for volumetric containers)
    n_frames: int  # frames this job writes
    n_channels: int  # colour channels written
    frame_shape: tuple[int, int]  # (Y, X) of one written frame
    dtype: np.dtype
    metadata: dict[str, Any]  # JSON-serialisable export metadata for this plane
    options: dict[str, Any] = field(default_factory=dict)  # the format's config block


class PlaneSink(Protocol):
    def write(self, chunk: np.ndarray) -> None:
        """Append frames; ``chunk`` is ``(n, n_channels, Y, X)`` in time order."""

    def commit(self) -> None:
        """Finish the file and move it into place atomically."""

    def abort(self) -> None:
        """Remove everything written so far; the final path is untouched."""
