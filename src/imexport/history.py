"""Processing history: one step per export, recorded inside every output and in a manifest.

An export adds exactly one step (``"step": "imexport"``) to the history of its input:
when, with which software, from which input files (sizes, sha256), into which outputs,
how long each job took, every parameter that shaped the pixels, the full resolved
config, and for ScanImage sources the acquisition start and its dropped frames (gaps in
``frameNumbers``, ``source_timing``). The history — the input's earlier steps first, this step last — lands in every
output:

* Zarr: group attribute ``processing_history`` (a list);
* HDF5: root attribute ``processing_history`` of the master file;
* Suite2p: key ``processing_history`` of each plane folder's ``ops.npy``;
* TIFF: a sidecar ``<name>.tif.history.json`` (``{"processing_history": [...]}``) — rewriting
  the tags of a multi-GB TIFF in place is not worth the risk of damaging it.

(each format's ``embed_history``, :mod:`imexport.formats`)

and, with the size and sha256 of every output file as it is *after* the history was
embedded, in ``outdir/imexport_manifest.json`` (what ``imexport verify`` checks). Each
output there names the step that wrote it; outputs an earlier, different export left
in the folder stay listed, so ``verify`` covers every export in it (:mod:`imexport.manifest`).

The step lists the outputs as the writing jobs left them, before the history went in:
the pixel files (TIFF, ``.bin``, shards, HDF5 plane files) never change afterwards, while
``ops.npy``, ``zarr.json`` and the HDF5 master are rewritten to carry the history. Those
digests are the writers' own (:func:`imexport.checksums.written_digest`), never those of a
file an earlier run of this step rewrote, so rerunning the step alone repeats it but for
its id and time.

The embedded history is always rebuilt as *input history + this step*, never read back
from the outputs, so recording it again (the rule reruns when an output was rewritten)
replaces this export's step instead of adding a second one.

The history job hashes almost nothing itself: the jobs that wrote the outputs hashed
them while the other jobs ran, and planning the input files (:mod:`imexport.input_content`);
their digests wait in the cache ``<work>/checksums/`` (:mod:`imexport.checksums`), valid
while each file's size, mtime, inode and change time are unchanged. Only what is missing there or changed
since — the files rewritten to carry the history, the TIFF sidecars — is hashed here, on
a few threads. The digests are the same either way, so is the manifest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import platform
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import __version__
from .checksums import (
    adopt_touch,
    cache_folder,
    checksum_files,
    files_of,
    input_files,
    written_digest,
)
from .formats import FORMATS
from .formats.base import HISTORY_KEY
from .formats.tiff import SIDECAR_SUFFIX
from .hdf5_attrs import read_attrs
from .input_content import check_inputs_as_indexed
from .job_benchmarks import read_benchmark
from .manifest import MANIFEST_NAME, manifest_path, write_manifest  # noqa: F401 - MANIFEST_NAME: callers import it from here
from .metadata import frame_timing
from .plan import Plan
from .selection import to_runs
from .sources.info import SourceInfo

log = logging.getLogger(__name__)

STEP_NAME = "imexport"
# A step lists every file of an output up to this many; beyond (an unsharded Zarr store
# of a long recording has one file per frame and plane) it keeps the count, total size
# and tree digest only, so the history embedded in every output stays small. The
# manifest always lists every file.
MAX_LISTED_FILES = 10_000
SOFTWARE = ("numpy", "tifffile", "zarr", "h5py", "snakemake")


# --------------------------------------------------------------------------- files


def tree_digest(entries: list[dict[str, Any]]) -> str:
    """One sha256 for a set of files: over their sorted ``path<TAB>size<TAB>sha256`` lines."""
    lines = sorted(f"{e['path']}\t{e['size']}\t{e['sha256']}\n" for e in entries)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# --------------------------------------------------------------------------- reading a history


def _ops_history(ops_path: Path) -> list[dict[str, Any]]:
    ops = np.load(ops_path, allow_pickle=True).item()
    return list(ops.get(HISTORY_KEY, []))


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The ``processing_history`` an output (or any input) carries; [] when it has none.

    Zarr store (group attribute), Suite2p plane folder, ``ops.npy`` or ``.bin`` (the
    ``ops.npy`` key), HDF5 file (root attribute), else a ``<name>.history.json`` sidecar.
    """
    path = Path(path)
    if path.is_dir() and (path / "zarr.json").is_file():
        return list(json.loads((path / "zarr.json").read_text()).get("attributes", {}).get(HISTORY_KEY, []))
    if path.is_dir() and (path / "ops.npy").is_file():
        return _ops_history(path / "ops.npy")
    if path.name == "ops.npy":
        return _ops_history(path)
    if path.suffix == ".bin" and (path.parent / "ops.npy").is_file():
        return _ops_history(path.parent / "ops.npy")
    if path.suffix.lower() in (".h5", ".hdf5"):
        with h5py.File(path, "r") as fh:
            return list(read_attrs(fh).get(HISTORY_KEY) or [])
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        return list(json.loads(sidecar.read_text())[HISTORY_KEY])
    return []


def inherited_history(source_files: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Earlier steps of the input, in order; a step shared by several input files counts once."""
    steps: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in source_files:
        for step in read_history(path):
            identity = step.get("id") or json.dumps(step, sort_keys=True)
            if identity not in seen:
                seen.add(identity)
                steps.append(step)
    return steps


# --------------------------------------------------------------------------- the step


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "imexport": __version__}
    for name in SOFTWARE:
        versions[name] = importlib.metadata.version(name)
    # cupy ships as cupy-cuda11x / cupy-cuda12x / …: ask which distribution provides it
    # rather than importing it, which would initialise CUDA. That question reads the
    # metadata of every installed distribution (≈ 0.4 s), so it is asked only where a
    # cupy package is there to be found.
    if importlib.util.find_spec("cupy") is not None:
        for dist in importlib.metadata.packages_distributions().get("cupy", []):
            versions["cupy"] = importlib.metadata.version(dist)
    return versions


def job_durations(benchmarks: dict[str, list[str]], benchmark_root: str | Path) -> dict[str, Any]:
    """Per job and per rule: wall seconds, CPU seconds and peak RSS from Snakemake's benchmark tsv."""
    jobs = []
    rules: dict[str, dict[str, Any]] = {}
    for rule, paths in benchmarks.items():
        for path in paths:
            measured = read_benchmark(path)
            seconds = measured["s"]
            jobs.append(
                {
                    "rule": rule,
                    "job": str(Path(path).relative_to(benchmark_root).with_suffix("")),
                    "s": seconds,
                    "cpu_time_s": measured["cpu_time"],
                    "max_rss_mb": measured["max_rss"],
                }
            )
            total = rules.setdefault(rule, {"jobs": 0, "s": 0.0})
            total["jobs"] += 1
            total["s"] = round(total["s"] + (seconds or 0.0), 3)
    return {"jobs": jobs, "rules": rules}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def plain(value: Any) -> Any:
    """``value`` as JSON types only (lists, dicts, str, numbers, bool, None)."""
    return json.loads(json.dumps(value, default=_plain))


def _read_records(paths: list[str], work: Path) -> dict[str, Any]:
    return {str(Path(p).relative_to(work)): json.loads(Path(p).read_text()) for p in paths}


def output_entry(outdir: Path, product: dict[str, Any], digests: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    files = [{"path": str(f.relative_to(outdir)), **digests[f]} for p in product["paths"] for f in files_of(outdir / p)]
    entry = {
        "path": product["output"],
        "format": product["format"],
        "fingerprint": product["fingerprint"],
        "n_files": len(files),
        "size": sum(f["size"] for f in files),
        "sha256": tree_digest(files),
    }
    if len(files) <= MAX_LISTED_FILES:
        entry["files"] = files
    return entry


def build_step(spec: dict[str, Any], digests: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    outdir, work = Path(spec["outdir"]), Path(spec["work"])
    parameters = dict(spec["parameters"])
    parameters["scan_phase"] = {**parameters["scan_phase"], "records": _read_records(spec["phase_records"], work)}
    parameters["axial"] = {**parameters["axial"], "records": _read_records(spec["axial_records"], work)}
    return plain(
        {
            "step": STEP_NAME,
            "id": uuid.uuid4().hex,
            "timestamp": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
            "host": platform.node(),
            "software": software_versions(),
            "outdir": str(outdir.resolve()),
            "inputs": [{"path": str(f.resolve()), **digests[f]} for f in input_files(spec["source_files"])],
            "outputs": [output_entry(outdir, product, digests) for product in spec["products"]],
            "durations": job_durations(spec["benchmarks"], work / "benchmarks"),
            "parameters": parameters,
            "config": spec["config"],
            **source_timing(spec),
        }
    )


def source_timing(spec: dict[str, Any]) -> dict[str, Any]:
    """The recording's start and its dropped frames (gaps in ScanImage's ``frameNumbers``),
    from the page index: known only once ``index_source`` read the page descriptions."""
    if not spec.get("page_index") or not Path(spec["page_index"]).is_file():
        return {}
    info = SourceInfo.from_json(Path(spec["source_json"]).read_text())
    timing = frame_timing(info, spec["page_index"], np.arange(0))
    if not timing:
        return {}
    if timing["dropped_frames"]:
        log.warning(
            "%d frame(s) dropped during the acquisition (gaps in frameNumbers): %s",
            sum(d["missing"] for d in timing["dropped_frames"]),
            timing["dropped_frames"],
        )
    return {"source_timing": {"acquisition_start": timing["acquisition_start"], "dropped_frames": timing["dropped_frames"]}}


def pixel_parameters(plan: Plan, config: dict[str, Any]) -> dict[str, Any]:
    """Every setting of the validated ``config`` that shaped the written pixels; ``frames``
    as 0-based ``[start, stop, step)`` runs, like the outputs' metadata. The correction
    records are added when the step is built."""
    return plain(
        {
            "planes": [int(p) + 1 for p in plan.planes],  # written order
            "order": config["order"],
            "frames": to_runs(plan.frames),
            "n_frames": len(plan.frames),
            "num_frames": config["num_frames"],
            "channels": [int(c) + 1 for c in plan.colors],
            "roi_mode": config["roi_mode"],
            "rois": [None if r is None else r + 1 for r in plan.rois],
            "target_chunk_mb": plan.target_chunk_mb,
            "output_suffix": config["output_suffix"],
            "output_name": config["output_name"],
            "metadata": config["metadata"],
            "format_options": {e.format: e.options for e in plan.exports},
            "scan_phase": {"options": config["scan_phase"]},
            "axial": {"register_z": config["register_z"], "options": config["axial"]},
        }
    )


def history_spec(
    plan: Plan,
    config: dict[str, Any],
    records: dict[str, dict[str, Any]],
    benchmarks: dict[str, list[str]],
    touched: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the history job needs (see :func:`record_history`), as plain data.

    ``records``: the planned output records (``guard.planned_records``). ``touched``:
    output files (relative to outdir) that Snakemake touches after the job writing them
    → that job's benchmark file (see :func:`imexport.checksums.adopt_touch`).
    """
    products = [
        {
            **{k: records[export.key][k] for k in ("output", "format", "fingerprint", "paths")},
            **FORMATS[export.format].manifest_fields(export),
        }
        for export in plan.exports
    ]
    return plain(
        {
            "outdir": plan.outdir,
            "work": plan.work,
            "source_files": list(plan.source.files),
            "source_json": plan.source_json,
            "page_index": plan.page_index,
            "products": products,
            "benchmarks": benchmarks,
            "touched": touched or {},
            "phase_records": sorted(plan.phase_tasks),
            "axial_records": sorted(plan.axial_tasks),
            "parameters": pixel_parameters(plan, config),
            "config": config,
        }
    )


# --------------------------------------------------------------------------- the history job


def record_history(spec: dict[str, Any], workers: int | None = None) -> dict[str, Any]:
    """Digest inputs and outputs, embed the history in every output, write the manifest.

    Digests come from the cache in ``work`` (see :mod:`imexport.checksums`) where the
    writers left them; whatever is not there, or changed since, is hashed.

    ``spec`` (built by the workflow from the plan): ``outdir``, ``work``,
    ``source_files``, ``products`` (``output``, ``format``, ``fingerprint``,
    ``paths`` relative to outdir), ``benchmarks`` (rule → tsv paths), ``touched``
    (output file → the benchmark of its job), ``page_index`` (what the inputs were
    indexed as: their digests must be of those files), ``phase_records``, ``axial_records``,
    ``parameters`` and ``config``.

    Order matters to Snakemake: outputs are rewritten first, the TIFF sidecars next and
    the manifest last, so the history rule's outputs are newer than its inputs and the
    next run has nothing to do.
    """
    outdir = Path(spec["outdir"])
    products = spec["products"]
    output_files = [f for product in products for p in product["paths"] for f in files_of(outdir / p)]
    cache = cache_folder(spec["work"])
    for rel, benchmark in spec["touched"].items():  # Snakemake's touch is no change of content
        if Path(benchmark).is_file():
            adopt_touch(outdir / rel, cache, Path(benchmark).stat().st_mtime_ns)
    digests = checksum_files([*input_files(spec["source_files"]), *output_files], workers, cache)
    check_inputs_as_indexed(spec["source_files"], spec["page_index"], cache)
    log.info("digests of %d files (%.1f MB)", len(digests), sum(d["size"] for d in digests.values()) / 1e6)
    # the step lists each output file as its job wrote it: a file this step rewrote in an
    # earlier run (a rerun after a kill, or after one output was deleted) already carries a history
    as_written = {f: written_digest(f, cache) or digests[f] for f in output_files}
    history = inherited_history(spec["source_files"]) + [build_step(spec, {**digests, **as_written})]

    sidecars = {p["output"]: FORMATS[p["format"]].history_sidecars(p["output"]) for p in products}
    rewritten: list[Path] = []
    for product in sorted(products, key=lambda p: bool(sidecars[p["output"]])):  # sidecars last
        rewritten += FORMATS[product["format"]].embed_history(outdir / product["output"], history)
    digests.update(checksum_files(rewritten, workers, cache))

    files = [{"path": str(f.relative_to(outdir)), **digests[f]} for f in sorted({*output_files, *rewritten})]
    manifest = write_manifest(outdir, history, products, sidecars, files)
    log.info("history step %s recorded in %d output(s); manifest %s", history[-1]["id"], len(products), manifest_path(outdir))
    return manifest
