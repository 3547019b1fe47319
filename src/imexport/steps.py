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
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import commit_path, fsync_enabled, fsync_path, temporary_sibling, write_json_atomic
from .checksums import files_of, input_files, remember_files
from .corrections import compute_axial_shifts, estimate_scan_phase, phase_corrector, shift_metadata
from .formats import FORMATS
from .jobs import Export, PlaneJob, store_ready
from .metadata import frame_timing, plane_timestamps
from .plan import Plan
from .selection import from_runs
from .sources import build_index
from .sources.info import SourceError, SourceInfo
from .sources.scanimage import load_page_index, save_page_index
from .synthetic import AcquisitionSpec, write_acquisition

log = logging.getLogger("imexport")


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


def write_plane(
    job: PlaneJob, source_json: str, index_path: str, *, show_progress: bool = False, progress=None, checksums: str | None = None
) -> Path:
    """One plane job. A slab of a shared store has no file of its own: a marker records its completion.

    With ``checksums`` (a digest cache folder), the files written are hashed into it: the
    output file or folder, or a slab's chunk files in the temporary store (carried over
    when the store is finalised). Intermediates (TIFF planes of a volume) are not: they
    are removed once joined.
    """
    from .export import export_plane

    if progress is None and show_progress:

        def progress(fraction: float) -> None:
            log.info("%s: %3.0f%%", Path(job.output).name, 100 * fraction)

    info = _unchanged_source(source_json, index_path)
    read_from = input_identities(info)
    phase_record = _read_json(job.phase_record)
    # the acquisition times, known once index_source read the page descriptions
    timing = frame_timing(info, index_path, from_runs(job.frames))
    job = replace(
        job,
        metadata={
            **job.metadata,
            **correction_metadata([phase_record] if phase_record else [], job.axial_record, job.metadata["planes"]),
            **({"timing": timing} if timing else {}),
        },
    )
    correct = phase_corrector(phase_record, info, job.roi, from_runs(job.frames))
    try:
        written = export_plane(
            info,
            load_page_index(Path(index_path)),
            job,
            correct=correct,
            progress=progress,
            after_reads=lambda: check_unchanged_since(read_from),
        )
    except OSError as exc:
        raise OSError(_write_failure(Path(job.store or job.output), exc)) from exc
    if job.output_type == "slab":
        if fsync_enabled():  # the slab's chunk files stay in the shared store: no rename flushes them
            for path in FORMATS[job.format].slab_files(Path(job.store), job.z_index):
                fsync_path(path)
        # the marker carries the times to the assemble step of a store that has no other place for
        # them: the frames' (a volume's first page's) and this plane's own pages' (NWB, one series a plane)
        own = plane_timestamps(info, index_path, from_runs(job.frames), job.plane) if timing else None
        write_json_atomic(
            Path(job.output),
            {
                "z_index": job.z_index,
                "plane": job.plane + 1,
                **({"timing": timing} if timing else {}),
                **({"plane_timestamps_sec": own.tolist()} if own is not None else {}),
            },
        )
    if checksums and job.output_type in ("file", "folder"):
        remember_files(files_of(Path(job.output)), checksums)
    elif checksums and job.output_type == "slab":
        remember_files(FORMATS[job.format].slab_files(Path(job.store), job.z_index), checksums)
    return written


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
    return message


def _unchanged_source(source_json: str, index_path: str) -> SourceInfo:
    """The indexed source, once every input file is checked to be as it was indexed (or
    only touched since)."""
    from .input_content import check_as_indexed

    info = SourceInfo.from_json(Path(source_json).read_text())
    check_as_indexed(info, index_path)
    return info


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def input_identities(info: SourceInfo) -> dict[Path, tuple[int, int, int] | None]:
    """Every input file's (size, mtime_ns, inode) now: what a job's reads start from."""
    return {path: _identity(path) for path in input_files(info.files)}


def check_unchanged_since(identities: dict[Path, tuple[int, int, int] | None]) -> None:
    """Stop when an input file is no longer what a job started reading: its pixels would
    mix old and new bytes. Called after the job's last read, before it commits."""
    for path, was in identities.items():
        now = _identity(path)
        if now != was:
            what = "removed" if now is None else "replaced" if was is not None and now[2] != was[2] else "changed"
            raise SourceError(
                f"{path}: {what} while it was being exported (size, modification time or inode differ "
                f"from when the job started reading it); nothing was written for this job. "
                f"Run again once the file is complete"
            )


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


def _with_corrections(export: Export) -> Export:
    records = [_read_json(p) for p in export.phase_records]
    extra = correction_metadata(records, export.axial_record, export.metadata["planes"])
    if len(records) == 1:  # a one-plane export still lists its record per plane
        extra["scan_phase"] = records
    return replace(export, metadata={**export.metadata, **extra})


def scan_phase(tasks: list[dict[str, Any]], source_json: str, index_path: str, outs: list[str], threads: int = 1) -> None:
    """Scan-phase records of the planes of one view: one process for all of them (a job
    per plane would cost more in start-up than the estimate itself), planes spread over
    ``threads`` threads (reads and numpy reductions release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    info = _unchanged_source(source_json, index_path)
    read_from = input_identities(info)
    offsets = load_page_index(Path(index_path))

    def one(task: dict[str, Any]) -> dict[str, Any]:
        return estimate_scan_phase(
            info,
            offsets,
            plane=task["plane"],
            roi=task["roi"],
            color=task["color"],
            frames_runs=task["frames"],
            options=task["options"],
        )

    if len(tasks) != len(outs):
        raise ValueError(f"{len(tasks)} scan-phase tasks but {len(outs)} record paths")
    with ThreadPoolExecutor(max(1, threads)) as pool:
        records = list(pool.map(one, tasks))  # list(): re-raises the first failure
    check_unchanged_since(read_from)
    for task, out, record in zip(tasks, outs, records):
        write_json_atomic(Path(out), record)
        log.info("scan phase of plane %d: %s", task["plane"] + 1, record.get("offset", "per frame"))


def axial_shifts(task: dict[str, Any], source_json: str, index_path: str, out: str, threads: int = 1) -> None:
    """The axial record of one view; planes averaged ``threads`` at a time."""
    info = _unchanged_source(source_json, index_path)
    read_from = input_identities(info)
    record = compute_axial_shifts(
        info,
        load_page_index(Path(index_path)),
        roi=task["roi"],
        color=task["color"],
        phase_records=[_read_json(p) for p in task["phase_records"]],
        options=task["options"],
        threads=threads,
    )
    check_unchanged_since(read_from)
    if record["at_search_limit"]:
        log.warning(
            "axial registration: the step into plane(s) %s peaks at the search limit max_reg_xy=%d; "
            "the true step may be larger (raise axial.max_reg_xy)",
            record["at_search_limit"],
            record["params"]["max_reg_xy"],
        )
    write_json_atomic(Path(out), record)
    log.info("plane shifts: %s", record["shifts"])


def prepare_export(export: Export) -> None:
    """The prepare step of an export with a temporary store (its format's ``prepare``);
    the store's marker last (:func:`imexport.jobs.store_ready`)."""
    FORMATS[export.format].prepare(_with_corrections(export))
    Path(store_ready(export.store)).touch()


def assemble_export(export: Export, plane_outputs: list[str], plane_metadata: list[dict], checksums: str | None = None) -> None:
    """The product from its plane jobs' outputs (its format's ``assemble``); with
    ``checksums``, what it wrote is hashed into that digest cache."""
    FORMATS[export.format].assemble(_with_corrections(export), [Path(p) for p in plane_outputs], plane_metadata, checksums)


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
