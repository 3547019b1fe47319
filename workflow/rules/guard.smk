# The outputs this workflow owns (imexport.guard): one record per output with the
# output's fingerprint (settings and input digests) in its name, written before anything
# writes that output, and the overwrite check, made while the DAG is built so a conflict
# stops the run before any job. The output folder is tidied by the Snakefile's onstart handler.
from imexport.demo import demo_active
from imexport.guard import OverwriteError, check_overwrite, planned_records, prepare_outdir, record_text
from imexport.input_content import content_record_path, content_record_text, input_digests
from imexport.pipeline import Pipeline
from imexport.user_errors import say

# only inputs changed since they were last hashed are read (imexport.input_content)
INPUT_DIGESTS = input_digests(PLAN, demo_active(RESOLVED), say if workflow.is_main_process else None)
# named after the inputs' content: a new content indexes the inputs again, a touch does not
INPUT_CONTENT = str(content_record_path(WORK, INPUT_DIGESTS))
OUTPUT_RECORDS = planned_records(PLAN, INPUT_DIGESTS)
RECORDS_DIR = f"{WORK}/records"
RECORD_TEXT = {str(Path(r["record"]).relative_to(RECORDS_DIR)): record_text(r) for r in OUTPUT_RECORDS.values()}
# every step with what it needs and makes (the rules' inputs; the in-process API runs it too)
PIPELINE = Pipeline(PLAN, {key: record["record"] for key, record in OUTPUT_RECORDS.items()})

try:
    check_overwrite(PLAN, OUTPUT_RECORDS, RESOLVED["overwrite"], INPUT_DIGESTS)
except OverwriteError as error:
    stop_run(error)


rule output_record:
    output:
        f"{RECORDS_DIR}/{{record}}",
    log:
        f"{WORK}/logs/records/{{record}}.log",
    wildcard_constraints:
        record="|".join(re.escape(k) for k in RECORD_TEXT) or "(?!)",
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        text=lambda w: RECORD_TEXT[w.record],
    shell:
        "printf '%s\\n' {params.text:q} > {output:q} 2> {log:q}"


rule input_content:
    output:
        INPUT_CONTENT,
    log:
        f"{WORK}/logs/records/input_content.log",
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        text=content_record_text(INPUT_DIGESTS),
    shell:
        "printf '%s\\n' {params.text:q} > {output:q} 2> {log:q}"
