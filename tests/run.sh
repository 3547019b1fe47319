#!/usr/bin/env bash
# Install imexport with its test dependencies (and the one-node SLURM cluster's Debian
# packages), then run the whole test suite. This is the command README.md documents and
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test,slurm,report]"
bash tests/install_slurm.sh
# headless Chromium renders the QC report (tests/test_qc_report.py); where it cannot be
# installed the test fails in CI and is skipped elsewhere, naming what to install
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        export DEBIAN_FRONTEND=noninteractive
        { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium; } \
            || echo "run.sh: apt-get could not install chromium (tests/test_qc_report.py)" >&2
    else
        echo "run.sh: apt-get not found: install chromium by hand for tests/test_qc_report.py" >&2
    fi
fi
python -m pytest -q -p no:cacheprovider "$@"
