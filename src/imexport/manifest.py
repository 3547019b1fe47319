"""The run manifest ``outdir/imexport_manifest.json``: every step of the history, every
output with the step that wrote it, and the size and sha256 of every output file — what
``imexport verify`` checks.

Outputs that earlier, different exports into the same folder (another format, other
planes) listed, and that this export does not write, stay listed with their files, so
``verify`` covers every export in the folder; an output that is gone is dropped, with a
warning naming it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "imexport_manifest.json"
MANIFEST_VERSION = 1


def manifest_path(outdir: str | Path) -> Path:
    return Path(outdir) / MANIFEST_NAME


def earlier_exports(outdir: Path, products: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The outputs, and their files, that earlier exports into ``outdir`` listed in its
    manifest and this export does not write."""
    try:
        earlier = json.loads(manifest_path(outdir).read_text())
    except FileNotFoundError:
        return [], []
    ours = {p for product in products for p in (product["output"], *product["paths"])}
    outputs, files = [], []
    for output in earlier["outputs"]:
        if ours.intersection((output["path"], *output["paths"])):
            continue  # this export writes it again
        if not (outdir / output["path"]).exists():
            log.warning("%s: listed by an earlier export's manifest but gone; no longer listed", output["path"])
            continue
        outputs.append({**output, "step": output.get("step", earlier["steps"][-1]["id"])})
        files += [f for f in earlier["files"] if any(f["path"] == p or f["path"].startswith(p + "/") for p in output["paths"])]
    return outputs, files


def write_manifest(
    outdir: Path,
    history: list[dict[str, Any]],
    products: list[dict[str, Any]],
    sidecars: dict[str, list[Path]],
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    """Write the manifest of an export whose step is ``history[-1]``, merged with the
    earlier exports' outputs; the manifest.

    ``products``: this export's outputs (``output``, ``paths`` relative to outdir, and the
    fields the manifest keeps); ``sidecars``: output → its history sidecars; ``files``:
    ``{path, size, sha256}`` of every file this export wrote or rewrote.
    """
    earlier_outputs, earlier_files = earlier_exports(outdir, products)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "written": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        "outdir": str(outdir.resolve()),
        "steps": history,
        "outputs": earlier_outputs
        + [
            {
                "path": product["output"],
                **{k: v for k, v in product.items() if k not in ("output", "paths")},
                "paths": product["paths"] + [str(p) for p in sidecars[product["output"]]],
                "step": history[-1]["id"],
            }
            for product in products
        ],
        "files": sorted(earlier_files + files, key=lambda f: f["path"]),
    }
    write_json_atomic(manifest_path(outdir), manifest)
    return manifest
