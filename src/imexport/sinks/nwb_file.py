"""NWB output as one file, written by parallel plane jobs (the pattern of ``sinks/hdf5_single.py``).

An NWB file is an HDF5 file laid out by pynwb. The prepare step (:func:`create_file`)
builds the whole file with pynwb: a ``TwoPhotonSeries`` per plane (per plane and colour
with several colours), each with its ``ImagingPlane`` and ``OpticalChannel``, a
``Device``, the ``Subject``, and the session fields of the ``nwb:`` config block. Each
series' ``data`` is an uncompressed contiguous dataset of its final shape, allocated and
never filled. Each plane job (:class:`NwbSlabSink`) writes its frames at that dataset's
byte offset with ``os.pwrite``, outside HDF5. The assemble step (:func:`finalize_file`)
writes through h5py what is known only once the planes are read: the session start time
(the acquisition's ``epoch``), the frame times, and the export's metadata; then the file
gets its final name.

What pynwb cannot know at the prepare step is written as placeholders it lays out with
their final type (a scalar text, a float64 vector of T times) and filled in place later.
Frame times are each plane's own (a piezo stack's planes are acquired one after the other):
``timestamps``, one float64 per frame, shared by the colours of a plane through a link; when
they are regular to 1 ns they become ``starting_time`` + ``rate`` instead, as
NWB's best practices ask.

With ``nwb.compression: gzip`` the assemble step then copies the file into one whose pixels
are compressed (``sinks/nwb_compress.py``).

Frames are stored as NWB's ``ImageSeries`` dimensions say, ``(frame, x, y)``: each
``(Y, X)`` image is transposed when written (and when read back).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imexport.atomic import commit_path, remove_path, temporary_sibling
from imexport.formats.base import HISTORY_KEY
from imexport.sinks.base import PlaneTarget
from imexport.sinks.nwb_layout import (
    METADATA_NAME,
    PLANES_NAME,
    SERIES_PREFIX,
    add_imaging_plane,
    all_series,
    emission_lambdas,
    field_of_view,
    new_nwbfile,
    plane_series,
)
from imexport.sinks.offset_writer import OffsetSlabSink

# the start time written until the assemble step knows the acquisition's
PLACEHOLDER_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
TIME_DECIMALS = 9  # frame intervals equal to 1 ns are one rate (nwbinspector's own tolerance)


# --- prepare -----------------------------------------------------------------------------


def create_file(path: Path, *, metadata: Mapping[str, Any], session: Mapping[str, Any], dtype: Any) -> None:
    """The NWB file of an export, every series' pixels allocated (they read as 0 until written).

    ``metadata``: the export's (planes, channels, shape, scales); ``session``: the ``nwb``
    options (validated by ``formats/nwb.py``).
    """
    from hdmf.backends.hdf5 import H5DataIO
    from pynwb import NWBHDF5IO
    from pynwb.ophys import TwoPhotonSeries

    n_frames, _, _, height, width = metadata["shape"]
    start = dt.datetime.fromisoformat(session["session_start_time"]) if session["session_start_time"] else PLACEHOLDER_START
    nwbfile = new_nwbfile(metadata, session, start, {METADATA_NAME: "{}", PLANES_NAME: "[]", HISTORY_KEY: "[]"})
    emission = emission_lambdas(session, len(metadata["channels"]))
    for plane in metadata["planes"]:
        first_series = None
        for name, channel, lam in zip(plane_series(metadata, plane), metadata["channels"], emission):
            plane_name = f"ImagingPlane{name[len(SERIES_PREFIX) :]}"
            imaging_plane = add_imaging_plane(
                nwbfile, metadata, session, name=plane_name, channel=channel, emission=lam, planes=[plane]
            )
            series = TwoPhotonSeries(
                name=name,
                description=f"Frames of plane {plane}, colour channel {channel}, as imexport exported them",
                imaging_plane=imaging_plane,
                data=H5DataIO(shape=(n_frames, width, height), dtype=np.dtype(dtype)),
                dimension=[width, height],
                unit="n.a.",
                # times placeholder, one vector shared by the plane's colours (filled by finalize_file)
                timestamps=np.zeros(n_frames) if first_series is None else first_series,
                **field_of_view(metadata),
            )
            nwbfile.add_acquisition(series)
            if first_series is None:
                first_series = series
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_path(path)  # what an interrupted run left
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    _allocate(path, all_series(metadata))


def _allocate(path: Path, names: Sequence[str]) -> None:
    """Give every series' data its place in the file: HDF5 allocates a contiguous dataset
    whole at its first write (pynwb leaves that to the first write), and with no fill value
    set writes nothing else. The one value written is rewritten by the plane job."""
    with h5py.File(path, "r+") as file:
        for name in names:
            data = file[f"acquisition/{name}/data"]
            data[(0,) * data.ndim] = 0
            if data.id.get_offset() is None:
                raise RuntimeError(f"{path}: HDF5 did not allocate {data.name}")


# --- plane jobs ----------------------------------------------------------------------------


class NwbSlabSink(OffsetSlabSink):
    """Writes one plane's frames (every colour) into the file :func:`create_file` made.

    Frame ``t`` of a series is block ``t`` of ``X * Y`` values after its dataset's offset;
    each ``(Y, X)`` image is written transposed, ``(x, y)``.
    """

    def __init__(self, path: Path, target: PlaneTarget) -> None:
        names = plane_series(target.metadata, target.plane + 1)
        expected = (target.n_frames, *target.frame_shape[::-1])
        self.offsets = []
        with h5py.File(path, "r") as file:
            for name in names:
                data = file[f"acquisition/{name}/data"]
                if data.shape != expected or data.dtype != np.dtype(target.dtype):
                    raise ValueError(f"{path}: {data.name} is {data.shape} {data.dtype}, the plane {expected} {target.dtype}")
                self.offsets.append(int(data.id.get_offset()))
        self.frame_bytes = int(np.prod(target.frame_shape)) * np.dtype(target.dtype).itemsize
        super().__init__(path, target)

    def image_offset(self, frame: int, colour: int) -> int:
        return self.offsets[colour] + frame * self.frame_bytes

    def image_bytes(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image.T)


# --- assemble --------------------------------------------------------------------------------


def finalize_file(
    path: Path,
    final: Path,
    *,
    session_start: dt.datetime | None,
    timestamps: Mapping[int, np.ndarray],
    metadata: Mapping[str, Any],
    plane_metadata: Sequence[Mapping[str, Any]],
    gzip_level: int | None = None,
    block_mb: float = 100,
) -> None:
    """The start time (when given), the frame times (per 1-based plane) and the metadata written in place, then
    ``path`` becomes ``final``; with ``gzip_level``, a copy whose pixels are compressed
    (``sinks/nwb_compress.py``, ``block_mb`` MiB at a time) does, and ``path`` is removed."""
    with h5py.File(path, "r+") as file:
        if session_start is not None:
            for name in ("session_start_time", "timestamps_reference_time"):
                file[name][()] = session_start.isoformat()
        for plane in metadata["planes"]:
            write_times(file, plane_series(metadata, plane), np.asarray(timestamps[plane], dtype=np.float64))
        file[f"scratch/{METADATA_NAME}"][()] = json.dumps(metadata)
        file[f"scratch/{PLANES_NAME}"][()] = json.dumps(list(plane_metadata))
    if gzip_level is None:
        commit_path(path, final)
        return
    from imexport.sinks.nwb_compress import compressed_copy

    temporary = temporary_sibling(Path(final))
    try:
        pixels = [f"/acquisition/{name}/data" for name in all_series(metadata)]
        compressed_copy(path, temporary, pixels=pixels, level=gzip_level, block_mb=block_mb)
        commit_path(temporary, final)
    except BaseException:
        remove_path(temporary)
        raise
    remove_path(path)


def regular_rate(timestamps: np.ndarray) -> float | None:
    """Frames per second when the intervals are all equal to ``TIME_DECIMALS``; None otherwise."""
    if len(timestamps) < 3:
        return None
    intervals = np.unique(np.diff(timestamps).round(TIME_DECIMALS))
    return None if len(intervals) != 1 or intervals[0] <= 0 else (len(timestamps) - 1) / (timestamps[-1] - timestamps[0])


def write_times(file: h5py.File, names: Sequence[str], timestamps: np.ndarray) -> None:
    """The frame times of one plane's series: ``starting_time`` + ``rate`` when regular, else
    the ``timestamps`` of the first series, which the others link to."""
    first = file[f"acquisition/{names[0]}/timestamps"]
    if len(timestamps) != len(first):
        raise ValueError(f"{file.filename}: {len(timestamps)} frame times for {len(first)} frames")
    rate = regular_rate(timestamps)
    if rate is None:
        first[...] = timestamps
        return
    for name in names:  # as pynwb writes them: a float64 scalar with attributes rate and unit
        series = file[f"acquisition/{name}"]
        del series["timestamps"]
        start = series.create_dataset("starting_time", data=np.float64(timestamps[0]))
        start.attrs["rate"] = np.float64(rate)
        start.attrs["unit"] = "seconds"
