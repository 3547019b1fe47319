"""Zarr v3 (OME-NGFF 0.5): one store for all planes.

A prepare step creates a temporary store; each plane job fills its z-slab of it and
leaves a marker; an assemble step finalises the store (plane metadata, pyramid levels)
and moves it into place. The processing history goes into the group attribute
``processing_history``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import checksums as digests
from ..atomic import write_json_atomic
from ..checksums import files_of
from ..jobs import Export
from ..sinks.base import PlaneTarget
from .base import HISTORY_KEY, LayoutContext, NoSteps, OutputLayout

log = logging.getLogger(__name__)


class ZarrFormat(NoSteps):
    name = "zarr"
    extensions = (".zarr",)
    api_keywords: ClassVar[dict[str, str]] = {
        k: k for k in ("sharded", "compressor", "compression_level", "pyramid", "pyramid_max_layers", "pyramid_method")
    }

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        return dict(config["zarr"])

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        product = context.folder / f"{context.stem()}.zarr"
        return [context.store_layout(product, "zarr", is_folder=True)]

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float):
        from ..sinks.zarr_plane import ZarrPlaneSink

        return ZarrPlaneSink(store, target, target_chunk_mb)

    def prepare(self, export: Export) -> None:
        from ..sinks.zarr_store import create_store

        n_frames, n_colors, n_planes, *frame_shape = export.shape
        create_store(
            Path(export.store),
            n_frames=n_frames,
            n_channels=n_colors,
            n_planes=n_planes,
            frame_shape=tuple(frame_shape),
            dtype=export.dtype,
            target_chunk_mb=export.target_chunk_mb,
            options=export.options,
            metadata=export.metadata,
            name=Path(export.path).stem,
        )

    def slab_files(self, store: Path, z_index: int) -> list[Path]:
        """The chunk (or shard) files of one z-slab of the store's array: what its plane job
        wrote (all-fill-value chunks have no file). Empty when a chunk spans several planes:
        then no file belongs to one job, and finalising the store hashes them."""
        from ..sinks.zarr_plane import ARRAY_PATH, file_grid

        folder = Path(store) / ARRAY_PATH
        files = file_grid(folder)
        if files.grid[len(files.shape) - 3] != 1:
            return []
        return [path for path in (folder / key for key in files.slab_keys(z_index)) if path.is_file()]

    def assemble(self, export: Export, plane_outputs, plane_metadata, checksums: str | None) -> None:
        """Finalise the temporary store and move it into place. With ``checksums``, the digests
        the slab jobs cached move with their (renamed, unchanged) files, and the files finalising
        added or rewrote (metadata, pyramid levels) are hashed."""
        from ..sinks.zarr_store import finalize_store

        store, final = Path(export.store), Path(export.path)
        carried = _cached_files(store, checksums) if checksums else {}
        options = export.options
        finalize_store(
            store,
            final,
            pyramid=options["pyramid"],
            pyramid_max_layers=options["pyramid_max_layers"],
            pyramid_method=options["pyramid_method"],
        )
        if checksums:
            moved = hashed = 0
            for path in files_of(final):
                stat = path.stat()
                known = carried.get(str(path.relative_to(final)))
                if known and known[0] == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
                    digests.remember(path, checksums, sha256=known[1])
                    moved += 1
                else:
                    digests.remember(path, checksums)
                    hashed += 1
            for rel in carried:  # their temporary paths are gone
                digests.forget(store / rel, checksums)
            log.info("%s: %d digest(s) carried from the slab jobs, %d file(s) hashed", final.name, moved, hashed)

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        meta_path = Path(path) / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta.setdefault("attributes", {})[HISTORY_KEY] = history
        write_json_atomic(meta_path, meta)
        return [meta_path]

    def read_frames(self, export: Export, position: int, frames: np.ndarray) -> np.ndarray:
        import zarr

        array = zarr.open_group(export.path, mode="r")["0"]
        return array.oindex[(frames, 0, position) if array.ndim == 5 else (frames, position)]

    def check_readable(self, path: Path, entry: dict[str, Any]) -> None:
        import zarr

        zarr.open_group(str(path), mode="r")["0"][0]


def _cached_files(folder: Path, checksums: str) -> dict[str, tuple[tuple[int, int, int], str]]:
    """Files of ``folder`` whose cached digest is valid: relative path → ((size, mtime_ns, ino), sha256)."""
    found = {}
    for path in files_of(folder):
        stat = path.stat()
        cached = digests.cached_digest(path, checksums)
        if cached is not None:
            found[str(path.relative_to(folder))] = ((stat.st_size, stat.st_mtime_ns, stat.st_ino), cached["sha256"])
    return found
