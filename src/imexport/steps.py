"""One function per workflow step. Snakemake scripts call these; so does the Python API.

Each step takes plain values (paths, dicts from the plan) so it runs the same inside a
Snakemake job and in-process.

A step that writes output files hashes them once they are committed and leaves the
digests in the cache folder ``checksums`` (``<work>/checksums``, see
:mod:`imexport.checksums`) when it is given one, so the history job finds them there.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import checksums as digests
from .checksums import files_of, input_files
from .corrections import compute_axial_shifts, estimate_scan_phase, phase_corrector, shift_metadata
from .plan import Plan
from .selection import from_runs
from .sinks.base import commit_path, temporary_sibling, write_json_atomic
from .sources import build_index
from .sources.info import SourceInfo
from .sources.scanimage import check_page_index, load_page_index, save_page_index
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
    """Walk every raw file's IFD chain once; plane jobs read pages by these offsets.

    Other kinds need no offsets: their files are checked against the plan, and the saved
    index holds only the file sizes.
    """
    info = SourceInfo.from_json(info_json)
    offsets = build_index(info)
    Path(index_out).parent.mkdir(parents=True, exist_ok=True)
    tmp_index = temporary_sibling(Path(index_out))
    save_page_index(tmp_index, info, offsets)
    commit_path(tmp_index, Path(index_out))
    tmp_source = temporary_sibling(Path(source_out))
    tmp_source.write_text(info.to_json())
    commit_path(tmp_source, Path(source_out))
    log.info("%s source: indexed %d pages in %d files", info.kind, sum(len(o) for o in offsets), len(info.files))


def write_plane(job: dict[str, Any], source_json: str, index_path: str, *, show_progress: bool = False, progress=None,
                checksums: str | None = None) -> Path:
    """One plane job. A zarr slab has no file of its own: a marker records its completion.

    With ``checksums`` (a digest cache folder), the files written are hashed into it: the
    output file or folder, or a slab's chunk files in the temporary store (carried over
    when the store is finalised). Intermediates (TIFF planes of a volume) are not: they
    are removed once joined.
    """
    from .export import export_plane

    if progress is None and show_progress:
        def progress(fraction: float) -> None:
            log.info("%s: %3.0f%%", Path(job["output"]).name, 100 * fraction)

    info = _unchanged_source(source_json, index_path)
    phase_record = _read_json(job.get("phase_record"))
    job = {**job, "metadata": {**job["metadata"], **correction_metadata(
        [phase_record] if phase_record else [], job.get("axial_record"), job["metadata"]["planes"])}}
    correct = phase_corrector(phase_record, info, job["roi"], from_runs(job["frames"]))
    try:
        written = export_plane(info, load_page_index(Path(index_path)), job, correct=correct, progress=progress)
    except OSError as exc:
        raise OSError(_write_failure(Path(job.get("store") or job["output"]), exc)) from exc
    if job["kind"] == "slab":
        write_json_atomic(Path(job["output"]), {"z_index": job["z_index"], "plane": job["plane"] + 1})
    if checksums and job["kind"] in ("file", "folder"):
        remember_files(files_of(Path(job["output"])), checksums)
    elif checksums and job["kind"] == "slab":
        remember_files(slab_files(Path(job["store"]), job["z_index"]), checksums)
    return written


def remember_files(paths: Iterable[Path], checksums: str | Path) -> int:
    """Hash files just written into the digest cache ``checksums``; how many."""
    n = 0
    for path in paths:
        digests.remember(path, checksums)
        n += 1
    log.info("%d file(s) hashed into %s", n, checksums)
    return n


def slab_files(store: Path, z_index: int) -> list[Path]:
    """The chunk (or shard) files of one z-slab of a Zarr store's array: what its plane job
    wrote (all-fill-value chunks have no file). Empty when a chunk spans several planes:
    then no file belongs to one job, and finalising the store hashes them."""
    from .sinks.zarr_plane import ARRAY_PATH, file_grid

    folder = Path(store) / ARRAY_PATH
    files = file_grid(folder)
    if files.grid[len(files.shape) - 3] != 1:
        return []
    return [path for path in (folder / key for key in files.slab_keys(z_index)) if path.is_file()]


def checksum_inputs(source_files: list[str], checksums: str, out: str, threads: int = 1) -> None:
    """Hash every input file into the digest cache (files already there and unchanged are
    not read again); ``out`` lists them with their sizes and digests."""
    files = input_files(source_files)
    found = digests.checksum_files(files, max(1, threads), checksums)
    write_json_atomic(Path(out), {"files": [{"path": str(f.resolve()), **found[f]} for f in files]})
    log.info("%d input file(s), %.1f MB", len(files), sum(d["size"] for d in found.values()) / 1e6)


def _write_failure(target: Path, exc: OSError) -> str:
    """What to tell the user when writing stopped: the output, the cause, the free space.

    A full disk or a file size limit often surfaces as a short write deep inside a
    library ("4608 requested and 8 written"), which names neither.
    """
    folder = next(p for p in (target, *target.parents) if p.exists())
    message = (
        f"{target} not written: {exc}. {shutil.disk_usage(folder).free / 2**20:.0f} MiB are free on its file system "
        f"(a full disk or a file size limit, ulimit -f, cuts writes short)"
    )
    log.error(message)
    return message


def _unchanged_source(source_json: str, index_path: str) -> SourceInfo:
    """The indexed source, once every input file is checked to be as it was indexed."""
    info = SourceInfo.from_json(Path(source_json).read_text())
    check_page_index(Path(index_path), info)
    return info


def _read_json(path: str | None) -> Any:
    return json.loads(Path(path).read_text()) if path else None


def correction_metadata(phase_records: list[dict], axial_path: str | None, planes_1based: list[int]) -> dict[str, Any]:
    """Metadata keys recording the corrections: offsets used and plane shifts."""
    md: dict[str, Any] = {}
    if phase_records:
        md["scan_phase"] = phase_records[0] if len(phase_records) == 1 else phase_records
    if axial_path:
        md.update(shift_metadata(_read_json(axial_path), np.asarray(planes_1based) - 1))
    return md


def _with_corrections(export: dict[str, Any]) -> dict[str, Any]:
    records = [_read_json(p) for p in export.get("phase_records") or []]
    extra = correction_metadata(records, export.get("axial_record"), export["metadata"]["planes"])
    if len(records) == 1:  # a one-plane export still lists its record per plane
        extra["scan_phase"] = records
    return {**export, "metadata": {**export["metadata"], **extra}}


def scan_phase(tasks: list[dict[str, Any]], source_json: str, index_path: str, outs: list[str], threads: int = 1) -> None:
    """Scan-phase records of the planes of one view: one process for all of them (a job
    per plane would cost more in start-up than the estimate itself), planes spread over
    ``threads`` threads (reads and numpy reductions release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    info = _unchanged_source(source_json, index_path)
    offsets = load_page_index(Path(index_path))

    def one(task: dict[str, Any], out: str) -> None:
        record = estimate_scan_phase(
            info, offsets, plane=task["plane"], roi=task["roi"], color=task["color"],
            frames_runs=task["frames"], options=task["options"],
        )
        write_json_atomic(Path(out), record)
        log.info("scan phase of plane %d: %s", task["plane"] + 1, record.get("offset", "per frame"))

    if len(tasks) != len(outs):
        raise ValueError(f"{len(tasks)} scan-phase tasks but {len(outs)} record paths")
    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, tasks, outs))  # list(): re-raises the first failure


def axial_shifts(task: dict[str, Any], source_json: str, index_path: str, out: str) -> None:
    info = _unchanged_source(source_json, index_path)
    record = compute_axial_shifts(
        info, load_page_index(Path(index_path)), roi=task["roi"], color=task["color"],
        phase_records=[_read_json(p) for p in task["phase_records"]], options=task["options"],
    )
    if record["at_search_limit"]:
        log.warning(
            "axial registration: the step into plane(s) %s peaks at the search limit max_reg_xy=%d; "
            "the true step may be larger (raise axial.max_reg_xy)", record["at_search_limit"], record["params"]["max_reg_xy"],
        )
    write_json_atomic(Path(out), record)
    log.info("plane shifts: %s", record["shifts"])


def prepare_zarr(export: dict[str, Any], n_frames: int, n_colors: int, n_planes: int, frame_shape, dtype: str, target_chunk_mb: float) -> None:
    from .sinks.zarr_store import create_store

    export = _with_corrections(export)
    create_store(
        Path(export["store"]), n_frames=n_frames, n_channels=n_colors, n_planes=n_planes,
        frame_shape=tuple(frame_shape), dtype=dtype, target_chunk_mb=target_chunk_mb,
        options=export["options"], metadata=export["metadata"], name=Path(export["path"]).stem,
    )


def finalize_zarr(export: dict[str, Any], checksums: str | None = None) -> None:
    """Finalise the temporary store and move it into place. With ``checksums``, the digests
    the slab jobs cached move with their (renamed, unchanged) files, and the files finalising
    added or rewrote (metadata, pyramid levels) are hashed."""
    from .sinks.zarr_store import finalize_store

    store, final = Path(export["store"]), Path(export["path"])
    carried = _cached_files(store, checksums) if checksums else {}
    options = export["options"]
    finalize_store(
        store, final, pyramid=options.get("pyramid", False),
        pyramid_max_layers=options.get("pyramid_max_layers", 4), pyramid_method=options.get("pyramid_method", "mean"),
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


def _cached_files(folder: Path, checksums: str) -> dict[str, tuple[tuple[int, int, int], str]]:
    """Files of ``folder`` whose cached digest is valid: relative path → ((size, mtime_ns, ino), sha256)."""
    found = {}
    for path in files_of(folder):
        stat = path.stat()
        cached = digests.cached_digest(path, checksums)
        if cached is not None:
            found[str(path.relative_to(folder))] = ((stat.st_size, stat.st_mtime_ns, stat.st_ino), cached["sha256"])
    return found


def assemble_h5(export: dict[str, Any], plane_files: list[str], plane_metadata: list[dict], checksums: str | None = None) -> None:
    """The HDF5 master over the plane files; with ``checksums``, hashed into that cache."""
    from .sinks.hdf5 import assemble_h5 as assemble

    export = _with_corrections(export)
    assemble(
        Path(export["path"]), [Path(p) for p in plane_files],
        dataset_name=export["options"].get("dataset_name", "mov"),
        metadata=export["metadata"], plane_metadata=plane_metadata,
    )
    if checksums:
        remember_files([Path(export["path"])], checksums)


def assemble_tiff_volume(export: dict[str, Any], plane_files: list[str], target_chunk_mb: float,
                         checksums: str | None = None) -> None:
    """One ImageJ hyperstack from the plane TIFFs; with ``checksums``, hashed into that cache."""
    from .sinks.tiff_volume import assemble_volume_tiff

    export = _with_corrections(export)
    assemble_volume_tiff(Path(export["path"]), [Path(p) for p in plane_files], metadata=export["metadata"],
                         target_chunk_mb=target_chunk_mb, bigtiff=export["options"].get("bigtiff", "auto"))
    if checksums:
        remember_files([Path(export["path"])], checksums)


def plan_summary(plan: Plan) -> str:
    info = plan.source
    lines = [
        f"source: {info.kind} ({info.stack_type}), {len(info.files)} file(s), shape (T, C, Z, Y, X) = "
        f"{info.shape()} {info.dtype}, {info.n_rois} ROI(s), {info.fly_to_lines} fly-to lines",
        f"export: {len(plan.planes)} plane(s) x {len(plan.frames)} frame(s) x {len(plan.colors)} channel(s), "
        f"{len(plan.exports)} output(s), {len(plan.jobs)} plane job(s) in {plan.outdir}",
        *(f"note: {note}" for note in plan.notes),
    ]
    return "\n".join(lines)
