"""The validated config and the plan, with every check made before any step runs: what
the Snakefile needs at DAG-build time, and what ``imwrite`` runs before its steps."""

from __future__ import annotations

from typing import Any

from .config import validate
from .demo import demo_active, planned_demo_info, with_demo_metadata
from .guard import check_outdir
from .plan import Plan, build_plan
from .sources import SourceInfo, inspect_input


def plan_for_config(config: dict[str, Any], info: SourceInfo | None = None) -> tuple[dict[str, Any], Plan]:
    """``(validated config, plan)``; ``info``: the input, when the caller inspected it already."""
    resolved = with_demo_metadata(validate(config))
    if info is None and demo_active(resolved) and not _demo_present(resolved):
        info = planned_demo_info(resolved)
    elif info is None:
        info = inspect_input(resolved["input"], **resolved["input_options"])
    plan = build_plan(resolved, info)
    check_outdir(plan.outdir, plan.source.files)
    return resolved, plan


def _demo_present(config: dict[str, Any]) -> bool:
    from .demo import demo_files

    return all(p.exists() for p in demo_files(config))
