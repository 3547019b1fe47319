"""Snakemake script: scan-phase offsets of the planes of one view (stitched, or one ROI)."""

from imexport.steps import scan_phase
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    scan_phase(snakemake.params.tasks, snakemake.input.source, snakemake.input.index, list(snakemake.output), snakemake.threads)  # noqa: F821
