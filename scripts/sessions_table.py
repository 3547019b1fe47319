"""Snakemake script: the sessions table of a run over a sessions sheet (rule sessions_table)."""

from imexport.qc.sessions import write_sessions_table
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    write_sessions_table(snakemake.params.entries, snakemake.output.tsv, snakemake.output.page)  # noqa: F821
