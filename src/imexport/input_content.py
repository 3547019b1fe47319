"""What the input files hold, and the checks that an export reads, and records, those bytes.

**At planning** (:func:`input_digests`, before any job, dry runs included) every input
file's sha256 is taken from the digest cache (:mod:`imexport.checksums`): only a file
whose size, modification time, inode or change time moved since it was last hashed is
read again. The digests go into every output's fingerprint (:mod:`imexport.guard`), so
an input rewritten in place — whatever its size and modification time say — is a
changed plan: the rerun lists the outputs it would rewrite (``overwrite: false``) or
rewrites them (``overwrite: true``). A touch moves the times only: the file is read
again, its digest is the same, nothing is redone. Planning writes nothing: what it
hashed enters the cache when the run starts (:func:`remember_hashed`, not in a dry run).

**Shared by every output folder**: the digests of input files are also kept in the
user's cache (:func:`shared_cache`), valid under the same rule (size, modification time,
inode and change time unchanged), so a recording exported again into another folder — or
another format, or a sessions sheet run into a new outdir — is not read again to plan it.

**The content record** ``<work>/input_content.<digest>.json`` names the digest of all
input digests (:func:`content_digest`), like an output's record names its fingerprint: a
tiny job writes it when it is missing, and the ``index_source`` job depends on it and on
the raw files only as ``ancient()``. So a new content indexes the files again (and
reruns what reads the index); a touch finds the record and does nothing. The run's start
removes the records of other contents.

**When a job reads** (:func:`check_as_indexed`), each input must be as the page index
recorded it (size, modification time) — or, after a touch the index did not follow,
hold the content the index was built from: every input's cached digest, valid for the
file as it is now, gives the recorded content digest. The history job checks the same
(:func:`check_inputs_as_indexed`) before it records any input digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .checksums import cache_folder, cached_digest, checksum_files, file_identity, input_files, remember
from .plan import Plan
from .sources.info import SourceError, SourceInfo

log = logging.getLogger(__name__)

CONTENT_RECORD = "input_content"  # <work>/input_content.<digest>.json
DIGEST_CHARS = 16
_RECORD_NAME = re.compile(rf"^{CONTENT_RECORD}\.[0-9a-f]{{{DIGEST_CHARS}}}\.json$")


SHARED_CACHE_ENV = "IMEXPORT_DIGEST_CACHE"


def shared_cache() -> Path | None:
    """The user's cache of input digests: ``$IMEXPORT_DIGEST_CACHE`` (``off``: none), by
    default ``$XDG_CACHE_HOME/imexport/input_digests`` (``~/.cache/…``), one small JSON
    per input file."""
    value = os.environ.get(SHARED_CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "none") else Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "imexport" / "input_digests"


class InputDigests(dict):
    """Resolved input path → sha256; ``hashed``: the digests the output folder's cache
    lacks (read for it, or found in the shared cache), with the file's identity then
    (what the run's start puts in the caches)."""

    hashed: dict[Path, tuple[dict[str, int], str]]


def input_digests(plan: Plan, made_by_run: bool = False, say: Callable[[str], None] | None = None) -> InputDigests:
    """Every input file's sha256, hashing only what the cache cannot vouch for.

    ``made_by_run``: the inputs are made by this run (the demo acquisition, written from
    settings the plan holds): they have no content to check yet, and none is recorded.
    ``say``: where to tell the user, before reading them, how much is hashed.
    """
    digests = InputDigests()
    digests.hashed = {}
    if made_by_run:
        return digests
    files = input_files(plan.source.files)
    cache, shared = cache_folder(plan.work), shared_cache()
    found = {f: cached_digest(f, cache) for f in files}
    for path in [f for f, digest in found.items() if digest is None and shared is not None]:
        found[path] = cached_digest(path, shared)
        if found[path] is not None:
            digests.hashed[path] = (file_identity(path), found[path]["sha256"])
    stale = [f for f, digest in found.items() if digest is None]
    if stale and say is not None:
        say(
            f"imexport: hashing {len(stale)} input file(s), {sum(f.stat().st_size for f in stale) / 1e9:.2f} GB: new, "
            "or changed since they were last hashed (unchanged files are not read again)"
        )
    before = {f: file_identity(f) for f in stale}
    found.update(checksum_files(stale))
    for path in stale:
        if file_identity(path) != before[path]:
            raise SourceError(f"{path}: changed while it was read to plan the export; start again once it is complete")
        digests.hashed[path] = (before[path], found[path]["sha256"])
    digests.update({str(f.resolve()): found[f]["sha256"] for f in files})
    return digests


def remember_hashed(digests: InputDigests, work: str | Path) -> None:
    """Put what planning hashed in the digest caches, for each file still as it was read.

    The shared cache only saves reading a file again: one that cannot be written (a
    read-only home) costs nothing but that.
    """
    shared = shared_cache()
    for path, (identity, sha256) in digests.hashed.items():
        if file_identity(path) == identity:
            remember(path, cache_folder(work), sha256=sha256, written=False)
            if shared is not None:
                try:
                    remember(path, shared, sha256=sha256, written=False)
                except OSError as exc:
                    log.debug("shared digest cache %s not written: %s", shared, exc)


def content_digest(digests: dict[str, str]) -> str:
    """One sha256 over every input's path and sha256."""
    return hashlib.sha256("".join(f"{p}\t{d}\n" for p, d in sorted(digests.items())).encode()).hexdigest()


def content_record_path(work: str | Path, digests: dict[str, str]) -> Path:
    return Path(work) / f"{CONTENT_RECORD}.{content_digest(digests)[:DIGEST_CHARS]}.json"


def content_record_text(digests: dict[str, str]) -> str:
    return json.dumps({"sha256": content_digest(digests), "files": len(digests)})


def content_records(work: str | Path) -> list[Path]:
    folder = Path(work)
    return sorted(p for p in folder.iterdir() if _RECORD_NAME.match(p.name)) if folder.is_dir() else []


def drop_other_content_records(work: str | Path, digests: dict[str, str]) -> None:
    """At a run's start: a later return to that content must index the inputs again."""
    keep = content_record_path(work, digests)
    for path in content_records(work):
        if path != keep:
            path.unlink()


def content_as_recorded(source_files: list[str], work: str | Path) -> bool:
    """The inputs hold the content the run's content record names: every input's cached
    digest is valid for the file as it is now, and together they give that digest."""
    records = content_records(work)
    if len(records) != 1:
        return False
    try:
        recorded = json.loads(records[0].read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    now = {}
    for path in input_files(source_files):
        cached = cached_digest(path, cache_folder(work))
        if cached is None:
            return False
        now[str(path.resolve())] = cached["sha256"]
    return content_digest(now) == recorded


def check_as_indexed(info: SourceInfo, index_path: str | Path) -> None:
    """Stop before a job reads pixels if an input is no longer what the page index
    describes; inputs only touched since (same content) pass. The work folder is the
    index's folder."""
    from .sources.scanimage import check_page_index

    try:
        check_page_index(Path(index_path), info)
    except SourceError:
        if not content_as_recorded(info.files, Path(index_path).parent):
            raise


def check_inputs_as_indexed(source_files: list[str], page_index: str | Path, cache: Path) -> None:
    """Stop unless every input digest is of the bytes the export read: each input is as
    the index recorded it (size, mtime) or only touched since, and was not changed since
    or while it was hashed."""
    with np.load(page_index) as data:
        sizes = data["sizes"].tolist()
        # an index saved before modification times were recorded: by size only
        mtimes = data["mtimes"].tolist() if "mtimes" in data.files else [None] * len(sizes)
    touched_only: bool | None = None  # asked once, if needed
    for name, size, mtime_ns in zip(source_files, sizes, mtimes):
        now = Path(name).stat()
        if now.st_size == size and mtime_ns in (None, now.st_mtime_ns):
            continue
        if touched_only is None:
            touched_only = content_as_recorded(source_files, Path(page_index).parent)
        if not touched_only:
            raise SourceError(
                f"{name}: changed after this export indexed it ({size} bytes then, {now.st_size} now, modification "
                f"time {'unchanged' if now.st_mtime_ns == mtime_ns else 'moved'}); its digest would not describe "
                f"the bytes exported, so no history was recorded. Run the export again"
            )
    for path in input_files(source_files):
        if cached_digest(path, cache) is None:  # hashed while it changed, or changed since
            raise SourceError(f"{path}: changed while its digest was taken; no history was recorded. Run the export again")
