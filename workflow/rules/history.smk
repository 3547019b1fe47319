# Processing history (imexport.history): once every output is written, one step is
# recorded inside every output and in the run manifest. A localrule: it looks up the
# digests planning (inputs) and the writers (outputs) left in the session's digest cache,
# hashes the few files not there (the ones it rewrites, the demo's acquisition, an input
# changed since planning) and rewrites small metadata only. Its output
# is the manifest (and the TIFF sidecars), written after the outputs it embeds the history
# in, so the next run has nothing to do. One history rule per session: its outputs (the
# sidecars) differ between sessions.
from imexport.formats import FORMATS
from imexport.history import history_spec

BENCHMARKS = {outdir: benchmarks_of(SESSION) for outdir, SESSION in SESSION_OF.items()}
MANIFESTS = [str(manifest_path(outdir)) for outdir in SESSION_OF]

for SESSION in SESSIONS.planned:

    rule:
        name:
            session_rule_name("history", SESSION)
        input:
            outputs=[f"{SESSION.plan.outdir}/{p}" for r in SESSION.records.values() for p in r["paths"]],
            sources=[ancient(f) for f in SESSION.plan.source.files],  # a touch is no change; a new content is
            content=str(content_record_path(SESSION.plan.work, SESSION.digests)),
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
