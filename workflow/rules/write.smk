# One job per output plane (x ROI x format). Every writer is atomic: it writes a hidden
# temporary sibling and renames it into place as its last step.


rule write_plane_file:
    input:
        source=SOURCE_JSON,
        index=PAGE_INDEX,
    output:
        f"{OUT}/{{key}}",
    wildcard_constraints:
        key=keys_regex("file"),
    params:
        job=plane_job,
        debug=RESOLVED["debug"],
        show_progress=RESOLVED["show_progress"],
    resources:
        mem_mb=plane_job_mem_mb,
    log:
        f"{WORK}/logs/write/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/write/{{key}}.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/write_plane.py"


rule write_plane_folder:
    input:
        source=SOURCE_JSON,
        index=PAGE_INDEX,
    output:
        directory(f"{OUT}/{{key}}"),
    wildcard_constraints:
        key=keys_regex("folder"),
    params:
        job=plane_job,
        debug=RESOLVED["debug"],
        show_progress=RESOLVED["show_progress"],
    resources:
        mem_mb=plane_job_mem_mb,
    log:
        f"{WORK}/logs/write/{{key}}.log",
    benchmark:
        f"{WORK}/benchmarks/write/{{key}}.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/write_plane.py"
