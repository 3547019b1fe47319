"""Cluster submissions: which jobs a cluster executor submits together.

A plane job of a short recording lasts seconds, less than a cluster scheduler spends on
one submission. So on a cluster the plane jobs of ``planes_per_submission`` consecutive
written planes (every format and ROI view of them) form one Snakemake group, submitted
as one job; an assemble step joins its export's group when all the export's plane jobs
are in that one group (otherwise it would hold that group back until the other groups of
its export finished). Local runs ignore groups (Snakemake's rule).

Snakemake keeps jobs of one group name in one submission only where they are connected
in the DAG; plane jobs are independent of each other, so each group is declared to span
all its jobs (Snakemake's ``--group-components NAME=N``, set from the plan here instead of
on the command line, which would need one N per group name).

With a sessions sheet, two more kinds of independent jobs go ``planes_per_submission`` at
a time, in sheet order, as one submission: the scan-phase jobs (one per session and ROI
view; every plane job of their session waits for them) and the assemble steps whose
export's planes span several plane groups. A scan-phase job reads a window of frames
(``scan_phase.window_frames``, 200) of each of its planes, for 14 planes as many frames as
one plane job of a 2,800-frame recording; an assemble step writes metadata (Zarr) or copies
one export (single-file HDF5, gzip NWB): as many of them per submission as plane jobs is a
submission of the same order of minutes.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from .plan import Plan


def plane_groups(plan: Plan, planes_per_submission: int | None) -> dict[str, str]:
    """Plane-job key and assembled-export key → the name of its group; ``None``: no groups.

    Names read ``<outdir>.planes<first>-<last>`` (1-based written positions; the output
    folder, one per plan and run, keeps apart the groups of several sessions or modules)."""
    if planes_per_submission is None:
        return {}
    written = len(plan.planes)
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(PurePath(plan.outdir))).strip("_.") or "imexport"
    groups = {}
    for key, job in plan.jobs.items():
        first = job.z_index - job.z_index % planes_per_submission
        last = min(first + planes_per_submission, written)
        groups[key] = f"{prefix}.planes{first + 1:02d}-{last:02d}"
    for export in plan.exports:
        names = {groups[key] for key in export.plane_jobs}
        if export.assembled and len(names) == 1:
            groups[export.key] = names.pop()
    return groups


def consecutive_groups(step: str, jobs: list[tuple[str, str]], planes_per_submission: int | None) -> dict[tuple[str, str], str]:
    """(output folder, job key) of each job of ``step``, in sheet order → its group's name,
    ``<step>.<first>-<last>`` (1-based positions in that order); ``None``: no groups.
    A job that would be alone in its group gets none: a group of one is a plain job."""
    if planes_per_submission is None:
        return {}
    groups = {}
    for first in range(0, len(jobs), planes_per_submission):
        chunk = jobs[first : first + planes_per_submission]
        if len(chunk) > 1:
            groups.update(dict.fromkeys(chunk, f"{step}.{first + 1:02d}-{first + len(chunk):02d}"))
    return groups


def span_group(group_settings: Any, group: str | None, groups: dict[Any, str]) -> str | None:
    """``group``, declared to span all its (independent) jobs: its entry in Snakemake's
    ``workflow.group_settings.group_components`` (what ``--group-components`` sets; a count
    given there is kept). Called while the DAG is built: Snakemake replaces the settings
    after the Snakefile is read, so an entry made then would be lost."""
    if group is not None and group not in group_settings.group_components:
        size = sum(1 for name in groups.values() if name == group)
        group_settings.group_components = {**group_settings.group_components, group: size}
    return group
