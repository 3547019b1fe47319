# The record files of one view share their names across views (zplaneNN.json).
PHASE_OUTPUTS = sorted({f"{WORK}/scan_phase/{{view}}/{Path(p).name}" for p in PLAN.phase_tasks})


# Corrections computed once and recorded: the scan-phase offset of each plane (per ROI
# view) and the axial plane shifts of each view. Plane jobs apply the phase offsets and
# copy both records into their metadata.


rule scan_phase:
    input:
        unpack(step_inputs("scan_phase", "view")),
    output:
        PHASE_OUTPUTS,
    log:
        f"{WORK}/logs/scan_phase/{{view}}.log",
    benchmark:
        f"{WORK}/benchmarks/scan_phase/{{view}}.tsv"
    wildcard_constraints:
        view=keys_regex(PIPELINE.keys("scan_phase")),
    # Every plane job waits for this one: it goes first (priority), and leaves one core
    # to checksum_inputs, which would otherwise hold it back until the inputs are hashed.
    priority: 50
    conda:
        "../../envs/imexport.yaml"
    threads: all_cores_but_one(at_most=4)
    resources:
        mem_mb=plane_job_mem_mb,
    params:
        tasks=lambda w: [PLAN.phase_tasks[p] for p in PLAN.phase_views()[w.view]],
    script:
        "../../scripts/scan_phase.py"


rule axial_shifts:
    input:
        unpack(step_inputs("axial_shifts", "record")),
    output:
        f"{WORK}/{{record}}",
    log:
        f"{WORK}/logs/{{record}}.log",
    benchmark:
        f"{WORK}/benchmarks/{{record}}.tsv"
    wildcard_constraints:
        record=keys_regex(PIPELINE.keys("axial_shifts")),
    priority: 50  # the plane jobs of its view wait for it
    conda:
        "../../envs/imexport.yaml"
    resources:
        mem_mb=plane_job_mem_mb,
        gpu=1 if str(RESOLVED["axial"]["gpu"]).lower() == "true" else 0,
    params:
        task=lambda w: PLAN.axial_tasks[f"{WORK}/{w.record}"],
    script:
        "../../scripts/axial_shifts.py"
