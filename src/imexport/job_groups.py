"""Cluster submissions: which plane jobs a cluster executor submits together.

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


def span_group(group_settings: Any, group: str | None, groups: dict[str, str]) -> str | None:
    """``group``, declared to span all its (independent) jobs: its entry in Snakemake's
    ``workflow.group_settings.group_components`` (what ``--group-components`` sets; a count
    given there is kept). Called while the DAG is built: Snakemake replaces the settings
    after the Snakefile is read, so an entry made then would be lost."""
    if group is not None and group not in group_settings.group_components:
        size = sum(1 for name in groups.values() if name == group)
        group_settings.group_components = {**group_settings.group_components, group: size}
    return group
