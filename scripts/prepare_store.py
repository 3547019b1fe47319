"""Snakemake script: the temporary store an export's plane jobs fill (its format's prepare step)."""

from imexport.jobs import Export
from imexport.steps import prepare_export
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    prepare_export(Export.from_dict(snakemake.params.export))  # noqa: F821
