#!/usr/bin/env bash
# Install imexport with its test dependencies (and the one-node SLURM cluster's Debian
# packages), then run the whole test suite. This is the command README.md documents and
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test,slurm,report]"
bash tests/install_slurm.sh
# Debian packages some tests drive: headless Chromium renders the QC report
# (tests/test_qc_report.py); ImageJ under Xvfb opens the TIFFs (tests/test_clients.py);
# strace shows the fsync-before-rename order of a commit (tests/test_durable.py).
# Where they cannot be installed those tests fail in CI and are skipped elsewhere, naming
# what to install.
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/java/ij.jar ] || missing+=(imagej)
command -v xvfb-run >/dev/null 2>&1 || missing+=(xvfb)
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        export DEBIAN_FRONTEND=noninteractive
        { $SUDO apt-get update -q && $SUDO apt-get install -y -q "${missing[@]}"; } \
            || echo "run.sh: apt-get could not install ${missing[*]}" >&2
    else
        echo "run.sh: apt-get not found: install ${missing[*]} by hand" >&2
    fi
fi
# suite2p 1.1 and 0.14 in cached environments (tests/test_clients.py); built once
bash tests/install_suite2p.sh || echo "run.sh: tests/install_suite2p.sh failed (tests/test_clients.py)" >&2
python -m pytest -q -p no:cacheprovider "$@"
