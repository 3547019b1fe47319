"""An input rewritten while the export reads it is caught, and nothing records it.

* A plane job reads its pages in many small chunks (a tiny ``target_chunk_mb``); between
  two of its reads some pages of an input file are overwritten in place (same size), from
  the job's own per-chunk ``progress`` hook. The job must fail naming that file, and no
  output may exist under its final name (nor a temporary one).
* An input rewritten after the plane jobs read it but before the history step: the
  history must not record a digest of bytes that were not the ones exported.
* Between two runs (workflow and API): an input edited in place with its size kept is
  caught, whatever its modification time says; a touched input re-exports nothing.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import tifffile
from conftest import sha256, snapshot, verify_cli

import imexport
from imexport import steps
from imexport.atomic import TEMP_MARKER
from imexport.guard import OverwriteError
from imexport.history import MANIFEST_NAME
from imexport.sources.info import SourceError
from imexport.synthetic import expected_roi
from imexport.workflow_plan import plan_for_config

SPEC = dict(n_frames=12, n_planes=2, roi_heights=[16, 16], width=16, fly_to_lines=3, frames_per_file=6, n_cells=4)


def overwrite_pages(path) -> None:
    """Invert the pixels of the file's second half of pages in place: same size, same
    inode, the page directories intact."""
    with tifffile.TiffFile(path) as tif:
        n_pages = len(tif.pages)
    invert_last_pages(path, n_pages - n_pages // 2, keep_mtime=False)


def test_a_plane_job_whose_input_changes_between_reads_fails_and_writes_nothing(tmp_path, make_acquisition):
    spec, raw = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    config = {
        "input": str(raw[0].parent),
        "outdir": str(out),
        "format": "tiff",
        "target_chunk_mb": 0.001,
        "scan_phase": {"fix_phase": False},
    }
    _, plan = plan_for_config(config)
    steps.index_source(plan.source.to_json(), plan.source_json, plan.page_index)
    job = plan.jobs[next(iter(plan.jobs))]
    reads: list[float] = []

    def rewrite_after_the_second_read(fraction: float) -> None:
        reads.append(fraction)
        if len(reads) == 2:
            overwrite_pages(raw[-1])

    with pytest.raises(SourceError, match=re.escape(str(raw[-1])) + r": changed while it was being exported"):
        steps.write_plane(job, plan.source_json, plan.page_index, progress=rewrite_after_the_second_read)
    assert len(reads) > 2  # the job read on after the rewrite: the check is after the last read
    assert not (out / job.output).exists() and not list(out.rglob(f"*{TEMP_MARKER}*"))

    # the same job on the file as it is now (indexed again) writes that file's pixels
    steps.index_source(plan.source.to_json(), plan.source_json, plan.page_index)
    steps.write_plane(job, plan.source_json, plan.page_index)
    frames = tifffile.imread(job.output)
    first_file = [expected_roi(spec, np.arange(6), 0, job.plane, r) for r in range(2)]
    assert np.array_equal(frames[:6], np.concatenate(first_file, axis=2))  # untouched file, untouched pixels


def test_an_input_changed_before_the_history_step_is_not_recorded(tmp_path, make_acquisition):
    _, raw = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    plane_jobs: list[float] = []

    def rewrite_after_the_last_plane_job(fraction: float, plane: int) -> None:
        plane_jobs.append(fraction)
        if fraction == 1.0:
            overwrite_pages(raw[0])

    with pytest.raises(SourceError, match=re.escape(str(raw[0])) + r": changed after this export indexed it"):
        imexport.imwrite(raw[0].parent, out, ext=".tiff", progress_callback=rewrite_after_the_last_plane_job, show_progress=False)
    assert plane_jobs[-1] == 1.0
    assert not (out / MANIFEST_NAME).exists()


# --------------------------------------------------------------------------- between runs
# An input rewritten in place between two runs, with its size kept (and its modification
# time too, with `touch -d`), is a changed plan: the rerun lists the outputs it would
# rewrite, naming the file, or rewrites them with overwrite: true. A touch is no change.

TOUCHED_SPEC = dict(n_frames=12, n_planes=2, roi_heights=[16, 16], width=16, fly_to_lines=3, frames_per_file=6, n_cells=4)
EDITED_PAGES = 4  # the last two frames of the last file, both planes: 4 x 1120 bytes


def invert_last_pages(path, n_pages: int, keep_mtime: bool) -> None:
    """Invert the pixels of the file's last ``n_pages`` pages in place (same size, same
    inode); ``keep_mtime``: set the modification time back, as ``touch -d`` would."""
    before = os.stat(path)
    with tifffile.TiffFile(path) as tif:
        strips = [(o, n) for page in tif.pages[-n_pages:] for o, n in zip(page.dataoffsets, page.databytecounts)]
    with open(path, "r+b") as fh:
        for offset, count in strips:
            fh.seek(offset)
            data = fh.read(count)
            fh.seek(offset)
            fh.write(bytes(255 - b for b in data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_ino == before.st_ino


def plane_files(out) -> list:
    return sorted(out.glob("zplane*.tif"))


def expected_planes(spec) -> list[np.ndarray]:
    """The pixels of each plane as the synthetic acquisition drew them, ROIs side by side."""
    frames = np.arange(spec.n_frames)
    return [np.concatenate([expected_roi(spec, frames, 0, z, r) for r in range(2)], axis=2) for z in range(spec.n_planes)]


def assert_inverted_last_frames(out, spec) -> None:
    """The last frame of the last file's pages inverted (ScanImage order: frame-major,
    plane-minor), every other frame as drawn."""
    n_frames = EDITED_PAGES // spec.n_planes
    for path, drawn in zip(plane_files(out), expected_planes(spec)):
        frames = tifffile.imread(path)
        assert np.array_equal(frames[:-n_frames], drawn[:-n_frames])
        assert np.array_equal(frames[-n_frames:], ~drawn[-n_frames:])


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["mtime-moved", "mtime-set-back"])
def test_an_input_edited_in_place_with_its_size_stops_the_rerun_then_overwrite_reexports(
    tmp_path, make_acquisition, run_snakemake, keep_mtime
):
    spec, raw = make_acquisition(tmp_path, **TOUCHED_SPEC)
    out = tmp_path / "out"
    config = {"input": str(raw[0].parent), "outdir": str(out), "format": "tiff", "scan_phase": {"fix_phase": False}}
    run_snakemake(tmp_path / "work", config)
    assert [np.array_equal(tifffile.imread(p), e) for p, e in zip(plane_files(out), expected_planes(spec))] == [True, True]
    before = snapshot(out, work_folder=False)

    invert_last_pages(raw[-1], EDITED_PAGES, keep_mtime)
    refused = run_snakemake(tmp_path / "work", config, expect_ok=False)
    assert "overwrite: false" in refused.output and "overwrite: true" in refused.output
    for path in plane_files(out):
        assert f"{path} (written by imexport from an earlier content of {raw[-1].resolve()} (rewritten in place since))" in (
            refused.output
        )
    assert str(raw[0].resolve()) not in refused.output  # the unchanged file is not named
    assert "rule " not in refused.output and "Traceback" not in refused.output  # before any job
    assert snapshot(out, work_folder=False) == before

    run_snakemake(tmp_path / "work", {**config, "overwrite": True})
    assert_inverted_last_frames(out, spec)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    inputs = {e["path"]: e["sha256"] for e in manifest["steps"][-1]["inputs"]}
    assert inputs[str(raw[-1].resolve())] == sha256(raw[-1])
    verify = verify_cli(out)
    assert verify.returncode == 0, verify.stdout


def test_a_touched_input_reexports_nothing_and_a_later_rerun_still_reads_it(tmp_path, make_acquisition, run_snakemake):
    spec, raw = make_acquisition(tmp_path, **TOUCHED_SPEC)
    out = tmp_path / "out"
    config = {"input": str(raw[0].parent), "outdir": str(out), "format": "tiff", "scan_phase": {"fix_phase": False}}
    run_snakemake(tmp_path / "work", config)
    before = snapshot(out, work_folder=False)
    logs = {p: p.stat().st_mtime_ns for p in (out / ".imexport" / "logs").rglob("*.log")}

    for path in raw:  # what `touch` does: the times move, the bytes stay
        later = os.stat(path).st_mtime_ns + 5 * 10**9
        os.utime(path, ns=(later, later))
    again = run_snakemake(tmp_path / "work", config)
    assert "Nothing to be done" in again.output and "rule " not in again.output, again.output
    assert snapshot(out, work_folder=False) == before
    assert {p: p.stat().st_mtime_ns for p in logs} == logs  # no job started (each writes its log)

    # a job that runs later (its output was deleted) reads the touched file as indexed
    plane_files(out)[0].unlink()
    rerun = run_snakemake(tmp_path / "work", config)
    assert "rule write_plane_file" in rerun.output and "rule index_source" not in rerun.output
    assert [np.array_equal(tifffile.imread(p), e) for p, e in zip(plane_files(out), expected_planes(spec))] == [True, True]
    verify = verify_cli(out)
    assert verify.returncode == 0, verify.stdout


def test_the_api_stops_on_an_edited_input_and_rewrites_it_with_overwrite(tmp_path, make_acquisition):
    spec, raw = make_acquisition(tmp_path, **TOUCHED_SPEC)
    out = tmp_path / "out"
    export = dict(ext=".tif", show_progress=False, fix_phase=False)
    imexport.imwrite(raw[0].parent, out, **export)
    before = {p.name: p.read_bytes() for p in plane_files(out)}

    for path in raw:  # a touch: the API runs every step again, into the same pixel files
        later = os.stat(path).st_mtime_ns + 5 * 10**9
        os.utime(path, ns=(later, later))
    imexport.imwrite(raw[0].parent, out, **export)
    assert {p.name: p.read_bytes() for p in plane_files(out)} == before

    invert_last_pages(raw[-1], EDITED_PAGES, keep_mtime=True)
    with pytest.raises(OverwriteError) as refused:
        imexport.imwrite(raw[0].parent, out, **export)
    for path in plane_files(out):
        assert f"{path} (written by imexport from an earlier content of {raw[-1].resolve()}" in str(refused.value)
    assert {p.name: p.read_bytes() for p in plane_files(out)} == before

    imexport.imwrite(raw[0].parent, out, overwrite=True, **export)
    assert_inverted_last_frames(out, spec)


def test_a_recording_exported_again_into_another_folder_is_not_read_again_to_plan_it(
    tmp_path, make_acquisition, run_snakemake, monkeypatch
):
    # the digests of the inputs are shared by every output folder (the user's digest
    # cache, here the test session's), valid while size, mtime, inode and ctime are unchanged
    spec, raw = make_acquisition(tmp_path, **TOUCHED_SPEC)
    config = {"input": str(raw[0].parent), "format": "tiff", "scan_phase": {"fix_phase": False}}

    def export(name):
        out = tmp_path / name
        result = run_snakemake(tmp_path / f"work_{name}", {**config, "outdir": str(out)})
        manifest = json.loads((out / MANIFEST_NAME).read_text())
        recorded = {e["path"]: e["sha256"] for e in manifest["steps"][-1]["inputs"]}
        assert recorded == {str(p.resolve()): sha256(p) for p in raw}
        return out, result.output

    _, first = export("first")
    assert f"hashing {len(raw)} input file(s)" in first
    out, again = export("again")
    assert "hashing" not in again
    # its history step found every input digest in its own folder's cache, where the run's start put them
    history_log = (out / ".imexport" / "logs" / "history.log").read_text()
    counts = re.findall(r"(\d+) file\(s\): (\d+) digest\(s\) from the cache, (\d+) hashed", history_log)
    assert counts[0][2] == "0", history_log

    invert_last_pages(raw[-1], EDITED_PAGES, keep_mtime=True)  # same size, mtime set back
    out, edited = export("edited")
    assert "hashing 1 input file(s)" in edited
    assert_inverted_last_frames(out, spec)

    monkeypatch.setenv("IMEXPORT_DIGEST_CACHE", "off")
    _, unshared = export("unshared")
    assert f"hashing {len(raw)} input file(s)" in unshared
