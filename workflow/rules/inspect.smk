# Source side: the optional demo acquisition, then one page index for all plane jobs.
from imexport.demo import demo_active, demo_files, demo_spec_settings

if demo_active(RESOLVED):

    rule make_demo:
        output:
            [str(p.resolve()) for p in demo_files(RESOLVED)],
        log:
            f"{WORK}/logs/make_demo.log",
        localrule: True
        conda:
            "../../envs/imexport.yaml"
        params:
            spec=demo_spec_settings(RESOLVED),
            folder=RESOLVED["demo"]["folder"],
        script:
            "../../scripts/make_demo.py"


# A touch of an input is no change (ancient): a new content is, through INPUT_CONTENT.
rule index_source:
    input:
        unpack(lambda w: {k: ancient(v) for k, v in PIPELINE.inputs("index_source", "").items()}),
        content=INPUT_CONTENT,
    output:
        source=SOURCE_JSON,
        index=PAGE_INDEX,
    log:
        f"{WORK}/logs/index_source.log",
    benchmark:
        f"{WORK}/benchmarks/index_source.tsv"
    priority: 50  # every later job waits for the index
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        info=PLAN.source.to_json(),
    script:
        "../../scripts/index_source.py"
