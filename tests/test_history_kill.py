"""A kill while the history step writes into the single-file HDF5 export (the one output
it edits in place, since copying it would write every pixel again) never leaves a file
under the final name that looks complete: the file is renamed aside while it is edited.
The next run writes the export again and its history in full."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import h5py
import numpy as np
import tifffile
from conftest import verify_cli

from imexport.api import run_config
from imexport.atomic import TEMP_MARKER
from imexport.hdf5_attrs import read_attrs
from imexport.history import MANIFEST_NAME

SPEC = dict(n_frames=7, n_planes=3, roi_heights=[16, 14], width=20, fly_to_lines=2, frames_per_file=3)
STEM = "zplane01-03_tp00001-00007"

# The history attribute is written, then the process dies before HDF5 closes the file
# (nothing flushed, no cleanup): what a kill or a lost node does at that moment.
KILLED_IN_HISTORY = """
import json, os, signal, sys
import imexport.hdf5_attrs as attrs
from imexport.api import run_config

write_attrs = attrs.write_attrs

def write_then_die(file, values):
    write_attrs(file, values)
    if "processing_history" in values:
        os.kill(os.getpid(), signal.SIGKILL)

attrs.write_attrs = write_then_die
run_config(json.loads(sys.argv[1]))
"""


def test_a_kill_while_the_history_goes_into_the_h5_file_leaves_no_file_that_looks_complete(tmp_path, make_acquisition):
    make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    config = {"input": str(tmp_path / "raw"), "outdir": str(out), "format": ["tiff", "h5"], "scan_phase": {"fix_phase": False}}
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_HISTORY, json.dumps(config)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (out / f"{STEM}.h5").exists()  # aside, under a temporary name, while it was edited
    assert [p.name for p in out.glob(f".{STEM}.h5{TEMP_MARKER}-*")] != []
    assert not (out / MANIFEST_NAME).exists()

    run_config(config)  # the next run: the export again, whole
    assert not list(out.rglob(f"*{TEMP_MARKER}*"))
    volume = np.stack([tifffile.imread(out / f"zplane0{z}_tp00001-00007.tif") for z in (1, 2, 3)], axis=1)
    with h5py.File(out / f"{STEM}.h5", "r") as fh:
        assert np.array_equal(fh["mov"][()], volume)
        history = read_attrs(fh)["processing_history"]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [step["id"] for step in history] == [manifest["steps"][-1]["id"]]
    verify = verify_cli(out)
    assert verify.returncode == 0, verify.stdout
