"""Suite2p binary: one plane folder per plane, ``data_raw.bin`` (int16) + ``ops.npy``.

The processing history goes into the key ``processing_history`` of ``ops.npy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..atomic import write_atomic
from ..jobs import Export
from ..sinks.base import PlaneTarget
from .base import HISTORY_KEY, LayoutContext, NoSteps, OutputLayout


class BinFormat(NoSteps):
    name = "bin"
    extensions = (".bin",)
    api_keywords: ClassVar[dict[str, str]] = {}

    def options(self, config: dict[str, Any]) -> dict[str, Any]:
        """The block, plus the top-level ``output_name`` (a top-level key as in the reference)."""
        options = dict(config["bin"])
        if config["output_name"]:  # checked by the plan with the other names
            options["output_name"] = config["output_name"]
        return options

    def layout(self, context: LayoutContext) -> list[OutputLayout]:
        layouts = []
        for z_index, plane in enumerate(context.planes):
            product = context.folder / context.stem(np.array([plane]))
            layouts.append(OutputLayout(product, ((z_index, product),), "folder", is_folder=True))
        return layouts

    def open_sink(self, target: PlaneTarget, *, store: Path | None, target_chunk_mb: float):
        from ..sinks.suite2p import Suite2pPlaneSink

        return Suite2pPlaneSink(target)

    def embed_history(self, path: Path, history: list[dict[str, Any]]) -> list[Path]:
        ops_path = Path(path) / "ops.npy"
        ops = np.load(ops_path, allow_pickle=True).item()
        ops[HISTORY_KEY] = history
        write_atomic(ops_path, lambda fh: np.save(fh, np.array(ops, dtype=object), allow_pickle=True))
        return [ops_path]

    def read_frames(self, export: Export, position: int, frames: np.ndarray) -> np.ndarray:
        from ..sinks.suite2p import read_suite2p_plane

        movies, _ = read_suite2p_plane(export.path)
        return np.asarray(movies[0][frames])

    def check_readable(self, path: Path, entry: dict[str, Any]) -> None:
        """Every binary has the size ``ops.npy`` describes, and its first frame reads."""
        from ..sinks.suite2p import read_suite2p_plane

        movies, ops = read_suite2p_plane(path)
        for movie in movies:
            expected = int(ops["nframes"]) * int(ops["Ly"]) * int(ops["Lx"]) * 2
            if Path(movie.filename).stat().st_size != expected:
                raise ValueError(f"{movie.filename}: {Path(movie.filename).stat().st_size} bytes, ops.npy describes {expected}")
            np.asarray(movie[0])
