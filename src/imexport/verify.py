"""Check an export against its manifest (``imexport verify OUTDIR``).

Every file the manifest lists must exist with its recorded size and sha256; a folder
output (Suite2p plane folder, Zarr store) must hold no file the manifest does not list;
and every output must open with the library its users read it with, and give back one
frame: tifffile (first and last page), numpy (``ops.npy`` and the binaries' expected
size and first frame), zarr (array ``0``, first frame) and h5py (the dataset's first
frame; a virtual dataset whose plane files are missing is refused, naming them:
h5py alone would read zeros).
"""

from __future__ import annotations

import json
from pathlib import Path

from .checksums import checksum_files, files_of
from .formats import FORMATS
from .history import MANIFEST_NAME


def verify(outdir: str | Path, workers: int | None = None) -> list[str]:
    """Every difference between ``outdir`` and its manifest, one line each ([] = intact)."""
    outdir = Path(outdir)
    manifest_file = outdir / MANIFEST_NAME
    if not manifest_file.is_file():
        return [f"{manifest_file}: no manifest (not an imexport output folder, or the export did not finish)"]
    manifest = json.loads(manifest_file.read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    problems = []
    present = []
    for rel, entry in listed.items():
        path = outdir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {entry['size']}")
        else:
            present.append(path)
    digests = checksum_files(present, workers)  # no digest cache: verify reads every byte
    problems += [
        f"{path.relative_to(outdir)}: sha256 differs from the manifest"
        for path in present
        if digests[path]["sha256"] != listed[str(path.relative_to(outdir))]["sha256"]
    ]
    for output in manifest["outputs"]:
        path = outdir / output["path"]
        if path.is_dir():
            problems += [
                f"{f.relative_to(outdir)}: not in the manifest"
                for f in files_of(path)
                if str(f.relative_to(outdir)) not in listed
            ]
        if not path.exists():
            continue  # already reported as missing files
        try:
            FORMATS[output["format"]].check_readable(path, output)
        except Exception as exc:  # whatever the library raises, the output is unreadable
            problems.append(f"{output['path']}: unreadable by its library ({type(exc).__name__}: {exc})")
    return sorted(problems)
