"""One function per workflow step. Snakemake scripts call these; so does the Python API.

Each step takes plain values (paths, dicts from the plan) so it runs the same inside a
Snakemake job and in-process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .plan import Plan
from .sinks.base import commit_path, temporary_sibling
from .sources.scanimage import SourceInfo, build_page_index, load_page_index, save_page_index
from .synthetic import AcquisitionSpec, write_acquisition

log = logging.getLogger("imexport")


def setup_logging(log_file: str | None, debug: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def make_demo(spec_settings: dict[str, Any], folder: str) -> list[Path]:
    """Write the demo acquisition into a temporary folder, then move the files in."""
    spec = AcquisitionSpec(**spec_settings)
    final = Path(folder)
    staging = temporary_sibling(final)
    paths = write_acquisition(spec, staging)
    final.mkdir(parents=True, exist_ok=True)
    for path in paths:
        commit_path(path, final / path.name)
    staging.rmdir()
    log.info("demo acquisition: %d files in %s", len(paths), final)
    return [final / p.name for p in paths]


def index_source(info_json: str, source_out: str, index_out: str) -> None:
    """Walk every raw file's IFD chain once; plane jobs read pages by these offsets."""
    info = SourceInfo.from_json(info_json)
    offsets = build_page_index(info)
    tmp_index = temporary_sibling(Path(index_out))
    save_page_index(tmp_index, info, offsets)
    commit_path(tmp_index, Path(index_out))
    tmp_source = temporary_sibling(Path(source_out))
    tmp_source.write_text(info.to_json())
    commit_path(tmp_source, Path(source_out))
    log.info("indexed %d pages in %d files", sum(len(o) for o in offsets), len(offsets))


def write_plane(job: dict[str, Any], source_json: str, index_path: str, *, show_progress: bool = False, progress=None) -> Path:
    from .export import export_plane

    if progress is None and show_progress:
        def progress(fraction: float) -> None:
            log.info("%s: %3.0f%%", Path(job["output"]).name, 100 * fraction)

    info = SourceInfo.from_json(Path(source_json).read_text())
    return export_plane(info, load_page_index(Path(index_path)), job, progress=progress)


def plan_summary(plan: Plan) -> str:
    info = plan.source
    lines = [
        f"source: {len(info.files)} file(s), {info.stack_type}, shape (T, C, Z, Y, X) = {info.shape()}, "
        f"{info.n_rois} ROI(s), {info.fly_to_lines} fly-to lines",
        f"export: {len(plan.planes)} plane(s) x {len(plan.frames)} frame(s) x {len(plan.colors)} channel(s), "
        f"{len(plan.exports)} output(s), {len(plan.jobs)} plane job(s) in {plan.outdir}",
    ]
    return "\n".join(lines)
