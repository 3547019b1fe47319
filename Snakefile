# imexport: raw ScanImage acquisitions -> TIFF / Suite2p / Zarr / HDF5, one job per plane.
# The plan (which outputs, which plane jobs) is built from the config and the raw headers
# while the DAG is built; the imexport package does all the work.
import sys
import threading
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config" / "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/guard.smk"
include: "workflow/rules/inspect.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/write.smk"
include: "workflow/rules/history.smk"
include: "workflow/rules/qc.smk"


rule all:
    default_target: True
    input:
        PLAN.final_outputs(),
        MANIFEST,
        QC_TARGETS,


# Before the first job of a real run (never a dry run; jobs spawned on a cluster get
# --no-hooks): remove temporaries of killed jobs and, with overwrite: true, the outputs
# this run replaces or no longer makes (imexport.guard).
onstart:
    for removed in prepare_outdir(PLAN, OUTPUT_RECORDS, RESOLVED["overwrite"]):
        print(f"imexport: removed {removed}", file=sys.stderr)


onsuccess:
    print(f"imexport: {len(PLAN.final_outputs())} output(s) in {Path(PLAN.outdir).resolve()}")
    # Snakemake's job-rate limiter leaves one-second timers behind that the interpreter
    # waits for at exit: every run would end up to 1 s late. Scheduling is over here.
    for timer in threading.enumerate():
        if isinstance(timer, threading.Timer):
            timer.cancel()
