"""Snakemake script: axial plane shifts of one view (stitched, or one ROI)."""

from imexport.steps import axial_shifts
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    axial_shifts(snakemake.params.task, snakemake.input.source, snakemake.input.index, snakemake.output[0], snakemake.threads)  # noqa: F821
