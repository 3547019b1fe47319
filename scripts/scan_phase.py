"""Snakemake script: scan-phase offset of one plane (one ROI view)."""
from imexport.steps import scan_phase, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
scan_phase(snakemake.params.task, snakemake.input.source, snakemake.input.index, snakemake.output[0])  # noqa: F821
