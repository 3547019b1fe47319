# Config -> plan. Validation and planning happen here, before any job starts, so a bad
# value or a bad input stops the run with a message naming the key or the file.
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from imexport.checksums import cache_folder
from imexport.job_groups import plane_groups, span_group
from imexport.steps import plan_summary
from imexport.user_errors import stop_run
from imexport.workflow_plan import plan_for_config

try:
    RESOLVED, PLAN = plan_for_config(config)
except (ValueError, OSError) as error:
    stop_run(error)

config.update(RESOLVED)
if workflow.is_main_process:  # jobs a cluster runs parse this file again: say it once
    # what was detected (format, shape, dtype) and what the plan set aside, dry run included
    print("\n".join(f"imexport: {line}" for line in plan_summary(PLAN).splitlines()), file=sys.stderr)
OUT = PLAN.outdir
WORK = PLAN.work
SOURCE_JSON = PLAN.source_json
PAGE_INDEX = PLAN.page_index
# digest cache: writers hash what they wrote into it, the history job looks the digests up
CHECKSUMS = str(cache_folder(WORK))
CHUNK_MB = float(RESOLVED["target_chunk_mb"])


def keys_regex(keys):
    """Wildcard constraint: exactly these keys (none: matches nothing)."""
    return "|".join(re.escape(k) for k in keys) if keys else "(?!)"


def plane_job(wildcards):
    """The plane job as plain data (a tracked param: any change of it reruns the job)."""
    return PLAN.jobs[wildcards.key].to_dict()


def all_cores_but_one(at_most):
    """Threads for a job every other job waits for, leaving one core to checksum_inputs;
    ``at_most`` where Snakemake has no local core count (a cluster executor)."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return at_most
    return max(1, min(at_most, cores - 1))


def plane_job_mem_mb(wildcards, attempt):
    """Two chunks in flight plus the interpreter, more on each retry."""
    return int((3 * CHUNK_MB + 300) * attempt)


def step_inputs(rule, wildcard="key"):
    """Input function of a rule: the named inputs imexport.pipeline describes for the job
    whose ``wildcard`` is its key (None: the rule's one job)."""
    return lambda w: PIPELINE.inputs(rule, getattr(w, wildcard) if wildcard else "")


def export_spec(wildcards):
    """The export as plain data (a tracked param: any change of it reruns the step)."""
    return PLAN.export(wildcards.key).to_dict()


def export_plane_metadata(wildcards):
    return [PLAN.jobs[k].metadata for k in PLAN.export(wildcards.key).plane_jobs]


def export_of_store(wildcards):
    """The export whose prepare step creates the store ``{WORK}/{wildcards.store}``."""
    return PLAN.stores()[f"{WORK}/{wildcards.store}"]


# cluster submissions (imexport.job_groups): plane job / assembled export key -> group
PLANE_GROUPS = plane_groups(PLAN, RESOLVED["cluster"]["planes_per_submission"])


def job_group(wildcards):
    """The group a cluster executor submits this plane or assemble job with (None: alone)."""
    return span_group(workflow.group_settings, PLANE_GROUPS.get(wildcards.key), PLANE_GROUPS)
