"""Snakemake's benchmark files (``benchmark:`` of a rule): one tab-separated table per job,
a header and one row per run of the job. Read by the processing history (job durations)
and the QC report (the benchmark table)."""

from __future__ import annotations

import csv
from pathlib import Path

MEASURES = ("s", "cpu_time", "max_rss")  # wall seconds, CPU seconds, peak resident memory (MB)


def read_benchmark(path: str | Path) -> dict[str, float | None]:
    """The measures of the job's last run; None where Snakemake wrote NA (a job that ended
    before its first memory sample)."""
    with open(path, newline="") as fh:
        last = list(csv.DictReader(fh, delimiter="\t"))[-1]
    return {name: _number(last.get(name)) for name in MEASURES}


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
