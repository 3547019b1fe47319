"""Snakemake script: page index of the raw acquisition, shared by all plane jobs."""
from imexport.steps import index_source, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
index_source(snakemake.params.info, snakemake.output.source, snakemake.output.index)  # noqa: F821
