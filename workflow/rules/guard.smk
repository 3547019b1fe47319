# The outputs this workflow owns (imexport.guard): one record per output with the
# output's fingerprint in its name, written before anything writes that output, and
# the overwrite check, made while the DAG is built so a conflict stops the run before
# any job. The output folder is tidied by the Snakefile's onstart handler.
from imexport.guard import OverwriteError, check_overwrite, planned_records, prepare_outdir, record_text

OUTPUT_RECORDS = planned_records(PLAN)
RECORDS_DIR = f"{WORK}/records"
RECORD_TEXT = {str(Path(r["record"]).relative_to(RECORDS_DIR)): record_text(r) for r in OUTPUT_RECORDS.values()}
# job key (a plane job, or an export's assembly) -> the record of the output it writes into
RECORD_OF = {
    key: OUTPUT_RECORDS[export.key]["record"] for export in PLAN.exports for key in (export.key, *export.plane_jobs)
}

try:
    check_overwrite(PLAN, OUTPUT_RECORDS, RESOLVED["overwrite"])
except OverwriteError as error:
    raise WorkflowError(f"imexport: {error}") from None


localrules:
    output_record,


rule output_record:
    output:
        f"{RECORDS_DIR}/{{record}}",
    wildcard_constraints:
        record="|".join(re.escape(k) for k in RECORD_TEXT) or "(?!)",
    params:
        text=lambda w: RECORD_TEXT[w.record],
    log:
        f"{WORK}/logs/records/{{record}}.log",
    conda:
        "../../envs/imexport.yaml"
    shell:
        "printf '%s\\n' {params.text:q} > {output:q} 2> {log:q}"
