"""Durable commits: every written file reaches the disk before its rename, and the rename
before the export goes on (``imexport.atomic``).

What the kernel is asked is read with ``strace`` from a real in-process export (a numpy
movie to Suite2p folders and a TIFF file): each committed output's files are fsynced
before the rename that gives them their final name, and the folder holding that name
after it. ``IMEXPORT_FSYNC=0`` asks for no fsync at all. Where strace is missing the test
is skipped, except in CI (``CI`` set), where it fails: tests/run.sh installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imexport.outdir_lock import LOCK_NAME

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

EXPORT = """
import sys
import numpy as np
import imexport
movie = np.arange(6 * 2 * 16 * 24, dtype=np.int16).reshape(6, 2, 16, 24)
out = sys.argv[1]
imexport.imwrite(movie, out, ext=".bin", dim_order="TZYX", show_progress=False)
imexport.imwrite(movie, out, ext=".tiff", dim_order="TZYX", show_progress=False)
"""
# strace -y prints a descriptor with its path: fsync(3</tmp/.../ops.npy>) = 0
FSYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<(?P<path>[^>]*)>\) = 0")
RENAME = re.compile(r'\brename(?:at2?)?\((?:[^,]*, )?"(?P<old>[^"]+)", (?:[^,]*, )?"(?P<new>[^"]+)"[^)]*\) = 0')


def _strace() -> str:
    found = shutil.which("strace")
    if found is None:
        message = "strace is not installed (apt-get install strace; tests/run.sh does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _traced_export(tmp_path: Path, fsync: str) -> tuple[Path, list[tuple[str, ...]]]:
    """Run the export under strace; its fsyncs and renames, in order, as ("fsync", path)
    and ("rename", old, new) with absolute paths."""
    out = tmp_path / f"out_{fsync}"
    trace = tmp_path / f"trace_{fsync}.txt"
    env = {**os.environ, "IMEXPORT_FSYNC": fsync}
    subprocess.run(
        [
            _strace(),
            "-f",
            "-y",
            "-qq",
            "-o",
            str(trace),
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2",
            sys.executable,
            "-c",
            EXPORT,
            str(out),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    events = []
    for line in trace.read_text().splitlines():
        if m := FSYNC.search(line):
            events.append(("fsync", os.path.normpath(m["path"])))
        elif m := RENAME.search(line):
            events.append(("rename", os.path.normpath(tmp_path / m["old"]), os.path.normpath(tmp_path / m["new"])))
    return out.resolve(), events


def test_every_output_is_fsynced_before_its_rename_and_its_folder_after(tmp_path):
    out, events = _traced_export(tmp_path, "1")
    renames = {e[2]: i for i, e in enumerate(events) if e[0] == "rename"}
    fsyncs: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        if event[0] == "fsync":
            fsyncs.setdefault(event[1], []).append(i)
    tifs = sorted(out.glob("*.tif"))
    assert len(tifs) == 2, tifs  # one TIFF per plane
    plane_folders = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(plane_folders) == 2, plane_folders  # one Suite2p folder per plane
    # the ops.npy files are rewritten by the history step: their last rename is that one
    checked = [*tifs, *plane_folders, *(f / "ops.npy" for f in plane_folders), out / "imexport_manifest.json"]
    for final in checked:
        final = str(final)
        assert final in renames, f"{final} was not committed by a rename"
        at = renames[final]
        old = events[at][1]
        # the temporary (or, for a folder, each of its files and the folder itself) before the rename
        written = (
            [old]
            if not Path(final).is_dir()
            else [os.path.join(old, str(f.relative_to(final))) for f in Path(final).iterdir()] + [old]
        )
        for path in written:
            assert any(i < at for i in fsyncs.get(path, [])), f"{path} not fsynced before its rename to {final}"
        # the folder holding the new name after it
        parent = str(Path(final).parent)
        assert any(i > at for i in fsyncs.get(parent, [])), f"{parent} not fsynced after the rename to {final}"
    for folder in plane_folders:  # what the export wrote: data_raw.bin, ops.npy, ...
        assert {"data_raw.bin", "ops.npy"} <= {f.name for f in folder.iterdir()}


def test_fsync_can_be_switched_off(tmp_path):
    out, events = _traced_export(tmp_path, "0")
    # the output folder's lock is flushed on its own terms (imexport.outdir_lock), not by this switch
    flushed = [e[1] for e in events if e[0] == "fsync" and e[1].startswith(str(out))]
    assert [p for p in flushed if Path(p).name != LOCK_NAME] == []
    assert any(e[0] == "rename" for e in events)
    # the same export, the same pixels: the switch changes only when bytes reach the disk
    movie = np.arange(6 * 2 * 16 * 24, dtype=np.int16).reshape(6, 2, 16, 24)
    binary = np.fromfile(out / "zplane01_tp00001-00006" / "data_raw.bin", np.int16)
    assert np.array_equal(binary.reshape(6, 16, 24), movie[:, 0])
