"""Snakemake script: pyramid levels, plane metadata, and the atomic move into place."""
from imexport.steps import finalize_zarr, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
finalize_zarr(snakemake.params.export, checksums=snakemake.params.checksums)  # noqa: F821
