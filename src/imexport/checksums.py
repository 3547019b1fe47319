"""File digests (sha256), and a cache of the digests of files already hashed.

Every file is streamed through one reused buffer (bounded memory); several files are
hashed on a few threads at once (hashlib releases the GIL while it hashes).

**The cache.** A job that writes a file hashes it right after committing it, on that
job's own core, and leaves one small JSON entry in a cache folder (the workflow's is
``outdir/.imexport/checksums/``): ``{path, size, mtime_ns, ino, ctime_ns, sha256}``,
named after the sha1 of the file's resolved absolute path. A later reader (the history
job, the planning of a later run) takes the digest from the entry only while the file's
size, ``st_mtime_ns``, ``st_ino`` and ``st_ctime_ns`` are still the recorded ones, and
hashes it again otherwise. Every imexport writer replaces a file (a new inode) rather
than editing it in place, so a rewritten file never passes for the one that was
hashed; and any write into a file moves its ``st_ctime``, which no program can set
back (``touch -d`` resets the modification time, not the change time), so an in-place
edit that keeps the size and the modification time is seen too. What moves the change
time without a write (``chmod``, a new hard link, a rename on most file systems) only
costs one more read of the file.

**As written.** An output can change after its job: the history job rewrites
``ops.npy``, ``zarr.json`` and the HDF5 master to carry the history. So a writer's
digest is also kept apart, under ``written/`` in the cache (:func:`written_digest`),
and nothing but a writer replaces it: the history step lists each output file as its
job left it from there, however often the history step itself ran since.

Snakemake touches every file output after its job (:func:`adopt_touch` keeps those
digests: the history job re-stamps the entries of its outputs touched no later than the
writing job's benchmark file, which Snakemake touches right after them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic

log = logging.getLogger(__name__)

CHUNK_BYTES = 2**20  # measured: larger buffers fall out of the CPU caches and hash slower
CACHE_FOLDER = "checksums"  # inside the work folder (``Plan.work``)
WRITTEN_FOLDER = "written"  # inside the cache: each output file as its job wrote it
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"  # snakemake's mark inside directory() outputs


def files_of(path: Path) -> list[Path]:
    """A file, or every file inside a folder (sorted, symlinks not followed), Snakemake's mark excluded."""
    if not path.is_dir():
        return [path]
    found = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        found.extend(Path(folder) / n for n in sorted(names) if n != SNAKEMAKE_TIMESTAMP)
    return found


def input_files(source_files: Iterable[str | Path]) -> list[Path]:
    """Every file of the input: a source may be a folder (a Zarr store, a suite2p folder)."""
    return [f for path in source_files for f in files_of(Path(path))]


def sha256_file(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> str:
    """sha256 of a file, read through one reused buffer: memory stays at ``chunk_bytes``."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


# --------------------------------------------------------------------------- the cache


def cache_folder(work: str | Path) -> Path:
    """The digest cache of a run whose work folder is ``work``."""
    return Path(work) / CACHE_FOLDER


def entry_path(path: str | Path, cache_dir: str | Path) -> Path:
    """Where the cache entry of ``path`` lives: sha1 of its resolved absolute path + ``.json``."""
    key = hashlib.sha1(os.fsencode(str(Path(path).resolve()))).hexdigest()
    return Path(cache_dir) / f"{key}.json"


def _identity(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ino": stat.st_ino, "ctime_ns": stat.st_ctime_ns}


def file_identity(path: str | Path) -> dict[str, int]:
    """What a cache entry is valid for: the file's size, mtime_ns, inode and ctime_ns now."""
    return _identity(os.stat(path))


def remember(path: str | Path, cache_dir: str | Path, sha256: str | None = None, *, written: bool = True) -> dict[str, Any]:
    """Store the digest of ``path`` (hashed here unless ``sha256`` is given); the entry.

    ``written``: the caller is the job that wrote the file, so the digest is also kept as
    the file's as-written state (:func:`written_digest`). The entry is written only when
    the file did not change while it was hashed.
    """
    path = Path(path).resolve()
    before = _identity(os.stat(path))
    if sha256 is None:
        sha256 = sha256_file(path)
        after = _identity(os.stat(path))
        if after != before:
            log.warning("%s changed while it was hashed: its digest is not cached", path)
            if written:  # an earlier writer's record no longer describes this file
                _written_path(path, cache_dir).unlink(missing_ok=True)
            return {"path": str(path), **after, "sha256": sha256}
    entry = {"path": str(path), **before, "sha256": sha256}
    write_json_atomic(entry_path(path, cache_dir), entry)
    if written:
        write_json_atomic(_written_path(path, cache_dir), {"path": str(path), "size": before["size"], "sha256": sha256})
    return entry


def _written_path(path: Path, cache_dir: str | Path) -> Path:
    return Path(cache_dir) / WRITTEN_FOLDER / entry_path(path, cache_dir).name


def written_digest(path: str | Path, cache_dir: str | Path) -> dict[str, Any] | None:
    """``{"size", "sha256"}`` of ``path`` as the job that last wrote it left it, whatever
    happened to the file since; None when no writer recorded it."""
    path = Path(path).resolve()
    try:
        record = json.loads(_written_path(path, cache_dir).read_text())
        usable = record["path"] == str(path) and isinstance(record["size"], int) and isinstance(record["sha256"], str)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"size": record["size"], "sha256": record["sha256"]} if usable else None


def cached_digest(path: str | Path, cache_dir: str | Path) -> dict[str, Any] | None:
    """``{"size", "sha256"}`` from the cache while the file is as it was hashed, else None."""
    found = _entry_of(path, cache_dir)
    if found is None:
        return None
    entry, now = found
    return {"size": now["size"], "sha256": entry["sha256"]} if {k: entry[k] for k in now} == now else None


def adopt_touch(path: str | Path, cache_dir: str | Path, touched_by_ns: int) -> bool:
    """Keep the cached digest of a file whose mtime alone moved, and not past ``touched_by_ns``.

    Snakemake touches every file output once its job has ended — after the job hashed
    it — and the job's benchmark file right after. So a file whose size and inode are
    those it was hashed with, and whose mtime (and with it its change time) moved forward
    but no later than that benchmark's, was only touched: its entry is re-stamped (True). A
    file changed after the touch, or in any other way, keeps its stale entry (False) and
    is hashed again by whoever asks.
    """
    found = _entry_of(path, cache_dir)
    if found is None:
        return False
    entry, now = found
    if (entry["size"], entry["ino"]) != (now["size"], now["ino"]):
        return False
    if (entry["mtime_ns"], entry["ctime_ns"]) == (now["mtime_ns"], now["ctime_ns"]):
        return True
    if not entry["mtime_ns"] < now["mtime_ns"] <= touched_by_ns or not now["ctime_ns"] <= touched_by_ns:
        return False
    remember(path, cache_dir, sha256=entry["sha256"], written=False)
    return True


def _entry_of(path: str | Path, cache_dir: str | Path) -> tuple[dict[str, Any], dict[str, int]] | None:
    """The cache entry recorded for ``path`` and the file's identity now, or None when
    there is no file, no entry, or an entry of no use (damaged, or for another path)."""
    path = Path(path).resolve()
    try:
        entry = json.loads(entry_path(path, cache_dir).read_text())
        now = _identity(os.stat(path))
        usable = entry["path"] == str(path) and all(isinstance(entry[k], int) for k in now) and isinstance(entry["sha256"], str)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (entry, now) if usable else None


def forget(path: str | Path, cache_dir: str | Path) -> None:
    """Drop the cache entries of ``path`` (a path that no longer exists, say)."""
    entry_path(path, cache_dir).unlink(missing_ok=True)
    _written_path(Path(path).resolve(), cache_dir).unlink(missing_ok=True)


# --------------------------------------------------------------------------- many files


def checksum_files(
    paths: Iterable[str | Path], workers: int | None = None, cache_dir: str | Path | None = None
) -> dict[Path, dict[str, Any]]:
    """``{path: {"size": bytes, "sha256": hex}}``, largest files first on ``workers`` threads.

    With ``cache_dir``, a file whose cache entry is still valid is not read; every other
    file is hashed and remembered there.
    """
    unique = sorted({Path(p) for p in paths}, key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        if cache_dir is None:
            found: dict[Path, dict[str, Any] | None] = dict.fromkeys(unique)
        else:
            found = dict(zip(unique, pool.map(lambda p: cached_digest(p, cache_dir), unique)))

        def one(path: Path) -> dict[str, Any]:
            if cache_dir is None:
                return {"size": path.stat().st_size, "sha256": sha256_file(path)}
            entry = remember(path, cache_dir, written=False)  # a reader's digest, not a writer's
            return {"size": entry["size"], "sha256": entry["sha256"]}

        missing = [p for p, digest in found.items() if digest is None]
        # one file reached by two paths (a symlink) is hashed, and remembered, once
        spellings: dict[Path, list[Path]] = {}
        for path in missing:
            spellings.setdefault(path.resolve() if cache_dir is not None else path, []).append(path)
        for real, digest in zip(spellings, pool.map(one, spellings)):
            found.update(dict.fromkeys(spellings[real], digest))
    if cache_dir is not None:
        log.info("%d file(s): %d digest(s) from the cache, %d hashed", len(unique), len(unique) - len(missing), len(missing))
    return {path: found[path] for path in unique}


def remember_files(paths: Iterable[Path], checksums: str | Path) -> int:
    """Hash files just written into the digest cache ``checksums``; how many."""
    n = 0
    for path in paths:
        remember(path, checksums)
        n += 1
    log.info("%d file(s) hashed into %s", n, checksums)
    return n
