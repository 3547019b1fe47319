"""Snakemake script: embed the processing history in every output, write the manifest."""

from imexport.history import record_history
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    record_history(snakemake.params.spec)  # noqa: F821
