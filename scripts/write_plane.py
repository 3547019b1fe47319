"""Snakemake script: write one plane (one output of one format)."""

from imexport.jobs import PlaneJob
from imexport.steps import write_plane
from imexport.user_errors import job

with job(snakemake.log[0], snakemake.params.debug):  # noqa: F821 - snakemake is injected by Snakemake
    write_plane(
        PlaneJob.from_dict(snakemake.params.job),
        snakemake.input.source,
        snakemake.input.index,  # noqa: F821
        show_progress=snakemake.params.show_progress,
        checksums=snakemake.params.checksums,  # noqa: F821
    )
