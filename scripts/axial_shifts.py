"""Snakemake script: axial plane shifts of one view (stitched, or one ROI)."""
from imexport.steps import axial_shifts, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
axial_shifts(snakemake.params.task, snakemake.input.source, snakemake.input.index, snakemake.output[0])  # noqa: F821
