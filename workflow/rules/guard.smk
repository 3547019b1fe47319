# The outputs this workflow owns (imexport.guard): one record per output with the
# output's fingerprint (settings and input digests) in its name, written before anything writes that output. The
# records and the overwrite check were made with each session's plan (imexport.sessions),
# so a conflict stops the run before any job. Each output folder is tidied by the
# Snakefile's onstart handler.
from imexport.guard import prepare_outdir, record_text
from imexport.input_content import CONTENT_RECORD, content_record_text

RECORDS_DIR = f"{WORK}/records"
# outdir -> record file (relative to its records folder) -> its text
RECORD_TEXTS = {
    outdir: {
        str(Path(r["record"]).relative_to(Path(SESSION.plan.work) / "records")): record_text(r) for r in SESSION.records.values()
    }
    for outdir, SESSION in SESSION_OF.items()
}


rule output_record:
    output:
        f"{RECORDS_DIR}/{{record}}",
    log:
        f"{WORK}/logs/records/{{record}}.log",
    wildcard_constraints:
        **session_wildcards(lambda SESSION: RECORD_TEXTS[SESSION.plan.outdir], "record"),
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        text=lambda w: RECORD_TEXTS[w.out][w.record],
    shell:
        "printf '%s\\n' {params.text:q} > {output:q} 2> {log:q}"


rule input_content:
    output:
        f"{WORK}/{CONTENT_RECORD}.{{content}}.json",
    log:
        f"{WORK}/logs/records/input_content.{{content}}.log",
    wildcard_constraints:
        out=keys_regex(SESSION_OF),
        content="[0-9a-f]+",
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        text=lambda w: content_record_text(session(w).digests),
    shell:
        "printf '%s\\n' {params.text:q} > {output:q} 2> {log:q}"
