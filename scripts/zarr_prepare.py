"""Snakemake script: create the temporary zarr store the plane jobs fill."""
from imexport.steps import prepare_zarr, setup_logging

setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
p = snakemake.params  # noqa: F821
prepare_zarr(p.export, p.n_frames, p.n_colors, p.n_planes, p.frame_shape, p.dtype, p.target_chunk_mb)
