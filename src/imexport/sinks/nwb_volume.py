"""NWB output as volumes (``nwb.series: volume``): one ``TwoPhotonSeries`` per colour, ``(frame, x, y, z)``.

In that order every plane's pixels are interleaved, so plane jobs cannot each write theirs
as one block. They fill the file of plane series as always (``sinks/nwb_file.py``); the
assemble step then writes a new file whose series read those planes a block of frames at a
time (memory: one block of all planes) and stack them along z. Its frame times are the
volumes' (each volume's first page's), as in the other formats.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from hdmf.data_utils import GenericDataChunkIterator

from imexport.formats.base import HISTORY_KEY
from imexport.sinks.nwb_layout import (
    METADATA_NAME,
    PLANES_NAME,
    add_imaging_plane,
    emission_lambdas,
    field_of_view,
    new_nwbfile,
    plane_series,
)

MIB = 2**20


def write_volume_file(
    planes_file: Path,
    target: Path,
    *,
    metadata: Mapping[str, Any],
    plane_metadata: Sequence[Mapping[str, Any]],
    session: Mapping[str, Any],
    start: dt.datetime,
    timestamps: np.ndarray,
    rate: float | None,
    gzip_level: int | None,
    block_mb: float,
) -> None:
    """``target``: the volumetric NWB file made from ``planes_file`` (the plane series the plane
    jobs wrote); ``rate``: frames per second when ``timestamps`` are regular (then stored as
    ``starting_time`` + ``rate``)."""
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO
    from pynwb.ophys import TwoPhotonSeries

    records = {METADATA_NAME: json.dumps(metadata), PLANES_NAME: json.dumps(list(plane_metadata)), HISTORY_KEY: "[]"}
    nwbfile = new_nwbfile(metadata, session, start, records)
    emission = emission_lambdas(session, len(metadata["channels"]))
    with h5py.File(planes_file, "r") as source:
        first_series = None
        for c, (name, channel) in enumerate(zip(plane_series(metadata, None), metadata["channels"])):
            planes = [source[f"acquisition/{plane_series(metadata, p)[c]}/data"] for p in metadata["planes"]]
            volume = _PlanesAsVolume(planes, block_mb)
            if rate:
                times = {"starting_time": float(timestamps[0]), "rate": rate}
            else:  # one vector, which the other colours link to
                times = {"timestamps": timestamps if first_series is None else first_series}
            series = TwoPhotonSeries(
                name=name,
                description=f"Volumes of planes {', '.join(map(str, metadata['planes']))} (z), colour channel {channel}",
                imaging_plane=add_imaging_plane(
                    nwbfile,
                    metadata,
                    session,
                    name=f"ImagingPlane{name[len('TwoPhotonSeries') :]}",
                    channel=channel,
                    emission=emission[c],
                    planes=list(metadata["planes"]),
                ),
                data=H5DataIO(volume, compression="gzip", compression_opts=gzip_level) if gzip_level is not None else volume,
                dimension=list(volume.maxshape[1:]),
                unit="n.a.",
                **times,
                **field_of_view(metadata),
            )
            nwbfile.add_acquisition(series)
            if first_series is None:
                first_series = series
        with warnings.catch_warnings():
            # target is the hidden temporary name (atomic.temporary_sibling), renamed to .nwb once whole
            warnings.filterwarnings("ignore", message=".*does not end in '.nwb'")
            with NWBHDF5IO(str(target), "w") as io:
                io.write(nwbfile)


class _PlanesAsVolume(GenericDataChunkIterator):
    """The plane datasets ``(T, X, Y)`` as one ``(T, X, Y, Z)`` array, read ``block_mb`` at a
    time; one chunk per frame (all planes)."""

    def __init__(self, planes: Sequence[h5py.Dataset], block_mb: float) -> None:
        self.planes = list(planes)
        n_frames, width, height = self.planes[0].shape
        frame_bytes = width * height * len(self.planes) * self.planes[0].dtype.itemsize
        block = min(n_frames, max(1, int(block_mb * MIB) // frame_bytes))
        super().__init__(
            buffer_shape=(block, width, height, len(self.planes)),
            chunk_shape=(1, width, height, len(self.planes)),
            display_progress=False,
        )

    def _get_data(self, selection: tuple[slice, ...]) -> np.ndarray:
        frames, xs, ys, zs = selection
        return np.stack([plane[frames, xs, ys] for plane in self.planes[zs]], axis=-1)

    def _get_maxshape(self) -> tuple[int, ...]:
        return (*self.planes[0].shape, len(self.planes))

    def _get_dtype(self) -> np.dtype:
        return self.planes[0].dtype
