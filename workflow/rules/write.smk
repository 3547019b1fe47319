# One job per output plane (x ROI x format), then the steps some formats add around them:
# a prepare step creating a temporary store the plane jobs fill, an assemble step making
# the product from the plane jobs' outputs. Which export has which is the format's
# layout (imexport.formats); these rules name no format.
# What each job needs is imexport.pipeline's description, which the in-process API runs too.
# Every writer is atomic: it writes a hidden temporary sibling and renames it into place
# as its last step. Every job writing an output depends on that output's record
# (guard.smk), so a changed fingerprint rewrites the output.


rule write_plane_file:
    input:
        unpack(step_inputs("write_plane_file")),
    output:
        f"{OUT}/{{key}}",
    log:
        f"{WORK}/logs/write/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/write/{{key}}.tsv"
    wildcard_constraints:
        **step_wildcards("write_plane_file"),
    group:
        job_group
    conda:
        "../../envs/imexport.yaml"
    resources:
        mem_mb=plane_job_mem_mb(),
        io_slots=1,
    params:
        job=plane_job,
        debug=lambda w: session(w).config["debug"],
        show_progress=lambda w: session(w).config["show_progress"],
        checksums=checksums_folder,
    script:
        "../../scripts/write_plane.py"


# The other plane writers differ from write_plane_file only in what they produce
# (imexport.jobs.OUTPUT_TYPES; intermediates and slabs are temporary).
use rule write_plane_file as write_plane_folder with:
    input:
        unpack(step_inputs("write_plane_folder")),
    output:
        directory(f"{OUT}/{{key}}"),
    wildcard_constraints:
        **step_wildcards("write_plane_folder"),


use rule write_plane_file as write_plane_intermediate with:
    input:
        unpack(step_inputs("write_plane_intermediate")),
    output:
        temp(f"{OUT}/{{key}}"),
    wildcard_constraints:
        **step_wildcards("write_plane_intermediate"),


use rule write_plane_file as write_plane_slab with:
    input:
        unpack(step_inputs("write_plane_slab")),
    output:
        temp(f"{OUT}/{{key}}"),
    wildcard_constraints:
        **step_wildcards("write_plane_slab"),


rule prepare_store:
    input:
        unpack(step_inputs("prepare_store", "store")),
    output:
        temp(directory(f"{WORK}/{{store}}")),
        temp(f"{WORK}/{{store}}.ready"),  # imexport.jobs.store_ready
    log:
        f"{WORK}/logs/prepare/{{store}}.log",
    wildcard_constraints:
        **step_wildcards("prepare_store", "store"),
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        export=lambda w: export_of_store(w).to_dict(),
    script:
        "../../scripts/prepare_store.py"


use rule prepare_store as prepare_store_file with:
    input:
        unpack(step_inputs("prepare_store_file", "store")),
    output:
        temp(f"{WORK}/{{store}}"),
        temp(f"{WORK}/{{store}}.ready"),  # imexport.jobs.store_ready
    wildcard_constraints:
        **step_wildcards("prepare_store_file", "store"),


rule assemble_file:
    input:
        unpack(step_inputs("assemble_file")),
    output:
        f"{OUT}/{{key}}",
    log:
        f"{WORK}/logs/assemble/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/assemble/{{key}}.tsv"
    wildcard_constraints:
        **step_wildcards("assemble_file"),
    group:
        job_group
    conda:
        "../../envs/imexport.yaml"
    resources:
        mem_mb=plane_job_mem_mb(),
    params:
        export=export_spec,
        plane_metadata=export_plane_metadata,
        checksums=checksums_folder,
    script:
        "../../scripts/assemble.py"


use rule assemble_file as assemble_folder with:
    input:
        unpack(step_inputs("assemble_folder")),
    output:
        directory(f"{OUT}/{{key}}"),
    log:
        f"{WORK}/logs/assemble_folder/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/assemble_folder/{{key}}.tsv"
    wildcard_constraints:
        **step_wildcards("assemble_folder"),
