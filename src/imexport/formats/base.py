"""The protocol every output format implements.

A format is one small object (one module under ``formats/``, registered in
``formats/__init__.py``) that says everything the rest of imexport needs to know about
it: its name and file extensions, its options, where its outputs go (``layout``), the
sink a plane job writes into, the optional prepare and assemble steps, where the
processing history goes, and how to read its frames back (QC) and check it (``verify``).
The writers themselves live in ``sinks/``; a format delegates to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import naming
from ..jobs import Export
from ..sinks.base import PlaneSink, PlaneTarget

# the key every format stores the processing history under (imexport.history)
HISTORY_KEY = "processing_history"


@dataclass(frozen=True)
class LayoutContext:
    """What a format needs to place the outputs of one ROI view."""

    outdir: Path
    work: Path  # imexport's own folder inside outdir (temporaries go there)
    folder: Path  # where this view's outputs go: outdir, or outdir/roiNN
    planes: np.ndarray  # 0-based source planes, written order
    frames: np.ndarray
    channels: np.ndarray | None  # named in file names only when the source has several
    suffix: str
    options: dict[str, Any]  # the format's options (``OutputFormat.options``)

    def stem(self, planes: np.ndarray | None = None) -> str:
        """The file name stem of all planes (or of ``planes``): ``zplane01-06_tp00001-00030``."""
        return naming.stem(
            planes=self.planes if planes is None else planes, frames=self.frames, channels=self.channels, suffix=self.suffix
        )

    def key(self, path: Path) -> str:
        return str(path.relative_to(self.outdir))

    def store_layout(self, product: Path, folder: str, *, is_folder: bool = False) -> OutputLayout:
        """``product`` made from one store under ``work/folder`` that a prepare step creates and
        every plane job fills as a slab (a marker per plane says it is done), then assembled."""
        store = self.work / folder / self.key(product)
        markers = store.parent / f"{store.name}.planes"
        planes = tuple((z, markers / f"z{z:04d}.done") for z in range(len(self.planes)))
        return OutputLayout(product, planes, "slab", is_folder=is_folder, assembled=True, store=store)


@dataclass(frozen=True)
class OutputLayout:
    """Where one export's files go: its product and what each plane job writes."""

    product: Path
    plane_outputs: tuple[tuple[int, Path], ...]  # (z_index, what the plane job writes), written order
    output_type: str  # what its plane jobs write: one of jobs.OUTPUT_TYPES
    is_folder: bool = False  # the product is a folder
    assembled: bool = False  # an assemble step makes the product from the plane outputs
    store: Path | None = None  # a temporary store a prepare step creates, which the plane jobs fill


class OutputFormat(Protocol):
    name: str  # the config's ``format:`` value and the key of its option block
    extensions: tuple[str, ...]  # ``imwrite(ext=...)`` values, lower case with the dot
    api_keywords: dict[str, str]  # ``imwrite`` keyword -> key of the format's option block

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        """The format's options from the validated config (its block, defaults filled)."""

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        """The exports of one ROI view and their plane jobs' outputs."""

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float) -> PlaneSink:
        """The sink a plane job streams its frames into."""

    def prepare(self, export: Export) -> None:
        """Create ``export.store`` before its plane jobs (formats whose layout has a store)."""

    def slab_files(self, store: Path, z_index: int) -> list[Path]:
        """The files of ``store`` one slab plane job wrote (layouts whose plane jobs fill a store)."""

    def assemble(
        self, export: Export, plane_outputs: Sequence[Path], plane_metadata: Sequence[dict[str, Any]], checksums: str | None
    ) -> None:
        """Make the product from the plane outputs (assembled layouts); with ``checksums``,
        hash what it wrote into that digest cache."""

    def manifest_fields(self, export: Export) -> dict[str, Any]:
        """Extra keys of the export's manifest entry (what ``check_readable`` needs)."""

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        """Put the processing history into the product; the files it rewrote or wrote."""

    def history_sidecars(self, path: str | Path) -> list[Path]:
        """Files beside the product that hold its history (and belong to it)."""

    def read_frames(self, export: Export, position: int, frames: np.ndarray) -> np.ndarray:
        """Frames ``(n, Y, X)`` (0-based, increasing) of the first channel of the plane at
        ``position`` in the written Z order."""

    def check_readable(self, path: Path, entry: dict[str, Any]) -> None:
        """Open the product with its library and read a frame; raise if it cannot.
        ``entry``: its manifest entry."""


class NoSteps:
    """Defaults for a format whose plane jobs write the product and that keeps its history
    inside it: no prepare or assemble step, no store, no extra manifest keys, no sidecar."""

    name: str

    def prepare(self, export: Export) -> None:
        raise NotImplementedError(f"{export.format}: no prepare step")

    def slab_files(self, store: Path, z_index: int) -> list[Path]:
        raise NotImplementedError(f"{self.name}: no store")

    def assemble(self, export: Export, plane_outputs, plane_metadata, checksums) -> None:
        raise NotImplementedError(f"{export.format}: no assemble step")

    def manifest_fields(self, export: Export) -> dict[str, Any]:
        return {}

    def history_sidecars(self, path: str | Path) -> list[Path]:
        return []
