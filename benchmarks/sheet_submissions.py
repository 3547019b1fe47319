"""How many cluster submissions a sheet of many sessions costs: a dry run on the SLURM profile.

    python benchmarks/sheet_submissions.py [--sessions 60] [--planes 14] [--per-submission 8]

Writes one synthetic 14-plane ScanImage recording and a sheet of N sessions reading it
(TIFF and Zarr each, scan phase corrected) into a temporary folder, runs
``snakemake -n --profile profiles/slurm --workflow-profile none`` there and counts what a cluster executor would
submit: each group once (``Group job`` headers) and each job outside a group (its
unindented ``rule X:`` header) of a rule that is not local (a dry run prints ``rule`` for
local jobs too: the local rules are read from the workflow, through Snakemake's API).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from imexport.synthetic import AcquisitionSpec, write_acquisition


def local_rules(snakefile: Path, root: Path) -> set[str]:
    """The rules of the workflow a cluster executor runs on the submit host."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings()) as api:
        config = ConfigSettings(configfiles=[root / "config.yaml"])
        workflow = api.workflow(ResourceSettings(), config_settings=config, snakefile=snakefile, workdir=root)._workflow
        return {r.name for r in workflow.rules if r.name in workflow._localrules or r.norun}


REPO = Path(__file__).resolve().parent.parent
GROUP_HEADER = re.compile(r"^\[.*\] Group job (\S+) \(jobs in lexicogr\. order\):\s*$", re.M)
ALONE_HEADER = re.compile(r"^rule (\w+):\s*$", re.M)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--planes", type=int, default=14)
    parser.add_argument("--per-submission", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = AcquisitionSpec(n_frames=4, n_planes=args.planes, roi_heights=[16, 14], width=24, frames_per_file=4)
        raw = write_acquisition(spec, root / "raw")[0].parent
        rows = ["session\tinput", *(f"s{i:03d}\t{raw}" for i in range(args.sessions))]
        (root / "sessions.tsv").write_text("\n".join(rows) + "\n")
        config = {
            "sessions": "sessions.tsv",
            "outdir": "results",
            "format": ["tiff", "zarr"],
            "cluster": {"planes_per_submission": args.per_submission},
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        snakefile = REPO / "workflow" / "Snakefile"
        cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(snakefile)]
        cmd += ["--directory", str(root), "--profile", str(REPO / "profiles" / "slurm"), "--configfile", "config.yaml"]
        cmd += ["--workflow-profile", "none"]  # its `quiet: rules` would hide the jobs
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
        if result.returncode != 0:
            sys.exit(result.stdout[-3000:] + result.stderr[-3000:])
        log = result.stdout + result.stderr
        groups = GROUP_HEADER.findall(log)
        # a rule made per session (scan_phase_<session>) counts under its step's name
        local = local_rules(snakefile, root)
        remote = [r for r in ALONE_HEADER.findall(log) if r not in local]
        alone = collections.Counter(re.sub(r"^scan_phase_\w+", "scan_phase", r) for r in remote)
        kinds = collections.Counter(
            g.split(".")[0] if g.startswith(("scan_phase.", "assemble.")) else "plane groups" for g in groups
        )
        print(
            f"{args.sessions} sessions x {args.planes} planes x 2 formats, planes_per_submission {args.per_submission}: "
            f"{len(groups) + sum(alone.values())} submissions (groups: {dict(kinds)}; alone: {dict(alone)})"
        )


if __name__ == "__main__":
    main()
