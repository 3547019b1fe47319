# Processing history (imexport.history): once every output is written, one step is
# recorded inside every output and in the run manifest. A localrule: it hashes files and
# rewrites small metadata only. Its output is the manifest (and the TIFF sidecars),
# written after the outputs it embeds the history in, so the next run has nothing to do.
from imexport.history import history_spec, manifest_path, sidecar_path

MANIFEST = str(manifest_path(OUT))


# rule -> the wildcards of its planned jobs, and from them (with the rules' own patterns)
# rule -> the benchmark files of its planned jobs
BENCHMARK_WILDCARDS = {
    "index_source": [{}],
    "scan_phase": [{"view": v} for v in PLAN.phase_views()],
    "axial_shifts": [{"record": str(Path(p).relative_to(WORK))} for p in PLAN.axial_tasks],
    **{f"write_plane_{kind}": [{"key": k} for k in PLAN.jobs_of(kind)] for kind in ("file", "folder", "intermediate", "slab")},
    "assemble_tiff_volume": [{"key": k} for k in PLAN.exports_of("tiff_volume")],
    "assemble_h5": [{"key": k} for k in PLAN.exports_of("h5")],
    "zarr_finalize": [{"key": k} for k in PLAN.exports_of("zarr")],
}
BENCHMARKS = {
    name: [getattr(rules, name).benchmark.format(**w) for w in jobs] for name, jobs in BENCHMARK_WILDCARDS.items() if jobs
}


localrules:
    history,


rule history:
    input:
        outputs=[f"{OUT}/{p}" for r in OUTPUT_RECORDS.values() for p in r["paths"]],
        corrections=[*PLAN.phase_tasks, *PLAN.axial_tasks],
        benchmarks=[p for paths in BENCHMARKS.values() for p in paths],
    output:
        manifest=MANIFEST,
        sidecars=[str(sidecar_path(e.path)) for e in PLAN.exports if e.format == "tiff"],
    params:
        spec=history_spec(PLAN, RESOLVED, OUTPUT_RECORDS, BENCHMARKS),
    log:
        f"{WORK}/logs/history.log",
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/history.py"
