"""What an imexport NWB file holds besides its pixels: the names, the session and the planes.

Shared by the file the plane jobs fill (``sinks/nwb_file.py``, a series per plane) and the
volumetric file made from it (``sinks/nwb_volume.py``, a series per colour).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from imexport.config import ConfigError
from imexport.formats.base import HISTORY_KEY

SERIES_PREFIX = "TwoPhotonSeries"
# the export's records, as JSON text under /scratch
METADATA_NAME, PLANES_NAME = "imexport_metadata", "imexport_planes"


def series_name(plane: int | None, channel: int | None) -> str:
    """``TwoPhotonSeriesPlane03`` (1-based source plane), ``…Plane03Ch02`` with several colours;
    without a plane (a volume), ``TwoPhotonSeries`` / ``TwoPhotonSeriesCh02``."""
    return SERIES_PREFIX + ("" if plane is None else f"Plane{plane:02d}") + ("" if channel is None else f"Ch{channel:02d}")


def plane_series(metadata: Mapping[str, Any], plane: int | None) -> list[str]:
    """The series of one plane (1-based; None: of the volume), one per exported colour, in colour order."""
    channels = metadata["channels"]
    return [series_name(plane, c if len(channels) > 1 else None) for c in channels]


def all_series(metadata: Mapping[str, Any]) -> list[str]:
    """Every plane series of an export, in written Z order then colour order."""
    return [name for plane in metadata["planes"] for name in plane_series(metadata, plane)]


def new_nwbfile(metadata: Mapping[str, Any], session: Mapping[str, Any], start: dt.datetime, records: Mapping[str, str]):
    """The NWB file of an export without its series: session, subject, device (``nwbfile.devices``),
    and the JSON ``records`` (name -> text: ``METADATA_NAME``, ``PLANES_NAME``, ``HISTORY_KEY``) under /scratch."""
    from pynwb import NWBFile
    from pynwb.core import ScratchData

    nwbfile = NWBFile(
        session_description=session["session_description"],
        identifier=str(uuid.uuid4()),
        session_start_time=start,
        subject=_subject(session["subject"]),
        **{key: session[key] for key in ("experimenter", "experiment_description", "institution", "lab", "session_id")},
        keywords=session["keywords"] or None,
    )
    nwbfile.create_device(name="Microscope", description=_device_description(metadata, session))
    what = {
        METADATA_NAME: "the export's metadata",
        PLANES_NAME: "each plane's metadata, written Z order",
        HISTORY_KEY: "the processing history of this file",
    }
    for name, text in records.items():
        nwbfile.add_scratch(ScratchData(name=name, data=text, description=f"imexport: {what[name]}, as JSON"))
    return nwbfile


def add_imaging_plane(
    nwbfile,
    metadata: Mapping[str, Any],
    session: Mapping[str, Any],
    *,
    name: str,
    channel: int,
    emission: float,
    planes: list[int],
):
    """The ``ImagingPlane`` of one colour of ``planes`` (1-based; several: a volume, with its
    plane spacing as third grid spacing where known), depth of the first as origin."""
    from pynwb.ophys import OpticalChannel

    spacing = _grid_spacing(metadata, volume=len(planes) > 1)
    plane_text = f"Plane {planes[0]}" if len(planes) == 1 else f"Planes {', '.join(map(str, planes))} (its z axis)"
    view = f"ROI {metadata['roi']}" if metadata.get("roi") is not None else "the field of view, ROIs stitched along X"
    return nwbfile.create_imaging_plane(
        name=name,
        optical_channel=OpticalChannel(name="OpticalChannel", description=f"colour channel {channel}", emission_lambda=emission),
        description=f"{plane_text} of {metadata['source_shape'][2]} ({metadata['stack_type']} stack), {view}",
        device=nwbfile.devices["Microscope"],
        excitation_lambda=float(session["excitation_lambda"]),
        indicator=session["indicator"],
        location=session["location"],
        **spacing,
        **_origin(metadata, planes[0]),
    )


def field_of_view(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Width and height of a frame, meters, where the pixel size is known."""
    if metadata.get("dx") is None or metadata.get("dy") is None:
        return {}
    _, _, _, height, width = metadata["shape"]
    return {"field_of_view": [width * float(metadata["dx"]) * 1e-6, height * float(metadata["dy"]) * 1e-6]}


def emission_lambdas(session: Mapping[str, Any], n_channels: int) -> list[float]:
    """One emission wavelength (nm) per exported colour; NaN where not given."""
    given = session["emission_lambda"]
    if given is None:
        return [float("nan")] * n_channels
    values = given if isinstance(given, list) else [given] * n_channels
    if len(values) != n_channels:
        raise ConfigError(f"config key nwb.emission_lambda: {len(values)} wavelengths for {n_channels} exported colour(s)")
    return [float(v) for v in values]


def _subject(values: Mapping[str, Any]):
    from pynwb.file import Subject

    given = {key: value for key, value in values.items() if value is not None}
    if "date_of_birth" in given:
        given["date_of_birth"] = dt.datetime.fromisoformat(given["date_of_birth"])
    return Subject(**given)


def _device_description(metadata: Mapping[str, Any], session: Mapping[str, Any]) -> str:
    if session["device_description"]:
        return session["device_description"]
    system = (metadata.get("scanimage") or {}).get("SI.imagingSystem")
    return f"{metadata['source_format']} acquisition ({metadata['stack_type']})" + (f", {system}" if system else "")


def _grid_spacing(metadata: Mapping[str, Any], volume: bool) -> dict[str, Any]:
    """Pixel size along (x, y), and for a volume the spacing of its planes along z, µm, where known."""
    if metadata.get("dx") is None or metadata.get("dy") is None:
        return {}
    spacing = [float(metadata["dx"]), float(metadata["dy"])]
    if volume and metadata.get("dz") is not None:
        spacing.append(float(metadata["dz"]))
    return {"grid_spacing": spacing, "grid_spacing_unit": "micrometers"}


def _origin(metadata: Mapping[str, Any], plane: int) -> dict[str, Any]:
    """The plane's depth below the first source plane, µm: (plane - 1) x the source's plane spacing."""
    dz, stride = metadata.get("dz"), metadata.get("plane_stride")
    if dz is None or not stride:
        return {}
    return {"origin_coords": [0.0, 0.0, (plane - 1) * float(dz) / stride], "origin_coords_unit": "micrometers"}
