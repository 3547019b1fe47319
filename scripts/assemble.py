"""Snakemake script: an export's product from its plane jobs' outputs (its format's assemble step)."""

from imexport.jobs import Export
from imexport.steps import assemble_export
from imexport.user_errors import job

with job(snakemake.log[0]):  # noqa: F821 - snakemake is injected by Snakemake
    assemble_export(
        Export.from_dict(snakemake.params.export),
        list(snakemake.input.planes),
        snakemake.params.plane_metadata,  # noqa: F821
        checksums=snakemake.params.checksums,  # noqa: F821
    )
