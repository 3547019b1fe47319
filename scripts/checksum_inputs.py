"""Snakemake script: hash the input files into the digest cache, beside the plane jobs."""

from imexport.steps import checksum_inputs
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    checksum_inputs(
        snakemake.params.source_files,
        snakemake.params.checksums,
        snakemake.output[0],
        snakemake.threads,  # noqa: F821
    )
