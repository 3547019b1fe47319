"""TIFF: one ImageJ hyperstack per plane, or (``tiff.layout: volume``) one for all planes.

The volume is assembled from temporary per-plane TIFFs once every plane is written. The
processing history goes into a JSON sidecar ``<name>.tif.history.json``: rewriting the
tags of a multi-GB TIFF in place is not worth the risk of damaging it. The acquisition
times are in the ``timing`` key of the ImageJ ``Info`` JSON; past
``metadata.TIMING_INLINE_FRAMES`` frames the per-frame lists are in ``<name>.tif.timing.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import write_json_atomic
from ..checksums import remember_files
from ..jobs import Export
from ..sinks.base import PlaneTarget
from .base import HISTORY_KEY, LayoutContext, NoSteps, OutputLayout

SIDECAR_SUFFIX = ".history.json"


class TiffFormat(NoSteps):
    name = "tiff"
    extensions = (".tif", ".tiff")
    api_keywords: ClassVar[dict[str, str]] = {"layout": "layout", "bigtiff": "bigtiff"}

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        return dict(config["tiff"])

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        if context.options["layout"] == "volume":
            product = context.folder / f"{context.stem()}.tif"
            parts = context.work / "tiff_planes" / context.key(product)
            return [
                OutputLayout(
                    product,
                    tuple((z, parts / f"zplane{int(p) + 1:02d}.tif") for z, p in enumerate(context.planes)),
                    "intermediate",
                    assembled=True,
                )
            ]
        layouts = []
        for z_index, plane in enumerate(context.planes):
            product = context.folder / f"{context.stem(np.array([plane]))}.tif"
            layouts.append(OutputLayout(product, ((z_index, product),), "file"))
        return layouts

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float):
        from ..sinks.tiff import TiffPlaneSink

        return TiffPlaneSink(target)

    def assemble(self, export: Export, plane_outputs, plane_metadata, checksums: str | None) -> None:
        from ..sinks.tiff import header_metadata, read_timing, timing_sidecar
        from ..sinks.tiff_volume import assemble_volume_tiff

        path, planes = Path(export.path), [Path(p) for p in plane_outputs]
        # the plane jobs put the acquisition times into their TIFFs (the plan cannot know them)
        timing = read_timing(planes[0])
        header, sidecar = header_metadata(path, {**export.metadata, **({"timing": timing} if timing else {})})
        if sidecar is not None:
            write_json_atomic(timing_sidecar(path), sidecar)
        assemble_volume_tiff(
            path, planes, metadata=header, target_chunk_mb=export.target_chunk_mb, bigtiff=export.options["bigtiff"]
        )
        if checksums:
            remember_files([path, *([timing_sidecar(path)] if sidecar is not None else [])], checksums)

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        sidecars = self.history_sidecars(path)
        write_json_atomic(sidecars[0], {HISTORY_KEY: history})
        return sidecars  # the timing sidecar is not rewritten, but hashed with it

    def history_sidecars(self, path: str | Path) -> list[Path]:
        """The history sidecar, and the timing sidecar where the TIFF has one (many frames)."""
        from ..sinks.tiff import timing_sidecar

        path = Path(path)
        timing = timing_sidecar(path)
        return [path.with_name(path.name + SIDECAR_SUFFIX), *([timing] if timing.is_file() else [])]

    def read_frames(self, export: Export, position: int, frames: np.ndarray) -> np.ndarray:
        import tifffile

        with tifffile.TiffFile(export.path) as tif:
            series = tif.series[0]
            # ImageJ page order is T, Z, C; tifffile drops axes of length 1
            sizes = dict(zip(series.axes, series.shape))
            per_plane = sizes.get("C", 1)
            per_frame = sizes.get("Z", 1) * per_plane
            pages = [int(t) * per_frame + position * per_plane for t in frames]
            return tif.asarray(key=pages).reshape(len(frames), *series.shape[-2:])

    def check_readable(self, path: Path, entry: dict[str, Any]) -> None:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            tf.pages[0].asarray()
            tf.pages[len(tf.pages) - 1].asarray()
