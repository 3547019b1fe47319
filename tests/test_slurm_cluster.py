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
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import (  # noqa: E402
    ClusterUnavailable,
    SlurmCluster,
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
# timestamped run records (history, manifests), the page index (it records the
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
    )


def _output_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root) for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and not _skip_output(p.relative_to(root))
    }


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


def _write_config(dest: Path) -> Path:
    """The repo's config with ``outdir`` (and any repo path) inside the run
    directory.  Returns the outdir relative to the run directory."""
    import yaml

    cfg = yaml.safe_load(REPO_CONFIG.read_text()) if REPO_CONFIG.exists() else {}
    cfg = _rebase_paths(cfg or {})
    outdir = Path(str(cfg.get("outdir") or "results"))
    if outdir.is_absolute():
        outdir = Path("results")
    cfg["outdir"] = str(outdir)
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return outdir


def _profile_maxima() -> tuple[int, int]:
    """Largest numeric cpus_per_task and mem_mb the SLURM profile requests,
    so the test node is declared big enough to schedule every job."""
    import yaml

    prof = yaml.safe_load((PROFILE / "config.yaml").read_text()) or {}
    sections = [prof.get("default-resources") or {}]
    sections += list((prof.get("set-resources") or {}).values())
    cpus, mem = 1, 0
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


def test_demo_export_matches_local(tmp_path):
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
        outdir_rel = _write_config(cfg)
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
        # headers ("rule X:"; local ones print "localrule X:") and slurmctld's
        # own job table must all agree.
        submitted = [int(m) for m in SUBMIT_RE.findall(slurm_log)]
        remote_headers = re.findall(r"^\s*rule (\w+):\s*$", slurm_log, flags=re.M)
        sbatch_jobs = cluster.jobs()
        assert submitted, f"no job was submitted to SLURM\n{report}"
        assert len(remote_headers) == len(submitted), (
            f"snakemake reported {len(remote_headers)} non-local jobs "
            f"({sorted(set(remote_headers))}) but the plugin submitted {len(submitted)}\n{report}"
        )
        assert sorted(j.job_id for j in sbatch_jobs) == sorted(submitted), (
            f"sbatch saw {[(j.job_id, j.state) for j in sbatch_jobs]}, plugin submitted {submitted}"
        )
        assert cluster.submitted_job_ids_from_log() == sorted(submitted)
        print(
            f"\nworkflow: local {local_elapsed:.1f}s; via SLURM {len(submitted)} sbatch jobs "
            f"({sorted(set(remote_headers))}) in {elapsed:.1f}s"
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
    differing = [str(rel) for rel in sorted(local_files) if not filecmp.cmp(local_out / rel, slurm_out / rel, shallow=False)]
    assert not differing, f"{len(differing)} files differ between local and SLURM runs: {differing[:20]}"
