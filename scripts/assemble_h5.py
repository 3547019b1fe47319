"""Snakemake script: the HDF5 master file, a virtual dataset over the plane files."""
from imexport.steps import assemble_h5, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
assemble_h5(
    snakemake.params.export, list(snakemake.input.planes), snakemake.params.plane_metadata,  # noqa: F821
    checksums=snakemake.params.checksums,  # noqa: F821
)
