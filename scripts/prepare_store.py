"""Snakemake script: the temporary store an export's plane jobs fill (its format's prepare step)."""
from imexport.jobs import Export
from imexport.steps import prepare_export, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
prepare_export(Export.from_dict(snakemake.params.export))  # noqa: F821
