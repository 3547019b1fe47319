"""The ImageJ header of every TIFF imexport writes: the plane sink's (``sinks/tiff.py``)
and the assembled volume's (``sinks/tiff_volume.py``)."""

from __future__ import annotations

import json
from typing import Any

from .scales import known_positive


def imagej_metadata(metadata: dict[str, Any], axes: str) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """The ImageJ header of every TIFF imexport writes (a plane, or the volume): axes,
    unit, the export metadata as JSON in ``Info``, the plane spacing (with a Z axis) and
    frame interval when known, and the XY resolution (pixels per µm) when known.

    The metadata is serialised first, so unserialisable metadata fails before any file is
    written, and ASCII-only, because tifffile stores ImageJ strings as 7-bit ASCII. The
    key order is the order of the header's lines.
    """
    header = {"axes": axes, "unit": "um", "Info": json.dumps(metadata, ensure_ascii=True)}
    dz, fs = known_positive(metadata.get("dz")), known_positive(metadata.get("fs"))
    dx, dy = known_positive(metadata.get("dx")), known_positive(metadata.get("dy"))
    if dz and "Z" in axes:
        header["spacing"] = dz
    if fs:
        header["finterval"] = 1.0 / fs
    return header, (1.0 / dx, 1.0 / dy) if dx and dy else None
