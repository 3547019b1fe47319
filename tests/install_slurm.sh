#!/usr/bin/env bash
# Install what the SLURM tests (tests/test_slurm_cluster.py) need:
#   - Debian's SLURM daemons + client tools and munge (authentication),
#   - the official Snakemake SLURM executor plugin.
#
# Idempotent: every step first checks whether its result is already there, so
# .ci/run can call this on every run and pay almost nothing on a machine that
# already has everything.  Any failure exits non-zero with a message on stderr
# (set -e alone would stop silently on some failures, hence the explicit die).
set -euo pipefail

die() {
    echo "install_slurm.sh: ERROR: $*" >&2
    exit 1
}

# The binaries the test harness (tests/slurm_cluster.py) calls.  Checking
# binaries rather than dpkg status also covers a site that built SLURM itself.
NEEDED_BINS=(slurmctld slurmd sbatch squeue sinfo scontrol scancel munged munge unmunge)
DEB_PKGS=(slurmctld slurmd slurm-client munge)

missing_bins() {
    local b out=()
    for b in "${NEEDED_BINS[@]}"; do
        # munged / slurmd / slurmctld live in /usr/sbin, which a non-login
        # root shell may not have on PATH; look there explicitly too.
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || out+=("$b")
    done
    echo "${out[*]:-}"
}

missing="$(missing_bins)"
if [ -n "$missing" ]; then
    echo "install_slurm.sh: missing binaries: $missing; installing ${DEB_PKGS[*]}"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${DEB_PKGS[*]} by hand"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; cannot apt-get install"
        SUDO="sudo"
    fi
    # noninteractive: the munge/slurm postinst scripts must never prompt
    # (CI has no stdin).  update only here, i.e. only when something is missing,
    # because it is the slow, network-bound part.
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q || die "apt-get update failed"
    $SUDO apt-get install -y -q --no-install-recommends "${DEB_PKGS[@]}" \
        || die "apt-get install ${DEB_PKGS[*]} failed"
    missing="$(missing_bins)"
    [ -z "$missing" ] || die "still missing after install: $missing"
else
    echo "install_slurm.sh: SLURM and munge binaries already present"
fi

# Use the same interpreter the tests run with (python -m pytest / python -m
# snakemake), so the plugin lands in the environment snakemake loads it from.
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "python interpreter '$PY' not found"
if "$PY" -c 'import snakemake_executor_plugin_slurm' >/dev/null 2>&1; then
    echo "install_slurm.sh: snakemake-executor-plugin-slurm already importable"
else
    echo "install_slurm.sh: installing snakemake-executor-plugin-slurm"
    "$PY" -m pip install -q snakemake-executor-plugin-slurm \
        || die "pip install snakemake-executor-plugin-slurm failed"
    "$PY" -c 'import snakemake_executor_plugin_slurm' \
        || die "snakemake-executor-plugin-slurm installed but not importable"
fi

echo "install_slurm.sh: done"
