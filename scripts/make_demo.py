"""Snakemake script: generate the embedded demo acquisition."""
from imexport.steps import make_demo, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
make_demo(snakemake.params.spec, snakemake.params.folder)  # noqa: F821
