"""Snakemake script: embed the processing history in every output, write the manifest."""
from imexport.history import record_history
from imexport.steps import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
record_history(snakemake.params.spec)  # noqa: F821
