"""The output formats, registered in one place.

Adding a format = one module under ``formats/`` implementing ``base.OutputFormat``, one
line here, its option block in ``workflow/schemas/config.schema.yaml`` (and the
``format`` enum there) and its entry in ``config/README.md``. Nothing else names a
format: the plan, the plane jobs, the prepare/assemble steps, the processing history,
QC, ``verify`` and ``imwrite`` all ask the registry.
"""

from __future__ import annotations

from .base import LayoutContext, OutputFormat, OutputLayout
from .bin import BinFormat
from .h5 import H5Format
from .nwb import NwbFormat
from .tiff import TiffFormat
from .zarr import ZarrFormat

FORMATS: dict[str, OutputFormat] = {f.name: f for f in (TiffFormat(), BinFormat(), ZarrFormat(), H5Format(), NwbFormat())}


def output_format(name: str) -> OutputFormat:
    """The format called ``name``; an error listing the valid names otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"format: {name!r} is not one of {', '.join(FORMATS)}") from None


__all__ = ["FORMATS", "LayoutContext", "OutputFormat", "OutputLayout", "output_format"]
