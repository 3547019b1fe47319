"""What the Snakefile needs at DAG-build time: the validated config and the plan."""

from __future__ import annotations

from typing import Any

from .config import validate
from .demo import demo_active, planned_demo_info, with_demo_metadata
from .guard import check_outdir
from .plan import Plan, build_plan
from .sources import inspect_input


def plan_for_config(config: dict[str, Any]) -> tuple[dict[str, Any], Plan]:
    resolved = with_demo_metadata(validate(config))
    if demo_active(resolved) and not _demo_present(resolved):
        info = planned_demo_info(resolved)
    else:
        info = inspect_input(resolved["input"], **resolved["input_options"])
    plan = build_plan(resolved, info)
    check_outdir(plan.outdir, plan.source.files)
    return resolved, plan


def _demo_present(config: dict[str, Any]) -> bool:
    from .demo import demo_files

    return all(p.exists() for p in demo_files(config))
