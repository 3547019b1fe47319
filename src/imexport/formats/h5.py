"""HDF5: one file per plane (``…_planes/zplaneNN.h5``) and a master file whose virtual
dataset maps them all, assembled once every plane is written. The processing history
goes into the master's root attribute ``processing_history``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import commit_path, temporary_sibling
from ..checksums import remember_files
from ..jobs import Export
from ..sinks.base import PlaneTarget
from .base import HISTORY_KEY, LayoutContext, NoSteps, OutputLayout


class H5Format(NoSteps):
    name = "h5"
    extensions = (".h5", ".hdf5")
    api_keywords: ClassVar[dict[str, str]] = {"compression": "compression", "h5_compression_level": "compression_level"}

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        return dict(config["h5"])

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        stem = context.stem()
        planes = context.folder / f"{stem}_planes"
        return [OutputLayout(
            context.folder / f"{stem}.h5",
            tuple((z, planes / f"zplane{int(p) + 1:02d}.h5") for z, p in enumerate(context.planes)), "file",
            assembled=True,
        )]

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float):
        from ..sinks.hdf5 import H5PlaneSink

        return H5PlaneSink(target)

    def assemble(self, export: Export, plane_outputs, plane_metadata, checksums: str | None) -> None:
        """The master over the plane files; with ``checksums``, hashed into that cache."""
        from ..sinks.hdf5 import assemble_h5

        assemble_h5(Path(export.path), [Path(p) for p in plane_outputs], dataset_name=export.options["dataset_name"],
                    metadata=export.metadata, plane_metadata=plane_metadata)
        if checksums:
            remember_files([Path(export.path)], checksums)

    def manifest_fields(self, export: Export) -> dict[str, Any]:
        return {"dataset": export.options["dataset_name"]}

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        import h5py

        from ..hdf5_attrs import write_attrs

        # a copy is edited, then swapped in: a kill mid-way never leaves a damaged master
        # (the copy is small: the master holds a virtual dataset, no pixels)
        tmp = temporary_sibling(path)
        try:
            shutil.copyfile(path, tmp)
            with h5py.File(tmp, "r+") as fh:
                write_attrs(fh, {HISTORY_KEY: history})
            commit_path(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return [path]

    def read_frames(self, export: Export, position: int, frames: np.ndarray) -> np.ndarray:
        import h5py

        with h5py.File(export.path, "r") as file:
            dataset = file[export.options["dataset_name"]]
            rows = [int(t) for t in frames]
            return dataset[(rows, 0, position) if dataset.ndim == 5 else (rows, position)]

    def check_readable(self, path: Path, entry: dict[str, Any]) -> None:
        import h5py

        with h5py.File(path, "r") as fh:
            fh[entry["dataset"]][0]
