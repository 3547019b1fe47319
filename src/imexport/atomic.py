"""Atomic file-system writes: what every writer in imexport uses so that a killed job
never leaves a file or folder that looks complete.

A writer writes under a hidden temporary sibling (``.NAME.imexport-tmp-PID``: same
folder, so the same file system) and renames it into place as its last step. The
leftovers of killed writers are recognised by ``TEMP_MARKER`` (``guard``).

**Durability.** A rename is atomic, not durable: after a power loss or a lost node the
new name may point at a file whose data never reached the disk. So every commit
fsyncs the written file (every file of a folder, then its folders) before the rename
and the parent folder after it. ``IMEXPORT_FSYNC=0`` turns this off, for file systems
where fsync is slow and a crash is handled by rerunning the export.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_MARKER = ".imexport-tmp"
FSYNC_SWITCH = "IMEXPORT_FSYNC"


def fsync_enabled() -> bool:
    return os.environ.get(FSYNC_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def fsync_path(path: Path) -> None:
    """Flush one file or folder (its entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file of a folder and then its folders, deepest first."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        fsync_path(path)
        return
    for folder, _dirs, names in os.walk(path, topdown=False):
        for name in names:
            if not os.path.islink(os.path.join(folder, name)):
                fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def temporary_sibling(path: Path) -> Path:
    """A hidden name in the same folder (same filesystem, so ``os.replace`` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}-{os.getpid()}")


def remove_path(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def commit_path(temporary: Path, final: Path) -> None:
    """Replace ``final`` by ``temporary``; a folder target is swapped as a whole. With
    fsync on, ``temporary`` is on the disk before the rename and the new name after it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    durable = fsync_enabled()
    if durable:
        fsync_tree(temporary)
    if final.is_dir() and not final.is_symlink():
        # os.replace cannot overwrite a non-empty folder: move the old one aside first
        old = temporary_sibling(final).with_name(temporary_sibling(final).name + "-old")
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old)
    else:
        os.replace(temporary, final)
    if durable:
        fsync_path(final.parent)


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write a file through ``write(binary_handle)`` under a temporary name, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        with open(temporary, "wb") as fh:
            write(fh)
        commit_path(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, lambda fh: fh.write(json.dumps(value, indent=1).encode()))
