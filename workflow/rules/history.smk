# Processing history (imexport.history): once every output is written, one step is
# recorded inside every output and in the run manifest. A localrule: it looks up the
# digests the writers and checksum_inputs left in the cache CHECKSUMS, hashes the few
# files not there (the ones it rewrites) and rewrites small metadata only. Its output is
# the manifest (and the TIFF sidecars), written after the outputs it embeds the history
# in, so the next run has nothing to do.
from imexport.formats import FORMATS
from imexport.history import history_spec, manifest_path
from imexport.jobs import OUTPUT_TYPES

MANIFEST = str(manifest_path(OUT))
INPUT_CHECKSUMS = f"{CHECKSUMS}/inputs.json"


# The input files' digests, listed from the digest cache planning filled
# (imexport.input_content); only a file changed since planning is read again.
rule checksum_inputs:
    input:
        ancient(PLAN.source.files),  # a touch is no change; a new content is (INPUT_CONTENT)
        INPUT_CONTENT,
    output:
        INPUT_CHECKSUMS,
    log:
        f"{WORK}/logs/checksum_inputs.log",
    benchmark:
        f"{WORK}/benchmarks/checksum_inputs.tsv"
    conda:
        "../../envs/imexport.yaml"
    threads: 1  # beside one plane job: two threads would hold back every plane job until it ends
    resources:
        io_slots=1,  # it reads the raw files, like a plane job
    params:
        source_files=list(PLAN.source.files),
        checksums=lambda w, output: str(Path(output[0]).parent),  # CHECKSUMS
    script:
        "../../scripts/checksum_inputs.py"


# rule -> the wildcards of its planned jobs, and from them (with the rules' own patterns)
# rule -> the benchmark files of its planned jobs
BENCHMARK_WILDCARDS = {
    "index_source": [{}],
    "checksum_inputs": [{}],
    "scan_phase": [{"view": v} for v in PLAN.phase_views()],
    "axial_shifts": [{"record": str(Path(p).relative_to(WORK))} for p in PLAN.axial_tasks],
    **{f"write_plane_{output}": [{"key": k} for k in PLAN.jobs_of(output)] for output in OUTPUT_TYPES},
    "assemble_file": [{"key": k} for k in PLAN.assembled(is_folder=False)],
    "assemble_folder": [{"key": k} for k in PLAN.assembled(is_folder=True)],
}
BENCHMARKS = {
    name: [getattr(rules, name).benchmark.format(**w) for w in jobs] for name, jobs in BENCHMARK_WILDCARDS.items() if jobs
}
# output file -> the benchmark of the job writing it: Snakemake touches both once the job
# has ended (the file first), after the job hashed the file (imexport.checksums.adopt_touch)
TOUCHED = {
    **{k: rules.write_plane_file.benchmark.format(key=k) for k in PLAN.jobs_of("file")},
    **{k: rules.assemble_file.benchmark.format(key=k) for k in PLAN.assembled(is_folder=False)},
}


rule history:
    input:
        outputs=[f"{OUT}/{p}" for r in OUTPUT_RECORDS.values() for p in r["paths"]],
        input_checksums=INPUT_CHECKSUMS,
        corrections=[*PLAN.phase_tasks, *PLAN.axial_tasks],
        benchmarks=[p for paths in BENCHMARKS.values() for p in paths],
    output:
        manifest=MANIFEST,
        sidecars=[str(p) for e in PLAN.exports for p in FORMATS[e.format].history_sidecars(e.path)],
    log:
        f"{WORK}/logs/history.log",
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        spec=history_spec(PLAN, RESOLVED, OUTPUT_RECORDS, BENCHMARKS, TOUCHED),
    script:
        "../../scripts/history.py"
