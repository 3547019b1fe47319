"""Snakemake script: QC figures and tables for `snakemake --report` (rule qc)."""

from imexport.qc import write_qc
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    write_qc(
        snakemake.params.config,  # noqa: F821
        snakemake.input.source,
        snakemake.input.index,  # noqa: F821
        manifest=snakemake.input.manifest,
        benchmarks=list(snakemake.input.benchmarks),  # noqa: F821
        max_frames=snakemake.params.max_frames,  # noqa: F821
    )
