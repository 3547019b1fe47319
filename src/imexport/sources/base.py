"""The protocol every non-ScanImage reader module implements (``sources/tiff.py``,
``suite2p.py``, ``zarr_source.py``, ``hdf5.py``, ``npy.py``), registered by kind in
``sources/__init__.py``.

A reader describes its files as one ``SourceInfo`` (metadata only) and opens file ``i``
as an array-like of that file's native axes; ``arrays.GridReader`` turns those arrays
into the planes every plane job reads, so nothing downstream depends on the kind.
Raw ScanImage recordings have their own reader (``scanimage.PlaneReader``, page offsets).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .info import SourceInfo


class ArrayReader(Protocol):
    def inspect(self, paths: list[Path], options: dict[str, Any]) -> SourceInfo:
        """Describe the input ``paths`` (as ``locate_input`` found them) with the config's
        ``input_options``."""

    def open_array(self, info: SourceInfo, i: int) -> tuple[Any, Callable[[], None] | None]:
        """File ``i`` of ``info`` as an array-like, and what closes it (None: nothing)."""
