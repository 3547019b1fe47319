"""Stream one plane of a raw acquisition into one sink: the body of every plane job.

One pass over the pixels: the plane's pages are read in chunks of about
``target_chunk_mb`` of raw data, cut to one ROI or stitched, corrected, handed to the
sink. Peak memory is a few chunks, whatever the recording length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import geometry
from .formats import FORMATS
from .jobs import PlaneJob
from .selection import from_runs
from .sinks.base import PlaneTarget
from .sources import open_plane_reader
from .sources.info import SourceInfo

log = logging.getLogger(__name__)
MIB = 2**20
HANDOFF_MB = 16  # output handed to the sink at a time: lets reading and writing overlap


def frames_per_chunk(target_chunk_mb: float, n_colors: int, page_shape: tuple[int, int], itemsize: int) -> int:
    return max(1, int(target_chunk_mb * MIB) // (n_colors * page_shape[0] * page_shape[1] * itemsize))


def export_plane(
    info: SourceInfo,
    offsets: list[np.ndarray],
    job: PlaneJob,
    *,
    correct: Callable[[np.ndarray, int, int], np.ndarray] | None = None,
    progress: Callable[[float], None] | None = None,
    after_reads: Callable[[], None] | None = None,
) -> Path:
    """Write the output described by ``job`` into the sink of its format.

    ``offsets``: the source's saved index (see ``sources.open_plane_reader``).
    ``correct(pages, first_frame_position, plane)`` may transform raw pages (scan
    phase) before they are cut into ROIs. ``after_reads()`` runs once the last page is
    read and before the output is committed: raising there leaves no output.
    """
    frames = from_runs(job.frames)
    colors = list(job.colors)
    roi = job.roi
    layout = info.layout
    out_shape = layout.output_shape(roi)
    target = PlaneTarget(
        path=Path(job.output),
        plane=job.plane,
        z_index=job.z_index,
        n_planes_out=job.n_planes_out,
        n_frames=len(frames),
        n_channels=len(colors),
        frame_shape=out_shape,
        dtype=np.dtype(info.dtype),
        metadata=job.metadata,
        options=job.options,
    )
    step = frames_per_chunk(job.target_chunk_mb, len(colors), (info.page_height, info.page_width), target.dtype.itemsize)
    handoff = frames_per_chunk(HANDOFF_MB, len(colors), out_shape, target.dtype.itemsize)
    store = Path(job.store) if job.store else None
    sink = FORMATS[job.format].open_sink(target, store=store, target_chunk_mb=job.target_chunk_mb)
    try:
        with open_plane_reader(info, offsets) as reader:
            for start in range(0, len(frames), step):
                pages = reader.read(frames[start : start + step], colors, job.plane)
                if correct is not None:
                    pages = correct(pages, start, job.plane)
                # small pieces: the sink's queue then never holds whole chunks, so the
                # job's peak stays near one raw chunk
                for piece in range(0, len(pages), handoff):
                    sink.write(geometry.extract(pages[piece : piece + handoff], layout, roi))
                del pages
                if progress is not None:
                    progress(min(1.0, (start + step) / len(frames)))
        if after_reads is not None:
            after_reads()
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    log.info("wrote %s (%d frames, %s)", target.path, len(frames), out_shape)
    return target.path
