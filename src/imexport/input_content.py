"""What the input files hold, and the checks that an export reads, and records, those bytes.

**At planning** (:func:`input_digests`, before any job, dry runs included) every input
file's sha256 is taken from the digest cache (:mod:`imexport.checksums`): only a file
whose size, modification time, inode or change time moved since it was last hashed is
read again. The digests go into every output's fingerprint (:mod:`imexport.guard`), so
an input rewritten in place — whatever its size and modification time say — is a
changed plan: the rerun lists the outputs it would rewrite (``overwrite: false``) or
rewrites them (``overwrite: true``). A touch moves the times only: the file is read
again, its digest is the same, nothing is redone.

**The content marker** ``<work>/input_content.json`` (path → sha256) is
rewritten only when a digest changed. The ``index_source`` job depends on it, and on the
raw files only as ``ancient()``: a changed content indexes the files again (and so reruns
what reads the index), a touch does not.

**When a job reads** (:func:`check_as_indexed`), each input must be as the page index
recorded it (size, modification time) — or, after a touch the index did not follow,
hold the content the index was built from: its cached digest, valid for the file as it
is now, equals the marker's. The history job checks the same
(:func:`check_inputs_as_indexed`) before it records any input digest.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .atomic import write_json_atomic
from .checksums import cache_folder, cached_digest, checksum_files, input_files
from .plan import Plan
from .sources.info import SourceError, SourceInfo

log = logging.getLogger("imexport")

CONTENT_MARKER = "input_content.json"  # in the work folder


def input_digests(plan: Plan, made_by_run: bool = False) -> dict[str, str]:
    """Resolved path → sha256 of every input file, hashing only what the cache cannot vouch for.

    ``made_by_run``: the inputs are made by this run (the demo acquisition, written from
    settings the plan holds): they have no content to check yet, and none is recorded.
    """
    if made_by_run:
        return {}
    files = input_files(plan.source.files)
    cache = cache_folder(plan.work)
    stale = [f for f in files if cached_digest(f, cache) is None]
    started = time.perf_counter()
    found = checksum_files(files, cache_dir=cache)
    if stale:
        log.info(
            "hashed %d input file(s) (%.0f MB) in %.1f s; unchanged files are not read again",
            len(stale),
            sum(found[f]["size"] for f in stale) / 1e6,
            time.perf_counter() - started,
        )
    return {str(f.resolve()): found[f]["sha256"] for f in files}


def marker_path(work: str | Path) -> Path:
    return Path(work) / CONTENT_MARKER


def mark_content(work: str | Path, digests: dict[str, str]) -> Path:
    """Write the content marker unless it holds ``digests`` already (its time then stays)."""
    path = marker_path(work)
    if _marked(path) != digests:
        write_json_atomic(path, digests)
    return path


def _marked(path: Path) -> dict[str, str] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def content_as_marked(path: str | Path, work: str | Path) -> bool:
    """``path`` holds the content the marker records for it: its cached digest, valid for
    the file as it is now, is the marked one."""
    marked = (_marked(marker_path(work)) or {}).get(str(Path(path).resolve()))
    cached = cached_digest(path, cache_folder(work))
    return marked is not None and cached is not None and cached["sha256"] == marked


def check_as_indexed(info: SourceInfo, index_path: str | Path) -> None:
    """Stop before a job reads pixels if an input is no longer what the page index
    describes; a file only touched since (same content) passes. The work folder is the
    index's folder."""
    from .sources.scanimage import check_page_index

    try:
        check_page_index(Path(index_path), info)
    except SourceError:
        work = Path(index_path).parent
        if not all(content_as_marked(f, work) for f in input_files(info.files)):
            raise


def check_inputs_as_indexed(source_files: list[str], page_index: str | Path, cache: Path) -> None:
    """Stop unless every input digest is of the bytes the export read: each input is as
    the index recorded it (size, mtime) or only touched since, and was not changed since
    or while it was hashed."""
    with np.load(page_index) as data:
        sizes = data["sizes"].tolist()
        # an index saved before modification times were recorded: by size only
        mtimes = data["mtimes"].tolist() if "mtimes" in data.files else [None] * len(sizes)
    work = Path(page_index).parent
    for name, size, mtime_ns in zip(source_files, sizes, mtimes):
        now = Path(name).stat()
        as_indexed = now.st_size == size and mtime_ns in (None, now.st_mtime_ns)
        if not as_indexed and not all(content_as_marked(f, work) for f in input_files([name])):
            raise SourceError(
                f"{name}: changed after this export indexed it ({size} bytes then, {now.st_size} now, modification "
                f"time {'unchanged' if now.st_mtime_ns == mtime_ns else 'moved'}); its digest would not describe "
                f"the bytes exported, so no history was recorded. Run the export again"
            )
    for path in input_files(source_files):
        if cached_digest(path, cache) is None:  # hashed while it changed, or changed since
            raise SourceError(f"{path}: changed while its digest was taken; no history was recorded. Run the export again")
