"""Profile driver: one plane job of imexport, run in-process, without Snakemake.

Meant to be run under cProfile, with the page index built beforehand so that only the
plane job is in the profile:

    python benchmarks/profile_plane.py --input RAW --workdir W --prepare          # index only
    python -m cProfile -o W/plane.prof benchmarks/profile_plane.py --input RAW --workdir W

The second call reuses ``W/.imexport/{source.json,page_index.npz}`` (written by
``imexport.steps.index_source``) and the scan-phase / axial records the plan asks for
(written by ``steps.scan_phase`` / ``steps.axial_shifts`` in the first call), and calls
``imexport.steps.write_plane`` for one plane, exactly what the ``write_plane_*``
Snakemake rules run.

cProfile sees only the main thread. Sinks that write from a helper thread (the TIFF
sink's tifffile writer) are profiled too with ``--thread-profiles``: every thread
started during the job dumps its own ``<prefix>.<thread name>.prof``.

``--plane all`` instead builds the index and records and runs every plane job of the
plan one after the other in this one process: the export without Snakemake, for the
benchmark's in-process row.

Prints one JSON line: wall and CPU seconds (all threads) of the plane job(s), exact peak RSS of this process
(``VmHWM``), output bytes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import resource
import shutil
import threading
import time
from pathlib import Path


def _thread_profiles(prefix: str) -> None:
    """Give every thread started from now on its own cProfile, dumped when it ends."""
    original_run = threading.Thread.run

    def run(self):  # noqa: ANN001 - replaces Thread.run
        profile = cProfile.Profile()
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)[:80]
            profile.dump_stats(f"{prefix}.{name}.prof")

    threading.Thread.run = run


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare(plan, info, source_json: Path, index_path: Path) -> None:
    """Everything a plane job reads: the page index, and the correction records the plan asks for.

    Mirrors the workflow's jobs before ``write_plane``: ``index_source``, then
    ``scan_phase`` per plane and ``axial_shifts`` per view when the config enables them
    (plans without corrections have neither).
    """
    from imexport import steps

    timings = {}
    Path(plan.work).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps.index_source(info.to_json(), str(source_json), str(index_path))
    timings["index_s"] = round(time.perf_counter() - t0, 3)
    if plan.phase_tasks:
        t0 = time.perf_counter()
        for paths in plan.phase_views().values():
            steps.scan_phase([plan.phase_tasks[p] for p in paths], str(source_json), str(index_path), paths)
        timings["scan_phase_s"] = round(time.perf_counter() - t0, 3)
        timings["scan_phase_records"] = [json.loads(Path(r).read_text()).get("offset") for r in plan.phase_tasks]
    if plan.axial_tasks:
        t0 = time.perf_counter()
        for record, task in plan.axial_tasks.items():
            steps.axial_shifts(task, str(source_json), str(index_path), record)
        timings["axial_shifts_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(timings, default=str))


def peak_rss_mib() -> float:
    """This process' peak RSS: ``VmHWM`` (reset at exec), else ``ru_maxrss``.

    ``ru_maxrss`` survives ``execve``: a process started by a big parent (vfork/fork +
    exec, as ``subprocess`` does) reports the parent's size if that was larger.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="raw ScanImage folder / file / glob")
    parser.add_argument("--workdir", required=True, help="output folder of this profile run")
    parser.add_argument(
        "--format", default="tiff", choices=["tiff", "bin"], help="formats whose plane jobs need no store/assembly step"
    )
    parser.add_argument(
        "--plane",
        default="1",
        help="1-based plane to export, or 'all': every plane job of the plan in a row, "
        "after building the index and records in the same process",
    )
    parser.add_argument("--target-chunk-mb", type=float, default=None)
    parser.add_argument("--prepare", action="store_true", help="only build the page index (and records), then exit")
    parser.add_argument(
        "--no-fix-phase",
        action="store_true",
        help="scan_phase.fix_phase: false (no estimate, no correction), to measure what they cost",
    )
    parser.add_argument(
        "--thread-profiles", default=None, metavar="PREFIX", help="profile helper threads too, into PREFIX.<thread>.prof"
    )
    args = parser.parse_args()

    from imexport import steps
    from imexport.config import validate
    from imexport.plan import build_plan
    from imexport.sources import inspect_input

    t_start = time.perf_counter()
    every = args.plane == "all"
    workdir = Path(args.workdir).resolve()
    outdir = workdir / "out"
    config = {
        "input": str(Path(args.input).resolve()),
        "outdir": str(outdir),
        "format": args.format,
        "planes": None if every else [int(args.plane)],
        "overwrite": True,
        "show_progress": False,
    }
    if args.target_chunk_mb is not None:
        config["target_chunk_mb"] = args.target_chunk_mb
    if args.no_fix_phase:
        config["scan_phase"] = {"fix_phase": False}
    config = validate(config)
    info = inspect_input(config["input"])
    plan = build_plan(config, info)
    source_json = Path(plan.work) / "source.json"
    index_path = Path(plan.work) / "page_index.npz"
    needed = [
        index_path,
        *(Path(r) for job in plan.jobs.values() for r in (job.phase_record, job.axial_record) if r),
    ]
    if args.prepare or every or not all(p.exists() for p in needed):
        prepare(plan, info, source_json, index_path)
        if args.prepare:
            return
    if not every and len(plan.jobs) != 1:
        raise SystemExit(f"expected one plane job for format {args.format}, the plan has {len(plan.jobs)}")
    for job in plan.jobs.values():
        output = Path(job.output)
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()

    if args.thread_profiles:
        _thread_profiles(args.thread_profiles)
    t0, cpu0 = time.perf_counter(), time.process_time()
    written = 0
    for job in plan.jobs.values():
        steps.write_plane(job, str(source_json), str(index_path), show_progress=False)
        written += _size(Path(job.output))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        json.dumps(
            {
                "job": "all" if every else next(iter(plan.jobs)),
                "n_jobs": len(plan.jobs),
                "write_plane_s": round(wall, 3),
                "write_plane_cpu_s": round(cpu, 3),
                "total_s": round(time.perf_counter() - t_start, 3),
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "output_bytes": written,
                "pid": os.getpid(),
            }
        )
    )


if __name__ == "__main__":
    main()
