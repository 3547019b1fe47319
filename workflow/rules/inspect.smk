# Source side: the optional demo acquisition, then one page index per session for all
# its plane jobs.
from imexport.demo import demo_active, demo_files, demo_spec_settings

# the sessions whose input is the demo folder: it is one folder, made once
DEMO_SESSIONS = [SESSION for SESSION in SESSIONS.planned if demo_active(SESSION.config)]

if DEMO_SESSIONS:
    DEMO_CONFIG = DEMO_SESSIONS[0].config

    rule make_demo:
        output:
            [str(p.resolve()) for p in demo_files(DEMO_CONFIG)],
        log:
            f"{DEMO_SESSIONS[0].plan.work}/logs/make_demo.log",
        localrule: True
        conda:
            "../../envs/imexport.yaml"
        params:
            spec=demo_spec_settings(DEMO_CONFIG),
            folder=DEMO_CONFIG["demo"]["folder"],
        script:
            "../../scripts/make_demo.py"


# A touch of an input is no change (ancient): a new content is, through content_record.
rule index_source:
    input:
        unpack(lambda w: {k: ancient(v) for k, v in step_inputs("index_source", None)(w).items()}),
        content=content_record,
    output:
        source=f"{WORK}/source.json",
        index=f"{WORK}/page_index.npz",
    log:
        f"{WORK}/logs/index_source.log",
    benchmark:
        f"{WORK}/benchmarks/index_source.tsv"
    wildcard_constraints:
        out=keys_regex(SESSION_OF),
    priority: 50  # every later job waits for the index
    localrule: True
    conda:
        "../../envs/imexport.yaml"
    params:
        info=lambda w: plan_of(w).source.to_json(),
    script:
        "../../scripts/index_source.py"
