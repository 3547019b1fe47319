# Quality control for `snakemake --report report.html`: figures and tables read back from
# the final outputs, the correction records, the run manifest and the benchmark files
# (history.smk), marked for the report. Off unless qc.enabled, because it needs the
# optional matplotlib (pip install "imexport[report]") and an export does not need it;
# config/qc.yaml switches it on.
import importlib.util

from imexport.qc import qc_files

QC = RESOLVED["qc"]
QC_TARGETS = []

if QC["enabled"]:
    if importlib.util.find_spec("matplotlib") is None:
        stop_run('qc.enabled: true needs matplotlib: pip install "imexport[report]"')

    QC_FILES = qc_files(PLAN)
    QC_TARGETS = QC_FILES.all()

    rule qc:
        input:
            outputs=PLAN.final_outputs(),
            records=[*PLAN.phase_tasks, *PLAN.axial_tasks],
            source=SOURCE_JSON,
            index=PAGE_INDEX,
            # after the history step: it rewrites the outputs' metadata and its manifest
            # holds the processing history shown in the report
            manifest=MANIFEST,
            benchmarks=[p for paths in BENCHMARKS.values() for p in paths],
        output:
            # Labels are strings (the report sorts them with localeCompare). A label after the
            # first with exactly two values, each on half the entries, becomes a switch, which
            # needs every pair to exist: so one label per entry, except plane + view, where
            # every view has every plane (two ROIs: a switch between them).
            [
                report(
                    path,
                    caption="../report/mean_images.rst",
                    category="1 Mean images",
                    subcategory="All planes",
                    labels={"view": view},
                )
                for view, path in QC_FILES.mean_grids.items()
            ],
            [
                report(
                    path,
                    caption="../report/mean_plane.rst",
                    category="1 Mean images",
                    subcategory="One plane",
                    labels={"plane": f"{plane:02d}", "view": view},
                )
                for (view, plane), path in QC_FILES.mean_planes.items()
            ],
            report(
                QC_FILES.planes_table,
                caption="../report/plane_statistics.rst",
                category="1 Mean images",
                subcategory="Statistics",
                labels={"table": "plane statistics"},
            ),
            [report(QC_FILES.seams, caption="../report/roi_seams.rst", category="2 ROI seams", labels={"figure": "seams"})]
            if QC_FILES.seams
            else [],
            [
                report(
                    QC_FILES.phase_offsets,
                    caption="../report/scan_phase_offsets.rst",
                    category="3 Scan phase",
                    labels={"figure": "offset per plane"},
                ),
                report(
                    QC_FILES.phase_rows,
                    caption="../report/scan_phase_rows.rst",
                    category="3 Scan phase",
                    labels={"figure": "odd/even rows before and after"},
                ),
            ]
            if QC_FILES.phase_offsets
            else [],
            [
                report(
                    QC_FILES.axial_shifts,
                    caption="../report/axial_shifts.rst",
                    category="4 Axial registration",
                    labels={"figure": "plane shifts, every view"},
                )
            ]
            if QC_FILES.axial_shifts
            else [],
            [
                report(
                    path,
                    caption="../report/axial_projection.rst",
                    category="4 Axial registration",
                    labels={"figure": f"max projection, {view}"},
                )
                for view, path in QC_FILES.axial_projections.items()
            ],
            [
                report(
                    QC_FILES.frame_intervals,
                    caption="../report/frame_intervals.rst",
                    category="6 Frame timing",
                    labels={"figure": "frame intervals"},
                )
            ]
            if QC_FILES.frame_intervals
            else [],
            report(QC_FILES.run, caption="../report/run.rst", category="5 Run", labels={"table": "plan, history, config"}),
            report(
                QC_FILES.benchmarks, caption="../report/benchmarks.rst", category="5 Run", labels={"table": "runtime and memory"}
            ),
        log:
            f"{WORK}/logs/qc.log",
        benchmark:
            f"{WORK}/benchmarks/qc.tsv"
        conda:
            "../../envs/qc.yaml"
        params:
            max_frames=QC["max_frames"],
        script:
            "../../scripts/qc.py"
