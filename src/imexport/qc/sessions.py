"""The sessions table of a run over a sessions sheet: one row per session, read back from
what each session's export recorded (its manifest), printed at the end of the run and
shown in the QC report.

Columns: planes, frames and formats planned; the size of the files written; the wall time
of its jobs added up (from their benchmark files, as the manifest lists them); the
scan-phase offsets applied (smallest to largest over its planes and views, pixels); the
frames ScanImage dropped during the acquisition (gaps in ``frameNumbers``); and its status:
``exported``, ``exported earlier (<when>)`` (printed at the end of a run that did not export
it: nothing to do, or its jobs did not finish), ``not exported`` (no manifest yet) or
``failed: <why>`` (it could not be planned; ``skip_failed_sessions: true``).

Needs no plotting library: the workflow's onsuccess handler calls it too.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .reading import mean_applied

COLUMNS = ("session", "planes", "frames", "formats", "size", "wall time", "scan-phase offsets", "dropped frames", "status")


def session_entry(name: str, planes: int, frames: int, formats: list[str], manifest: str) -> dict[str, Any]:
    """What the table needs of a planned session, as plain data (a rule's param)."""
    return {"session": name, "planes": planes, "frames": frames, "formats": list(formats), "manifest": manifest}


def failed_entry(name: str, reason: str) -> dict[str, Any]:
    return {"session": name, "failed": reason}


def table_rows(entries: list[dict[str, Any]], run_start: float | None = None) -> list[dict[str, str]]:
    """One row of text cells (``COLUMNS``) per entry, in the order given. With ``run_start``
    (a time.time()), a manifest older than it reads ``exported earlier (<when>)``: this run
    did not export that session (nothing to do, or its jobs did not finish)."""
    return [_row(entry, run_start) for entry in entries]


def _row(entry: dict[str, Any], run_start: float | None) -> dict[str, str]:
    empty = dict.fromkeys(COLUMNS, "-")
    if "failed" in entry:
        reason = entry["failed"].splitlines()[0]
        return {**empty, "session": entry["session"], "status": f"failed: {reason}"}
    row = {
        **empty,
        "session": entry["session"],
        "planes": str(entry["planes"]),
        "frames": str(entry["frames"]),
        "formats": ", ".join(entry["formats"]),
        "status": "not exported",
    }
    path = Path(entry["manifest"])
    if not path.is_file():
        return row
    manifest = json.loads(path.read_text())
    when = manifest["written"][:16].replace("T", " ")
    step = manifest["steps"][-1]
    offsets = [mean_applied(r) for r in step["parameters"]["scan_phase"].get("records", {}).values()]
    dropped = (step.get("source_timing") or {}).get("dropped_frames")
    return {
        **row,
        "size": _size(sum(f["size"] for f in manifest["files"])),
        "wall time": f"{sum(job['s'] or 0.0 for job in step['durations']['jobs']):.1f} s",
        "scan-phase offsets": f"{min(offsets):+.2f} .. {max(offsets):+.2f} px" if offsets else "-",
        "dropped frames": "-" if dropped is None else str(sum(d["missing"] for d in dropped)),
        "status": "exported" if run_start is None or path.stat().st_mtime >= run_start else f"exported earlier ({when})",
    }


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def format_table(rows: list[dict[str, str]]) -> str:
    """The rows as aligned plain text, a header line first."""
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    return "\n".join(lines)


def write_sessions_table(entries: list[dict[str, Any]], tsv: str, page: str) -> list[dict[str, str]]:
    """The table as a tab-separated file and as an HTML page for the report."""
    rows = table_rows(entries)
    Path(tsv).parent.mkdir(parents=True, exist_ok=True)
    Path(tsv).write_text("\n".join("\t".join(r[c] for c in COLUMNS) for r in [dict(zip(COLUMNS, COLUMNS)), *rows]) + "\n")
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in COLUMNS) + "</tr>\n" for r in rows)
    header = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    Path(page).write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Sessions</title></head><body>\n"
        f"<table border='1' cellpadding='4'>\n<tr>{header}</tr>\n{cells}</table>\n</body></html>\n"
    )
    return rows
