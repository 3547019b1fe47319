"""Bad inputs and bad settings: a clear error naming the culprit, a non-zero exit, and the
outputs already in the output folder untouched.

The input and output-folder cases run real ``snakemake`` calls (a few at a time, they are
independent) against an output folder that holds a finished export. Config errors are
checked at the planning call the Snakefile makes, where every one of them is raised and
which the Snakefile turns into the same non-zero exit (``test_workflow.py`` runs a few of
them through snakemake).

Tests run as root, so permission bits cannot make a folder unwritable: the unwritable
output folder is a path under an existing file (a read-only mount would need privileges
a test should not ask for; the same check covers it, ``os.access`` reports EROFS).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import LARGE_PLANES, NO_PHASE, small_disk, snapshot

from imexport import steps, synthetic
from imexport.sources.info import SourceError
from imexport.workflow_plan import plan_for_config

SPEC = dict(n_frames=7, n_planes=3, roi_heights=[24, 18], width=24, fly_to_lines=3, frames_per_file=3, n_cells=8)


def copy_raw(raw: Path, name: str) -> Path:
    target = raw.parent / name
    shutil.copytree(raw, target)
    return target


def truncated(raw: Path) -> tuple[Path, Path]:
    folder = copy_raw(raw, "truncated")
    last = sorted(folder.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:-100])  # cut inside the last page's pixels
    return folder, last


def gap(raw: Path) -> tuple[Path, Path]:
    folder = copy_raw(raw, "gap")
    (folder / "acq_00002.tif").unlink()
    return folder, Path("acq_NNNNN.tif")


def plain_tiff_in_series(raw: Path) -> tuple[Path, Path]:
    import numpy as np
    import tifffile

    folder = copy_raw(raw, "plain")
    intruder = folder / "acq_00002.tif"
    with tifffile.TiffFile(intruder) as tf:
        pages, shape = len(tf.pages), tf.pages[0].shape
    tifffile.imwrite(intruder, np.zeros((pages, *shape), np.int16), bigtiff=True, photometric="minisblack")
    return folder, intruder


def bad_roi_json(raw: Path) -> tuple[Path, Path]:
    folder = copy_raw(raw, "bad_json")
    first = folder / "acq_00001.tif"
    data = bytearray(first.read_bytes())
    magic, _, frame_bytes, _ = struct.unpack_from("<IIII", data, 16)
    assert magic == synthetic.SCANIMAGE_MAGIC
    json_at = 32 + frame_bytes
    data[json_at : json_at + 12] = b"#broken#json"
    first.write_bytes(bytes(data))
    return folder, first


def no_channel_save(raw: Path) -> tuple[Path, Path]:
    folder = copy_raw(raw, "no_channel_save")
    first = folder / "acq_00001.tif"
    data = first.read_bytes()
    assert data.count(b"SI.hChannels.channelSave") == 1
    first.write_bytes(data.replace(b"SI.hChannels.channelSave", b"SI.hChannels.channelXXXX"))  # same length
    return folder, first


def other_page_size(raw: Path) -> tuple[Path, Path]:
    folder = copy_raw(raw, "page_sizes")
    wider = synthetic.write_acquisition(synthetic.AcquisitionSpec(**{**SPEC, "width": SPEC["width"] + 4}), raw.parent / "wider")
    shutil.copy(wider[2], folder / wider[2].name)
    return folder, folder / wider[2].name


BROKEN_INPUTS = {
    "truncated_tiff": (truncated, ["truncated"]),
    "gap_in_numbering": (gap, ["gap", "[2] missing"]),
    "non_scanimage_tiff": (plain_tiff_in_series, ["not a raw ScanImage TIFF"]),
    "corrupt_header_json": (bad_roi_json, ["ROI"]),
    "missing_channel_save": (no_channel_save, ["SI.hChannels.channelSave"]),
    "different_page_sizes": (other_page_size, ["not one acquisition"]),
}


@pytest.fixture(scope="module")
def workflow_failures(tmp_path_factory, make_acquisition, run_snakemake):
    """Every failing workflow case, run once; with the output folder before and after."""
    root = tmp_path_factory.mktemp("bad")
    _, paths = make_acquisition(root, **SPEC)
    raw = paths[0].parent
    out = root / "out"
    good = {"input": str(raw), "outdir": str(out), **NO_PHASE}
    run_snakemake(root / "good", good)
    before = snapshot(out)
    (root / "a_file").write_text("not a folder")
    cases = {}
    for name, (make, fragments) in BROKEN_INPUTS.items():
        folder, culprit = make(raw)
        cases[name] = ({**good, "input": str(folder)}, [str(culprit), *fragments])
    cases["outdir_inside_input"] = ({**good, "outdir": str(raw / "export")}, ["outdir", f"inside the input folder {raw}"])
    cases["outdir_unwritable"] = ({**good, "outdir": str(root / "a_file" / "out")}, ["outdir", "is a file, not a folder"])

    def run(name):
        config, _ = cases[name]
        return name, run_snakemake(root / "work" / name, config, expect_ok=None)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(pool.map(run, cases))
    return cases, results, out, before, snapshot(out)


@pytest.mark.parametrize("case", [*BROKEN_INPUTS, "outdir_inside_input", "outdir_unwritable"])
def test_the_workflow_stops_naming_the_culprit(workflow_failures, case):
    cases, results, out, before, after = workflow_failures
    _, fragments = cases[case]
    result = results[case]
    assert result.returncode != 0
    assert "imexport:" in result.output
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in:\n{result.output[-3000:]}"
    assert "rule " not in result.output  # stopped while planning, before any job


def test_existing_outputs_are_untouched(workflow_failures):
    _, _, out, before, after = workflow_failures
    assert after == before
    assert not (out.parent / "raw" / "export").exists() and not (out.parent / "a_file").is_dir()


@pytest.mark.parametrize(
    "settings, fragments",
    [
        ({"frames": "5:12"}, ["frames", "1..7"]),
        ({"channels": [2]}, ["channels", "1..1"]),
        ({"roi_mode": "separate", "rois": [3]}, ["rois", "1..2"]),
        ({"planes": [1, 2], "order": [0]}, ["order", "permutation"]),
        ({"planes": [1, 2, 3], "order": [0, 1, 2, 2]}, ["order", "permutation"]),
        ({"output_suffix": "a/b"}, ["output_suffix"]),
        ({"output_suffix": ".."}, ["output_suffix"]),
        ({"output_suffix": "/tmp/elsewhere"}, ["output_suffix"]),
        ({"output_name": "/abs/data_raw.bin"}, ["output_name"]),
        ({"output_name": "../data_raw.bin"}, ["output_name"]),
        ({"output_name": "sub/data_raw.bin"}, ["output_name"]),
        ({"target_chunk_mb": "big"}, ["target_chunk_mb"]),
        ({"zarr": {"unknown": 1}}, ["zarr"]),
    ],
    ids=[
        "frames",
        "channels",
        "rois",
        "order_too_short",
        "order_too_long",
        "suffix_slash",
        "suffix_dotdot",
        "suffix_absolute",
        "name_absolute",
        "name_dotdot",
        "name_slash",
        "wrong_type",
        "unknown_nested_key",
    ],
)
def test_bad_settings_are_refused_while_planning(tmp_path, make_acquisition, settings, fragments):
    _, paths = make_acquisition(tmp_path, **SPEC)
    with pytest.raises(ValueError) as error:
        plan_for_config({"input": str(paths[0].parent), "outdir": str(tmp_path / "out"), **NO_PHASE, **settings})
    for fragment in fragments:
        assert fragment in str(error.value)
    assert not (tmp_path / "out").exists()


def test_outdir_equal_to_the_input_folder_is_refused(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **SPEC)
    with pytest.raises(ValueError, match=r"^outdir: .* is the input folder"):
        plan_for_config({"input": str(paths[0].parent), "outdir": str(paths[0].parent), **NO_PHASE})


def test_a_full_disk_fails_the_job_and_leaves_no_output(tmp_path, make_acquisition, run_snakemake):
    _, paths = make_acquisition(tmp_path, **LARGE_PLANES)
    out = tmp_path / "out"
    result = run_snakemake(
        tmp_path / "work", {"input": str(paths[0].parent), "outdir": str(out), **NO_PHASE}, expect_ok=False, preexec_fn=small_disk
    )
    assert "Error in rule write_plane_file" in result.output
    failed = [
        name
        for name in ("zplane01_tp00001-00060.tif", "zplane02_tp00001-00060.tif")
        if f"{out / name} not written" in result.output
    ]
    assert failed and "ulimit -f" in result.output and "MiB are free" in result.output
    written = [p for p in out.iterdir() if p.name != ".imexport"]
    assert written == []  # no output, no temporary, no manifest
    # on screen: one line per failed job, no traceback; the traceback is in the job's log
    assert "Traceback" not in result.output
    for name in failed:
        messages = [line for line in result.output.splitlines() if f"{out / name} not written" in line]
        assert len(messages) == 1 and messages[0].startswith(f"imexport: {out / name} not written: [Errno 27]")
        assert re.search(r"\. \d+ MiB are free on its file system", messages[0])
        job_log = out / ".imexport" / "logs" / "write" / f"{name}.log"
        message, _, named_log = messages[0].removeprefix("imexport: ").partition(" (job log: ")
        assert named_log == f"{job_log})"
        logged = job_log.read_text()
        assert "Traceback (most recent call last)" in logged and "os.pwrite" in logged and message in logged


def test_an_input_changed_after_indexing_stops_the_plane_job(tmp_path, make_acquisition):
    _, paths = make_acquisition(tmp_path, **SPEC)
    out = tmp_path / "out"
    _, plan = plan_for_config({"input": str(paths[0].parent), "outdir": str(out), **NO_PHASE})
    source, index = Path(plan.work) / "source.json", Path(plan.work) / "page_index.npz"
    source.parent.mkdir(parents=True)
    steps.index_source(plan.source.to_json(), str(source), str(index))
    job = plan.jobs[next(iter(plan.jobs))]
    last = paths[-1]
    size = last.stat().st_size
    with open(last, "ab") as fh:  # pages appended after the run indexed the file
        fh.write(b"\0" * 4096)
    with pytest.raises(SourceError, match="changed after the run indexed it") as grown:
        steps.write_plane(job, str(source), str(index))
    assert str(last.resolve()) in str(grown.value) and f"{size} bytes then" in str(grown.value)
    os.truncate(last, size)  # the same size again, but rewritten since
    with pytest.raises(SourceError, match="modified since"):
        steps.write_plane(job, str(source), str(index))
    assert [p.name for p in out.iterdir()] == [".imexport"]  # nothing written, no temporary
