"""Snakemake script: join per-plane TIFFs into one ImageJ hyperstack."""
from imexport.steps import assemble_tiff_volume, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
assemble_tiff_volume(
    snakemake.params.export, list(snakemake.input.planes), snakemake.params.target_chunk_mb,  # noqa: F821
    checksums=snakemake.params.checksums,  # noqa: F821
)
