# Source side: the optional demo acquisition, then one page index for all plane jobs.
from imexport.demo import demo_active, demo_files, demo_spec_settings


localrules:
    index_source,
    prepare_store,
    prepare_store_file,


if demo_active(RESOLVED):

    localrules:
        make_demo,

    rule make_demo:
        output:
            [str(p.resolve()) for p in demo_files(RESOLVED)],
        params:
            spec=demo_spec_settings(RESOLVED),
            folder=RESOLVED["demo"]["folder"],
        log:
            f"{WORK}/logs/make_demo.log",
        conda:
            "../../envs/imexport.yaml"
        script:
            "../../scripts/make_demo.py"


rule index_source:
    input:
        unpack(step_inputs("index_source", None)),
    output:
        source=SOURCE_JSON,
        index=PAGE_INDEX,
    params:
        info=PLAN.source.to_json(),
    priority: 50  # every later job waits for the index
    log:
        f"{WORK}/logs/index_source.log",
    benchmark:
        f"{WORK}/benchmarks/index_source.tsv"
    conda:
        "../../envs/imexport.yaml"
    script:
        "../../scripts/index_source.py"
