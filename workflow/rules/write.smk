# One job per output plane (x ROI x format). Every writer is atomic: it writes a hidden
# temporary sibling and renames it into place as its last step.
# Every job writing an output depends on that output's record (guard.smk), so a changed
# fingerprint rewrites the output.


rule write_plane_file:
    input:
        source=SOURCE_JSON,
        index=PAGE_INDEX,
        corrections=job_correction_records,
        record=lambda w: RECORD_OF[w.key],
    output:
        f"{OUT}/{{key}}",
    wildcard_constraints:
        key=keys_regex("file"),
    params:
        job=plane_job,
        debug=RESOLVED["debug"],
        show_progress=RESOLVED["show_progress"],
        checksums=CHECKSUMS,
    resources:
        mem_mb=plane_job_mem_mb,
        io_slots=1,
    log:
        f"{WORK}/logs/write/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/write/{{key}}.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/write_plane.py"


# The other plane writers differ from write_plane_file only in what they produce.
use rule write_plane_file as write_plane_folder with:
    output:
        directory(f"{OUT}/{{key}}"),
    wildcard_constraints:
        key=keys_regex("folder"),


use rule write_plane_file as write_plane_intermediate with:
    output:
        temp(f"{OUT}/{{key}}"),
    wildcard_constraints:
        key=keys_regex("intermediate"),


rule assemble_tiff_volume:
    input:
        planes=export_plane_outputs,
        corrections=export_correction_records,
        record=lambda w: RECORD_OF[w.key],
    output:
        f"{OUT}/{{key}}",
    wildcard_constraints:
        key=exports_regex("tiff_volume"),
    params:
        export=export_spec,
        target_chunk_mb=CHUNK_MB,
        checksums=CHECKSUMS,
    resources:
        mem_mb=plane_job_mem_mb,
    log:
        f"{WORK}/logs/assemble/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/assemble/{{key}}.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/assemble_tiff_volume.py"


rule assemble_h5:
    input:
        planes=export_plane_outputs,
        corrections=export_correction_records,
        record=lambda w: RECORD_OF[w.key],
    output:
        f"{OUT}/{{key}}",
    wildcard_constraints:
        key=exports_regex("h5"),
    params:
        export=export_spec,
        plane_metadata=export_plane_metadata,
        checksums=CHECKSUMS,
    log:
        f"{WORK}/logs/assemble/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/assemble/{{key}}.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/assemble_h5.py"


rule zarr_prepare:
    input:
        export_correction_records,
        record=lambda w: RECORD_OF[w.key],
    output:
        temp(directory(f"{WORK}/zarr/{{key}}")),
    wildcard_constraints:
        key=exports_regex("zarr"),
    params:
        export=export_spec,
        n_frames=len(PLAN.frames),
        n_colors=len(PLAN.colors),
        n_planes=len(PLAN.planes),
        frame_shape=lambda w: PLAN.source.layout.output_shape(PLAN.export(w.key).roi),
        dtype=PLAN.source.dtype,
        target_chunk_mb=CHUNK_MB,
    log:
        f"{WORK}/logs/zarr_prepare/{{key}}.log",
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/zarr_prepare.py"


use rule write_plane_file as write_plane_slab with:
    input:
        source=SOURCE_JSON,
        index=PAGE_INDEX,
        store=store_of_slab,
        corrections=job_correction_records,
        record=lambda w: RECORD_OF[w.key],
    output:
        temp(f"{OUT}/{{key}}"),
    wildcard_constraints:
        key=keys_regex("slab"),


rule zarr_finalize:
    input:
        store=lambda w: PLAN.export(w.key).store,
        planes=export_plane_outputs,
    output:
        directory(f"{OUT}/{{key}}"),
    wildcard_constraints:
        key=exports_regex("zarr"),
    params:
        export=export_spec,
        checksums=CHECKSUMS,
    resources:
        mem_mb=plane_job_mem_mb,
    log:
        f"{WORK}/logs/zarr_finalize/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/zarr_finalize/{{key}}.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/zarr_finalize.py"
