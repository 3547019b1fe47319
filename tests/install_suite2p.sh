#!/usr/bin/env bash
# Install suite2p 1.1 (the current release) and 0.14 in cached virtual environments for
# tests/test_clients.py, each built once and reused while its ".installed" marker is there.
# suite2p pulls torch through cellpose: torch 2.14.1 is pinned because this machine image
# serves that build from local disk (the 1.1 environment is about 6.2 GB, built in about
# 5 minutes); the 0.14 environment installs only suite2p 0.14 and what differs (about
# 100 MB, 20 s) and takes torch and the rest from the 1.1 environment through a .pth file.
# Location: $IMEXPORT_CLIENTS_CACHE (default ~/.cache/imexport).
set -euo pipefail
CACHE="${IMEXPORT_CLIENTS_CACHE:-$HOME/.cache/imexport}"
PYTHON="${PYTHON:-python3}"
V11="$CACHE/suite2p-1.1-venv"
V014="$CACHE/suite2p-0.14-venv"
mkdir -p "$CACHE"

pip_install() {  # venv, then requirements
    local venv="$1"; shift
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

if [ ! -f "$V11/.installed" ]; then
    rm -rf "$V11"
    "$PYTHON" -m venv "$V11"
    pip_install "$V11" "suite2p==1.1.0" "torch==2.14.1"
    touch "$V11/.installed"
fi

if [ ! -f "$V014/.installed" ]; then
    rm -rf "$V014"
    "$PYTHON" -m venv "$V014"
    purelib() { "$1/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
    # listed after the 0.14 environment's own site-packages, so its own packages win
    purelib "$V11" > "$(purelib "$V014")/zz-suite2p-1.1-venv.pth"
    # suite2p 0.14.6's cell detection calls int() on a one-element array, an error from numpy 2.4 on
    pip_install "$V014" "suite2p==0.14.6" "numpy<2.4"
    touch "$V014/.installed"
fi
