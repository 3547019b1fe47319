"""Snakemake script: an export's product from its plane jobs' outputs (its format's assemble step)."""
from imexport.jobs import Export
from imexport.steps import assemble_export, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
assemble_export(
    Export.from_dict(snakemake.params.export), list(snakemake.input.planes), snakemake.params.plane_metadata,  # noqa: F821
    checksums=snakemake.params.checksums,  # noqa: F821
)
