# Quality control for `snakemake --report report.html`: figures and tables read back from
# the final outputs, the correction records, the run manifest and the benchmark files
# (history.smk), marked for the report, one qc rule per session (its figures differ in
# number). Off unless qc.enabled, because it needs the optional matplotlib
# (pip install "imexport[report]") and an export does not need it; config/qc.yaml
# switches it on. With a sessions sheet, the sessions table (imexport.qc.sessions) is
# written beside the sessions' folders, shown in the report, and printed at the end.
import importlib.util

from imexport.qc import qc_files

QC_TARGETS = []


if any(SESSION.config["qc"]["enabled"] for SESSION in SESSIONS.planned):
    if importlib.util.find_spec("matplotlib") is None:
        stop_run('qc.enabled: true needs matplotlib: pip install "imexport[report]"')

for SESSION in SESSIONS.planned:
    if not SESSION.config["qc"]["enabled"]:
        continue
    QC_FILES = qc_files(SESSION.plan)
    QC_TARGETS += QC_FILES.all()

    rule:
        name:
            session_rule_name("qc", SESSION)
        input:
            outputs=SESSION.plan.final_outputs(),
            records=[*SESSION.plan.phase_tasks, *SESSION.plan.axial_tasks],
            source=SESSION.plan.source_json,
            index=SESSION.plan.page_index,
            # after the history step: it rewrites the outputs' metadata and its manifest
            # holds the processing history shown in the report
            manifest=str(manifest_path(SESSION.plan.outdir)),
            benchmarks=[p for paths in BENCHMARKS[SESSION.plan.outdir].values() for p in paths],
        output:
            # Labels are strings (the report sorts them with localeCompare). A label after the
            # first with exactly two values, each on half the entries, becomes a switch, which
            # needs every pair to exist: so one label per entry, except plane + view, where
            # every view has every plane (two ROIs: a switch between them).
            [
                report(
                    path,
                    caption="../report/mean_images.rst",
                    category=qc_category(SESSION, "1 Mean images"),
                    subcategory=qc_category(SESSION, "All planes"),
                    labels={"view": view},
                )
                for view, path in QC_FILES.mean_grids.items()
            ],
            [
                report(
                    path,
                    caption="../report/mean_plane.rst",
                    category=qc_category(SESSION, "1 Mean images"),
                    subcategory=qc_category(SESSION, "One plane"),
                    labels={"plane": f"{plane:02d}", "view": view},
                )
                for (view, plane), path in QC_FILES.mean_planes.items()
            ],
            report(
                QC_FILES.planes_table,
                caption="../report/plane_statistics.rst",
                category=qc_category(SESSION, "1 Mean images"),
                subcategory=qc_category(SESSION, "Statistics"),
                labels={"table": "plane statistics"},
            ),
            [
                report(
                    QC_FILES.seams,
                    caption="../report/roi_seams.rst",
                    category=qc_category(SESSION, "2 ROI seams"),
                    labels={"figure": "seams"},
                )
            ]
            if QC_FILES.seams
            else [],
            [
                report(
                    QC_FILES.phase_offsets,
                    caption="../report/scan_phase_offsets.rst",
                    category=qc_category(SESSION, "3 Scan phase"),
                    labels={"figure": "offset per plane"},
                ),
                report(
                    QC_FILES.phase_rows,
                    caption="../report/scan_phase_rows.rst",
                    category=qc_category(SESSION, "3 Scan phase"),
                    labels={"figure": "odd/even rows before and after"},
                ),
            ]
            if QC_FILES.phase_offsets
            else [],
            [
                report(
                    QC_FILES.axial_shifts,
                    caption="../report/axial_shifts.rst",
                    category=qc_category(SESSION, "4 Axial registration"),
                    labels={"figure": "plane shifts, every view"},
                )
            ]
            if QC_FILES.axial_shifts
            else [],
            [
                report(
                    path,
                    caption="../report/axial_projection.rst",
                    category=qc_category(SESSION, "4 Axial registration"),
                    labels={"figure": f"max projection, {view}"},
                )
                for view, path in QC_FILES.axial_projections.items()
            ],
            [
                report(
                    QC_FILES.frame_intervals,
                    caption="../report/frame_intervals.rst",
                    category=qc_category(SESSION, "6 Frame timing"),
                    labels={"figure": "frame intervals"},
                )
            ]
            if QC_FILES.frame_intervals
            else [],
            report(
                QC_FILES.run,
                caption="../report/run.rst",
                category=qc_category(SESSION, "5 Run"),
                labels={"table": "plan, history, config"},
            ),
            report(
                QC_FILES.benchmarks,
                caption="../report/benchmarks.rst",
                category=qc_category(SESSION, "5 Run"),
                labels={"table": "runtime and memory"},
            ),
        log:
            f"{SESSION.plan.work}/logs/qc.log",
        benchmark:
            f"{SESSION.plan.work}/benchmarks/qc.tsv"
        conda:
            "../../envs/qc.yaml"
        params:
            max_frames=SESSION.config["qc"]["max_frames"],
            config=SESSION.config,
        script:
            "../../scripts/qc.py"


SESSIONS_TABLE = []

if SESSIONS.sheet is not None:
    SESSIONS_ROOT = Path(str(SESSIONS.run_config["outdir"]))
    SESSIONS_TABLE = [str(SESSIONS_ROOT / "sessions_summary.tsv"), str(SESSIONS_ROOT / "sessions_summary.html")]

    rule sessions_table:
        input:
            MANIFESTS,
        output:
            tsv=SESSIONS_TABLE[0],
            page=report(
                SESSIONS_TABLE[1],
                caption="../report/sessions.rst",
                category="0 Sessions",
                labels={"table": "sessions"},
            ),
        log:
            str(SESSIONS_ROOT / WORK_FOLDER / "logs" / "sessions_table.log"),
        localrule: True
        conda:
            "../../envs/imexport.yaml"
        params:
            entries=sessions_entries(),
        script:
            "../../scripts/sessions_table.py"
