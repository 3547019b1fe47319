"""HDF5, two layouts (``h5.layout``):

* ``single`` (default): one self-contained file. A prepare step creates it in the work
  folder with its dataset allocated, each plane job writes its frames into it, an
  assemble step adds the attributes and moves it into place (``sinks/hdf5_single.py``).
  Uncompressed only.
* ``virtual``: one file per plane (``…_planes/zplaneNN.h5``) and a master file whose
  virtual dataset maps them all, assembled once every plane is written
  (``sinks/hdf5.py``). The master holds no pixels: without its plane files h5py reads
  fill values (zeros); imexport and ``verify`` refuse it, naming the missing files.

The processing history goes into the root attribute ``processing_history``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import commit_path, temporary_sibling
from ..checksums import remember_files
from ..jobs import Export
from ..sinks.base import PlaneTarget
from .base import HISTORY_KEY, LayoutContext, NoSteps, OutputLayout

SINGLE, VIRTUAL = "single", "virtual"


class H5Format(NoSteps):
    name = "h5"
    extensions = (".h5", ".hdf5")
    api_keywords: ClassVar[dict[str, str]] = {
        "compression": "compression",
        "h5_compression_level": "compression_level",
        "h5_layout": "layout",
    }

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        from ..config import ConfigError

        options = dict(config["h5"])
        if options["compression"] is not None and options["layout"] != VIRTUAL:
            raise ConfigError(
                f"config key h5.compression: {options['compression']!r} needs h5.layout: virtual (one file per "
                f"plane): the single-file layout is written in place by parallel plane jobs, uncompressed only"
            )
        return options

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        stem = context.stem()
        product = context.folder / f"{stem}.h5"
        if context.options["layout"] == SINGLE:
            return [context.store_layout(product, "h5")]
        planes = context.folder / f"{stem}_planes"
        return [
            OutputLayout(
                product,
                tuple((z, planes / f"zplane{int(p) + 1:02d}.h5") for z, p in enumerate(context.planes)),
                "file",
                assembled=True,
            )
        ]

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float):
        if store is not None:
            from ..sinks.hdf5_single import H5SlabSink

            return H5SlabSink(store, target)
        from ..sinks.hdf5 import H5PlaneSink

        return H5PlaneSink(target)

    def prepare(self, export: Export) -> None:
        from ..sinks.hdf5_single import create_file

        n_frames, n_colors, *volume = export.shape
        shape = (n_frames, *((n_colors,) if n_colors > 1 else ()), *volume)
        create_file(Path(export.store), shape=shape, dtype=export.dtype, dataset_name=export.options["dataset_name"])

    def slab_files(self, store: Path, z_index: int) -> list[Path]:
        return []  # every plane job writes into the one file: it is hashed once finalised

    def assemble(self, export: Export, plane_outputs, plane_metadata, checksums: str | None) -> None:
        """The single file finalised and moved into place, or the master over the plane files;
        with ``checksums``, hashed into that cache."""
        if export.store:
            from ..sinks.hdf5 import timing_datasets
            from ..sinks.hdf5_single import finalize_file

            # the acquisition times, which the plane jobs learnt from the page index, in their markers
            timing = json.loads(Path(plane_outputs[0]).read_text()).get("timing")
            datasets, attribute = timing_datasets(timing) if timing else ({}, None)
            metadata = {**export.metadata, **({"timing": attribute} if attribute else {})}
            finalize_file(
                Path(export.store), Path(export.path), metadata=metadata, plane_metadata=plane_metadata, datasets=datasets
            )
        else:
            from ..sinks.hdf5 import assemble_h5

            assemble_h5(
                Path(export.path),
                [Path(p) for p in plane_outputs],
                dataset_name=export.options["dataset_name"],
                metadata=export.metadata,
                plane_metadata=plane_metadata,
            )
        if checksums:
            remember_files([Path(export.path)], checksums)

    def manifest_fields(self, export: Export) -> dict[str, Any]:
        return {"dataset": export.options["dataset_name"]}

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        import h5py

        from ..hdf5_attrs import write_attrs

        with h5py.File(path, "r") as fh:
            virtual = any(isinstance(obj, h5py.Dataset) and obj.is_virtual for obj in fh.values())
        if not virtual:  # the single file holds all pixels: edited aside, not copied
            from ..sinks.hdf5_single import rewrite_attrs

            rewrite_attrs(path, {HISTORY_KEY: history})
            return [path]
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

        from ..sources.hdf5 import check_virtual_sources

        with h5py.File(path, "r") as fh:
            check_virtual_sources(fh[entry["dataset"]], path)
            fh[entry["dataset"]][0]
