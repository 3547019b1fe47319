# Processing history (imexport.history): once every output is written, one step is
# recorded inside every output and in the run manifest. A localrule: it looks up the
# digests the writers and checksum_inputs left in the cache CHECKSUMS, hashes the few
# files not there (the ones it rewrites) and rewrites small metadata only. Its output is
# the manifest (and the TIFF sidecars), written after the outputs it embeds the history
# in, so the next run has nothing to do.
from imexport.history import history_spec, manifest_path, sidecar_path

MANIFEST = str(manifest_path(OUT))
INPUT_CHECKSUMS = f"{CHECKSUMS}/inputs.json"


# The input files hashed into the digest cache while the plane jobs run (no plane job
# waits for it); unchanged files already in the cache are not read again.
rule checksum_inputs:
    input:
        PLAN.source.files,
    output:
        INPUT_CHECKSUMS,
    params:
        source_files=list(PLAN.source.files),
        checksums=lambda w, output: str(Path(output[0]).parent),  # CHECKSUMS
    threads: 1  # beside one plane job: two threads would hold back every plane job until it ends
    resources:
        io_slots=1,  # it reads the raw files, like a plane job
    log:
        f"{WORK}/logs/checksum_inputs.log",
    benchmark:
        f"{WORK}/benchmarks/checksum_inputs.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/checksum_inputs.py"


# rule -> the wildcards of its planned jobs, and from them (with the rules' own patterns)
# rule -> the benchmark files of its planned jobs
BENCHMARK_WILDCARDS = {
    "index_source": [{}],
    "checksum_inputs": [{}],
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
# output file -> the benchmark of the job writing it: Snakemake touches both once the job
# has ended (the file first), after the job hashed the file (imexport.checksums.adopt_touch)
TOUCHED = {
    **{k: rules.write_plane_file.benchmark.format(key=k) for k in PLAN.jobs_of("file")},
    **{k: rules.assemble_tiff_volume.benchmark.format(key=k) for k in PLAN.exports_of("tiff_volume")},
    **{k: rules.assemble_h5.benchmark.format(key=k) for k in PLAN.exports_of("h5")},
}


localrules:
    history,


rule history:
    input:
        outputs=[f"{OUT}/{p}" for r in OUTPUT_RECORDS.values() for p in r["paths"]],
        input_checksums=INPUT_CHECKSUMS,
        corrections=[*PLAN.phase_tasks, *PLAN.axial_tasks],
        benchmarks=[p for paths in BENCHMARKS.values() for p in paths],
    output:
        manifest=MANIFEST,
        sidecars=[str(sidecar_path(e.path)) for e in PLAN.exports if e.format == "tiff"],
    params:
        spec=history_spec(PLAN, RESOLVED, OUTPUT_RECORDS, BENCHMARKS, TOUCHED),
    log:
        f"{WORK}/logs/history.log",
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/history.py"
