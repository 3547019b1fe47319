"""NWB (Neurodata Without Borders), the file the DANDI archive takes: one ``.nwb`` per ROI view.

A prepare step lays the file out with pynwb, every series' pixels allocated; the plane jobs
write their frames in place; an assemble step adds the acquisition start, the frame times
and the export's metadata, then moves the file into place (``sinks/nwb_file.py``).
Uncompressed by default; with ``nwb.compression: gzip`` the assemble step writes a compressed
copy (every pixel read and written once more, by one job). With ``nwb.series: volume`` the
assemble step writes a file of one ``(frame, x, y, z)`` series per colour from the plane
series instead (``sinks/nwb_volume.py``, also one more copy).

What a ScanImage header cannot say (subject, indicator, excitation wavelength, …) comes
from the ``nwb:`` config block; what the archive requires is checked when the plan is
made, before any job. The processing history goes into ``/scratch/processing_history``
(JSON text), the export's metadata (scan-phase and axial records, timing, ScanImage
values) into ``/scratch/imexport_metadata`` and ``/scratch/imexport_planes``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import commit_path, remove_path, temporary_sibling
from ..checksums import remember_files
from ..jobs import Export
from ..sinks.base import PlaneTarget
from .base import HISTORY_KEY, LayoutContext, NoSteps, OutputLayout

# what DANDI needs (its nwbinspector configuration makes their absence critical) and NWB
# requires without a default that would be true
REQUIRED = ("session_description", "subject.subject_id", "subject.species", "subject.sex", "indicator", "excitation_lambda")
AGE_KEYS = ("subject.age", "subject.date_of_birth")  # one of them
DEFAULT_GZIP_LEVEL = 4  # as for HDF5
VOLUME = "volume"  # nwb.series: one series per colour, (frame, x, y, z)


class NwbFormat(NoSteps):
    name = "nwb"
    extensions = (".nwb",)
    # every session key, as an imwrite keyword of the same name
    api_keywords: ClassVar[dict[str, str]] = {
        key: key
        for key in (
            "session_description",
            "experiment_description",
            "session_id",
            "session_start_time",
            "timezone",
            "experimenter",
            "institution",
            "lab",
            "keywords",
            "subject",
            "indicator",
            "excitation_lambda",
            "emission_lambda",
            "location",
            "device_description",
        )
    } | {"nwb_series": "series", "nwb_compression": "compression", "nwb_compression_level": "compression_level"}

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        """The ``nwb`` block; an error listing every missing required key, and one for a
        time zone or start time that cannot be read."""
        import importlib.util

        from ..config import ConfigError

        if importlib.util.find_spec("pynwb") is None:
            raise ConfigError('format nwb needs pynwb: pip install "imexport[nwb]"')
        options = json.loads(json.dumps(config["nwb"]))
        missing = [f"nwb.{key}" for key in REQUIRED if _value(options, key) in (None, "")]
        if all(_value(options, key) in (None, "") for key in AGE_KEYS):
            missing.append(" or ".join(f"nwb.{key}" for key in AGE_KEYS))
        if missing:
            raise ConfigError(
                f"format nwb: the config block nwb lacks {', '.join(missing)}: an NWB file "
                f"for the DANDI archive needs them (config/README.md, section NWB)"
            )
        zone = _zone(options["timezone"])
        if options["session_start_time"]:
            try:
                start = dt.datetime.fromisoformat(options["session_start_time"])
            except ValueError:
                raise ConfigError(
                    f"config key nwb.session_start_time: {options['session_start_time']!r} is not an ISO 8601 date and time"
                ) from None
            options["session_start_time"] = _aware(start, zone).isoformat()
        return options

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        return [context.store_layout(context.folder / f"{context.stem()}.nwb", "nwb")]

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float):
        from ..sinks.nwb_file import NwbSlabSink

        return NwbSlabSink(store, target)

    def prepare(self, export: Export) -> None:
        from ..sinks.nwb_file import create_file

        create_file(Path(export.store), metadata=export.metadata, session=export.options, dtype=export.dtype)

    def slab_files(self, store: Path, z_index: int) -> list[Path]:
        return []  # every plane job writes into the one file: it is hashed once finalised

    def assemble(self, export: Export, plane_outputs, plane_metadata, checksums: str | None) -> None:
        """The file finalised (or the volumetric file made from it) with the times the plane
        jobs learnt from the page index (in their markers), then moved into place; with
        ``checksums``, hashed into that cache."""
        from ..sinks.nwb_file import finalize_file

        timing = json.loads(Path(plane_outputs[0]).read_text()).get("timing") or {}
        start = self._session_start(export, timing)
        metadata = {**export.metadata, **({"timing": timing} if timing else {})}
        if export.options["series"] == VOLUME:
            times = self._timestamps(export, timing.get("timestamps_sec"))
            self._assemble_volume(export, start, times, metadata, plane_metadata)
        else:
            times = {}
            for path in plane_outputs:  # one marker at a time: each holds a list of T times
                marker = json.loads(Path(path).read_text())
                times[marker["plane"]] = self._timestamps(export, marker.get("plane_timestamps_sec"))
            finalize_file(
                Path(export.store),
                Path(export.path),
                session_start=start,
                timestamps=times,
                metadata=metadata,
                plane_metadata=plane_metadata,
                gzip_level=_gzip_level(export.options),
                block_mb=export.target_chunk_mb,
            )
        if checksums:
            remember_files([Path(export.path)], checksums)

    def _assemble_volume(self, export: Export, start: dt.datetime | None, times: np.ndarray, metadata, plane_metadata) -> None:
        """The volumetric file, made from the plane series the plane jobs wrote, then moved into
        place; the plane series' file is removed."""
        from ..sinks.nwb_file import regular_rate
        from ..sinks.nwb_volume import write_volume_file

        final = Path(export.path)
        temporary = temporary_sibling(final)
        try:
            write_volume_file(
                Path(export.store),
                temporary,
                metadata=metadata,
                plane_metadata=plane_metadata,
                session=export.options,
                start=start or dt.datetime.fromisoformat(export.options["session_start_time"]),
                timestamps=times,
                rate=regular_rate(times),
                gzip_level=_gzip_level(export.options),
                block_mb=export.target_chunk_mb,
            )
            commit_path(temporary, final)
        except BaseException:
            remove_path(temporary)
            raise
        remove_path(Path(export.store))

    def _session_start(self, export: Export, timing: dict[str, Any]) -> dt.datetime | None:
        """The acquisition start (ScanImage ``epoch``, local wall clock, in ``nwb.timezone``);
        None when ``nwb.session_start_time`` set it already."""
        if export.options["session_start_time"]:
            return None
        if not timing.get("acquisition_start"):
            from ..config import ConfigError

            raise ConfigError(
                f"{export.path}: the input records no acquisition start (it is not a ScanImage recording): "
                f"set the config key nwb.session_start_time"
            )
        return _aware(dt.datetime.fromisoformat(timing["acquisition_start"]), _zone(export.options["timezone"]))

    def _timestamps(self, export: Export, recorded: list[float] | None) -> np.ndarray:
        """The time of each frame, s: as ``recorded``, else from the frame rate."""
        if recorded:
            return np.asarray(recorded, dtype=np.float64)
        fs = export.metadata.get("fs")
        if not fs:
            from ..config import ConfigError

            raise ConfigError(
                f"{export.path}: the input records neither frame times nor a frame rate: set the config key metadata.fs"
            )
        return np.arange(export.shape[0]) / float(fs)

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        import h5py

        # the file holds all pixels: copying it to edit the copy would write the whole export
        # again, so the history text (a variable-length string) is rewritten in place
        with h5py.File(path, "r+") as file:
            file[f"scratch/{HISTORY_KEY}"][()] = json.dumps(history)
        return [path]

    def read_frames(self, export: Export, position: int, frames: np.ndarray) -> np.ndarray:
        import h5py

        from ..sinks.nwb_layout import plane_series

        rows = [int(t) for t in frames]
        with h5py.File(export.path, "r") as file:
            if export.options["series"] == VOLUME:
                return file[f"acquisition/{plane_series(export.metadata, None)[0]}/data"][rows, :, :, position].transpose(0, 2, 1)
            name = plane_series(export.metadata, export.metadata["planes"][position])[0]
            return file[f"acquisition/{name}/data"][rows].transpose(0, 2, 1)

    def check_readable(self, path: Path, entry: dict[str, Any]) -> None:
        """Every series gives back its first frame through h5py."""
        import h5py

        with h5py.File(path, "r") as file:
            series = [g for g in file["acquisition"].values() if g.attrs.get("neurodata_type") == "TwoPhotonSeries"]
            if not series:
                raise ValueError(f"{path}: no TwoPhotonSeries under /acquisition")
            for group in series:
                group["data"][0]


def _gzip_level(options: dict[str, Any]) -> int | None:
    """The gzip level of the pixels; None: uncompressed."""
    if options["compression"] != "gzip":
        return None
    return DEFAULT_GZIP_LEVEL if options["compression_level"] is None else int(options["compression_level"])


def _value(options: dict[str, Any], dotted: str) -> Any:
    value: Any = options
    for part in dotted.split("."):
        value = (value or {}).get(part)
    return value


def _zone(name: str | None) -> dt.tzinfo | None:
    """The IANA time zone ``name``; None: this machine's local zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from ..config import ConfigError

    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"config key nwb.timezone: {name!r} is not an IANA time zone name, e.g. Europe/Berlin") from None


def _aware(moment: dt.datetime, zone: dt.tzinfo | None) -> dt.datetime:
    """``moment`` with its time zone: its own, else ``zone``, else this machine's."""
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone) if zone is not None else moment.astimezone()
