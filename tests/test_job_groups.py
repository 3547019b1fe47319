"""Cluster submissions (imexport.job_groups): the plane jobs of `cluster.planes_per_submission`
consecutive written planes, every format and ROI view, form one Snakemake group; an assemble
step joins when its export's planes all fit in one group. The SLURM test
(tests/test_slurm_cluster.py) counts the submissions on a real cluster; here the plan and
Snakemake's dry run, which shows the groups a cluster executor would submit."""

from __future__ import annotations

import re

import pytest
from snakemake.settings.types import GroupSettings

from imexport.job_groups import consecutive_groups, plane_groups, span_group
from imexport.workflow_plan import plan_for_config

SPEC = dict(n_frames=4, n_planes=5, roi_heights=[6, 4], width=12, fly_to_lines=2, frames_per_file=2, n_cells=4)
# TIFF (a file per plane) and Zarr (slab jobs filling a store, then an assemble step), each ROI
# in its own folder: 5 planes x 2 ROIs x 2 formats = 20 plane jobs, 2 assemble steps
CONFIG = {"format": ["tiff", "zarr"], "roi_mode": "separate", "scan_phase": {"fix_phase": False}}
GROUP_HEADER = re.compile(r"Group job (\S+) \(jobs in lexicogr\. order\):")


def _plan(tmp_path, make_acquisition, per_submission):
    _, paths = make_acquisition(tmp_path, **SPEC)
    config = {**CONFIG, "input": str(paths[0].parent), "outdir": str(tmp_path / "out")}
    return plan_for_config({**config, "cluster": {"planes_per_submission": per_submission}})[1]


def _by_planes(groups: dict[str, str], outdir) -> dict[str, str]:
    """key -> "planesAA-BB": every name is the output folder's (``/`` as ``_``), then the planes."""
    prefix = str(outdir).strip("/").replace("/", "_") + "."
    assert all(name.startswith(prefix) for name in groups.values()), (prefix, set(groups.values()))
    return {key: name.removeprefix(prefix) for key, name in groups.items()}


def test_plane_jobs_of_consecutive_planes_form_a_group(tmp_path, make_acquisition):
    plan = _plan(tmp_path, make_acquisition, 2)
    groups = _by_planes(plane_groups(plan, 2), tmp_path / "out")
    names = {1: "planes01-02", 2: "planes01-02", 3: "planes03-04", 4: "planes03-04", 5: "planes05-05"}
    for roi in (1, 2):
        for z in range(1, 6):
            assert groups[f"roi0{roi}/zplane0{z}_tp00001-00004.tif"] == names[z]
    # every plane job is in a group: 2 planes x 2 ROIs x 2 formats in each full one
    assert set(plan.jobs) <= set(groups)
    sizes = {name: sum(1 for key in plan.jobs if groups[key] == name) for name in set(names.values())}
    assert sizes == {"planes01-02": 8, "planes03-04": 8, "planes05-05": 4}
    # each Zarr store's planes span three groups: its assemble step is submitted alone
    assert not {"roi01/zplane01-05_tp00001-00004.zarr", "roi02/zplane01-05_tp00001-00004.zarr"} & set(groups)


def test_an_assemble_step_joins_the_one_group_of_its_planes(tmp_path, make_acquisition):
    plan = _plan(tmp_path, make_acquisition, 8)
    groups = _by_planes(plane_groups(plan, 8), tmp_path / "out")
    assert set(groups.values()) == {"planes01-05"}
    assert len(groups) == 20 + 2
    assert groups["roi02/zplane01-05_tp00001-00004.zarr"] == "planes01-05"


def test_null_submits_every_plane_job_alone(tmp_path, make_acquisition):
    assert plane_groups(_plan(tmp_path, make_acquisition, None), None) == {}


def test_the_output_folder_tells_the_groups_of_two_sessions_apart(tmp_path, make_acquisition):
    plan = _plan(tmp_path, make_acquisition, 8)
    other = _plan(tmp_path, make_acquisition, 8)
    other.outdir = str(tmp_path / "mouse 2" / "day3")
    first, second = set(plane_groups(plan, 8).values()), set(plane_groups(other, 8).values())
    assert len(first) == len(second) == 1 and not first & second
    groups = plane_groups(other, 8)
    assert _by_planes(groups, tmp_path / "mouse_2" / "day3") == dict.fromkeys(groups, "planes01-05")


def test_a_group_spans_its_independent_jobs_unless_the_command_line_says_otherwise():
    groups = {"a.tif": "g1", "b.tif": "g1", "c.tif": "g2"}
    settings = GroupSettings(group_components={"g2": 1})  # as `--group-components g2=1` gives it
    assert span_group(settings, "g1", groups) == "g1"
    assert span_group(settings, "g2", groups) == "g2"
    assert span_group(settings, None, groups) is None
    assert dict(settings.group_components) == {"g1": 2, "g2": 1}


@pytest.mark.parametrize(("per_submission", "expected"), [(2, 3), (None, 0)])
def test_the_dry_run_shows_the_submissions(tmp_path, make_acquisition, run_snakemake, per_submission, expected):
    """A dry run shows groups as a cluster executor submits them (a real local run ignores them)."""
    _, paths = make_acquisition(tmp_path, **SPEC)
    config = {**CONFIG, "input": str(paths[0].parent), "outdir": str(tmp_path / "out")}
    result = run_snakemake(tmp_path / "work", {**config, "cluster": {"planes_per_submission": per_submission}}, "-n")
    shown = GROUP_HEADER.findall(result.output)
    assert len(shown) == expected, result.output[-3000:]
    planes = sorted(_by_planes(dict(enumerate(shown)), tmp_path / "out").values())
    assert planes == ["planes01-02", "planes03-04", "planes05-05"][:expected]


def test_jobs_of_consecutive_sessions_form_a_group():
    jobs = [("a", "stitched"), ("b", "stitched"), ("c", "stitched"), ("d", "roi01"), ("d", "roi02")]
    assert consecutive_groups("scan_phase", jobs, 2) == {
        ("a", "stitched"): "scan_phase.01-02",
        ("b", "stitched"): "scan_phase.01-02",
        ("c", "stitched"): "scan_phase.03-04",
        ("d", "roi01"): "scan_phase.03-04",
    }  # ("d", "roi02") would be alone in its group: a plain job
    assert set(consecutive_groups("assemble", jobs, 8).values()) == {"assemble.01-05"}
    assert consecutive_groups("scan_phase", jobs, None) == {} == consecutive_groups("scan_phase", jobs[:1], 8)


def test_the_dry_run_of_a_sheet_groups_the_scan_phase_jobs_of_its_sessions(tmp_path, make_acquisition, run_snakemake):
    """Three sessions correcting the scan phase, 2 per submission: the first two sessions'
    scan_phase jobs in one group, the third's alone, and so their Zarr assemble steps (each
    store's 5 planes span 3 plane groups). Without a sheet nothing changes: a session's
    scan_phase jobs (one per ROI view) and assemble steps are never grouped."""
    _, paths = make_acquisition(tmp_path, **SPEC)
    rows = "".join(f"s{i}\t{paths[0].parent}\n" for i in range(3))
    (tmp_path / "sessions.tsv").write_text("session\tinput\n" + rows)
    config = {**CONFIG, "roi_mode": "concat_y", "scan_phase": {"fix_phase": True, "border": 0}}
    config["cluster"] = {"planes_per_submission": 2}
    sheet = run_snakemake(tmp_path / "sheet", {**config, "sessions": str(tmp_path / "sessions.tsv"), "outdir": "out"}, "-n")
    shown = GROUP_HEADER.findall(sheet.output)
    assert [g for g in shown if g.startswith("scan_phase")] == ["scan_phase.01-02"], sheet.output[-3000:]
    assert [g for g in shown if g.startswith("assemble")] == ["assemble.01-02"], sheet.output[-3000:]
    assert len(shown) == 3 * 3 + 2  # 5 planes, 2 per submission, in each session
    alone_config = {**config, "roi_mode": "separate", "input": str(paths[0].parent), "outdir": "out"}
    alone = run_snakemake(tmp_path / "alone", alone_config, "-n")
    assert len(re.findall(r"^rule scan_phase:", alone.output, flags=re.M)) == 2, alone.output[-3000:]
    assert not [g for g in GROUP_HEADER.findall(alone.output) if g.startswith(("scan_phase", "assemble"))]
