"""An input rewritten while the export reads it is caught, and nothing records it.

* A plane job reads its pages in many small chunks (a tiny ``target_chunk_mb``); between
  two of its reads some pages of an input file are overwritten in place (same size), from
  the job's own per-chunk ``progress`` hook. The job must fail naming that file, and no
  output may exist under its final name (nor a temporary one).
* An input rewritten after the plane jobs read it but before the history step: the
  history must not record a digest of bytes that were not the ones exported.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

import imexport
from imexport import steps
from imexport.atomic import TEMP_MARKER
from imexport.history import MANIFEST_NAME
from imexport.sources.info import SourceError
from imexport.synthetic import expected_roi
from imexport.workflow_plan import plan_for_config

SPEC = dict(n_frames=12, n_planes=2, roi_heights=[16, 16], width=16, fly_to_lines=3, frames_per_file=6, n_cells=4)


def overwrite_pages(path) -> None:
    """Invert the pixels of the file's second half of pages in place: same size, same
    inode, the page directories intact."""
    with tifffile.TiffFile(path) as tif:
        strips = [(o, n) for page in tif.pages[len(tif.pages) // 2 :] for o, n in zip(page.dataoffsets, page.databytecounts)]
    with open(path, "r+b") as fh:
        for offset, count in strips:
            fh.seek(offset)
            data = fh.read(count)
            fh.seek(offset)
            fh.write(bytes(255 - b for b in data))


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
