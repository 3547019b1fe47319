"""The QC tables as small HTML pages: plane statistics, the run (plan, processing
history, resolved config) and the benchmarks."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..job_benchmarks import read_benchmark
from ..plan import Plan, view_name
from ..steps import plan_summary
from .reading import PERCENTILES, PlaneMean, display_range, filled_mask, mean_applied

_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:12px;color:#222}"
    "table{border-collapse:collapse;margin:6px 0 16px}"
    "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right;vertical-align:top}"
    "th{background:#eef}td.l,th.l{text-align:left}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}"
    "h2{font-size:15px;margin:18px 0 4px}p.note{color:#555}"
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):  # three significant digits, no exponent for intensities
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns (names) are left-aligned."""

    def row(cells: list[str], tag: str) -> str:
        tags = [f"<{tag} class=l>" if i < left else f"<{tag}>" for i in range(len(cells))]
        return "<tr>" + "".join(f"{t}{c}</{tag}>" for t, c in zip(tags, cells)) + "</tr>"

    body = "".join(row([_cell(c) for c in r], "td") for r in rows)
    return "<table>" + row([html.escape(h) for h in header], "th") + body + "</table>"


def _write_page(path: str, title: str, body: str) -> None:
    head = f"<meta charset=utf-8><title>{html.escape(title)}</title><style>{_STYLE}</style>"
    text = f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"
    write_atomic(Path(path), lambda fh: fh.write(text.encode("utf-8")))


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + str(key), value))
    return rows


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def history_html(manifest: Path) -> str:
    """The processing steps the manifest records: the input's earlier ones, then this export."""
    steps = json.loads(manifest.read_text()).get("steps") or []
    rows = []
    for i, step in enumerate(steps, 1):
        inputs, outputs = step.get("inputs") or [], step.get("outputs") or []
        software = ", ".join(f"{name} {version}" for name, version in (step.get("software") or {}).items())
        rows.append(
            [
                i,
                step.get("step"),
                step.get("timestamp"),
                step.get("host"),
                software,
                f"{len(inputs)} file(s), {_size(sum(f.get('size', 0) for f in inputs))}",
                f"{len(outputs)} output(s), {_size(sum(o.get('size', 0) for o in outputs))}",
                step.get("id"),
            ]
        )
    return _table(["#", "step", "timestamp", "host", "software", "inputs", "outputs", "id"], rows, left=8)


def write_run_page(plan: Plan, config: dict[str, Any], manifest: str, path: str) -> None:
    outputs = "\n".join(str(Path(p).relative_to(plan.outdir)) for p in plan.final_outputs())
    body = (
        f"<h2>Plan</h2><pre>{html.escape(plan_summary(plan))}</pre>"
        f"<h2>Outputs (in {html.escape(str(Path(plan.outdir).resolve()))})</h2><pre>{html.escape(outputs)}</pre>"
        f"<h2>Processing history ({html.escape(Path(manifest).name)})</h2>{history_html(Path(manifest))}"
        f"<h2>Resolved configuration</h2>" + _table(["key", "value"], [[k, json.dumps(v)] for k, v in _flatten(config)], left=2)
    )
    _write_page(path, "imexport run", body)


def benchmark_rows(plan: Plan, benchmarks: list[str]) -> list[dict[str, Any]]:
    """One row per job; its step is the first folder of ``<step>/<job>.tsv`` under the benchmarks folder."""
    folder = Path(plan.work) / "benchmarks"
    rows = []
    for tsv in map(Path, benchmarks):
        name = str(tsv.relative_to(folder).with_suffix(""))
        step, _, job = name.partition("/")
        rows.append(
            {
                "step": step,
                "job": job or name,
                **read_benchmark(tsv),
                "finished": datetime.fromtimestamp(tsv.stat().st_mtime).isoformat(" ", "seconds"),
            }
        )
    return rows


def write_benchmark_page(plan: Plan, benchmarks: list[str], path: str) -> None:
    rows = benchmark_rows(plan, benchmarks)
    steps: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        steps.setdefault(row["step"], []).append(row)

    def peak(items, key):
        values = [r[key] for r in items if r[key] is not None]
        return max(values) if values else None

    summary = [
        [step, len(items), sum(r["s"] or 0 for r in items), peak(items, "s"), peak(items, "max_rss")]
        for step, items in steps.items()
    ]
    body = (
        "<h2>Per step</h2>"
        + _table(["step", "jobs", "total wall time (s)", "longest job (s)", "peak RSS (MB)"], summary)
        + "<h2>Per job</h2>"
        + _table(
            ["step", "job", "wall time (s)", "peak RSS (MB)", "CPU time (s)", "finished"],
            [[r["step"], r["job"], r["s"], r["max_rss"], r["cpu_time"], r["finished"]] for r in rows],
            left=2,
        )
        + "<p class=note>Peak memory is sampled while a job runs: jobs shorter than the first sample show –.</p>"
    )
    _write_page(path, "imexport benchmarks", body)


def write_planes_page(
    plan: Plan,
    means: dict[int | None, list[PlaneMean]],
    differences: dict[tuple[str, int | None], list[float]],
    formats: list[str],
    phase: dict[str, list[dict[str, Any]]],
    n_read: int,
    path: str,
) -> None:
    primary = formats[0]
    header = ["view", "plane", "frames read", "shape", "mean", f"p{PERCENTILES[0]:g}", f"p{PERCENTILES[1]:g}"]
    header += [f"max |Δ| {fmt} − {primary}" for fmt in formats[1:]]
    if phase:
        header += ["scan-phase estimate (px)", "applied (px)"]
    rows = []
    for roi in plan.rois:
        view = view_name(roi)
        by_plane = {r["plane"]: r for r in phase.get(view, [])}
        for i, mean in enumerate(means[roi]):
            image = mean.image
            low, high = display_range(image, filled_mask(plan.source, roi))
            row = [view, mean.plane + 1, n_read, "×".join(map(str, image.shape)), float(image.mean()), low, high]
            row += [differences[(fmt, roi)][i] for fmt in formats[1:]]
            if phase:
                record = by_plane.get(mean.plane + 1)
                if record is None:
                    row += [None, None]
                elif "offsets" in record:
                    row += [
                        f"median {np.median(record['offsets']):.2f} over {len(record['offsets'])} frames",
                        f"mean {mean_applied(record):.2f}",
                    ]
                else:
                    row += [record["offset"], record["applied"]]
            rows.append(row)
    note = (
        "<p class=note>Each mean is over the same evenly spaced written frames. Δ compares the mean images read "
        "back from each format with those of the first; non-zero only where a format converts the pixels "
        "(the Suite2p binary is int16).</p>"
        if len(formats) > 1
        else ""
    )
    _write_page(path, "imexport plane statistics", _table(header, rows, left=1) + note)
