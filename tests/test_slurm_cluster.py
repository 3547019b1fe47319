"""Run Snakemake workflows through a real one-node SLURM cluster.

The cluster comes from tests/slurm_cluster.py (Debian's slurmctld/slurmd/munge,
installed by tests/install_slurm.sh) and jobs go through the official
snakemake-executor-plugin-slurm, i.e. through real ``sbatch`` calls.

Without accounting (no slurmdbd) ``sacct`` fails, so every run polls with
``--slurm-status-command squeue``; the cluster keeps finished jobs visible to
squeue for MinJobAge=3600 s.  ``--slurm-init-seconds-before-status-checks 1``
makes the first poll come after 1 s instead of the plugin's 40 s.

If the cluster cannot be brought up the tests skip locally (with the reason)
but FAIL when the ``CI`` environment variable is set, so CI cannot go green
by silently not testing SLURM.
"""

from __future__ import annotations

import contextlib
import filecmp
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import (  # noqa: E402
    ClusterUnavailable,
    SlurmCluster,
    SlurmJob,
    clean_environ,
    one_node_cluster,
    run_with_timeout,
)

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
PROFILE = REPO / "profiles" / "slurm"
REPO_CONFIG = REPO / "config" / "config.yaml"

# Plugin options (snakemake-executor-plugin-slurm 2.x, checked against
# `snakemake --help`): poll with squeue (no accounting here), first poll
# after 1 s.
SLURM_TEST_OPTIONS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
]

# Upper bounds so a polling bug fails the test instead of hanging CI; the
# workflow test's bound can be raised for slow machines.
HARNESS_TIMEOUT_S = 180
WORKFLOW_TIMEOUT_S = float(os.environ.get("IMEXPORT_SLURM_TEST_TIMEOUT", "1200"))

# Lines the plugin logs per sbatch submission.
SUBMIT_RE = re.compile(r"has been submitted with SLURM jobid (\d+)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _cluster_or_skip(workdir: Path, **kwargs):
    """one_node_cluster, turning a failed bring-up into skip (local) / fail (CI)."""
    with contextlib.ExitStack() as stack:
        try:
            if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
                raise ClusterUnavailable("snakemake-executor-plugin-slurm is not installed (bash tests/install_slurm.sh)")
            cluster = stack.enter_context(one_node_cluster(workdir, **kwargs))
        except ClusterUnavailable as exc:
            msg = f"one-node SLURM cluster unavailable: {exc}"
            if _in_ci():
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
        yield cluster


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _failure_report(cluster: SlurmCluster, log_text: str) -> str:
    return f"--- snakemake log (tail) ---\n{_tail(log_text)}\n--- cluster logs ---\n{cluster.log_tails()}"


# ---------------------------------------------------------------------------
# Test 1: harness self-test with a tiny standalone workflow.
# ---------------------------------------------------------------------------

TINY_SNAKEFILE = """\
# Three independent jobs; each records the SLURM job id it ran under.
N = 3

localrules: all

rule all:
    input:
        expand("out/{i}.txt", i=range(N)),

rule job:
    output:
        "out/{i}.txt",
    shell:
        "echo $SLURM_JOB_ID > {output}"
"""


def test_harness_runs_snakemake_jobs_through_sbatch(tmp_path):
    with _cluster_or_skip(tmp_path / "cluster") as cluster:
        wf = tmp_path / "wf"
        wf.mkdir()
        (wf / "Snakefile").write_text(TINY_SNAKEFILE)
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(wf / "Snakefile"),
            "--directory",
            str(wf),
            "--executor",
            "slurm",
            "--jobs",
            "3",
            "--workflow-profile",
            "none",
            "--default-resources",
            "mem_mb=100",
            "runtime=5",
            *SLURM_TEST_OPTIONS,
            # Keep sbatch logs next to the test for debugging.
            "--slurm-logdir",
            str(tmp_path / "slurm_logs"),
            "--slurm-keep-successful-logs",
        ]
        t0 = time.monotonic()
        rc, log = run_with_timeout(
            cmd,
            env=cluster.environ(),
            log_path=tmp_path / "snakemake.log",
            timeout=HARNESS_TIMEOUT_S,
            cwd=wf,
        )
        elapsed = time.monotonic() - t0
        report = _failure_report(cluster, log)
        assert rc == 0, f"snakemake exited with {rc}\n{report}"

        ids = []
        for i in range(3):
            text = (wf / "out" / f"{i}.txt").read_text().strip()
            assert text.isdigit(), f"out/{i}.txt holds {text!r}, not a SLURM job id\n{report}"
            ids.append(int(text))
        assert len(set(ids)) == 3, f"jobs did not run as separate SLURM jobs: {ids}"

        # Three independent witnesses that the jobs went through sbatch:
        # slurmctld's job table (squeue), slurmctld's log and the plugin's log.
        jobs = {j.job_id: j for j in cluster.jobs()}
        assert set(ids) <= set(jobs), f"job ids {ids} not known to slurmctld: {jobs}\n{report}"
        assert all(jobs[i].state == "COMPLETED" for i in ids), f"{jobs}\n{report}"
        assert len(jobs) == 3, f"expected exactly 3 SLURM jobs, slurmctld knows {jobs}"
        assert cluster.submitted_job_ids_from_log() == sorted(ids)
        assert sorted(int(m) for m in SUBMIT_RE.findall(log)) == sorted(ids), report
        print(f"\nslurm harness: bring-up {cluster.bringup_seconds:.1f}s, 3 jobs through sbatch in {elapsed:.1f}s")


# ---------------------------------------------------------------------------
# Test 2: the real workflow, locally and through SLURM, byte-identical.
# ---------------------------------------------------------------------------


# Files that legitimately differ between two runs: Snakemake's bookkeeping,
# timestamped run records (history, manifests; see _same_content for the
# history inside a Zarr store's zarr.json), the page index (it records the
# modification times of the input files, generated anew by each demo run),
# per-job logs/benchmarks (wall-clock times, hostnames, SLURM job ids) and the
# digest cache (each entry records its file's mtime and inode).
def _skip_output(rel: Path) -> bool:
    parts = set(rel.parts)
    if ".snakemake" in parts or parts & {"logs", "benchmarks", "checksums"}:
        return True
    name = rel.name
    return (
        name == ".snakemake_timestamp"
        or "history" in name
        or "manifest" in name
        or name == "page_index.npz"
        or name.endswith(".log")
        # a sheet's sessions table: its wall-time column is the run's (compared without it)
        or name.startswith("sessions_summary.")
    )


def _output_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root) for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and not _skip_output(p.relative_to(root))
    }


def _same_content(a: Path, b: Path) -> bool:
    """Byte-identical, or for a Zarr store's zarr.json identical but for its
    processing history (a timestamp, an id and job durations: a run record)."""
    if filecmp.cmp(a, b, shallow=False):
        return True
    if a.name != "zarr.json":
        return False
    meta_a, meta_b = json.loads(a.read_text()), json.loads(b.read_text())
    history_a = meta_a.get("attributes", {}).pop("processing_history", None)
    history_b = meta_b.get("attributes", {}).pop("processing_history", None)
    return meta_a == meta_b and (history_a is None) == (history_b is None)


def _rebase_paths(node):
    """Copy of the config in which absolute paths into the repository become
    relative, so that (like the relative ones) they resolve inside the run
    directory (snakemake --directory) and nothing is read from or written to
    the checkout.  Relative paths are kept as they are: the workflow may
    compare them (e.g. ``input`` against ``demo.folder``)."""
    if isinstance(node, dict):
        return {k: _rebase_paths(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase_paths(v) for v in node]
    if isinstance(node, str) and node.startswith(str(REPO) + os.sep):
        return str(Path(node).relative_to(REPO))
    return node


def _write_config(dest: Path, overrides: dict | None = None) -> Path:
    """The repo's config with ``outdir`` (and any repo path) inside the run
    directory, and ``overrides`` merged over it (one level deep).  Returns the
    outdir relative to the run directory."""
    import yaml

    cfg = yaml.safe_load(REPO_CONFIG.read_text()) if REPO_CONFIG.exists() else {}
    cfg = _rebase_paths(cfg or {})
    for key, value in (overrides or {}).items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    outdir = Path(str(cfg.get("outdir") or "results"))
    if outdir.is_absolute():
        outdir = Path("results")
    cfg["outdir"] = str(outdir)
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return outdir


def _profile() -> dict:
    import yaml

    return yaml.safe_load((PROFILE / "config.yaml").read_text()) or {}


def _profile_maxima() -> tuple[int, int]:
    """Largest numeric cpus_per_task and mem_mb the SLURM profile requests
    (``cores`` included: the CPUs of a grouped submission), so the test node is
    declared big enough to schedule every job."""
    prof = _profile()
    sections = [prof.get("default-resources") or {}]
    sections += list((prof.get("set-resources") or {}).values())
    cpus, mem = 1, 0
    if isinstance(prof.get("cores"), int):
        cpus = prof["cores"]
    for sec in sections:
        if isinstance(sec, dict):
            if isinstance(sec.get("cpus_per_task"), int):
                cpus = max(cpus, sec["cpus_per_task"])
            if isinstance(sec.get("mem_mb"), int):
                mem = max(mem, sec["mem_mb"])
    return cpus, mem


def _snakemake_cmd(run_dir: Path, cfg: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(run_dir),
        "--configfile",
        str(cfg),
        "--workflow-profile",
        "none",
        *extra,
    ]


@dataclass
class SlurmRun:
    """What one export through SLURM did, next to the same export run locally."""

    log: str  # snakemake's output
    elapsed_s: float
    local_elapsed_s: float
    submitted: list[int]  # SLURM job ids, as the plugin logged them
    groups: dict[str, list[int]]  # group name -> SLURM job ids of its submissions
    alone: dict[str, list[int]]  # rule -> SLURM job ids of its jobs submitted one by one
    jobs: dict[int, SlurmJob]  # SLURM job id -> what slurmctld knows of it
    local_out: Path
    slurm_out: Path


# "Job 12 has been submitted with SLURM jobid 34 (log: .../rule_<name>/...)": the
# plugin names the log folder after the rule, or the group (group_<name>_<its rules>).
SUBMIT_LOG_RE = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S*/(group|rule)_([^/\s]+)/")


def _export_locally_and_through_slurm(tmp_path: Path, overrides: dict | None = None) -> SlurmRun:
    """The repo's config (with ``overrides``) exported locally, then through the
    one-node cluster with the production profile; checks that every job
    Snakemake ran remotely went through sbatch, and nothing else did."""
    if not SNAKEFILE.exists():
        pytest.skip("workflow not present yet")
    assert (PROFILE / "config.yaml").exists(), "profiles/slurm/config.yaml missing"

    # The node is declared at least as big as anything the profile asks for
    # (slurm.conf uses config_overrides and nothing enforces limits), and at
    # least 64 GB so rule-level mem_mb callables fit too.  The cluster comes
    # up first so that a machine without SLURM skips/fails before the
    # (longer) local run.
    max_cpus, max_mem = _profile_maxima()
    with _cluster_or_skip(
        tmp_path / "cluster",
        cpus=max(os.cpu_count() or 1, max_cpus),
        real_memory_mb=max(64000, max_mem),
    ) as cluster:
        # Both runs use the same config and the same run directory path, so
        # absolute paths that end up inside outputs (metadata often records
        # the source file) are identical; the local results are moved aside
        # before the SLURM run.
        cfg = tmp_path / "config.yaml"
        outdir_rel = _write_config(cfg, overrides)
        run_dir = tmp_path / "run"
        local_dir = tmp_path / "local"

        # 1. Local reference run (no SLURM involved).
        run_dir.mkdir()
        t0 = time.monotonic()
        rc, local_log = run_with_timeout(
            _snakemake_cmd(run_dir, cfg, "--cores", "2"),
            env=clean_environ(),
            log_path=tmp_path / "snakemake_local.log",
            timeout=WORKFLOW_TIMEOUT_S,
            cwd=run_dir,
        )
        local_elapsed = time.monotonic() - t0
        assert rc == 0, f"local run failed ({rc}):\n{_tail(local_log)}"
        assert "Group job" not in local_log, "a local run must not group jobs"
        run_dir.rename(local_dir)

        # 2. The same workflow through SLURM with the production profile.
        run_dir.mkdir()
        t0 = time.monotonic()
        rc, slurm_log = run_with_timeout(
            _snakemake_cmd(
                run_dir,
                cfg,
                "--profile",
                str(PROFILE),
                *SLURM_TEST_OPTIONS,
                "--slurm-logdir",
                str(tmp_path / "slurm_logs"),
                "--slurm-keep-successful-logs",
                # The profile's 60 s is for NFS; outputs here are local.
                "--latency-wait",
                "5",
            ),
            env=cluster.environ(),
            log_path=tmp_path / "snakemake_slurm.log",
            timeout=WORKFLOW_TIMEOUT_S,
            cwd=run_dir,
        )
        elapsed = time.monotonic() - t0
        report = _failure_report(cluster, slurm_log)
        assert rc == 0, f"SLURM run failed ({rc})\n{report}"

        # Every job Snakemake ran remotely went through sbatch, and nothing
        # else did: the plugin's submissions, Snakemake's non-local job
        # headers and slurmctld's own job table must all agree.  A job
        # submitted alone has an unindented header ("rule X:"; local ones
        # print "localrule X:"), a group one header ("Group job NAME ...")
        # above the indented headers of its jobs.
        submitted = [int(m) for m in SUBMIT_RE.findall(slurm_log)]
        remote_headers = re.findall(r"^rule (\w+):\s*$", slurm_log, flags=re.M)
        group_headers = re.findall(r"^\[.*\] Group job (\S+) \(jobs in lexicogr\. order\):\s*$", slurm_log, flags=re.M)
        sbatch_jobs = cluster.jobs()
        assert submitted, f"no job was submitted to SLURM\n{report}"
        assert len(remote_headers) + len(group_headers) == len(submitted), (
            f"snakemake reported {len(remote_headers)} non-local jobs ({sorted(set(remote_headers))}) and "
            f"{len(group_headers)} group jobs but the plugin submitted {len(submitted)}\n{report}"
        )
        assert sorted(j.job_id for j in sbatch_jobs) == sorted(submitted), (
            f"sbatch saw {[(j.job_id, j.state) for j in sbatch_jobs]}, plugin submitted {submitted}"
        )
        assert cluster.submitted_job_ids_from_log() == sorted(submitted)
        groups: dict[str, list[int]] = {}
        alone: dict[str, list[int]] = {}
        for job_id, kind, folder in SUBMIT_LOG_RE.findall(slurm_log):
            if kind == "group":  # the folder is group_<name>_<its rules>
                name = max((g for g in group_headers if folder.startswith(f"{g}_")), key=len, default=folder)
                groups.setdefault(name, []).append(int(job_id))
            else:
                alone.setdefault(folder, []).append(int(job_id))
        assert sorted(i for ids in [*groups.values(), *alone.values()] for i in ids) == sorted(submitted), report
        assert sorted(groups) == sorted(set(group_headers)), report
        print(
            f"\nworkflow: local {local_elapsed:.1f}s; via SLURM {len(submitted)} sbatch jobs "
            f"(groups {sorted(groups)}, alone {sorted(alone)}) in {elapsed:.1f}s"
        )

    # 3. Byte-for-byte comparison of everything the two runs wrote.
    local_out = local_dir / outdir_rel
    slurm_out = run_dir / outdir_rel
    local_files = _output_files(local_out)
    slurm_files = _output_files(slurm_out)
    assert local_files, f"local run wrote nothing under {local_out}"
    assert local_files == slurm_files, (
        f"only local: {sorted(map(str, local_files - slurm_files))}\nonly SLURM: {sorted(map(str, slurm_files - local_files))}"
    )
    differing = [str(rel) for rel in sorted(local_files) if not _same_content(local_out / rel, slurm_out / rel)]
    assert not differing, f"{len(differing)} files differ between local and SLURM runs: {differing[:20]}"
    return SlurmRun(
        slurm_log, elapsed, local_elapsed, submitted, groups, alone, {j.job_id: j for j in sbatch_jobs}, local_out, slurm_out
    )


def _plane_groups(n_planes: int, per_submission: int) -> list[str]:
    """The documented group names (config/README.md, `cluster.planes_per_submission`):
    the output folder (``/`` as ``_``), then consecutive written planes, 1-based."""
    import yaml

    folder = str(yaml.safe_load(REPO_CONFIG.read_text())["outdir"]).strip("/").replace("/", "_")
    firsts = range(1, n_planes + 1, per_submission)
    return [f"{folder}.planes{a:02d}-{min(a + per_submission - 1, n_planes):02d}" for a in firsts]


def test_demo_export_matches_local(tmp_path):
    """The repo's config (the 6-plane demo, TIFF, 8 planes per submission):
    byte-identical outputs, and the plane jobs in one submission."""
    import yaml

    demo = yaml.safe_load(REPO_CONFIG.read_text())
    n_planes, per_submission = demo["demo"]["n_planes"], demo["cluster"]["planes_per_submission"]
    run = _export_locally_and_through_slurm(tmp_path)
    assert sorted(run.groups) == _plane_groups(n_planes, per_submission), run.log[-4000:]
    assert all(len(ids) == 1 for ids in run.groups.values()), run.groups
    # besides the plane groups only the once-per-run remote step
    assert sorted(run.alone) == ["scan_phase"], run.alone
    assert len(run.submitted) <= -(-n_planes // per_submission) + 1


# 14 planes x 2 formats: TIFF (one file per plane) and Zarr (slab jobs filling one
# store, then an assemble step).
MANY_PLANES = {
    "format": ["tiff", "zarr"],
    "demo": {"n_planes": 14, "plane_shifts": None},
    "cluster": {"planes_per_submission": 8},
}


def test_grouped_submissions_match_local(tmp_path):
    """14 planes x 2 formats become ceil(14 / 8) plane submissions (plus the
    Zarr assemble step, whose planes span both, and the once-per-run scan_phase
    step) instead of 14 x 2 + 2; each group asks for what Snakemake's group
    rule gives: `cores` plane jobs side by side (their CPUs and memory summed),
    their rounds' runtimes added."""
    n_planes, per_submission, n_formats = 14, 8, 2
    run = _export_locally_and_through_slurm(tmp_path, MANY_PLANES)
    ungrouped = n_planes * n_formats + 2  # + scan_phase, the Zarr assemble step
    names = _plane_groups(n_planes, per_submission)
    assert sorted(run.groups) == names, run.log[-4000:]
    assert sorted(run.alone) == ["assemble_folder", "scan_phase"], run.alone
    assert len(run.submitted) == len(names) + 2 <= -(-n_planes * n_formats // per_submission) + 2 < ungrouped

    # Resources: every plane job asks for the same CPUs, memory and runtime
    # (read from Snakemake's own job report and the profile), a group for
    # `cores` of them at once and for as many rounds as it needs.
    plane_mems = {int(m) for m in re.findall(r"rule write_plane_\w+:\n(?:.*\n)*?\s+resources: .*?mem_mb=(\d+)", run.log)}
    assert len(plane_mems) == 1, plane_mems
    (plane_mem,) = plane_mems
    profile = _profile()
    width = profile["cores"]
    plane_runtime = profile["set-resources"]["write_plane_file"]["runtime"]
    for name, (job_id,) in run.groups.items():
        first, last = (int(z) for z in re.findall(r"\d+", name.rsplit(".", 1)[1]))
        n_jobs = (last - first + 1) * n_formats
        job = run.jobs[job_id]
        assert job.cpus == min(width, n_jobs), (name, job)
        assert job.memory_mb == min(width, n_jobs) * plane_mem, (name, job)
        assert job.time_limit_min == -(-n_jobs // width) * plane_runtime, (name, job)
    print(f"\n14 planes x 2 formats: {len(run.submitted)} sbatch jobs (ungrouped: {ungrouped}) in {run.elapsed_s:.1f}s")


# ---------------------------------------------------------------------------
# Test 3: a sessions sheet of three recordings of different kinds, one run.
# ---------------------------------------------------------------------------

# Planes each session writes, from how the test builds it (tests/test_sessions.py): the
# LBM row keeps planes 1 and 3, the piezo stack has 3 slices, the TIFF stack 2 planes.
SHEET_WRITTEN_PLANES = {"lbm": 2, "piezo": 3, "stack": 2}
SHEET_PER_SUBMISSION = 2


def _sheet_recordings(root: Path) -> dict[str, str]:
    """The three recordings of tests/test_sessions.py: {session: input path}."""
    from test_sessions import write_recordings

    inputs, _ = write_recordings(root)
    return inputs


def test_sessions_sheet_in_one_grouped_run_matches_local(tmp_path):
    """Three sessions (LBM with its own planes and formats; a piezo stack, both correcting
    the scan phase; a TIFF stack as Zarr) in one invocation: each session's plane jobs grouped
    `planes_per_submission` planes at a time and their scan_phase jobs as many at a time,
    so the run submits one job per group and nothing else; every output byte-identical to the
    local run, the history files too but for the fields that record when and where it ran."""
    from test_sessions import HISTORY_FILES, normalized, read_history_file, write_sheet

    inputs = _sheet_recordings(tmp_path / "recordings")
    sheet = write_sheet(
        tmp_path / "sessions.tsv",
        ["session", "input", "planes", "format", "scan_phase.fix_phase"],
        ["lbm", inputs["lbm"], "[1, 3]", "[tiff, zarr]", "true"],
        ["piezo", inputs["piezo"], "", "", "true"],
        ["stack", inputs["stack"], "", "zarr", ""],
    )
    overrides = {
        "sessions": str(sheet),
        "format": "tiff",
        "scan_phase": {"fix_phase": False, "border": 1},
        "cluster": {"planes_per_submission": SHEET_PER_SUBMISSION},
    }
    run = _export_locally_and_through_slurm(tmp_path, overrides)

    per_session = {s: -(-n // SHEET_PER_SUBMISSION) for s, n in SHEET_WRITTEN_PLANES.items()}
    # the scan_phase jobs of the two sessions correcting the phase (lbm, piezo), in one group
    phase_jobs = 2
    phase_submissions = -(-phase_jobs // SHEET_PER_SUBMISSION)
    formats = {"lbm": 2, "piezo": 1, "stack": 1}
    ungrouped = sum(SHEET_WRITTEN_PLANES[s] * formats[s] for s in formats) + phase_jobs + 1  # + the assemble step of stack
    assert sorted(g for g in run.groups if g.startswith("scan_phase.")) == ["scan_phase.01-02"], run.groups
    assert len(run.groups) == sum(per_session.values()) + phase_submissions, run.groups
    assert all(len(ids) == 1 for ids in run.groups.values()) and not run.alone, (run.groups, run.alone)
    assert len(run.submitted) == sum(per_session.values()) + phase_submissions < ungrouped, (run.groups, run.alone)
    for session in SHEET_WRITTEN_PLANES:  # group names start with the session's output folder
        folder = str(run.local_out.relative_to(run.local_out.parent.parent) / session).replace("/", "_")
        assert sum(name.startswith(f"{folder}.planes") for name in run.groups) == per_session[session], run.groups

    # the sessions table: equal but for the wall times, the benchmarks' seconds
    def table(out):
        header, *rows = [line.split("\t") for line in (out / "sessions_summary.tsv").read_text().splitlines()]
        return [{k: v for k, v in zip(header, row) if k != "wall time"} for row in rows]

    assert table(run.slurm_out) == table(run.local_out)
    assert [row["status"] for row in table(run.local_out)] == ["exported"] * 3
    # the history files: equal but for the VOLATILE_KEYS of tests/test_sessions.py
    for session in SHEET_WRITTEN_PLANES:
        local, remote = run.local_out / session, run.slurm_out / session
        history = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file() and p.name.endswith(HISTORY_FILES))
        assert any(p.name == "imexport_manifest.json" for p in history), history
        for rel in history:
            got, want = read_history_file(remote / rel), read_history_file(local / rel)
            assert normalized(got, HISTORY_FILES) == normalized(want, HISTORY_FILES), rel
    print(f"\nsheet of 3 sessions: {len(run.submitted)} sbatch jobs (ungrouped: {ungrouped}) in {run.elapsed_s:.1f}s")
