"""Snakemake script: generate the embedded demo acquisition."""

from imexport.steps import make_demo
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    make_demo(snakemake.params.spec, snakemake.params.folder)  # noqa: F821
