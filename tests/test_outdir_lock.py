"""One run per output folder (imexport.outdir_lock), with real processes holding the lock:
the module on its own, then real Snakemake runs of workflow/Snakefile."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import LARGE_PLANES, NO_PHASE, small_disk, snapshot, verify_cli

from imexport.outdir_lock import OutdirLockedError, acquire, check_unlocked, lock_path, locked, release

HOLD = textwrap.dedent("""
    import sys, time
    from imexport.outdir_lock import acquire
    acquire(sys.argv[1])
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def hold():
    """``hold(work)``: start a live process holding the lock of ``work``."""
    procs = []

    def start(work: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def holder_process(tmp_path, hold):
    """A live process holding the lock of ``tmp_path / 'work'``."""
    return hold(tmp_path / "work")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_run_holds_the_folder(tmp_path, holder_process):
    work = tmp_path / "work"
    with pytest.raises(OutdirLockedError, match=rf"pid {holder_process.pid}.*wait for it to finish"):
        acquire(work)
    with pytest.raises(OutdirLockedError, match=rf"pid {holder_process.pid}"):
        check_unlocked(work)
    assert json.loads(lock_path(work).read_text())["pid"] == holder_process.pid


def test_a_dead_runs_lock_is_taken_over(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    lock_path(work).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "then"}))
    check_unlocked(work)
    holder = acquire(work)
    assert json.loads(lock_path(work).read_text())["token"] == holder["token"]
    release(work, holder)
    assert not lock_path(work).exists()


def test_a_recycled_pid_does_not_keep_a_dead_runs_lock(tmp_path, holder_process):
    """The PID is alive, but it is another process than the one that took the lock."""
    work = tmp_path / "other"
    work.mkdir()
    stale = {"host": socket.gethostname(), "pid": holder_process.pid, "process_start": "1", "started": "then"}
    lock_path(work).write_text(json.dumps(stale))
    holder = acquire(work)
    assert holder["pid"] != holder_process.pid


def test_a_lock_from_another_host_is_reported_with_how_to_clear_it(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    lock_path(work).write_text(json.dumps({"host": "node17", "pid": 1, "started": "2026-12-01T10:00:00+0000"}))
    with pytest.raises(OutdirLockedError, match=rf"node17.*remove {lock_path(work)}"):
        acquire(work)


def test_release_never_removes_another_runs_lock(tmp_path, holder_process):
    work = tmp_path / "work"
    release(work, {"token": "not-the-holders"})
    assert lock_path(work).exists()


def test_locked_releases_on_error(tmp_path):
    work = tmp_path / "work"
    with pytest.raises(RuntimeError), locked(work):
        assert lock_path(work).exists()
        raise RuntimeError
    assert not lock_path(work).exists()


RACE = textwrap.dedent("""
    import sys, time
    from imexport.outdir_lock import acquire, OutdirLockedError
    while time.time() < float(sys.argv[2]):
        pass
    try:
        acquire(sys.argv[1])
    except OutdirLockedError:
        print("refused", flush=True)
    else:
        print("got", flush=True)
        time.sleep(2)
""")


def test_of_runs_racing_for_a_stale_lock_exactly_one_wins(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    lock_path(work).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "started": "then"}))
    start = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", RACE, str(work), str(start)], stdout=subprocess.PIPE, text=True) for _ in range(6)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["got"] + ["refused"] * 5


# --------------------------------------------------------------------------- workflow runs


def test_a_run_into_a_held_folder_stops_before_any_job(tmp_path, make_acquisition, run_snakemake, hold):
    _, paths = make_acquisition(tmp_path)
    out = tmp_path / "out"
    config = {"input": str(paths[0].parent), "outdir": str(out), "format": ["tiff", "zarr"], **NO_PHASE}
    run_snakemake(tmp_path / "first", config)
    holder = hold(out / ".imexport")
    before = snapshot(out)
    # a different export that, unlocked, would remove the third plane and rewrite the others
    second = {**config, "planes": [1, 2], "metadata": {"dz": 5.0}, "overwrite": True}
    for extra in ((), ("--dry-run",)):
        refused = run_snakemake(tmp_path / "second", second, *extra, expect_ok=False)
        assert f"imexport: {out}: another imexport run exports into this folder" in refused.output
        assert f"pid {holder.pid}," in refused.output and "wait for it to finish" in refused.output
        assert "Traceback" not in refused.output and "rule " not in refused.output  # no job started
        assert "Snakefile" not in refused.output and "WorkflowError" not in refused.output  # no Snakemake location
    assert snapshot(out) == before
    assert verify_cli(out).returncode == 0


def test_a_dead_runs_lock_is_taken_over_and_released(tmp_path, make_acquisition, run_snakemake):
    _, paths = make_acquisition(tmp_path)
    out = tmp_path / "out"
    (out / ".imexport").mkdir(parents=True)
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "then"}
    lock_path(out / ".imexport").write_text(json.dumps(stale))
    run_snakemake(tmp_path / "work", {"input": str(paths[0].parent), "outdir": str(out), **NO_PHASE})
    assert not lock_path(out / ".imexport").exists()  # taken over (or it would still be there), then released
    assert verify_cli(out).returncode == 0


def test_a_failed_run_releases_the_lock(tmp_path, make_acquisition, run_snakemake):
    # every plane job fails on the small disk, after the run took the lock
    _, paths = make_acquisition(tmp_path, **LARGE_PLANES)
    out = tmp_path / "out"
    (out / ".imexport").mkdir(parents=True)
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "then"}
    lock_path(out / ".imexport").write_text(json.dumps(stale))  # gone after the run only if the run took it

    failed = run_snakemake(
        tmp_path / "work", {"input": str(paths[0].parent), "outdir": str(out), **NO_PHASE}, expect_ok=False, preexec_fn=small_disk
    )
    assert "Error in rule write_plane_file" in failed.output
    assert (out / ".imexport" / "page_index.npz").is_file()  # the run got past its start
    assert not lock_path(out / ".imexport").exists()


def test_imwrite_into_a_held_folder_stops_before_writing(tmp_path, make_acquisition, hold):
    """The API runs under the same lock as the workflow."""
    import imexport

    make_acquisition(tmp_path, roi_heights=[16, 12])
    out = tmp_path / "out"
    holder = hold(out / ".imexport")
    with pytest.raises(OutdirLockedError, match=rf"pid {holder.pid}"):
        imexport.imwrite(tmp_path / "raw", out, ext=".tiff")
    assert [p.name for p in out.iterdir()] == [".imexport"]
    assert {p.name for p in (out / ".imexport").iterdir()} <= {"run.lock", ".run.lock.takeover"}  # nothing else written
    imexport.imwrite(tmp_path / "raw", tmp_path / "free", ext=".tiff")  # another folder is free
    assert not lock_path(tmp_path / "free" / ".imexport").exists()
