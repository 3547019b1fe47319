# Config -> sessions -> plans. Validation and planning happen here, before any job starts,
# so a bad value, a bad sheet row or a bad input stops the run with a message naming the
# key, the row or the file. Without a sheet the config is the one session.
#
# One DAG over every session: the rules are written once, with the output folder as the
# wildcard `out` (a session's outdir; its work folder is `out`/.imexport), so a session's
# files have the paths, and the bytes, they have when it is exported alone. Each rule's
# constraints list the sessions having jobs of that rule and their keys (session_wildcards).
# Rules whose outputs differ in number between sessions (scan_phase, history, qc) are made
# once per session (session_rule_name).
import re
import sys
import time
from pathlib import Path

from snakemake.exceptions import WorkflowError

from imexport.checksums import cache_folder
from imexport.history import manifest_path
from imexport.input_content import content_record_path
from imexport.job_groups import consecutive_groups, plane_groups, span_group
from imexport.jobs import OUTPUT_TYPES
from imexport.outdir_lock import check_unlocked, release
from imexport.plan import WORK_FOLDER, formats_of
from imexport.qc.sessions import failed_entry, format_table, session_entry, table_rows
from imexport.sessions import plan_sessions
from imexport.steps import plan_summary
from imexport.user_errors import say, stop_run

# One run per output folder (imexport.outdir_lock): Snakemake's own lock is per working
# directory. Checked for each session, dry runs included, before the overwrite check would
# read a folder another run is changing; jobs a cluster runs parse this file again and skip it.
try:
    SESSIONS = plan_sessions(
        config,
        check_folder=check_unlocked if workflow.is_main_process else None,
        say=say if workflow.is_main_process else None,
    )
except (ValueError, OSError) as error:
    stop_run(error)

RUN_START = time.time()  # a session whose manifest is older was not exported by this run
SESSION_OF = SESSIONS.by_outdir()  # outdir (the `out` wildcard) -> its session
# the config as every step sees it: the one session's, or the run's with a sheet
config.update(SESSIONS.run_config)

if workflow.is_main_process:  # jobs a cluster runs parse this file again: say it once
    # what was detected (format, shape, dtype) and what the plan set aside, dry run included
    for SESSION in SESSIONS.planned:
        prefix = "imexport: " if SESSION.name is None else f"imexport: session {SESSION.name}: "
        print("\n".join(prefix + line for line in plan_summary(SESSION.plan).splitlines()), file=sys.stderr)
    for FAILED in SESSIONS.failed:
        print(f"imexport: session {FAILED.name} skipped (line {FAILED.line}): {FAILED.reason}", file=sys.stderr)

OUT = "{out}"
WORK = f"{{out}}/{WORK_FOLDER}"


def session(wildcards):
    return SESSION_OF[wildcards.out]


def plan_of(wildcards):
    return session(wildcards).plan


def keys_regex(keys):
    """Wildcard constraint: exactly these keys (none: matches nothing)."""
    return "|".join(re.escape(k) for k in sorted(keys)) if keys else "(?!)"


def session_wildcards(keys_of, wildcard="key"):
    """The `out` and ``wildcard`` constraints of a rule: the sessions whose ``keys_of(session)``
    has keys, and those keys. A key one session has and another has not may match under the
    other's folder: its input function then finds no step there, and Snakemake drops the rule."""
    keys = {outdir: set(keys_of(SESSION)) for outdir, SESSION in SESSION_OF.items()}
    return {"out": keys_regex([o for o, k in keys.items() if k]), wildcard: keys_regex(set().union(*keys.values()))}


def step_wildcards(rule, wildcard="key"):
    """session_wildcards of the steps imexport.pipeline describes: the keys of the jobs of ``rule``."""
    return session_wildcards(lambda SESSION: SESSION.pipeline.keys(rule), wildcard)


def session_rule_name(rule, SESSION):
    """A per-session rule's name: its own without a sheet, `<rule>_<session>` with one."""
    return rule if SESSION.name is None else f"{rule}_{SESSION.name}"


def plane_job(wildcards):
    """The plane job as plain data (a tracked param: any change of it reruns the job)."""
    return plan_of(wildcards).jobs[wildcards.key].to_dict()


def all_cores(at_most):
    """Threads for a job every plane job waits for (nothing else can run beside it);
    ``at_most`` where Snakemake has no local core count (a cluster executor)."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return at_most
    return max(1, min(at_most, cores))


def plane_job_mem_mb(SESSION=None):
    """Memory of a job reading frames: two chunks in flight plus the interpreter, more on
    each retry; for the session of the job's `out`, or ``SESSION`` (a rule made per session)."""

    def mem_mb(wildcards, attempt):
        chunk_mb = float((SESSION or session(wildcards)).config["target_chunk_mb"])
        return int((3 * chunk_mb + 300) * attempt)

    return mem_mb


def step_inputs(rule, wildcard="key", SESSION=None):
    """Input function of a rule: the named inputs imexport.pipeline describes for the job
    whose ``wildcard`` is its key (None: the rule's one job), in the session of the job's
    `out` or in ``SESSION`` (a rule made per session)."""

    def inputs(wildcards):
        pipeline = (SESSION or session(wildcards)).pipeline
        key = getattr(wildcards, wildcard) if wildcard else ""
        if key not in pipeline.keys(rule):
            raise KeyError(f"{pipeline.plan.outdir} has no {rule} job {key!r}")
        return pipeline.inputs(rule, key)

    return inputs


def export_spec(wildcards):
    """The export as plain data (a tracked param: any change of it reruns the step)."""
    return plan_of(wildcards).export(wildcards.key).to_dict()


def export_plane_metadata(wildcards):
    plan = plan_of(wildcards)
    return [plan.jobs[k].metadata for k in plan.export(wildcards.key).plane_jobs]


def export_of_store(wildcards):
    """The export whose prepare step creates the store ``{out}/.imexport/{store}``."""
    plan = plan_of(wildcards)
    return plan.stores()[f"{plan.work}/{wildcards.store}"]


def content_record(wildcards):
    """The record of the session's input content, named after it: a new content indexes
    the inputs again, a touch does not (imexport.input_content)."""
    SESSION = session(wildcards)
    return str(content_record_path(SESSION.plan.work, SESSION.digests))


def checksums_folder(wildcards):
    """The digest cache: writers hash what they wrote into it, the history job looks the digests up."""
    return str(cache_folder(plan_of(wildcards).work))


def release_locks():
    for work, lock in list(RUN_LOCKS.items()):
        release(work, lock)
        del RUN_LOCKS[work]


def phase_tasks(SESSION):
    """The tasks of one scan_phase job: the records of its view."""
    return lambda w: [SESSION.plan.phase_tasks[p] for p in SESSION.plan.phase_views()[w.view]]


def benchmarks_of(SESSION):
    """Step -> the benchmark files of the session's planned jobs of that step."""
    plan = SESSION.plan
    wildcards = {
        "index_source": [{}],
        "scan_phase": [{"view": v} for v in plan.phase_views()],
        "axial_shifts": [{"record": str(Path(p).relative_to(plan.work))} for p in plan.axial_tasks],
        **{f"write_plane_{output}": [{"key": k} for k in plan.jobs_of(output)] for output in OUTPUT_TYPES},
        "assemble_file": [{"key": k} for k in plan.assembled(is_folder=False)],
        "assemble_folder": [{"key": k} for k in plan.assembled(is_folder=True)],
    }
    rule_of = {"scan_phase": session_rule_name("scan_phase", SESSION)}
    return {
        step: [getattr(rules, rule_of.get(step, step)).benchmark.format(out=plan.outdir, **w) for w in jobs]
        for step, jobs in wildcards.items()
        if jobs
    }


def touched_of(SESSION):
    """Output file -> the benchmark of the job writing it: Snakemake touches both once the
    job has ended (the file first), after the job hashed the file (imexport.checksums.adopt_touch)."""
    plan = SESSION.plan
    return {
        **{k: rules.write_plane_file.benchmark.format(out=plan.outdir, key=k) for k in plan.jobs_of("file")},
        **{k: rules.assemble_file.benchmark.format(out=plan.outdir, key=k) for k in plan.assembled(is_folder=False)},
    }


def qc_category(SESSION, category):
    """A report category of one session: its name first with a sheet, so sessions do not mix
    (no colon: Snakemake makes each category an RST link target, which ends at a colon)."""
    return category if SESSION.name is None else f"{SESSION.name} - {category}"


def sessions_entries():
    """The sessions table's entries: the planned sessions, then the failed ones."""
    planned = [
        session_entry(
            SESSION.name,
            len(SESSION.plan.planes),
            len(SESSION.plan.frames),
            formats_of(SESSION.config),
            str(manifest_path(SESSION.plan.outdir)),
        )
        for SESSION in SESSIONS.planned
    ]
    return planned + [failed_entry(FAILED.name, FAILED.reason) for FAILED in SESSIONS.failed]


def print_sessions_summary():
    """The sessions table on stderr at the end of a run over a sheet."""
    if SESSIONS.sheet is not None:
        table = format_table(table_rows(sessions_entries(), run_start=RUN_START))
        print(f"imexport: sessions of {SESSIONS.sheet}:\n{table}", file=sys.stderr)


# cluster submissions (imexport.job_groups): outdir -> plane job / assembled export key -> group
PLANE_GROUPS = {
    outdir: plane_groups(SESSION.plan, SESSION.config["cluster"]["planes_per_submission"])
    for outdir, SESSION in SESSION_OF.items()
}


# With a sheet, (outdir, key) of each scan_phase job and of each assemble step outside its
# planes' group, in sheet order -> its group (imexport.job_groups); without a sheet none: a
# session alone is submitted as before.
SHEET_PER_SUBMISSION = config["cluster"]["planes_per_submission"] if SESSIONS.sheet is not None else None
PHASE_GROUPS = consecutive_groups(
    "scan_phase",
    [(SESSION.plan.outdir, view) for SESSION in SESSIONS.planned for view in SESSION.plan.phase_views()],
    SHEET_PER_SUBMISSION,
)
ASSEMBLE_GROUPS = consecutive_groups(
    "assemble",
    [
        (SESSION.plan.outdir, export.key)
        for SESSION in SESSIONS.planned
        for export in SESSION.plan.exports
        if export.assembled and export.key not in PLANE_GROUPS[SESSION.plan.outdir]
    ],
    SHEET_PER_SUBMISSION,
)


def job_group(wildcards):
    """The group a cluster executor submits this plane or assemble job with (None: alone)."""
    groups = PLANE_GROUPS[wildcards.out]
    if wildcards.key in groups:
        return span_group(workflow.group_settings, groups[wildcards.key], groups)
    return span_group(workflow.group_settings, ASSEMBLE_GROUPS.get((wildcards.out, wildcards.key)), ASSEMBLE_GROUPS)


def phase_group(SESSION):
    """The group of the scan_phase jobs of ``SESSION`` (a rule made per session)."""
    return lambda w: span_group(workflow.group_settings, PHASE_GROUPS.get((SESSION.plan.outdir, w.view)), PHASE_GROUPS)
