"""Snakemake script: page index of the raw acquisition, shared by all plane jobs."""

from imexport.steps import index_source
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    index_source(snakemake.params.info, snakemake.output.source, snakemake.output.index)  # noqa: F821
