#!/usr/bin/env bash
# Install imexport with its test dependencies (and the one-node SLURM cluster's Debian
# packages), then run the whole test suite. This is the command README.md documents and
# .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test,slurm]"
bash tests/install_slurm.sh
python -m pytest -q -p no:cacheprovider "$@"
