# imexport: raw ScanImage acquisitions -> TIFF / Suite2p / Zarr / HDF5, one job per plane.
# The plan (which outputs, which plane jobs) is built from the config and the raw headers
# while the DAG is built; the imexport package does all the work.
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config" / "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/inspect.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/write.smk"


rule all:
    default_target: True
    input:
        PLAN.final_outputs(),


onsuccess:
    print(f"imexport: {len(PLAN.final_outputs())} output(s) in {Path(PLAN.outdir).resolve()}")
