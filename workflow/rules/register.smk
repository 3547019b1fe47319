# Corrections computed once and recorded: the scan-phase offset of each plane (per ROI
# view) and the axial plane shifts of each view. Plane jobs apply the phase offsets and
# copy both records into their metadata.


# One scan_phase rule per session: its outputs, the records of a view (zplaneNN.json,
# their names shared across views), are as many as the session's planes.
for SESSION in SESSIONS.planned:
    if not SESSION.plan.phase_tasks:
        continue

    rule:
        name:
            session_rule_name("scan_phase", SESSION)
        input:
            unpack(step_inputs("scan_phase", "view", SESSION)),
        output:
            sorted({f"{SESSION.plan.work}/scan_phase/{{view}}/{Path(p).name}" for p in SESSION.plan.phase_tasks}),
        log:
            f"{SESSION.plan.work}/logs/scan_phase/{{view}}.log",
        benchmark:
            f"{SESSION.plan.work}/benchmarks/scan_phase/{{view}}.tsv"
        wildcard_constraints:
            view=keys_regex(SESSION.pipeline.keys("scan_phase")),
        # Every plane job waits for this one: it goes first (priority) and takes every core.
        priority: 50
        group:
            phase_group(SESSION)
        conda:
            "../../envs/imexport.yaml"
        threads: all_cores(at_most=4)
        # Cluster settings here, not in the profile's set-resources: with a sheet the rule is
        # named per session. Usually a minute or two (generous for slow file systems); the
        # FFT cross-correlation is effectively single-threaded.
        resources:
            mem_mb=plane_job_mem_mb(SESSION),
            runtime=30,
            cpus_per_task=1,
        params:
            tasks=phase_tasks(SESSION),
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
        **step_wildcards("axial_shifts", "record"),
    priority: 50  # the plane jobs of its view wait for it
    conda:
        "../../envs/imexport.yaml"
    threads: all_cores(at_most=4)  # planes averaged in parallel
    resources:
        mem_mb=plane_job_mem_mb(),
        gpu=lambda w: 1 if str(session(w).config["axial"]["gpu"]).lower() == "true" else 0,
    params:
        task=lambda w: plan_of(w).axial_tasks[f"{plan_of(w).work}/{w.record}"],
    script:
        "../../scripts/axial_shifts.py"
