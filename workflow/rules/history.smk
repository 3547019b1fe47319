# Processing history (imexport.history): once every output is written, one step is
# recorded inside every output and in the run manifest. A localrule: it looks up the
# digests the writers and checksum_inputs left in the session's digest cache, hashes the
# few files not there (the ones it rewrites) and rewrites small metadata only. Its output
# is the manifest (and the TIFF sidecars), written after the outputs it embeds the history
# in, so the next run has nothing to do. One history rule per session: its outputs (the
# sidecars) differ between sessions.
from imexport.checksums import CACHE_FOLDER
from imexport.formats import FORMATS
from imexport.history import history_spec


# The input files' digests, listed from the digest cache planning filled
# (imexport.input_content); only a file changed since planning is read again, and the
# demo's acquisition, which this run writes. A localrule: a lookup is no cluster job.
rule checksum_inputs:
    input:
        lambda w: [ancient(f) for f in plan_of(w).source.files],  # a touch is no change; a new content is
        content_record,
    output:
        f"{WORK}/{CACHE_FOLDER}/inputs.json",
    log:
        f"{WORK}/logs/checksum_inputs.log",
    benchmark:
        f"{WORK}/benchmarks/checksum_inputs.tsv"
    wildcard_constraints:
        out=keys_regex(SESSION_OF),
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    threads: 1  # beside one plane job: two threads would hold back every plane job until it ends
    resources:
        io_slots=1,  # where it hashes (the demo, a changed file) it reads raw files, like a plane job
    params:
        source_files=lambda w: list(plan_of(w).source.files),
        checksums=lambda w, output: str(Path(output[0]).parent),  # the digest cache
    script:
        "../../scripts/checksum_inputs.py"


BENCHMARKS = {outdir: benchmarks_of(SESSION) for outdir, SESSION in SESSION_OF.items()}
MANIFESTS = [str(manifest_path(outdir)) for outdir in SESSION_OF]

for SESSION in SESSIONS.planned:

    rule:
        name:
            session_rule_name("history", SESSION)
        input:
            outputs=[f"{SESSION.plan.outdir}/{p}" for r in SESSION.records.values() for p in r["paths"]],
            input_checksums=f"{SESSION.plan.work}/{CACHE_FOLDER}/inputs.json",
            corrections=[*SESSION.plan.phase_tasks, *SESSION.plan.axial_tasks],
            benchmarks=[p for paths in BENCHMARKS[SESSION.plan.outdir].values() for p in paths],
        output:
            manifest=str(manifest_path(SESSION.plan.outdir)),
            sidecars=[str(p) for e in SESSION.plan.exports for p in FORMATS[e.format].history_sidecars(e.path)],
        log:
            f"{SESSION.plan.work}/logs/history.log",
        localrule: True
        conda:
            "../../envs/imexport.yaml"
        params:
            spec=history_spec(SESSION.plan, SESSION.config, SESSION.records, BENCHMARKS[SESSION.plan.outdir], touched_of(SESSION)),
        script:
            "../../scripts/history.py"
